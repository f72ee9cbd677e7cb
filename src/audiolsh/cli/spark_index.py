"""audiolsh spark index: ``audiolsh index`` with the extraction and the builds in Spark tasks."""

from __future__ import annotations

import sys
import time

import click
from rich.markup import escape

from audiolsh.cli import EXIT_ERROR
from audiolsh.cli.audio_cmds import _modes, _warn_kept_settings, emit_ingest, report_file
from audiolsh.cli.inputs import expand_lists
from audiolsh.cli.options import index_option
from audiolsh.cli.output import err_console, format_option
from audiolsh.cli.spark_cmds import master_option, spark
from audiolsh.features import normalisation as wccn
from audiolsh.library import DEFAULT_MODES, HOP_S, MODES, WINDOW_S, Library
from audiolsh.library.locations import check_library_location


@spark.command("index")
@index_option
@click.argument("sources", nargs=-1, required=True)
@master_option
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Spark partitions for extraction and build, one library part each (default: two"
                   " per core Spark has, at most one per file).")
@click.option("--modes", default=",".join(DEFAULT_MODES), show_default=True,
              help=f"What to extract, comma-separated, from {', '.join(MODES)} (new library only).")
@click.option("--window", "window_s", type=float, default=WINDOW_S, show_default=True,
              help="Excerpt window for rhythm, timbre, chroma and peaks (s; new library only).")
@click.option("--hop", "hop_s", type=float, default=HOP_S, show_default=True,
              help="Hop between excerpt windows (s; new library only).")
@click.option("--normalisation", type=click.Choice(wccn.NAMES), default=wccn.DEFAULT, show_default=True,
              help="Learned within-track normalisation of the rhythm and timbre vectors, or none"
                   " (new library only).")
@format_option
def spark_index_cmd(index_path: str, sources: tuple[str, ...], master: str | None, partitions: int | None,
                    modes: str, window_s: float, hop_s: float, normalisation: str, fmt: str) -> None:
    """Index audio files, folders and @lists of them on Spark: the library `audiolsh index`
    makes of them.

    Every mode is extracted in Spark tasks from one decode per file; a new library learns its
    statistics from the files `audiolsh index` learns from (its first batch, in path order);
    each partition's tasks build one library part, and all parts are committed at once. Files
    already in the library (same content) are skipped, so re-running resumes. The executors
    need only read the files.
    """
    from audiolsh.spark.index import spark_index
    from audiolsh.spark.session import command_session

    t0 = time.perf_counter()

    def say(line: str) -> None:
        err_console.print(escape(line), highlight=False)

    given = expand_lists(sources, check_args=True)
    if not given.items:  # each missing path is said; no Spark session and no library for none
        sys.exit(EXIT_ERROR)
    check_library_location(index_path)
    with command_session(master, command="spark index") as session, Library.open_or_create(
            index_path, modes=_modes(modes), window_s=window_s, hop_s=hop_s,
            normalisation=normalisation) as library:
        _warn_kept_settings(library, window=window_s, hop=hop_s, normalisation=normalisation)
        report = spark_index(session, library, given.items, partitions=partitions,
                             on_file=report_file, say=say)
        n_tracks = len(library)
    emit_ingest(report, fmt, index_path=index_path, n_tracks=n_tracks, elapsed_s=time.perf_counter() - t0,
                problems=given.problems)
