"""audiolsh spark join: the similarity self-join of an index on Spark."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from audiolsh.cli.options import Finite, index_option
from audiolsh.cli.output import emit_records, err_console, stream_format_option
from audiolsh.cli.spark_cmds import master_option, spark


@spark.command("join")
@index_option
@click.option("-k", "k", type=click.IntRange(min=1), default=None,
              help="Keep each item's k nearest other items (default 10 when no similarity or"
                   " distance is given).")
@click.option("--min-similarity", type=Finite(0.0, 1.0), default=None,
              help="Keep every pair with cosine similarity (Jaccard for sets) >= S; with -k, at most"
                   " k of them per item.")
@click.option("--max-distance", type=Finite(min=0.0), default=None,
              help="Keep every pair within this distance (any metric; Euclidean indexes have no"
                   " similarity).")
@click.option("--probes", "n_probes", type=click.IntRange(min=1), default=None,
              help="Buckets probed per item in each segment, over all tables (default: the index's"
                   " query default). More probes find more pairs; enough to cover every bucket"
                   " give the brute-force join.")
@click.option("--rerank", "n_rerank", type=click.IntRange(min=0), default=None,
              help="Cosine: measure exactly only each item's candidates nearest by hash code,"
                   " this many (0: all; default: the index's value).")
@click.option("--max-bucket", type=click.IntRange(min=1), default=None,
              help="Cap every bucket at N members, a sample seeded by --seed (the same in every run"
                   " and task): bounds the pairs at items x probes x N against crowded buckets. Recall"
                   " cost: a neighbour that shares only capped buckets with an item is found with"
                   " probability about N / (bucket size) per such bucket; the summary says how many"
                   " memberships and pairs the cap left out. Default: no cap.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the bucket sample (--max-bucket).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the records to FILE (.jsonl or .parquet); default: JSON lines on stdout.")
@click.option("--strategy", type=click.Choice(["broadcast", "shuffle"]), default="broadcast",
              show_default=True,
              help="broadcast: every task reads the index's bucket tables (no shuffle); shuffle: Spark"
                   " joins probe keys and bucket keys on (segment, table, key). Same result.")
@click.option("--partitions", "n_partitions", type=click.IntRange(min=1), default=None,
              help="Tasks (ranges of item ids; default about one per 50,000 items, at least two per"
                   " core).")
@master_option
@stream_format_option
def spark_join(index_path: str, k: int | None, min_similarity: float | None, max_distance: float | None,
               n_probes: int | None, n_rerank: int | None, max_bucket: int | None, seed: int,
               out: Path | None, strategy: str, n_partitions: int | None, master: str | None,
               fmt: str) -> None:
    """Every item's nearest other items in the index (a similarity self-join), on Spark.

    Joins each item's probe keys with every segment's bucket keys on (segment, table, key),
    drops self pairs, measures each distinct pair exactly and keeps the k nearest per item
    (or every pair above the similarity). The tasks open the index read-only: give a
    directory every executor can read (or a redis:// location). One record per item:
    {"id", "key", "neighbours": [{"id", "key", "distance"}]}, items by id, neighbours
    nearest first (ties: lower id); the same for the same index, options and seed.
    """
    from audiolsh.spark.join import spark_self_join
    from audiolsh.spark.session import command_session, progress

    if k is None and min_similarity is None and max_distance is None:
        k = 10
    tmp = None
    try:
        target = out
        if target is None:
            tmp = tempfile.mkdtemp(prefix="audiolsh-join-")
            target = Path(tmp) / "join.jsonl"
        t0 = time.perf_counter()
        with command_session(master, command="spark join") as session, \
                progress(session, lambda line: err_console.print(line, highlight=False)):
            done = spark_self_join(session, index_path, k=k, min_similarity=min_similarity,
                                   max_distance=max_distance, n_probes=n_probes, n_rerank=n_rerank,
                                   max_bucket=max_bucket, seed=seed, strategy=strategy,
                                   n_partitions=n_partitions, out=str(target))
        elapsed = time.perf_counter() - t0
        if out is None and fmt != "jsonl":
            with open(target, encoding="utf-8") as src:
                records = [json.loads(line) for line in src]
            emit_records(records, fmt, title="nearest items", flat_rows=[
                {"id": r["id"], "key": r["key"], "neighbour_id": nb["id"], "neighbour_key": nb["key"],
                 "distance": nb["distance"]} for r in records for nb in r["neighbours"]])
        elif out is None:
            with open(target, "rb") as src:
                shutil.copyfileobj(src, sys.stdout.buffer)
            sys.stdout.flush()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    st = done.stats
    err_console.print(
        f"{st.n_items} items, {st.n_pairs} pairs kept of {st.n_candidates} measured in {elapsed:.1f} s"
        f" ({strategy}; probes per item {', '.join(map(str, st.n_probes))} in {st.n_segments}"
        f" segment{'s' if st.n_segments != 1 else ''}; largest bucket {st.largest_bucket})"
        + (f" -> {out}" if out is not None else ""), highlight=False)
    if max_bucket is not None:
        err_console.print(
            f"bucket cap {max_bucket} (seed {seed}): {st.n_capped_buckets} buckets sampled,"
            f" {st.n_members_dropped} memberships and {st.n_pairs_dropped} probed pairs left out",
            highlight=False)
    elif st.largest_bucket > 10_000:
        err_console.print(f"note: a bucket holds {st.largest_bucket} items; --max-bucket bounds the pairs"
                          " such buckets make", highlight=False)
