"""Overlaps of a music library on Spark: ``library_overlaps``'s steps in Spark tasks, the same
answer.

1. count (one task per range of hash values, ``FingerprintIndex.landmark_chunk``: every entry
   of a hash value in one partition): a task reads its landmarks from the library's
   fingerprint index, joins them (``OverlapSearch.join``: the seeded cap samples the same
   entries however the landmarks are partitioned) and counts its votes per pair and per
   (pair, difference bin) in its own table of counters (``OverlapSearch.count``); Spark sums
   the tables' nonzero counters and the pair totals (a reduce by slot and by pair) and the
   driver gets the table and the totals one local pass gives.
2. vote (the same ranges): each task joins its landmarks again and keeps the votes of dense
   cells (``OverlapSearch.dense``, the table broadcast); Spark repartitions them by pair of
   tracks, so only the votes that may count are shuffled.
3. find (one task per group of pairs): every vote of a pair in one task, ``OverlapSearch.find``
   with the totals broadcast; ``OverlapArrays.concat`` on the driver orders the overlaps as one
   local call over every pair does, and the driver names the tracks.

The tasks open the fingerprint index read-only (a directory on a filesystem every executor
shares, memory-mapped, or ``redis://``) and check that it is the version the driver planned
from; the driver alone reads the catalogue.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.index.fingerprint import FingerprintIndex
from audiolsh.library import Library
from audiolsh.query.overlaps import (
    CHUNK_LANDMARKS,
    MAX_PER_HASH,
    MIN_SECONDS,
    HashPairs,
    Overlap,
    OverlapArrays,
    OverlapSearch,
    PairTotals,
)
from audiolsh.spark.vectors import task_location
from audiolsh.storage import join

log = logging.getLogger(__name__)

__all__ = ["spark_overlaps"]

COUNT_SCHEMA = "kind byte, key long, n long"
"""Rows of the counting pass: kind 0 a pair code and its votes, kind 1 a counter slot and its count."""
VOTE_SCHEMA = "a int, b int, time_a int, time_b int, hash long"
FOUND_SCHEMA = ("track_a long, track_b long, start_a long, start_b double, length long, score long,"
                " log10_p double, part int")
_PAIRS, _SLOTS = 0, 1


@dataclass(frozen=True, eq=False)
class OverlapJob:
    """What every task needs: where the fingerprint index is, the version planned from, the
    ranges of hash values, and the search."""

    location: str
    version: int
    n_chunks: int
    search: OverlapSearch


# -- tasks -------------------------------------------------------------------------------

_OPEN: dict[str, FingerprintIndex] = {}


def _votes(job: OverlapJob, chunks: Iterator[Any]) -> Iterator[tuple[int, HashPairs]]:
    """(chunk, its votes) for the chunk numbers in ``chunks`` (batches of ``session.range``)."""
    fp = _OPEN.get(job.location)
    if fp is None:  # kept per Python worker (Spark reuses workers between tasks), one at a time
        for old in _OPEN.values():
            old.close()
        _OPEN.clear()
        fp = _OPEN[job.location] = FingerprintIndex.open(job.location, readonly=True)
    if fp.storage.version() != job.version:
        raise ParameterError(f"{job.location}: the library changed while overlaps ran; run it again")
    for batch in chunks:
        for chunk in batch.column(0).to_numpy().tolist():
            yield chunk, job.search.join(*fp.landmark_chunk(int(chunk), job.n_chunks))


def _count_task(job: OverlapJob, chunks: Iterator[Any]) -> Iterator[Any]:
    """The first pass: each chunk's pair totals and nonzero counters, as count rows."""
    import pyarrow as pa

    for _, part in _votes(job, chunks):
        counters = job.search.counters()
        totals = job.search.count(part, counters)
        slots = np.flatnonzero(counters)
        kinds = np.repeat(np.array([_PAIRS, _SLOTS], np.int8), [len(totals.codes), len(slots)])
        yield pa.RecordBatch.from_arrays(
            [pa.array(kinds), pa.array(np.concatenate([totals.codes, slots]).astype(np.int64)),
             pa.array(np.concatenate([totals.counts, counters[slots]]).astype(np.int64))],
            names=["kind", "key", "n"])


def _vote_task(job: OverlapJob, counters: Any, chunks: Iterator[Any]) -> Iterator[Any]:
    """The second pass: each chunk's votes in dense cells (``counters``: the broadcast table)."""
    import pyarrow as pa

    for _, part in _votes(job, chunks):
        kept = job.search.dense(part, counters.value)
        yield pa.RecordBatch.from_arrays(
            [pa.array(kept.a), pa.array(kept.b), pa.array(kept.time_a), pa.array(kept.time_b),
             pa.array(kept.hashes.astype(np.int64))], names=["a", "b", "time_a", "time_b", "hash"])


def _find_task(job: OverlapJob, totals: Any, batches: Iterator[Any]) -> Iterator[Any]:
    """The overlaps of the pairs of tracks whose votes this partition holds (all of them)."""
    import pyarrow as pa
    from pyspark import TaskContext

    cols: dict[str, list[np.ndarray]] = {name: [] for name in ("a", "b", "time_a", "time_b", "hash")}
    for batch in batches:
        for name, values in cols.items():
            values.append(batch.column(name).to_numpy())
    if not cols["a"]:
        return
    a, b, ta, tb, h = (np.concatenate(values) for values in cols.values())
    pairs = HashPairs(job.search.tracks, a.astype(np.int32), b.astype(np.int32), ta.astype(np.int32),
                      tb.astype(np.int32), h.astype(np.uint32))
    found = job.search.find(pairs, totals.value)
    ctx = TaskContext.get()
    part = np.full(len(found), ctx.partitionId() if ctx is not None else 0, np.int32)
    yield pa.RecordBatch.from_arrays(
        [pa.array(found.track_a), pa.array(found.track_b), pa.array(found.start_a), pa.array(found.start_b),
         pa.array(found.length), pa.array(found.score), pa.array(found.log10_p), pa.array(part)],
        names=["track_a", "track_b", "start_a", "start_b", "length", "score", "log10_p", "part"])


# -- the driver ---------------------------------------------------------------------------


def _sums(table: Any, search: OverlapSearch) -> tuple[PairTotals, np.ndarray]:
    """The summed count rows as the pair totals and the table of counters."""
    kind, key, n = (np.asarray(table.column(c)) for c in ("kind", "key", "n"))
    pairs = kind == _PAIRS
    order = np.argsort(key[pairs])
    totals = PairTotals(search.tracks, key[pairs][order].astype(np.int64), n[pairs][order].astype(np.int64))
    counters = search.counters()
    OverlapSearch.add_counts(counters, key[~pairs].astype(np.int64), n[~pairs].astype(np.int64))
    return totals, counters


def _found(table: Any) -> OverlapArrays:
    """The find tasks' rows (partition by partition, each in its order) in one local call's order."""
    cols = {c: np.asarray(table.column(c)) for c in table.column_names}
    part = cols.pop("part")
    return OverlapArrays.concat(OverlapArrays(**{c: v[part == p] for c, v in cols.items()})
                                for p in np.unique(part))


def spark_overlaps(
    session: Any, library: Library, *, min_seconds: float = MIN_SECONDS, threshold: float | None = None,
    max_per_hash: int = MAX_PER_HASH, seed: int = 0, partitions: int | None = None,
    say: Callable[[str], None] | None = None,
) -> list[Overlap]:
    """``library_overlaps(library, ...)`` with the joins and the search in Spark tasks: the same
    overlaps in the same order.

    partitions : ranges of hash values (tasks of the two passes) and groups of pairs of tracks
        (tasks of the search); default two per core Spark has, more for a big library (about
        ``CHUNK_LANDMARKS`` landmarks each). Not the answer.
    say : called with a line on what the passes found
    """
    if partitions is not None and not (isinstance(partitions, int) and partitions >= 1):
        raise ParameterError(f"partitions must be a positive integer, got {partitions!r}")
    if library.location is None:
        raise ParameterError("a library in this process's memory cannot be read by Spark tasks; give a"
                             " directory on a shared filesystem or a redis:// location")
    library.mode("fingerprint")
    fp = library.fingerprint
    assert fp is not None
    version = fp.storage.version()  # before the plan: a commit after it is one the tasks notice
    search = OverlapSearch.of(library, min_seconds=min_seconds, threshold=threshold,
                              max_per_hash=max_per_hash, seed=seed)
    sc = session.sparkContext
    n_parts = partitions or max(2 * sc.defaultParallelism, math.ceil(search.n_landmarks / CHUNK_LANDMARKS))
    location = join(task_location(library.location, what="spark overlaps"), "fingerprint")
    assert location is not None
    job = OverlapJob(location, version, n_parts, search)
    chunks = session.range(0, n_parts, 1, n_parts)

    from pyspark.sql import functions as F

    counted = chunks.mapInArrow(functools.partial(_count_task, job), COUNT_SCHEMA)
    totals, counters = _sums(counted.groupBy("kind", "key").agg(F.sum("n").alias("n")).toArrow(), search)
    n_votes = int(totals.counts.sum())
    log.info("%s: %d landmarks, %d votes between tracks in %d partitions", library.path, search.n_landmarks,
             n_votes, n_parts)
    if say:
        say(f"{search.n_landmarks} landmarks of {len(search.tracks)} tracks: {n_votes} votes between tracks"
            f" in {n_parts} partitions by hash value")
    counters_bc, totals_bc = sc.broadcast(counters), sc.broadcast(totals)
    try:
        votes = chunks.mapInArrow(functools.partial(_vote_task, job, counters_bc), VOTE_SCHEMA)
        by_pair = votes.repartition(n_parts, "a", "b")
        searched = by_pair.mapInArrow(functools.partial(_find_task, job, totals_bc), FOUND_SCHEMA)
        found = _found(searched.toArrow())
    finally:
        counters_bc.destroy()
        totals_bc.destroy()
    return OverlapSearch.overlaps(found, library)
