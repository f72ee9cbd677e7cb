"""audiolsh spark vectors add / spark query: ``vectors add`` and ``vectors query`` on Spark, with
the same index and the same records (``audiolsh.spark.vectors``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import click
from rich.markup import escape

from audiolsh.cli import EXIT_ERROR
from audiolsh.cli.options import index_option
from audiolsh.cli.output import emit_text, err_console, format_option, stream_format_option
from audiolsh.cli.spark_cmds import master_option, spark


def _say(message: str) -> None:
    err_console.print(escape(message), highlight=False)


def _error(message: str) -> None:
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)


partitions_option = click.option(
    "--partitions", type=click.IntRange(min=1), default=None,
    help="Spark partitions: contiguous groups of the files (default: one per file).")
per_second_option = click.option(
    "--per-second/--clip-mean", default=True, show_default=True,
    help="TFRecords: one vector per second, or the mean of each clip.")
id_column_option = click.option(
    "--id-column", default=None,
    help="CSV, Parquet: the column holding the ids (default: first; Parquet: when it holds strings"
         " or integers).")


@spark.group("vectors")
def spark_vectors() -> None:
    """Vector indexes built on Spark."""


@spark_vectors.command("add")
@index_option
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@master_option
@click.option("--metric", type=click.Choice(["cosine", "euclidean"]), default="cosine",
              show_default=True, help="Distance, fixed when the index is created.")
@per_second_option
@id_column_option
@click.option("--tables", "n_tables", type=click.IntRange(1, 256), default=None,
              help="Hash tables of hyperplanes, when the index is created (default: the k-means"
                   " family, as vectors add).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@partitions_option
@click.option("--merge/--no-merge", default=True, show_default=True,
              help="Merge the index into one segment at the end, as one local build of all its rows"
                   " makes it. --no-merge keeps one segment per partition as built: for an index too"
                   " big to merge on one machine (queries search every segment; a later `vectors"
                   " add` may merge small ones).")
@click.option("--staging", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A folder every task can write and the driver read, where tasks leave their"
                   " segments (default: beside a directory index; through Spark for redis://).")
@format_option
def spark_vectors_add(index_path: str, shards: tuple[Path, ...], master: str | None, metric: str,
                      per_second: bool, id_column: str | None, n_tables: int | None, seed: int,
                      partitions: int | None, merge: bool, staging: Path | None, fmt: str) -> None:
    """Add the vectors of SHARDS (.npy, .csv/.tsv, .parquet, .tfrecord files; a folder: its
    .parquet files, a Parquet table) to the index, read and built in Spark tasks.

    The index is the one `vectors add` of the same files makes: ids in shard order, the same
    tracks and items, and after the merge the same segment. The index location must be one
    the driver can write (a directory, redis://); the shards must be readable by every task
    (a shared filesystem). A shard already added (same content) is skipped, so an interrupted
    add simply runs again; a bad shard is reported and the others go on (exit status 2 at the
    end). Progress: a line per Spark stage on stderr. --format json|jsonl|csv prints every
    shard's outcome on stdout, as `vectors add` does.
    """
    from audiolsh.cli.vector_cmds import emit_added
    from audiolsh.index import Index
    from audiolsh.library.locations import check_vectors_location
    from audiolsh.spark.session import command_session, progress
    from audiolsh.spark.vectors import add_shards

    check_vectors_location(index_path, writes=True)
    with Index.open_or_create(index_path, metric=metric, n_tables=n_tables, seed=seed):
        pass  # as `vectors add` does, and a bad location is one line before Spark starts
    with command_session(master, command="spark vectors add") as session, progress(session, _say):
        report = add_shards(session, index_path, shards, metric=metric, n_tables=n_tables, seed=seed,
                            per_second=per_second, id_column=id_column, partitions=partitions,
                            merge=merge, say=_say, staging="auto" if staging is None else staging)
    for outcome in report.shards:
        if outcome.status == "added":
            _say(f"{outcome.path}: added {outcome.n_rows} vectors of dimension {outcome.dim}")
        elif outcome.status == "skipped":
            _say(f"{outcome.path}: already indexed, skipped")
        else:
            _error(outcome.error or f"{outcome.path}: not added")
    with Index.open(index_path, readonly=True) as index:
        if index.config.metric != metric:
            _say(f"note: the index uses the {index.config.metric} metric")
        n_vectors = len(index)
        _say(f"index {index_path}: {n_vectors} vectors in {len(index.segments)} segments")
    emit_added([{"path": o.path, "status": o.status, "n_vectors": o.n_rows, "error": o.error}
                for o in report.shards], fmt, index_path=index_path, n_vectors=n_vectors)


@spark.command("query")
@index_option
@click.argument("queries", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@master_option
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--probes", "n_probes", type=click.IntRange(min=1), default=None,
              help="Buckets probed per query (default: the index's tuned value).")
@click.option("--rerank", "n_rerank", type=click.IntRange(min=0), default=None,
              help="Measure at most this many candidates per segment (see `vectors query`).")
@click.option("--exact", is_flag=True, help="Brute force instead of LSH (the baseline).")
@per_second_option
@id_column_option
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the records to FILE.jsonl or FILE.parquet (default: jsonl on stdout).")
@partitions_option
@stream_format_option
def spark_query(index_path: str, queries: tuple[Path, ...], master: str | None, k: int,
                n_probes: int | None, n_rerank: int | None, exact: bool, per_second: bool,
                id_column: str | None, out: Path | None, partitions: int | None, fmt: str) -> None:
    """For every row of QUERIES (files, or folders of .parquet files: a Parquet table), the k
    nearest indexed vectors, searched in Spark tasks.

    Each task opens the index read-only (a directory on a shared filesystem is memory-mapped,
    or redis://) and runs the local search on its share of the files. The records are those of
    `vectors query --format jsonl`, {"query", "results": [{"id", "distance"}]}, in file and row
    order; in Parquet the same columns. A bad query file is reported and the others go on (exit
    status 2 at the end).
    """
    from audiolsh.cli.vector_cmds import emit_vector_records
    from audiolsh.spark.session import command_session, progress
    from audiolsh.spark.vectors import expand_sources, out_format, query_files, query_location, write_records

    shown_as = fmt
    fmt = out_format(out) if out is not None else "jsonl"
    if out is not None and not out.resolve().parent.is_dir():
        raise click.BadParameter(f"{out}: no folder {out.parent}", param_hint="--out")
    location = query_location(index_path)  # before Spark starts: a bad location is one line
    sources = expand_sources(queries)
    files = [str(Path(path).resolve()) for path, error in sources if not error]
    failed = 0
    for _, error in sources:
        if error:
            failed += 1
            _error(error)

    def payloads(results: Iterable[tuple[str, bytes, str]]) -> Iterator[bytes]:
        nonlocal failed
        for _, payload, error in results:
            if error:
                failed += 1
                _error(error)
            else:
                yield payload

    with command_session(master, command="spark query") as session, progress(session, _say):
        results = query_files(session, location, files, k, n_probes=n_probes, n_rerank=n_rerank,
                              exact=exact, per_second=per_second, id_column=id_column,
                              partitions=partitions, fmt=fmt)
        if out is None and shown_as != "jsonl":
            records = [json.loads(line) for payload in payloads(results)
                       for line in payload.decode().splitlines()]
            emit_vector_records(records, shown_as, k=k)
            n = len(records)
        elif out is None:
            n = 0
            for payload in payloads(results):
                text = payload.decode()
                emit_text(text)
                n += text.count("\n")
        else:
            n = write_records(out, payloads(results), fmt)
    _say(f"{n} queries from {len(sources) - failed} files"
         + (f" written to {out}" if out else ""))
    if failed:
        sys.exit(EXIT_ERROR)
