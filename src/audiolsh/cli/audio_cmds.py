"""index PATH..., nearest CLIP...: music files in, nearest passages out."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audiolsh.cli import EXIT_ERROR, cli
from audiolsh.cli.options import index_option
from audiolsh.cli.output import emit_records, err_console, format_option
from audiolsh.errors import AudiolshError
from audiolsh.index import Index
from audiolsh.ingest import index_audio, nearest_passages


@cli.command("index")
@index_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Parallel decoding processes (default: all cores).")
@click.option("--commit-every", type=click.IntRange(min=1), default=8, show_default=True,
              help="Files per commit; an interrupted run keeps every committed file.")
def index_cmd(index_path: Path, paths: tuple[Path, ...], workers: int | None,
              commit_every: int) -> None:
    """Index audio files and folders (recursively): per-second embeddings of every file.

    Files already in the index (same content) are skipped, so re-running resumes.
    """
    t0 = time.perf_counter()
    with Index.open_or_create(index_path, metric="cosine") as index:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err_console) as bar:
            task = bar.add_task("indexing", total=None)

            def on_file(path: str, status: str) -> None:
                if status.startswith("failed"):
                    err_console.print(f"[red]{status}[/]", highlight=False)
                elif status == "indexed":
                    bar.advance(task)

            report = index_audio(
                index, [str(p) for p in paths], workers=workers, commit_every=commit_every,
                on_file=on_file, on_plan=lambda n: bar.update(task, total=n),
            )
        n_items = len(index)
    err_console.print(
        f"{len(report.added)} added, {len(report.skipped)} already indexed,"
        f" {len(report.failed)} failed in {time.perf_counter() - t0:.1f} s;"
        f" index {index_path}: {n_items} items"
    )
    if report.failed:
        sys.exit(EXIT_ERROR)


@cli.command()
@index_option
@click.argument("clips", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--offset", "offset_s", type=click.FloatRange(min=0.0), default=0.0,
              show_default=True, help="Where in each clip the analysed part starts (s).")
@click.option("--duration", "duration_s", type=click.FloatRange(min=1.0), default=30.0,
              show_default=True, help="Seconds of each clip analysed.")
@format_option
def nearest(index_path: Path, clips: tuple[Path, ...], k: int, offset_s: float,
            duration_s: float, fmt: str) -> None:
    """The passages of the collection nearest to each clip (per-second embeddings, voting)."""
    records, flat, failed = [], [], 0
    with Index.open(index_path, readonly=True) as index:
        for clip in clips:
            t0 = time.perf_counter()
            try:
                passages = nearest_passages(
                    index, clip, k=k, offset_s=offset_s, duration_s=duration_s
                )
            except AudiolshError as exc:
                failed += 1
                err_console.print(f"[red]error:[/] {exc}", highlight=False)
                continue
            elapsed_ms = (time.perf_counter() - t0) * 1e3
            results = [
                {"path": p.path, "offset_s": p.offset_s, "score": round(p.score, 4),
                 "rank": r + 1}
                for r, p in enumerate(passages)
            ]
            records.append({"query": str(clip), "results": results,
                            "elapsed_ms": round(elapsed_ms, 1)})
            flat += [{"query": clip.name, **res} for res in results]
    emit_records(records, fmt, flat_rows=flat, title="nearest passages")
    if failed:
        sys.exit(EXIT_ERROR)
