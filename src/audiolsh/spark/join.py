"""The similarity self-join of an index on Spark: ``index.join.self_join``'s work, partitioned.

Every task opens the index read-only (a directory index is memory-mapped, so the tasks of one
machine share its pages) and answers a stretch of the items in bucket order
(``JoinPlan.locality_order``: neighbouring items share candidates, which stay in the cache)
with the same ``JoinPlan`` a local join uses, so the result is the local one, bit for bit;
it is collected, or written, in item id order.  Two ways to meet the probe keys with the
item keys:

* ``broadcast`` (the default): the item keys are the index's own bucket tables, read in every
  task (a broadcast join whose build side is on the shared filesystem); each task explodes
  its items' probe keys, looks them up, expands, measures and keeps the top k.  No shuffle:
  Spark moves only the answers.
* ``shuffle``: the join on (segment, table, key) is Spark's.  Tasks explode the probe keys
  (segment, table, key, item) and the bucket keys (segment, table, key, bucket: one row per
  bucket, not per member), Spark joins them (a sort-merge join, with adaptive execution's
  skew handling), repartitions the hits by item id range and sorts them, and tasks expand
  each item's buckets into pairs from the memory-mapped tables, de-duplicate, measure and keep
  the top k.  Buckets stay bucket-sized rows: a row per (member, probe) would multiply the
  shuffle by the bucket size.  It shows the cost of a shuffled join (``benchmarks/
  spark_scale.py`` reads its shuffle bytes) and is the plan for key tables too big to map.

Skew: ``max_bucket`` caps each bucket at a seeded sample of its members in every task (the
same sample everywhere for a seed); see ``audiolsh.index.join`` for the recall it costs.
The answer records are ``{"id", "key", "neighbours": [{"id", "key", "distance"}]}``.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.index import Index
from audiolsh.index.join import JoinPlan, JoinResult, JoinStats
from audiolsh.search.bucket_join import PairLists, bucket_tables_of

log = logging.getLogger(__name__)

STRATEGIES = ("broadcast", "shuffle")
OUT_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
#: Items a task answers per call of the join kernel.
TASK_BLOCK = 4096
#: Hit rows (item, bucket) the shuffled join's last tasks gather before answering them.
FINISH_ROWS = 1_000_000
#: Default items per partition (each partition is one task).
ITEMS_PER_PARTITION = 50_000


@dataclass(frozen=True)
class JoinSpec:
    """What every task needs to rebuild the driver's plan: picklable, small."""

    location: str
    segments: tuple[str, ...]
    k: int | None
    min_similarity: float | None
    max_distance: float | None
    n_probes: int | None
    n_rerank: int | None
    max_bucket: int | None
    seed: int
    with_keys: bool = False


@dataclass(frozen=True)
class SparkJoin:
    """What ``spark_self_join`` gives: the result when collected (``out`` None), the stats,
    and the file written (``out``) with its format."""

    stats: JoinStats
    result: JoinResult | None = None
    out: str | None = None
    out_format: str | None = None


# -- tasks -------------------------------------------------------------------------------

_PLANS: dict[JoinSpec, JoinPlan] = {}


def _plan(spec: JoinSpec) -> JoinPlan:
    """The plan of a spec, kept per Python worker (Spark reuses workers between tasks)."""
    key = replace(spec, with_keys=False)
    plan = _PLANS.get(key)
    if plan is None:
        index = Index.open(spec.location, readonly=True)
        plan = JoinPlan(index, k=spec.k, min_similarity=spec.min_similarity, max_distance=spec.max_distance,
                        n_probes=spec.n_probes, n_rerank=spec.n_rerank, max_bucket=spec.max_bucket,
                        seed=spec.seed)
        seen = tuple(s.info.id for s in index._segments if s.n_live)
        if seen != spec.segments:
            index.close()
            raise ParameterError(f"{spec.location}: the index changed while the join ran (segments"
                                 f" {list(spec.segments)} became {list(seen)}); run the join again")
        for old in _PLANS.values():
            old.index.close()
        _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _task_threads() -> None:
    """One compiled-kernel thread per core Spark gave the task: tasks already run in parallel."""
    import numba
    from pyspark import TaskContext

    ctx = TaskContext.get()
    cpus = ctx.cpus() if ctx is not None else 1
    numba.set_num_threads(max(1, min(int(cpus), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


def _ids_in(plan: JoinPlan, bounds: tuple[int, int]) -> np.ndarray:
    """The items of a partition: a stretch of the plan's locality order."""
    return plan.locality_order()[bounds[0]: bounds[1]]


def _keys(plan: JoinPlan, ids: np.ndarray) -> np.ndarray:
    """Key of each item id (object array of str), from the catalogue."""
    unique = np.unique(ids)
    items = plan.index.items(unique)
    keys = np.array([str(i) if it is None else it.key for i, it in zip(unique.tolist(), items)], dtype=object)
    return keys[np.searchsorted(unique, ids)] if len(unique) else np.zeros(0, dtype=object)


def result_schema(with_keys: bool) -> Any:
    import pyarrow as pa

    nb = [pa.field("id", pa.int64()), pa.field("distance", pa.float32())]
    top = [pa.field("id", pa.int64())]
    if with_keys:
        nb.insert(1, pa.field("key", pa.string()))
        top.append(pa.field("key", pa.string()))
    return pa.schema([*top, pa.field("neighbours", pa.list_(pa.struct(nb))),
                      pa.field("n_candidates", pa.int64()), pa.field("n_dropped", pa.int64())])


def spark_schema(with_keys: bool) -> str:
    """``result_schema`` as Spark DDL."""
    if with_keys:
        return ("id long, key string, neighbours array<struct<id: long, key: string, distance: float>>,"
                " n_candidates long, n_dropped long")
    return "id long, neighbours array<struct<id: long, distance: float>>, n_candidates long, n_dropped long"


def _batch(plan: JoinPlan, ids: np.ndarray, pairs: PairLists, dropped: np.ndarray, with_keys: bool) -> Any:
    """Arrow record batch of answers, built from the CSR arrays without a loop per row."""
    import pyarrow as pa

    cols = [pa.array(pairs.neighbours, pa.int64()), pa.array(pairs.distances, pa.float32())]
    names = ["id", "distance"]
    top = [pa.array(ids, pa.int64())]
    if with_keys:
        cols.insert(1, pa.array(_keys(plan, pairs.neighbours), pa.string()))
        names.insert(1, "key")
        top.append(pa.array(_keys(plan, ids), pa.string()))
    nb = pa.ListArray.from_arrays(pa.array(pairs.indptr.astype(np.int32)),
                                  pa.StructArray.from_arrays(cols, names))
    return pa.RecordBatch.from_arrays([*top, nb, pa.array(pairs.n_candidates, pa.int64()),
                                       pa.array(dropped, pa.int64())], schema=result_schema(with_keys))


def _broadcast_task(spec: JoinSpec, bounds: list[tuple[int, int]], batches: Iterator[Any]) -> Iterator[Any]:
    """Answer the id ranges of the partitions this task got (their numbers in ``batches``)."""
    _task_threads()
    plan = _plan(spec)
    for batch in batches:
        for part in batch.column(0).to_numpy().tolist():
            ids = _ids_in(plan, bounds[part])
            for start in range(0, len(ids), TASK_BLOCK):
                block = ids[start: start + TASK_BLOCK]
                pairs, dropped = plan.join(block, n_threads=1)
                yield _batch(plan, block, pairs, dropped, spec.with_keys)


def _probe_task(spec: JoinSpec, bounds: list[tuple[int, int]], batches: Iterator[Any]) -> Iterator[Any]:
    """Explode the probe keys of the partitions' items: (seg, tab, key, pos) rows, ``pos`` an
    item's place in the locality order (the finishing tasks take items in that order)."""
    import pyarrow as pa

    _task_threads()
    plan = _plan(spec)
    for batch in batches:
        for part in batch.column(0).to_numpy().tolist():
            lo, hi = bounds[part]
            for start in range(lo, hi, TASK_BLOCK):
                pos = np.arange(start, min(hi, start + TASK_BLOCK), dtype=np.int64)
                rows = plan.rows(plan.locality_order()[pos])
                for s, side in enumerate(plan.sides):
                    keys, tables = plan.probe(side, rows)
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(np.full(keys.size, s, np.int32)), pa.array(tables.ravel().astype(np.int32)),
                         pa.array(keys.ravel().view(np.int64)), pa.array(np.repeat(pos, keys.shape[1]))],
                        names=["seg", "tab", "key", "pos"])


def _bucket_task(spec: JoinSpec, n_parts: int, batches: Iterator[Any]) -> Iterator[Any]:
    """Explode the bucket keys: (seg, tab, key, bucket) rows, a share of every segment's."""
    import pyarrow as pa

    plan = _plan(spec)
    for batch in batches:
        for part in batch.column(0).to_numpy().tolist():
            for s, side in enumerate(plan.sides):
                t = side.capped.tables
                n = t.n_buckets
                lo, hi = n * part // n_parts, n * (part + 1) // n_parts
                yield pa.RecordBatch.from_arrays(
                    [pa.array(np.full(hi - lo, s, np.int32)), pa.array(bucket_tables_of(t)[lo:hi]),
                     pa.array(np.asarray(t.bucket_keys[lo:hi]).view(np.int64)),
                     pa.array(np.arange(lo, hi, dtype=np.int64))],
                    names=["seg", "tab", "key", "bucket"])


def _finish_task(spec: JoinSpec, batches: Iterator[Any]) -> Iterator[Any]:
    """Items' hit buckets (pos, seg, bucket), sorted by item (an item's rows may span
    batches): expand, measure, keep; one answer batch per ``FINISH_ROWS`` rows or so."""
    _task_threads()
    plan = _plan(spec)

    def answer(rows: np.ndarray) -> Any:
        pos, seg, bucket = rows
        unique = np.unique(pos)
        owner = np.searchsorted(unique, pos)
        ids = plan.locality_order()[unique]
        resolved = []
        for s in range(len(plan.sides)):
            mine = seg == s
            counts = np.bincount(owner[mine], minlength=len(ids))
            resolved.append((np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), bucket[mine]))
        pairs, dropped = plan.join_resolved(ids, plan.rows(ids), resolved, n_threads=1)
        return _batch(plan, ids, pairs, dropped, spec.with_keys)

    pending: list[np.ndarray] = []
    n_pending = 0
    for batch in batches:
        pending.append(np.stack([batch.column(i).to_numpy().astype(np.int64) for i in range(3)]))
        n_pending += batch.num_rows
        if n_pending < FINISH_ROWS:
            continue
        rows = np.concatenate(pending, axis=1)
        done = rows[0] != rows[0, -1]  # the last item may go on in the next batch
        if done.any():
            yield answer(rows[:, done])
        pending, n_pending = [rows[:, ~done]], int((~done).sum())
    if n_pending:
        yield answer(np.concatenate(pending, axis=1))


# -- the driver -----------------------------------------------------------------------------


def _spark_location(location: str) -> str:
    if location.startswith("memory://") or location == ":memory:":
        raise ParameterError(f"{location}: Spark tasks cannot open a memory index; give a directory on a"
                             " filesystem every executor shares, or a redis:// location")
    if "://" in location:
        return location
    return os.path.abspath(location)


def _bounds(n_items: int, n_parts: int) -> list[tuple[int, int]]:
    """[lo, hi) stretches of the locality order of about the same length, covering it."""
    return [(n_items * p // n_parts, n_items * (p + 1) // n_parts) for p in range(n_parts)]


def spark_self_join(session: Any, location: str, *, k: int | None = 10, min_similarity: float | None = None,
                    max_distance: float | None = None, n_probes: int | None = None,
                    n_rerank: int | None = None, max_bucket: int | None = None, seed: int = 0,
                    strategy: str = "broadcast", n_partitions: int | None = None, out: str | None = None,
                    with_keys: bool = True) -> SparkJoin:
    """The self-join of the index at ``location`` on Spark (parameters as ``self_join``).

    out : write the answer records to this file (``.jsonl`` or ``.parquet``, written by the
        executors: on a cluster, a path they and the driver share); None collects the result
        to the driver as a ``JoinResult``.
    strategy : "broadcast" or "shuffle" (see the module docstring); the same result.
    n_partitions : tasks (ranges of item ids); default about one per 50,000 items, at least
        two per core.
    """
    if strategy not in STRATEGIES:
        raise ParameterError(f"unknown strategy {strategy!r}: choose one of {list(STRATEGIES)}")
    fmt = None
    if out is not None:
        fmt = OUT_FORMATS.get(Path(out).suffix.lower())
        if fmt is None:
            raise ParameterError(f"{out}: give a .jsonl or .parquet file")
    location = _spark_location(location)
    with Index.open(location, readonly=True) as index:
        plan = JoinPlan(index, k=k, min_similarity=min_similarity, max_distance=max_distance,
                        n_probes=n_probes, n_rerank=n_rerank, max_bucket=max_bucket, seed=seed)
        ids = plan.live_ids()
        segments = tuple(s.info.id for s in index._segments if s.n_live)
        spec = JoinSpec(location, segments, plan.k, min_similarity, max_distance, n_probes, n_rerank,
                        max_bucket, seed, with_keys=with_keys and out is not None)
        base_stats = plan.stats(len(ids), 0, 0, 0)
    sc = session.sparkContext
    n_parts = n_partitions or max(2 * sc.defaultParallelism, -(-len(ids) // ITEMS_PER_PARTITION))
    n_parts = max(1, min(int(n_parts), max(1, len(ids))))
    bounds = _bounds(len(ids), n_parts)
    parts = session.range(0, n_parts, 1, n_parts)
    schema = spark_schema(spec.with_keys)
    if strategy == "broadcast":
        answers = parts.mapInArrow(functools.partial(_broadcast_task, spec, bounds), schema)
    else:
        answers = _shuffled(session, spec, bounds, n_parts, schema)
    if out is None:
        table = answers.toArrow()
        return SparkJoin(_stats(base_stats, table), _to_result(base_stats, table))
    assert fmt is not None
    counts = _write(session, answers, out, fmt)
    stats = replace(base_stats, n_candidates=counts["n_candidates"], n_pairs=counts["n_pairs"],
                    n_pairs_dropped=counts["n_pairs_dropped"])
    return SparkJoin(stats, None, out, "jsonl" if fmt == "json" else fmt)


def _shuffled(session: Any, spec: JoinSpec, bounds: list[tuple[int, int]], n_parts: int, schema: str) -> Any:
    parts = session.range(0, n_parts, 1, n_parts)
    probe_schema = "seg int, tab int, key long, pos long"
    bucket_schema = "seg int, tab int, key long, bucket long"
    probes = parts.mapInArrow(functools.partial(_probe_task, spec, bounds), probe_schema)
    buckets = parts.mapInArrow(functools.partial(_bucket_task, spec, n_parts), bucket_schema)
    hits = probes.join(buckets.hint("merge"), ["seg", "tab", "key"]).select("pos", "seg", "bucket")
    hits = hits.repartitionByRange(n_parts, "pos").sortWithinPartitions("pos", "seg", "bucket")
    return hits.mapInArrow(functools.partial(_finish_task, spec), schema)


def _stats(base: JoinStats, table: Any) -> JoinStats:
    n_cand = int(np.asarray(table.column("n_candidates")).sum()) if table.num_rows else 0
    dropped = int(np.asarray(table.column("n_dropped")).sum()) if table.num_rows else 0
    n_pairs = int(table.column("neighbours").combine_chunks().value_lengths().to_numpy().sum()) \
        if table.num_rows else 0
    return replace(base, n_candidates=n_cand, n_pairs=n_pairs, n_pairs_dropped=dropped)


def _to_result(stats: JoinStats, table: Any) -> JoinResult:
    """The collected answer table as a JoinResult (items ascending)."""
    import pyarrow as pa

    if table.num_rows == 0:
        none = np.zeros(0, np.int64)
        return JoinResult(none, np.zeros(1, np.int64), none, np.zeros(0, np.float32), none, stats)
    ids = np.asarray(table.column("id"), np.int64)
    if np.any(np.diff(ids) <= 0):
        table = table.sort_by("id")
        ids = np.asarray(table.column("id"), np.int64)
    nb = pa.concat_arrays(table.column("neighbours").chunks)
    flat = nb.flatten()
    lengths = nb.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    return JoinResult(ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                      np.asarray(flat.field("id"), np.int64), np.asarray(flat.field("distance"), np.float32),
                      np.asarray(table.column("n_candidates"), np.int64), stats)


def _write(session: Any, answers: Any, out: str, fmt: str) -> dict[str, int]:
    """Write the records with Spark, sorted by item id, into a folder beside ``out``, then
    join the part files (in partition order: ids ascending) into ``out``; returns the counts
    the answers hold.  The answers are kept (memory, then disk) between the count and the
    sort, which would otherwise compute them again to sample its ranges."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    target = Path(out).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = target.parent / f".{target.name}.parts-{uuid.uuid4().hex[:8]}"
    kept = answers.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sums = kept.agg(F.sum("n_candidates"), F.sum(F.size("neighbours")), F.sum("n_dropped")).first()
        records = kept.select("id", "key", "neighbours").orderBy("id")
        writer = records.write.mode("overwrite")
        (writer.json if fmt == "json" else writer.parquet)(parts_dir.as_uri())
        _concat_parts(parts_dir, target, fmt)
    finally:
        kept.unpersist()
        shutil.rmtree(parts_dir, ignore_errors=True)
    return {name: int(v or 0) for name, v in zip(("n_candidates", "n_pairs", "n_pairs_dropped"), sums)}


def _concat_parts(parts_dir: Path, target: Path, fmt: str) -> None:
    files = sorted(p for p in parts_dir.iterdir() if p.name.startswith("part-"))
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    if fmt == "json":
        with open(tmp, "wb") as dst:
            for p in files:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
    else:
        import pyarrow.parquet as pq

        writer = None
        try:
            for p in files:
                table = pq.read_table(p)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            if writer is None:
                pq.write_table(pq.read_schema(files[0]).empty_table() if files else _empty_records(), tmp)
        finally:
            if writer is not None:
                writer.close()
    os.replace(tmp, target)


def _empty_records() -> Any:
    schema = result_schema(True)
    return schema.empty_table().select(["id", "key", "neighbours"])

