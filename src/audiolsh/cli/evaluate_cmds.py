"""evaluate ...: the evaluation protocols of DESIGN.md run on a corpus folder, with tables and JSON."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from audiolsh.audio import find_audio
from audiolsh.cli import cli
from audiolsh.cli.options import Finite
from audiolsh.cli.output import check_outputs, emit_object, err_console, format_option
from audiolsh.errors import AudiolshError
from audiolsh.evaluation.audfprint import AUDFPRINT_CONFIGS, AudfprintSystem, audfprint_from_env
from audiolsh.evaluation.distortions import CONDITIONS, DEFAULT_CONDITIONS
from audiolsh.evaluation.identify import (
    AudiolshSystem,
    Cell,
    IdentifyReport,
    SystemResult,
    corpus_packages,
    jsonable,
    rescore,
    run_protocol,
    verified_overlaps,
    wav_ingest,
    write_json,
)
from audiolsh.evaluation.olaf import OLAF_CONFIGS, OlafSystem, olaf_from_env


@cli.group()
def evaluate() -> None:
    """Run an evaluation protocol on a corpus folder and print its tables."""


def _floats(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated seconds, got {value!r}") from None
    if not out or any(not (math.isfinite(x) and x > 0) for x in out):
        raise click.BadParameter(f"expected positive seconds, got {value!r}")
    return out


def _names(known: Sequence[str]) -> Any:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
        out = tuple(x.strip() for x in value.split(",") if x.strip())
        bad = [x for x in out if x not in known]
        if bad or not out:
            what = ", ".join(bad) or "empty list"
            raise click.BadParameter(f"unknown {what}; choose from {', '.join(known)}")
        return out

    return parse


@evaluate.command("identify")
@click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="audiolsh's fingerprint library (reused if it exists) [default: inside the work dir].")
@click.option("--index-dir", "old_index_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              hidden=True, help="Deprecated: --index.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Clips and audfprint databases, kept; clips are reused when the plan is the same "
                   "[default: a temporary folder, deleted].")
@click.option("--lengths", "lengths_s", default="3,5,10", show_default=True, callback=_floats,
              help="Clip lengths in seconds, comma-separated.")
@click.option("--conditions", default=",".join(DEFAULT_CONDITIONS), show_default=True,
              callback=_names(list(CONDITIONS)), help=f"Comma-separated, from: {', '.join(CONDITIONS)}.")
@click.option("--clips-per-track", type=click.IntRange(min=1), default=1, show_default=True,
              help="Excerpts per track and length (each under every condition).")
@click.option("--positive-tracks", type=click.IntRange(min=1), default=None,
              help="Cut positive clips from this many of the indexed tracks (seeded subset) [default: all].")
@click.option("--negative-tracks", type=click.IntRange(min=1), default=None,
              help="Cut negative clips from this many of the unindexed tracks [default: all].")
@click.option("--holdout-package", "holdout_packages", multiple=True,
              help="Hold out every track of this package (repeatable) [default: packages in seeded order "
                   "while they fit in 60 % of the unindexed share]. Packages: manifest.csv in the corpus "
                   "folder, else each track's first folder.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, offsets and noises.")
@click.option("--audfprint/--no-audfprint", "use_audfprint", default=True, show_default=True,
              help="Also run audfprint ($AUDFPRINT: audfprint.py, $AUDFPRINT_PYTHON: its interpreter).")
@click.option("--audfprint-configs", default=",".join(AUDFPRINT_CONFIGS), show_default=True,
              callback=_names(list(AUDFPRINT_CONFIGS)), help="audfprint settings to run.")
@click.option("--olaf/--no-olaf", "use_olaf", default=True, show_default=True,
              help="Also run Olaf ($OLAF: the olaf executable).")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Processes for making clips, building indexes and audfprint queries [default: all cores].")
@click.option("--wav-ingest", "wav_tracks", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also time audiolsh's ingest from 44.1-kHz stereo WAV copies of this many indexed tracks.")
@click.option("--min-confidence", type=Finite(0.0, 1.0), default=None,
              help="audiolsh's no-match threshold, a calibrated probability [default: the calibration's"
                   " operating point].")
@click.option("--fit-confidence", "fit_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fit audiolsh's confidence calibration on this run's clips and write it here (JSON).")
@click.option("--reliability-png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Draw audiolsh's reliability diagram (its confidence against the share right) here.")
@click.option("--rescore", "stored", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Score a report written by an earlier run's --out again (checks made anew,"
                                 " at its thresholds) instead of running: its answers are not asked again.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JSON here.")
@click.option("--md", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the markdown tables here.")
@format_option
def identify_cmd(corpus_dir: Path, index_dir: Path | None, old_index_dir: Path | None, work_dir: Path | None,
                 lengths_s: tuple[float, ...], conditions: tuple[str, ...], clips_per_track: int,
                 positive_tracks: int | None, negative_tracks: int | None, holdout_packages: tuple[str, ...],
                 seed: int, use_audfprint: bool,
                 audfprint_configs: tuple[str, ...], use_olaf: bool, workers: int | None, wav_tracks: int,
                 min_confidence: float | None, fit_out: Path | None, reliability_png: Path | None,
                 stored: Path | None, out: Path | None, md: Path | None, fmt: str) -> None:
    """Identification (protocol 2): clips of 3-10 s, clean and distorted, of indexed and unindexed tracks.

    Reports per condition x length the top-1 accuracy, the offset accuracy (within 0.5 s) and the
    false-match rate on clips of unindexed tracks, with matches verified to be reused passages of the
    reported track counted apart; ingest speed, index size and query time. A clip of an indexed track
    answered with another track verified to carry its audio (a remaster, a reused passage) is counted
    apart: top-1 is given without and with such answers.
    audiolsh is reported at its default threshold and at equal false matches (<= 1 %), audfprint and
    Olaf at equal false matches.
    """
    check_outputs(out=out, md=md, fit_confidence=fit_out, reliability_png=reliability_png)
    if stored is not None:
        _emit(_rescored(stored, corpus_dir), out, md, fmt)
        return
    index_dir = index_dir or old_index_dir
    workers = workers or os.cpu_count() or 1
    tracks = [os.fspath(p) for p in find_audio([corpus_dir])]
    if len(tracks) < 3:
        raise AudiolshError(f"{corpus_dir}: needs at least 3 audio files, found {len(tracks)}")
    systems: list[Any] = [AudiolshSystem(index_dir=index_dir, workers=workers, min_confidence=min_confidence)]
    skipped: dict[str, str] = {}
    if use_audfprint:
        try:
            python, script = audfprint_from_env()
        except AudiolshError as exc:
            err_console.print(f"[yellow]warning:[/] {exc}", highlight=False)
            skipped["audfprint"] = str(exc)
        else:
            systems += [AudfprintSystem(name=n, python=python, script=script, options=AUDFPRINT_CONFIGS[n],
                                        workers=workers) for n in audfprint_configs]
    if use_olaf:
        try:
            olaf = olaf_from_env()
        except AudiolshError as exc:
            err_console.print(f"[yellow]warning:[/] {exc}", highlight=False)
            skipped["olaf"] = str(exc)
        else:
            systems += [OlafSystem(name=n, exe=olaf, settings=cfg, workers=workers)
                        for n, cfg in OLAF_CONFIGS.items()]
    with tempfile.TemporaryDirectory(prefix="audiolsh-identify-") as tmp:
        wd = work_dir or Path(tmp)
        with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console) as bar:
            tasks: dict[str, Any] = {}

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            report = run_protocol(tracks, systems, wd, lengths_s=lengths_s, conditions=conditions,
                                  clips_per_track=clips_per_track, positive_tracks=positive_tracks,
                                  negative_tracks=negative_tracks, seed=seed, workers=workers,
                                  packages=corpus_packages(corpus_dir, tracks),
                                  holdout_packages=holdout_packages or None,
                                  on_progress=on_progress)
            if wav_tracks:
                on_progress("audiolsh: WAV ingest", 0, 1)
                report.machine["wav_ingest"] = wav_ingest(report.corpus["indexed"][:wav_tracks], wd / "wav",
                                                          workers=workers).to_dict()
                on_progress("audiolsh: WAV ingest", 1, 1)
    report.skipped = skipped
    report.machine["command"] = _command()
    _calibration(report, fit_out, reliability_png)
    _emit(report, out, md, fmt)


def _command() -> str:
    return shlex.join(["audiolsh", *sys.argv[1:]]) if sys.argv else "audiolsh"


def _emit(report: IdentifyReport, out: Path | None, md: Path | None, fmt: str) -> None:
    emit_object(jsonable(report.to_dict()), fmt, flat_rows=summary_rows(report),
                table=lambda: print_report(report))
    if out:
        write_json(report, out)
    if md:
        md.write_text(report_markdown(report))


def _rescored(stored: Path, corpus_dir: Path) -> IdentifyReport:
    from audiolsh.evaluation.calibration import load_report

    results = json.loads(stored.read_text()).get("results", [])
    report = rescore(load_report(stored), results, corpus_dir=corpus_dir)
    report.machine["rescored"] = _command()
    _calibration(report, None, None)
    return report


def _calibration(report: IdentifyReport, fit_out: Path | None, png: Path | None) -> None:
    """audiolsh's reliability into the report; the refit and the diagram when asked for."""
    from audiolsh.evaluation.calibration import calibration_summary, fit_from_report, reliability_png

    for name, info in report.systems.items():
        if "calibration" in info:
            info["reliability"] = calibration_summary(report.clips, report.answers[name])
    if fit_out:
        cal = fit_from_report(report)
        cal.save(fit_out)
        err_console.print(f"confidence calibration fitted on {cal.meta['fitted_on']['n_clips']} candidates"
                          f" written to {fit_out}: default --min-confidence {cal.default_min_confidence:g},"
                          f" about {cal.hashes_needed} hashes needed", highlight=False, markup=False)
    if png:
        info = report.systems.get("audiolsh", {})
        if "reliability" in info:
            reliability_png(info["reliability"], png, title=f"audiolsh, seed {report.protocol['seed']}:"
                            f" ECE {info['reliability']['ece']:.3f}")


# --------------------------------------------------------------------------- tables


_CELLS = "top-1 / offset / false-match % (+ verified overlaps, + verified same-audio answers)"
_WITH_SAME = "(in brackets: with the verified same-audio answers)"


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def summary_rows(report: IdentifyReport) -> list[dict[str, str]]:
    """One row per system x threshold: overall scores, ingest, size, query time of the longest clips."""
    rows = []
    for r in report.results:
        b, q, o = r.build, r.query_ms, r.overall
        qlen = q.get("length_s", 10.0)
        if q.get("p50") is not None:
            query = f"{_num(q.get('p50'), '.1f')} / {_num(q.get('p95'), '.1f')}"
        else:
            query = f"mean {_num(q.get(f'{qlen:g}s_mean_per_core'), '.0f')}"
        rows.append({
            "system": r.title, "threshold": _num(r.threshold, ".3g"), "top-1 %": _pct(o["top1"]),
            "same audio": str(o.get("n_same_audio", 0)),
            "top-1 % with same audio": _pct(o.get("top1_with_same_audio")),
            "offset %": _pct(o["offset_acc"]),
            "false matches": f"{o['n_false']}/{o['n_neg']} ({_pct(o['fm_rate'])} %)",
            "verified overlaps": str(o.get("n_overlap", 0)),
            "FM outside": (f"{o['n_false_outside']}/{o['n_neg_outside']}" if "n_neg_outside" in o else "-"),
            "ingest x RT/core": _num(b.x_realtime_per_core if b else None, ".0f"),
            "MB/hour": _num(b.bytes_per_hour / 1e6 if b else None, ".2f"),
            f"{qlen:g}-s query ms p50 / p95": query,
        })
    return rows


def cell_rows(result: SystemResult) -> list[dict[str, str]]:
    """One row per condition; per length ``top-1 / offset / false-match`` in %, then ``+n ov`` when
    n matches on negatives were verified overlaps and ``+n sa`` when n positives were answered with
    another track verified to carry their audio (not in top-1)."""
    lengths = sorted({c.length_s for c in result.cells})
    rows = []
    for cond in dict.fromkeys(c.condition for c in result.cells):
        row = {"condition": cond}
        for ls in lengths:
            c = result.cell(cond, ls)
            ov = f" +{c.n_overlap} ov" if c is not None and c.n_overlap else ""
            sa = f" +{c.n_same_audio} sa" if c is not None and c.n_same_audio else ""
            row[f"{ls:g} s"] = ("-" if c is None
                                else f"{_pct(c.top1)} / {_pct(c.offset_acc)} / {_pct(c.fm_rate)}{ov}{sa}")
        rows.append(row)
    return rows


def _top1(c: Cell) -> str:
    """Top-1 %, then in brackets with the verified same-audio answers counted right, if any."""
    return _pct(c.top1) + (f" ({_pct(c.top1_with_same_audio)})" if c.n_same_audio else "")


def side_by_side_rows(report: IdentifyReport) -> list[dict[str, str]]:
    """Top-1 % of every system x threshold per condition x length (see :func:`_top1`)."""
    rows: list[dict[str, str]] = []
    if not report.results:
        return rows
    for c in report.results[0].cells:
        row = {"condition": c.condition, "length": f"{c.length_s:g} s"}
        for r in report.results:
            other = r.cell(c.condition, c.length_s)
            row[r.title] = "-" if other is None else _top1(other)
        rows.append(row)
    return rows


def overlap_rows(report: IdentifyReport, result: SystemResult, *, positive: bool = False
                 ) -> list[dict[str, str]]:
    """The matches on negatives that ``result`` counts as verified overlaps (with ``positive``: the
    positives' verified same-audio answers): what was played, what was reported and how well they
    correlate."""
    answers, ncc = report.answers.get(result.name, []), report.overlap_ncc.get(result.name, [])
    verified = verified_overlaps(report.clips, ncc) if ncc else np.zeros(len(report.clips), bool)
    rows = []
    for c, a, x, ok in zip(report.clips, answers, ncc, verified):
        if (c.positive == positive and a.track is not None and a.track != c.source
                and a.score >= result.threshold and ok):
            rows.append({"clip": c.clip_id, "played": f"{Path(c.source).name} at {c.offset_s:.1f} s",
                         "reported": f"{Path(a.track).name} at {_num(a.offset_s, '.1f')} s",
                         "correlation": f"{x:.2f}"})
    return rows


def _header(report: IdentifyReport) -> str:
    p, c = report.protocol, report.corpus
    lengths = ", ".join(f"{x:g}" for x in p["lengths_s"])
    held = c.get("held_out_packages") or []
    outside = (f"; {c.get('n_negative_tracks_outside', 0)} negative tracks from packages with no indexed "
               f"track ({', '.join(held)})" if held else "")
    return (f"{c['n_tracks']} tracks ({c['n_indexed']} indexed, {c['n_unindexed']} not); "
            f"{p['n_clips']} clips ({p['n_pos']} positive, {p['n_neg']} negative), lengths {lengths} s, "
            f"{p['clips_per_track']} excerpt(s) per track and length, seed {p['seed']}{outside}; "
            f"a match on a negative whose audio correlates >= "
            f"{p.get('overlap_rule', p.get('min_overlap_ncc', '?'))} with the "
            f"reported track at the reported offset is a verified overlap, not a false match; a positive "
            f"answered with another track that correlates as well is a verified same-audio answer (sa), "
            f"not right, and top-1 is also given with those counted right")


def print_report(report: IdentifyReport) -> None:
    console = Console(width=max(120, Console().width))
    console.print(_header(report), highlight=False)

    def table(rows: list[dict[str, str]], title: str) -> None:
        t = Table(title=title)
        for col in rows[0] if rows else ["(no rows)"]:
            t.add_column(col, overflow="fold")
        for row in rows:
            t.add_row(*row.values())
        console.print(t)

    for r in report.results:
        table(cell_rows(r), f"{r.title}: {_CELLS}")
    table(side_by_side_rows(report), f"top-1 % side by side {_WITH_SAME}")
    table(summary_rows(report), "summary")
    if "wav_ingest" in report.machine:
        w = report.machine["wav_ingest"]
        console.print(f"audiolsh ingest from WAV: {w['x_realtime_per_core']:.0f} x real time per core "
                      f"({w['audio_s']:.0f} s of audio, {w['wall_s']:.1f} s, {w['workers']} workers)")


def _md_table(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return "(no rows)\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def report_markdown(report: IdentifyReport) -> str:
    """The summary, the side-by-side top-1 table and one cell table per system, as markdown."""
    m = report.machine
    parts = [f"{_header(report)}.\n",
             f"Command: `{m.get('command', '')}`; {m.get('cpus')} CPUs, load "
             f"{', '.join(f'{x:.2f}' for x in m.get('load_before', []))} before and "
             f"{', '.join(f'{x:.2f}' for x in m.get('load_after', []))} after.\n",
             "### Summary\n", _md_table(summary_rows(report)),
             f"\n### Top-1 % per condition and length {_WITH_SAME}\n", _md_table(side_by_side_rows(report))]
    for r in report.results:
        parts += [f"\n### {r.title}: {_CELLS}\n", _md_table(cell_rows(r))]
        if overlaps := overlap_rows(report, r):
            parts += [f"\n{r.title}: the verified overlaps\n", _md_table(overlaps)]
        if same := overlap_rows(report, r, positive=True):
            parts += [f"\n{r.title}: the verified same-audio answers\n", _md_table(same)]
    if "wav_ingest" in m:
        w = m["wav_ingest"]
        parts.append(f"\naudiolsh ingest from WAV (44.1 kHz stereo): {w['x_realtime_per_core']:.0f} x real "
                     f"time per core ({w['n_tracks']} tracks, {w['audio_s']:.0f} s of audio in "
                     f"{w['wall_s']:.1f} s, {w['workers']} workers).\n")
    for name, sys_info in report.systems.items():
        if "reliability" in sys_info:
            from audiolsh.evaluation.calibration import reliability_markdown

            parts.append(f"\n### {name}: reliability of its confidence (every candidate)\n")
            parts.append(reliability_markdown(sys_info["reliability"]))
        params = sys_info.get("params") or sys_info.get("options")
        parts.append(f"\n{name}: sources sha1 {str(sys_info.get('source_sha1', '?'))[:12]}, "
                     f"settings `{json.dumps(params)}`\n")
    for name, why in report.skipped.items():
        parts.append(f"\n{name} skipped: {why}\n")
    return "\n".join(parts)


def _attach_excerpts() -> None:
    from audiolsh.cli.evaluate_excerpts import excerpts

    evaluate.add_command(excerpts)


_attach_excerpts()
