"""Queries of an index whose buckets and rows stay in Redis (remote-probe mode).

The reader hashes the queries itself (it holds each segment's hash family and item ids),
sends every query's probe keys of every segment in one round trip (``RedisStorage.probe``:
one script call per query), and re-ranks the rows that come back exactly, as a local
segment would.  A query short of answers widens its probes as ``VectorLSH`` does (one more
round trip per widening) and, last, scans the segment exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from audiolsh.hashing import SetBatch
from audiolsh.search import Neighbors, kernels
from audiolsh.search.brute import METRICS
from audiolsh.search.lsh import widen
from audiolsh.storage.redis_remote import Probed, RemoteLayout, packed_probes


class ProbeStorage(Protocol):
    def probe(self, queries: Sequence[tuple[Sequence[RemoteLayout], Sequence[bytes]]],
              budget: int = 0) -> list[tuple[int, list[Probed | None]]]: ...


class RemoteSegment(Protocol):
    remote: RemoteLayout | None
    family: Any
    ids: np.ndarray
    alive: np.ndarray

    @property
    def n_live(self) -> int: ...

    @property
    def searcher(self) -> Any: ...


class Stale(Exception):
    """The index changed under the query (a commit, or a compaction dropped a segment)."""


def search(storage: ProbeStorage, segments: Sequence[RemoteSegment], queries: Any, metric: str,
           k: int, probes_of: Callable[[RemoteSegment], int], version: int,
           budget: int = 0) -> list[Neighbors]:
    """Each segment's k nearest rows of every query, as item ids; ``Stale`` when the index is
    no longer at ``version``.  ``budget`` > 0: measure at most that many rows per segment and
    query, those found in the most probed buckets (never fewer than k)."""
    n = len(queries)
    budget = max(budget, k) if budget else 0
    found = _probe(storage, segments, queries, [probes_of(s) for s in segments], version, budget)
    out = []
    for s, seg in enumerate(segments):
        result = _rerank(seg, queries, [found[q][s] for q in range(n)], metric, k)
        result = _widen(storage, seg, queries, result, metric, k, probes_of(seg), version, budget)
        ids = np.where(result.ids >= 0, seg.ids[np.maximum(result.ids, 0)], -1)
        out.append(Neighbors(ids, result.distances, result.n_candidates))
    return out


def _probe(storage: ProbeStorage, segments: Sequence[RemoteSegment], queries: Any,
           n_probes: Sequence[int], version: int, budget: int) -> list[list[Probed]]:
    """One round trip: per query, per segment, the rows its probes found."""
    layouts = [seg.remote for seg in segments]
    assert all(lay is not None for lay in layouts)
    probes = [seg.family.probes(queries, p) for seg, p in zip(segments, n_probes)]
    requests = []
    for q in range(len(queries)):
        packed = [packed_probes(keys[q], tables[q]) for keys, tables in probes]
        requests.append((layouts, packed))
    replies = storage.probe(requests, budget)  # type: ignore[arg-type]
    out = []
    for seen, per_segment in replies:
        if seen != version or any(p is None for p in per_segment):
            raise Stale
        out.append(per_segment)
    return out  # type: ignore[return-value]


def _rerank(seg: RemoteSegment, queries: Any, found: Sequence[Probed], metric: str, k: int) -> Neighbors:
    """Exact distances to each query's live probed rows; ids are row positions."""
    if len(found) == 1:  # one query: its arrays as they came
        p = found[0]
        rows, starts = p.rows, np.array([0, len(p.rows)], np.int64)
        X, indptr, elements = p.vectors, p.indptr, p.elements
    else:
        rows = np.concatenate([p.rows for p in found]) if found else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum([len(p.rows) for p in found])]).astype(np.int64)
        if metric == "jaccard":
            lengths = np.concatenate([np.diff(p.indptr) for p in found])  # type: ignore[arg-type, type-var]
            indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            elements = np.concatenate([p.elements for p in found])  # type: ignore[misc]
        else:
            X = np.concatenate([p.vectors for p in found])  # type: ignore[misc]
    live = seg.alive[rows]
    if metric == "jaccard":
        assert isinstance(queries, SetBatch)
        pos, dist, counts = kernels.rerank_sets(queries.indptr, queries.elements, starts, indptr,
                                                elements, live, k)
    else:
        pos, dist, counts = kernels.rerank_vectors(queries, starts, X, live, METRICS[metric], k)
        if metric == "euclidean":
            dist = np.sqrt(dist)
    ids = np.where(pos >= 0, rows[np.maximum(pos, 0)] if len(rows) else -1, -1)
    return Neighbors(ids, dist, counts)


def _widen(storage: ProbeStorage, seg: RemoteSegment, queries: Any, result: Neighbors,
           metric: str, k: int, probes: int, version: int, budget: int) -> Neighbors:
    """As ``VectorLSH``: queries short of min(k, live rows) answers probe again with more
    buckets (a round trip each time), then the segment answers them exactly.  MinHash bands
    have no neighbours: a set query gets what its bands hold."""
    if metric == "jaccard":
        return result

    def lookup(rows: np.ndarray, n_probes: int) -> Neighbors:
        sub = np.ascontiguousarray(queries[rows])
        found = _probe(storage, [seg], sub, [n_probes], version, budget)
        return _rerank(seg, sub, [f[0] for f in found], metric, k)

    return widen(result, min(k, seg.n_live), probes, lookup,
                 lambda rows: seg.searcher._exact(np.ascontiguousarray(queries[rows]), k))
