"""info, remove, tune, clusters, overlaps: commands about the index itself."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.progress import Progress

from audiolsh.cli import EXIT_ERROR, cli
from audiolsh.cli.inputs import expand_lists
from audiolsh.cli.options import Finite, index_option, seconds
from audiolsh.cli.output import (
    emit_object,
    emit_records,
    emit_table,
    err_console,
    format_option,
    track_columns,
)
from audiolsh.errors import ParameterError
from audiolsh.evaluation import tune_index
from audiolsh.files import shown
from audiolsh.index import Index
from audiolsh.library import Library, creation_interrupted, is_library
from audiolsh.library.core import INTERRUPTED
from audiolsh.library.locations import check_vectors_location
from audiolsh.library.tags import ambiguous, match_tracks
from audiolsh.query.overlaps import MIN_SECONDS, Overlap, library_overlaps
from audiolsh.query.records import cluster_records, overlap_record, track_record
from audiolsh.storage import Track

F = TypeVar("F", bound=Callable[..., Any])


@cli.command()
@index_option
@click.option("--tracks", is_flag=True, help="List the tracks too.")
@format_option
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Deprecated: --format json.")
def info(index_path: str, tracks: bool, fmt: str, as_json: bool) -> None:
    """Show what a music library or a vector index holds and how it is built."""
    if as_json:
        fmt = "json"
    if is_library(index_path):
        _library_info(index_path, tracks, fmt)
        return
    if creation_interrupted(index_path):
        state = {"location": index_path, "state": "creation interrupted", "note": INTERRUPTED}
        _emit_info(state, [{"field": k, "value": v} for k, v in state.items()], fmt, "audiolsh library")
        return
    with Index.open(index_path, readonly=True) as index:
        data = index.info()
        if tracks:
            data["tracks"] = [_track_dict(t) for t in index.tracks()]
    cfg = data["config"]
    rows = [
        {"field": "location", "value": data["location"]},
        {"field": "metric", "value": cfg["metric"]},
        {"field": "dimension", "value": cfg["dim"]},
        {"field": "items", "value": data["n_items"]},
        {"field": "tracks", "value": data["n_tracks"]},
        {"field": "segments", "value": len(data["segments"])},
        {"field": "tables x bits", "value": f"{cfg['n_tables'] or 'auto'} x {cfg['n_bits'] or 'auto'}"},
        {"field": "probes per query", "value": cfg["n_probes"] or "auto"},
        {"field": "target recall", "value": cfg.get("target_recall") or "none (fixed defaults)"},
        {"field": "exactly re-ranked", "value": cfg["n_rerank"] or "all candidates"},
        {"field": "re-rank rows", "value": cfg.get("rerank_dtype", "float32")},
        {"field": "vector bytes", "value": data["data_bytes"]},
        {"field": "table bytes per item", "value": round(data["table_bytes_per_item"], 1)},
        {"field": "tuned", "value": json.dumps(cfg["tuned"]) if cfg["tuned"] else "no"},
    ]
    track_rows = [{"track_id": t["track_id"], "path": t["path"], "duration_s": t["duration_s"],
                   "items": t["n_items"], "kind": t["kind"]} for t in data.get("tracks", [])]
    _emit_info(data, rows, fmt, "audiolsh index", track_rows if tracks else None)


def _track_dict(track: Track) -> dict[str, Any]:
    """A catalogue entry in the records' vocabulary (``track_id``, not the storage's ``id``)."""
    d = track.to_dict()
    return {"track_id": d.pop("id"), **d}


def _emit_info(data: dict[str, Any], rows: list[dict[str, Any]], fmt: str, title: str,
               track_rows: list[dict[str, Any]] | None = None) -> None:
    """csv: the tracks with --tracks, else the field/value rows; table: both."""
    def table() -> None:
        emit_table(rows, title=title)
        if track_rows is not None:
            emit_table(track_rows, title="tracks")

    emit_object(data, fmt, flat_rows=track_rows if track_rows is not None else rows, table=table)


def _library_info(index_path: str, tracks: bool, fmt: str) -> None:
    with Library.open(index_path, readonly=True) as library:
        data = library.info()
        if tracks:
            data["tracks"] = [track_record(t) for t in library.tracks()]
        names = library.names()
    hours = data["duration_s"] / 3600
    rows = [
        {"field": "location", "value": data["location"]},
        {"field": "tracks", "value": data["n_tracks"]},
        {"field": "audio", "value": f"{hours:.2f} h"},
        {"field": "modes", "value": ", ".join(data["modes"])},
        {"field": "excerpt window / hop", "value": f"{data['window_s']:g} s / {data['hop_s']:g} s"},
        {"field": "normalisation", "value": data.get("normalisation", "none")},
    ]
    if data.get("removals_unfinished"):
        rows.append({"field": "interrupted remove",
                     "value": f"{len(data['removals_unfinished'])} tracks gone from the catalogue"
                              " with rows left in some modes; the next writer removes them"})
    for name, sub in data["indexes"].items():
        if name == "fingerprint":
            value = f"{sub.get('n_hashes', '?')} hashes, {sub.get('index_bytes', 0) / 1e6:.1f} MB"
            if sub.get("n_tracks_without_envelope"):
                value += (f"; {sub['n_tracks_without_envelope']} tracks indexed before fingerprint format 4"
                          " have no energy envelope (index them again into a new library for its evidence)")
        else:
            value = f"{sub['n_items']} items ({sub['metric']}, dim {sub['dim']})"
        rows.append({"field": name, "value": value})
    track_rows = [{"track_id": t["track_id"], **track_columns(t, names, fmt), "album": t["album"],
                   "year": t["year"], "duration_s": t["duration_s"], "windows": t["n_items"]}
                  for t in data.get("tracks", [])]
    _emit_info(data, rows, fmt, "audiolsh library", track_rows if tracks else None)


def _library_here(index_path: str) -> bool:
    """A library, or one whose creation was interrupted (``Library.open`` says so)."""
    return is_library(index_path) or creation_interrupted(index_path)


def _find_tracks(tracks: list[Track], target: str) -> list[Track]:
    if os.path.isdir(target):  # a folder: the tracks under it
        prefix = shown(os.path.abspath(target)).rstrip(os.sep) + os.sep
        return [t for t in tracks if t.path.startswith(prefix)]
    names = {target, shown(target), shown(os.path.abspath(target))}
    try:
        names.add(shown(Path(target).resolve()))
    except (OSError, RuntimeError):  # a link loop: not a name any track has
        pass
    return [t for t in tracks if t.path in names or str(t.id) == target]


@cli.command()
@index_option
@click.argument("targets", nargs=-1, required=True)
@click.option("--keys", "by_key", is_flag=True, help="TARGETS are item keys, not track paths.")
@format_option
def remove(index_path: str, targets: tuple[str, ...], by_key: bool, fmt: str) -> None:
    """Remove tracks (by track id, path, folder, a part of the artist, title or file name that
    names one track, or @lists of them, one a line) or items (--keys) from the index.

    Each removal is said on stderr; --format json|jsonl|csv also prints them on stdout."""
    # The files of tracks to remove may be gone already: list entries are not checked.
    given = expand_lists(targets, check_entries=False)
    targets = tuple(given.items)
    removed: list[dict[str, Any]] = []
    missing: list[str] = []

    def said(track: Track, n_items: int | None = None, note: str = "") -> None:
        removed.append({"track_id": track.id, "path": track.path, "n_items": n_items})
        items = "" if n_items is None else f" ({n_items} items)"
        err_console.print(f"removed {track.path}{items}{note}", highlight=False, markup=False)

    if _library_here(index_path):
        if by_key:
            raise ParameterError("--keys applies to vector indexes; a library removes whole tracks")
        with Library.open(index_path) as library:
            # Opening it finished what an interrupted remove left (it says so).
            for t in library.finished_removals:
                said(t, note=" (finishing an interrupted remove)")
            chosen: list[list[Track]] = []
            names = library.names()
            for target in targets:  # every target resolved before anything is removed
                found = _find_tracks(library.tracks(), target)
                if not found and not _find_tracks(library.finished_removals, target):
                    found = match_tracks(library.tracks(), names, target)
                    if len(found) > 1:
                        raise ambiguous("remove", target, found, names)
                    if not found:
                        missing.append(target)
                chosen.append(found)
            # a track two targets name (an id and its path, a folder and a file in it) goes once
            for t in {t.id: t for found in chosen for t in found}.values():
                library.remove_track(t.id)
                said(t)
        where = "library"
    else:
        check_vectors_location(index_path, writes=True)
        with Index.open(index_path) as index:
            if by_key:
                missing = index.missing_keys(targets)
                if len(missing) == len(targets):
                    raise ParameterError(f"no item has any of the keys {list(targets)!r}")
                n = index.remove(list(targets))
                err_console.print(f"removed {n} items")
                if fmt != "table":
                    row = {"removed_items": n, "missing": missing}
                    emit_object(row, fmt, flat_rows=[{"removed_items": n}], table=lambda: None)
                if missing:
                    err_console.print(f"[red]no item has the keys:[/] {escape(', '.join(missing))}",
                                      highlight=False)
                if missing or given.problems:
                    sys.exit(EXIT_ERROR)
                return
            tracks = index.tracks()
            done: set[int] = set()
            for target in targets:
                match = _find_tracks(tracks, target)
                if not match:
                    missing.append(target)
                for t in match:
                    if t.id not in done:
                        done.add(t.id)
                        said(t, index.remove_track(t.id))
        where = "index"
    if fmt != "table":
        emit_object({"removed": removed, "missing": missing}, fmt, flat_rows=removed, table=lambda: None)
    if missing:
        err_console.print(f"[red]not in the {where}:[/] {escape(', '.join(missing))}", highlight=False)
    if missing or given.problems:
        sys.exit(EXIT_ERROR)


@cli.command()
@index_option
@click.option("--target-recall", type=Finite(0.0, 1.0, min_open=True), default=0.95,
              show_default=True, help="Recall@k the chosen setting must reach.")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--validation", type=click.IntRange(min=10), default=500, show_default=True,
              help="Held-out vectors used as queries.")
@click.option("--tables", default=None, help="L values to try [default: 4,8,12,16; hyperplane only].")
@click.option("--bits", default=None,
              help="K values to try [default: around log2(n/16); hyperplane only].")
@click.option("--dry-run", is_flag=True, help="Print the sweep, store nothing.")
@format_option
def tune(index_path: str, target_recall: float, k: int, validation: int, tables: str | None,
         bits: str | None, dry_run: bool, fmt: str) -> None:
    """Sweep tables, bits and probes on a validation split; store the cheapest good setting.

    A kmeans or cross-polytope index keeps its tables (and cells): only the probes are swept
    (cells probed, buckets probed) and stored, without a rebuild.
    """

    def ints(text: str, name: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise ParameterError(f"--{name} takes comma-separated integers, got {text!r}") from exc
        if not values or min(values) < 1:
            raise ParameterError(f"--{name} needs positive integers, got {text!r}")
        return values

    check_vectors_location(index_path, writes=True)
    with Index.open(index_path) as index, Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("tuning", total=None)
        report = tune_index(
            index, apply=not dry_run, target_recall=target_recall, k=k, n_validation=validation,
            tables=None if tables is None else ints(tables, "tables"),
            bits=None if bits is None else ints(bits, "bits"),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    # The stored (or, --dry-run, the would-be stored) setting is marked in every format.
    rows = [{"chosen": r is report.best, **r.to_dict()} for r in report.rows]
    if fmt == "json":
        sys.stdout.write(json.dumps({"family": report.family, "n_cells": report.n_cells, "rows": rows,
                                     "best": report.best and report.best.to_dict(),
                                     "exact_single_ms": report.exact_single_ms}, indent=2) + "\n")
    elif fmt == "table":
        emit_table([{"chosen": "*" if r.pop("chosen") else "", **r} for r in rows],
                   title="tune: * marks the chosen setting")
    else:
        emit_records(rows, fmt, flat_rows=rows)
    err_console.print(
        f"exact search: {report.exact_single_ms:.3f} ms per single query on {report.n_build}"
        f" vectors; {report.n_validation} validation queries, recall@{report.k}"
    )
    if report.best is None:
        err_console.print(f"[red]no setting reached recall {target_recall}; nothing stored[/]")
        sys.exit(EXIT_ERROR)
    b = report.best
    verb = "would store" if dry_run else "stored"
    setting = (f"{b.n_probes} cells probed per query ({report.n_cells} per table)" if report.n_cells else
               f"L={b.n_tables} K={b.n_bits} probes={b.n_probes} rerank={b.n_rerank or 'all'}")
    err_console.print(
        f"{verb} ({report.family}): {setting}:"
        f" recall {b.recall:.3f},"
        f" {b.single_ms:.3f} ms per query ({report.exact_single_ms / b.single_ms:.1f}x exact),"
        f" {b.table_bytes_per_item:.1f} table bytes per item"
    )


@cli.command()
@index_option
@click.option("--by", type=click.Choice(["timbre", "rhythm", "chroma", "combined"]), default="timbre",
              show_default=True, help="Library mode whose per-track means are clustered.")
@click.option("-n", "--clusters", "n_clusters", type=click.IntRange(min=1), default=5,
              show_default=True, help="Number of groups.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@format_option
def clusters(index_path: str, by: str, n_clusters: int, seed: int, fmt: str) -> None:
    """Group the collection (SVD-reduced features, k-means); a vector index groups its rows."""
    from audiolsh.query.clusters import cluster_index, cluster_library

    labels: dict[int, str] = {}  # a library's tracks by name (a vector index's rows by key)
    if _library_here(index_path):
        with Library.open(index_path, readonly=True) as library:
            result = cluster_library(library, by=by, n_clusters=n_clusters, seed=seed)
            names = library.names()
            labels = {t.id: names.label(t) for t in library.tracks()}
    else:
        with Index.open(index_path, readonly=True) as index:
            result = cluster_index(index, n_clusters=n_clusters, seed=seed)
    records = cluster_records(result, library=_library_here(index_path))
    flat = [{"cluster": r["cluster"], **m} for r in records for m in r["members"]]
    if fmt == "table":
        key = "path" if records and records[0]["members"] and "path" in records[0]["members"][0] else "id"
        rows = [{"cluster": r["cluster"], "size": r["size"],
                 "nearest the centre": ", ".join(labels.get(m.get("track_id", -1), Path(m[key]).name)
                                                 for m in r["members"][:4])
                 + (" ..." if r["size"] > 4 else "")} for r in records]
        emit_table(rows, title=f"{n_clusters} groups ({result.explained_variance:.0%} of variance kept)")
        return
    emit_records(records, fmt, flat_rows=flat)


def overlap_options(fn: F) -> F:
    """The options of `overlaps` and `spark overlaps`: what an overlap needs, and the format."""
    fn = format_option(fn)
    fn = click.option("--threshold", type=Finite(0.0, 1.0), default=None,
                      help="Confidence an overlap needs (default: calibrated, as for identify).")(fn)
    return click.option("--min-seconds", type=seconds(), default=MIN_SECONDS,
                        show_default=True, help="Shortest shared stretch reported (s).")(fn)


@cli.command()
@index_option
@overlap_options
def overlaps(index_path: str, min_seconds: float, threshold: float | None, fmt: str) -> None:
    """Pairs of tracks that share material (a duplicate, a re-release, a reused loop, a medley):
    where the shared stretch starts in each track and how long it is."""
    t0 = time.perf_counter()
    with Library.open(index_path, readonly=True) as library:
        library.mode("fingerprint")
        with Progress(console=err_console, transient=True) as bar:
            task = bar.add_task("joining hashes", total=None)
            found = library_overlaps(
                library, min_seconds=min_seconds, threshold=threshold,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        emit_overlaps(found, fmt, library=library, elapsed_s=time.perf_counter() - t0)


def emit_overlaps(found: list[Overlap], fmt: str, *, library: Library, elapsed_s: float) -> None:
    """The overlaps in ``fmt`` on stdout, and a summary line on stderr."""
    records = [overlap_record(o, library) for o in found]
    names, n_tracks = library.names(), len(library)

    def side(r: dict[str, Any], s: str) -> dict[str, Any]:
        if fmt == "table":  # the name over the relative path: one column per track stays narrow
            cells = track_columns(r[s], names, fmt)
            both = cells["track"] if cells["path"] == cells["track"] else f"{cells['track']}\n{cells['path']}"
            return {s: both}
        return {f"{k}_{s}": v for k, v in track_columns(r[s], names, fmt).items()}

    flat = [{**side(r, "a"), "offset_a_s": r["a"]["offset_s"],
             **side(r, "b"), "offset_b_s": r["b"]["offset_s"],
             "length_s": r["length_s"], "kind": r["kind"], "confidence": r["confidence"]}
            for r in records]
    emit_records(records, fmt, flat_rows=flat, title="shared material")
    plural = "" if len(records) == 1 else "es"
    err_console.print(f"{len(records)} shared stretch{plural} among {n_tracks} tracks"
                      f" in {elapsed_s:.1f} s", highlight=False)
