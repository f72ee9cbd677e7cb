"""update: a library brought up to date with a music folder."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import click

from audiolsh.cli import EXIT_ERROR, cli
from audiolsh.cli.audio_cmds import indexing_progress, report_file
from audiolsh.cli.options import index_option, seconds
from audiolsh.cli.output import emit_records, err_console, format_option
from audiolsh.cli.progress import FileProgress
from audiolsh.files import shown
from audiolsh.library import FIRST_BATCH, MAX_DURATION_S, Library
from audiolsh.library.locations import check_library_location
from audiolsh.library.update import apply_update, plan_update


@cli.command()
@index_option
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Parallel decoding processes, and threads reading the content hashes"
                   " (default: all cores).")
@click.option("--commit-every", type=click.IntRange(min=1), default=8, show_default=True,
              help=f"Files per commit (a new library's first commit waits for {FIRST_BATCH}).")
@click.option("--max-duration", "max_duration_s", type=seconds(0, low_open=True),
              default=MAX_DURATION_S, show_default=True, help="Refuse a file longer than this (s).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@format_option
def update(index_path: str, folder: Path, workers: int | None, commit_every: int, max_duration_s: float,
           dry_run: bool, fmt: str) -> None:
    """Bring the library up to date with FOLDER: index new files, drop the tracks whose files
    under FOLDER were deleted, index again the files whose content changed.

    Every file is read for its content hash.  An interrupted update keeps what it committed;
    running it again finishes the rest.
    """
    t0 = time.perf_counter()
    check_library_location(index_path)
    opened = Library.open(index_path, readonly=True) if dry_run else Library.open_or_create(index_path)
    with opened as library:
        for t in library.finished_removals:
            err_console.print(f"removed {t.path} (finishing an interrupted remove)", highlight=False,
                              markup=False)
        with FileProgress("hashed") as hashing:
            plan = plan_update(library, folder, on_file=report_file, workers=workers,
                               on_hashed=hashing.hashed)
        for path, problem in plan.failed:
            report_file(path, f"failed: {problem}")
        if dry_run:
            _emit(plan.rows(), fmt, f"changes an update of {plan.folder} would make")
            err_console.print(
                f"dry run: {len(plan.add)} to add, {len(plan.remove)} to remove,"
                f" {len(plan.reindex)} to re-index, {len(plan.unchanged)} unchanged,"
                f" {len(plan.failed)} unreadable; nothing changed", highlight=False)
            sys.exit(EXIT_ERROR if plan.failed else 0)
        with contextlib.ExitStack() as stack:  # no bar when nothing is to be indexed
            progress = stack.enter_context(indexing_progress()) if plan.add or plan.reindex else {}
            progress.pop("on_hashed", None)  # the plan read them
            report = apply_update(library, plan, workers=workers, commit_every=commit_every,
                                  max_duration_s=max_duration_s, **progress)
        n_tracks = len(library)
    rows = ([{"action": "removed", "path": p, "error": None} for p in report.removed]
            + [{"action": "re-indexed", "path": p, "error": None} for p in report.reindexed]
            + [{"action": "added", "path": p, "error": None} for p in report.added]
            + [{"action": "failed", "path": shown(p), "error": e} for p, e in report.failed])
    _emit(rows, fmt, f"changes made by an update of {plan.folder}")
    counts = ", ".join(f"{n} {what}" for what, n in report.counts().items())
    err_console.print(f"{counts} in {time.perf_counter() - t0:.1f} s;"
                      f" library {index_path}: {n_tracks} tracks", highlight=False, markup=False)
    if report.failed:
        sys.exit(EXIT_ERROR)


def _emit(rows: list[dict[str, Any]], fmt: str, title: str) -> None:
    if rows or fmt != "table":  # no table of no changes: the summary line says it
        emit_records(rows, fmt, flat_rows=rows, title=title)
