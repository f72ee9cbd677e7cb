"""evaluate excerpts CORPUS_DIR: S2's excerpt-retrieval protocol for every similarity method.

The command function is attached to the ``evaluate`` group elsewhere.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audiolsh.cli.options import seconds
from audiolsh.cli.output import check_outputs, emit_object, err_console, format_option
from audiolsh.evaluation.excerpts import (
    METHODS,
    evaluate_excerpts,
    extract_corpus,
    to_markdown,
    write_plots,
)
from audiolsh.evaluation.identify import jsonable
from audiolsh.features import normalisation as wccn


def _steps(value: str, option: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}",
                                 param_hint=option) from None
    if any(s < 2 for s in steps):
        raise click.BadParameter(f"every step must be at least 2, got {value!r}", param_hint=option)
    return steps


@click.command("excerpts")
@click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--k", "k", type=click.IntRange(min=1), default=2, show_default=True,
              help="Target excerpts per track (S2 used 2); accuracy@k.")
@click.option("--seeds", type=click.IntRange(min=1), default=10, show_default=True,
              help="LSH seeds (mean and spread are reported).")
@click.option("--tracks-steps", default="10,20,40", show_default=True,
              help="Collection sizes (tracks) for accuracy vs tracks; all tracks are always added.")
@click.option("--sizes", default="1000,3000,10000", show_default=True,
              help="Collection sizes (excerpts) for time vs size; all windows are always added.")
@click.option("--dense-hop", "dense_hop_s", type=seconds(), default=1.0, show_default=True,
              help="Hop (s) of the windows of every track searched in the time-vs-size part; 0 skips it.")
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Methods to run.")
@click.option("--normalisation", type=click.Choice(wccn.NAMES), default=wccn.DEFAULT, show_default=True,
              help="Learned within-track normalisation of rhythm and timbre (as `index` applies it),"
                   " or none.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Decoding and extraction processes.")
@click.option("--out", "out_json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full results as JSON here.")
@click.option("--md", "out_md", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the Markdown tables here.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the PNG plots into this folder.")
@format_option
def excerpts(corpus_dir: Path, k: int, seeds: int, tracks_steps: str, sizes: str, dense_hop_s: float,
             methods: str, normalisation: str, workers: int, out_json: Path | None, out_md: Path | None,
             plots_dir: Path | None, fmt: str) -> None:
    """Excerpt retrieval on CORPUS_DIR: per track a 10-s query and k targets; accuracy@k, LSH vs exact.

    Queries are timed one at a time; for stable figures on a shared machine run with
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 (idle BLAS or numba worker
    threads otherwise compete with the query thread).
    """
    check_outputs(out=out_json, md=out_md)
    steps = _steps(tracks_steps, "--tracks-steps")
    size_steps = _steps(sizes, "--sizes")
    method_list = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not method_list:
        raise click.BadParameter(f"no method given: choose from {list(METHODS)}", param_hint="--methods")
    bad = [m for m in method_list if m not in METHODS]
    if bad:
        raise click.BadParameter(f"unknown method(s) {bad}: choose from {list(METHODS)}",
                                 param_hint="--methods")
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load0 = os.getloadavg()[0]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as bar:
        task = bar.add_task("extracting", total=None)

        def on_track(path: str, total: int) -> None:
            bar.update(task, total=total, advance=1, description=f"extracting {Path(path).name[:30]}")

        corpus = extract_corpus(corpus_dir, k=k, dense_hop_s=dense_hop_s or None, workers=workers,
                                on_track=on_track)
        extract_s = time.perf_counter() - t0
        n_stages = 1 + len([s for s in steps if s < len(corpus.paths)]) + 1
        if dense_hop_s:
            n_stages += len(size_steps) + 1
        eval_task = bar.add_task("evaluating", total=n_stages)

        def on_step(what: str) -> None:
            bar.update(eval_task, advance=1, description=f"evaluating: {what}")

        result = evaluate_excerpts(corpus, seeds=seeds, tracks_steps=steps, sizes=size_steps,
                                   methods=method_list, on_step=on_step, normalisation=normalisation)
    result["run"] = {
        "command": " ".join(["audiolsh", *sys.argv[1:]]),
        "started": started, "extract_s": extract_s, "total_s": time.perf_counter() - t0,
        "load_avg_start": load0, "load_avg_end": os.getloadavg()[0], "cpus": os.cpu_count(),
        "python": platform.python_version(), "corpus_dir": str(corpus_dir),
    }
    md = to_markdown(result)
    # csv: one row per method, its scalar summary figures
    flat = [{"method": m, **{k: v for k, v in row.items() if not isinstance(v, (list, dict))}}
            for m, row in result["summary"].items()]
    emit_object(jsonable(result), fmt, flat_rows=flat,
                table=lambda: Console(width=200).print(md, markup=False, highlight=False))
    if out_json:
        out_json.write_text(json.dumps(result, indent=2) + "\n")
    if out_md:
        out_md.write_text(md)
    if plots_dir:
        for f in write_plots(result, plots_dir):
            err_console.print(f"wrote {f}")
    err_console.print(f"{len(corpus.paths)} tracks, {len(corpus.skipped)} skipped, "
                      f"{result['run']['total_s']:.0f} s")
