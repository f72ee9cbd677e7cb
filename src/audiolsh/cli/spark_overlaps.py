"""audiolsh spark overlaps: ``audiolsh overlaps`` with the self-join and the search in Spark tasks."""

from __future__ import annotations

import time

import click
from rich.markup import escape

from audiolsh.cli.index_cmds import emit_overlaps, overlap_options
from audiolsh.cli.options import index_option
from audiolsh.cli.output import err_console
from audiolsh.cli.spark_cmds import master_option, spark
from audiolsh.library import Library


@spark.command("overlaps")
@index_option
@overlap_options
@master_option
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Tasks: ranges of hash values to join, then groups of pairs of tracks to search"
                   " (default: two per core Spark has, more for a big library). Not the answer.")
def spark_overlaps_cmd(index_path: str, min_seconds: float, threshold: float | None, fmt: str,
                       master: str | None, partitions: int | None) -> None:
    """Pairs of tracks that share material, found on Spark: the records `audiolsh overlaps`
    gives, in its order and formats.

    Tasks join the landmarks of ranges of hash values, count the votes per pair of tracks and
    time difference, keep the votes that may count, and search them pair by pair after Spark
    repartitions them by pair. The tasks read the library's fingerprints: give a directory
    every executor can read (or a redis:// location).
    """
    from audiolsh.spark.overlaps import spark_overlaps
    from audiolsh.spark.session import command_session, progress

    def say(line: str) -> None:
        err_console.print(escape(line), highlight=False)

    t0 = time.perf_counter()
    with Library.open(index_path, readonly=True) as library:
        library.mode("fingerprint")  # before Spark starts: a library without it is one line
        with command_session(master, command="spark overlaps") as session, progress(session, say):
            found = spark_overlaps(session, library, min_seconds=min_seconds, threshold=threshold,
                                   partitions=partitions, say=say)
        emit_overlaps(found, fmt, library=library, elapsed_s=time.perf_counter() - t0)
