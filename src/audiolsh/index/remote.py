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
    def probe(self, queries: Sequence[tuple[Sequence[RemoteLayout], Sequence[Sequence[bytes]]]],
              ) -> list[tuple[int, list[Probed | None]]]: ...


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
           k: int, probes_of: Callable[[RemoteSegment], int], version: int) -> list[Neighbors]:
    """Each segment's k nearest rows of every query, as item ids; ``Stale`` when the index is
    no longer at ``version``."""
    n = len(queries)
    found = _probe(storage, segments, queries, [probes_of(s) for s in segments], version)
    out = []
    for s, seg in enumerate(segments):
        result = _rerank(seg, queries, [found[q][s] for q in range(n)], metric, k)
        result = _widen(storage, seg, queries, result, metric, k, probes_of(seg), version)
        ids = np.where(result.ids >= 0, seg.ids[np.maximum(result.ids, 0)], -1)
        out.append(Neighbors(ids, result.distances, result.n_candidates))
    return out


def _probe(storage: ProbeStorage, segments: Sequence[RemoteSegment], queries: Any,
           n_probes: Sequence[int], version: int) -> list[list[Probed]]:
    """One round trip: per query, per segment, the rows its probes found."""
    layouts = [seg.remote for seg in segments]
    assert all(lay is not None for lay in layouts)
    probes = [seg.family.probes(queries, p) for seg, p in zip(segments, n_probes)]
    requests = []
    for q in range(len(queries)):
        packed = [packed_probes(keys[q], tables[q], lay.n_tables)  # type: ignore[union-attr]
                  for (keys, tables), lay in zip(probes, layouts)]
        requests.append((layouts, packed))
    replies = storage.probe(requests)  # type: ignore[arg-type]
    out = []
    for seen, per_segment in replies:
        if seen != version or any(p is None for p in per_segment):
            raise Stale
        out.append(per_segment)
    return out  # type: ignore[return-value]


def _rerank(seg: RemoteSegment, queries: Any, found: Sequence[Probed], metric: str, k: int) -> Neighbors:
    """Exact distances to each query's live probed rows; ids are row positions."""
    live = [seg.alive[p.rows] == 1 for p in found]
    rows = np.concatenate([p.rows[m] for p, m in zip(found, live)]) if found else np.zeros(0, np.int64)
    counts = np.array([int(m.sum()) for m in live], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if metric == "jaccard":
        assert isinstance(queries, SetBatch)
        parts = [_take_sets(p, m) for p, m in zip(found, live)]
        lengths = np.concatenate([np.diff(ip) for ip, _ in parts]) if parts else np.zeros(0, np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        elements = np.concatenate([e for _, e in parts]) if parts else np.zeros(0, np.uint64)
        pos, dist = kernels.rerank_sets(queries.indptr, queries.elements, starts, indptr,
                                        elements.astype(np.uint64), k)
    else:
        dim = queries.shape[1]
        X = (np.concatenate([p.vectors[m] for p, m in zip(found, live)])  # type: ignore[index]
             if found else np.zeros((0, dim), np.float32))
        pos, dist = kernels.rerank_vectors(queries, starts, np.ascontiguousarray(X, np.float32),
                                           METRICS[metric], k)
        if metric == "euclidean":
            dist = np.sqrt(dist)
    ids = np.where(pos >= 0, rows[np.maximum(pos, 0)] if len(rows) else -1, -1)
    return Neighbors(ids.astype(np.int64), dist, counts)


def _take_sets(p: Probed, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    assert p.indptr is not None and p.elements is not None
    batch = SetBatch(p.indptr, p.elements).take(np.flatnonzero(keep))
    return batch.indptr, batch.elements


def _widen(storage: ProbeStorage, seg: RemoteSegment, queries: Any, result: Neighbors,
           metric: str, k: int, probes: int, version: int) -> Neighbors:
    """As ``VectorLSH``: queries short of min(k, live rows) answers probe again with more
    buckets (a round trip each time), then the segment answers them exactly.  MinHash bands
    have no neighbours: a set query gets what its bands hold."""
    if metric == "jaccard":
        return result

    def lookup(rows: np.ndarray, n_probes: int) -> Neighbors:
        sub = np.ascontiguousarray(queries[rows])
        found = _probe(storage, [seg], sub, [n_probes], version)
        return _rerank(seg, sub, [f[0] for f in found], metric, k)

    return widen(result, min(k, seg.n_live), probes, lookup,
                 lambda rows: seg.searcher._exact(np.ascontiguousarray(queries[rows]), k))
