"""The similarity join of probe keys with bucket tables: the compiled core of a self-join.

A self-join explodes two relations and joins them on (table, key): the *item keys* (every
row's home bucket in every table: the stored ``BucketTables``, already sorted by table and
key, one CSR list of members per bucket) and the *probe keys* (every query row's multi-probe
buckets, ``family.probes``).  ``resolve`` does the join's lookup side, a binary search of each
probe key among its table's sorted keys (a probe of a bucket nobody is in drops out), and
gives every query the list of buckets it hits; ``join_vectors`` / ``join_sets`` expand those
buckets into candidate pairs, drop the self pair, de-duplicate (a pair met in several tables
is measured once), measure each pair exactly and keep, per query, the k nearest or every
pair within a distance.  Results are ordered by (distance, item id), so they do not depend on
how the queries were batched or in which order their buckets came.

``cap_tables`` bounds skew: a bucket with more than ``max_bucket`` members keeps a seeded
sample of them (the members with the smallest hash of (seed, table, item id)), the same in
every process for a seed.  A neighbour that shares only capped buckets with an item is then
found with probability about max_bucket / (bucket size) per shared bucket; the members left
out are counted (``CappedTables.dropped``) so a caller can say what the cap cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from audiolsh.search import kernels
from audiolsh.search.tables import BucketTables

# Mixing constants of splitmix64 (Steele et al. 2014), the hash the bucket sample ranks by.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of uint64 values, elementwise (wrapping arithmetic)."""
    z = np.atleast_1d(np.asarray(x, np.uint64)) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class CappedTables:
    """Bucket tables whose buckets hold at most ``max_bucket`` members (``tables``), and per
    bucket how many members the cap left out (``dropped``, int64, zeros when none was)."""

    tables: BucketTables
    dropped: np.ndarray
    max_bucket: int | None

    @property
    def n_capped(self) -> int:
        return int(np.count_nonzero(self.dropped))


def bucket_tables_of(tables: BucketTables) -> np.ndarray:
    """Table number of every bucket, (B,) int32."""
    sizes = np.diff(np.asarray(tables.table_start))
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def cap_tables(tables: BucketTables, ids: np.ndarray, max_bucket: int | None, *,
               seed: int = 0) -> CappedTables:
    """Keep at most ``max_bucket`` members per bucket: in a larger bucket, those with the
    smallest splitmix64(seed, table, item id), in their stored order.  None: no cap."""
    sizes = np.diff(np.asarray(tables.bucket_start))
    if max_bucket is None or not len(sizes) or int(sizes.max()) <= max_bucket:
        return CappedTables(tables, np.zeros(len(sizes), np.int64), max_bucket)
    bucket_start = np.asarray(tables.bucket_start)
    members = np.asarray(tables.members)
    big = np.flatnonzero(sizes > max_bucket)
    # Members of the big buckets only: their bucket, their rank by hash within it.
    big_sizes = sizes[big]
    starts = bucket_start[big]
    offsets = np.concatenate([[0], np.cumsum(big_sizes)[:-1]])  # of each big bucket in the list
    pos = np.repeat(starts - offsets, big_sizes) + np.arange(int(big_sizes.sum()))
    which = np.repeat(np.arange(len(big)), big_sizes)
    table = bucket_tables_of(tables)[big][which].astype(np.uint64)
    salt = splitmix64(splitmix64(np.full(len(table), seed, np.uint64)) ^ table)
    rank_key = splitmix64(np.asarray(ids, np.int64)[members[pos]].view(np.uint64) ^ salt)
    order = np.lexsort((pos, rank_key, which))  # by bucket, then hash (ties: stored order)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(offsets, big_sizes)
    keep = np.ones(len(members), bool)
    keep[pos[rank >= max_bucket]] = False
    kept_sizes = np.minimum(sizes, max_bucket)
    capped = BucketTables(
        np.asarray(tables.table_start), np.asarray(tables.bucket_keys),
        np.concatenate([[0], np.cumsum(kept_sizes)]).astype(np.int64), members[keep],
    )
    return CappedTables(capped, (sizes - kept_sizes).astype(np.int64), max_bucket)


@numba.njit(cache=True, nogil=True)
def _resolve(probe_keys, probe_tables, table_start, bucket_keys):  # pragma: no cover - compiled
    n, p = probe_keys.shape
    out = np.full((n, p), -1, dtype=np.int64)
    for i in range(n):
        for j in range(p):
            t = probe_tables[i, j]
            lo, hi = table_start[t], table_start[t + 1]
            key = probe_keys[i, j]
            while lo < hi:
                mid = (lo + hi) >> 1
                if bucket_keys[mid] < key:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < table_start[t + 1] and bucket_keys[lo] == key:
                out[i, j] = lo
    return out


def resolve(probe_keys: np.ndarray, probe_tables: np.ndarray,
            tables: BucketTables) -> tuple[np.ndarray, np.ndarray]:
    """Join probe keys (n, P) and their tables (n, P) with the bucket tables: the buckets
    each query hits, as CSR (``q_ptr`` (n+1,), ``buckets``); probes of absent keys drop out."""
    found = _resolve(np.ascontiguousarray(probe_keys, np.uint64),
                     np.ascontiguousarray(probe_tables, np.int32),
                     np.asarray(tables.table_start), np.asarray(tables.bucket_keys))
    hit = found >= 0
    q_ptr = np.concatenate([[0], np.cumsum(hit.sum(axis=1))]).astype(np.int64)
    return q_ptr, found[hit]


def candidate_bounds(q_ptr: np.ndarray, buckets: np.ndarray, per_bucket: np.ndarray) -> np.ndarray:
    """Sum of ``per_bucket`` over each query's buckets, (n,) int64: with bucket sizes, the
    pairs a query meets before de-duplication."""
    n = len(q_ptr) - 1
    owner = np.repeat(np.arange(n), np.diff(q_ptr))
    return np.bincount(owner, weights=per_bucket[buckets], minlength=n).astype(np.int64)


@numba.njit(inline="always")
def _keep(out_d, out_i, lo, n_out, slots, d, gid):  # pragma: no cover - compiled
    """Insert (d, gid) into the region out[lo:lo + slots], kept sorted by (distance, id)
    with n_out entries; returns the new count."""
    if n_out == slots:
        last = lo + slots - 1
        if d > out_d[last] or (d == out_d[last] and gid >= out_i[last]):
            return n_out
        pos = last
    else:
        pos = lo + n_out
        n_out += 1
    while pos > lo and (out_d[pos - 1] > d or (out_d[pos - 1] == d and out_i[pos - 1] > gid)):
        out_d[pos] = out_d[pos - 1]
        out_i[pos] = out_i[pos - 1]
        pos -= 1
    out_d[pos] = d
    out_i[pos] = gid
    return n_out


@numba.njit(inline="always")
def _sort_region(out_d, out_i, lo, n_out):  # pragma: no cover - compiled
    """Sort out[lo:lo + n_out] by (distance, id)."""
    ids = out_i[lo : lo + n_out].copy()
    dist = out_d[lo : lo + n_out].copy()
    by_id = np.argsort(ids, kind="mergesort")
    ids, dist = ids[by_id], dist[by_id]
    by_d = np.argsort(dist, kind="mergesort")
    out_i[lo : lo + n_out] = ids[by_d]
    out_d[lo : lo + n_out] = dist[by_d]


@numba.njit(inline="always")
def _distance(q, X, j, cosine):  # pragma: no cover - compiled
    """Exact distance in float32.  The kernels that inline it allow reassociation only (no
    other fast-math), so the sum vectorises in an order fixed by the compiled code: the
    same bits for a pair in every batch, block and process of one machine (a CPU with other
    vector widths may differ in the last bit).  Cosine rows are unit length: 1 - q.x;
    Euclidean: the L2 norm."""
    acc = np.float32(0.0)
    if cosine:
        for t in range(X.shape[1]):
            acc += q[t] * X[j, t]
        return np.float32(1.0) - acc
    for t in range(X.shape[1]):
        e = q[t] - X[j, t]
        acc += e * e
    return np.float32(np.sqrt(acc))


@numba.njit(inline="always")
def _hamming(q_words, codes, j):  # pragma: no cover - compiled
    h = 0
    for t in range(codes.shape[1]):
        x = q_words[t] ^ codes[j, t]
        x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
        x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
        x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        h += (x * np.uint64(0x0101010101010101)) >> np.uint64(56)
    return h


@numba.njit(inline="always")
def _prefilter(q_words, codes, cand, count, ids, q_id, n_rerank, ham, hist):  # pragma: no cover
    """The Hamming radius of the hash codes that admits the ``n_rerank`` candidates nearest
    the query by code (ties included; the query's own row left out, ``ham`` of it set past
    every radius); -1 admits all.  ``ham[i]``: the distance of ``cand[i]``."""
    if n_rerank <= 0 or codes.shape[1] == 0 or count <= n_rerank:
        return -1
    max_h = hist.shape[0]
    hist[:] = 0
    for i in range(count):
        if ids[cand[i]] == q_id:
            ham[i] = max_h
            continue
        h = _hamming(q_words, codes, cand[i])
        ham[i] = h
        hist[h] += 1
    total = 0
    for h in range(max_h):
        total += hist[h]
        if total >= n_rerank:
            return h
    return -1


@numba.njit(inline="always")
def _gather(q_ptr, buckets, qi, bucket_start, members, seen, cand):  # pragma: no cover - compiled
    """Rows of query qi's buckets, each once and none removed (``seen`` starts as the
    removed-row bit map and is restored by the caller); returns how many."""
    count = 0
    for p in range(q_ptr[qi], q_ptr[qi + 1]):
        b = buckets[p]
        for m in range(bucket_start[b], bucket_start[b + 1]):
            j = members[m]
            w = j >> 6
            bit = np.uint64(1) << np.uint64(j & 63)
            if seen[w] & bit:
                continue
            seen[w] |= bit
            cand[count] = j
            count += 1
    return count


@numba.njit(parallel=True, cache=True, fastmath={"reassoc"})
def _join_vectors(Q, q_ids, q_ptr, buckets, bucket_start, members, X, ids, dead_bits, metric,
                  top_k, max_distance, out_ptr, q_words, codes, n_rerank, n_chunks):  # pragma: no cover
    nq = len(q_ids)
    cosine = metric == kernels.COSINE
    prefilter = n_rerank > 0 and codes.shape[1] > 0
    n_out = np.zeros(nq, dtype=np.int64)
    n_cand = np.zeros(nq, dtype=np.int64)
    out_i = np.full(out_ptr[nq], -1, dtype=np.int64)
    out_d = np.full(out_ptr[nq], np.inf, dtype=np.float32)
    for c in numba.prange(n_chunks):
        seen = dead_bits.copy()
        cand = np.empty(X.shape[0], dtype=np.int32)
        ham = np.empty(X.shape[0] if prefilter else 0, dtype=np.int64)
        hist = np.zeros(64 * codes.shape[1] + 1, dtype=np.int64)
        for qi in range(c, nq, n_chunks):
            count = _gather(q_ptr, buckets, qi, bucket_start, members, seen, cand)
            for i in range(count):
                seen[cand[i] >> 6] = dead_bits[cand[i] >> 6]
            radius = -1
            if prefilter:
                radius = _prefilter(q_words[qi], codes, cand, count, ids, q_ids[qi], n_rerank, ham, hist)
            lo, slots, kept, measured = out_ptr[qi], out_ptr[qi + 1] - out_ptr[qi], 0, 0
            for i in range(count):
                j = cand[i]
                gid = ids[j]
                if gid == q_ids[qi] or (radius >= 0 and ham[i] > radius):
                    continue
                measured += 1
                d = _distance(Q[qi], X, j, cosine)
                if d > max_distance or slots == 0:
                    continue
                if top_k:
                    kept = _keep(out_d, out_i, lo, kept, slots, d, gid)
                else:
                    out_d[lo + kept] = d
                    out_i[lo + kept] = gid
                    kept += 1
            if not top_k:
                _sort_region(out_d, out_i, lo, kept)
            n_out[qi] = kept
            n_cand[qi] = measured
    return n_out, out_i, out_d, n_cand


@numba.njit(parallel=True, cache=True)
def _join_sets(q_indptr, q_elems, q_ids, q_ptr, buckets, bucket_start, members, indptr, elems, ids,
               dead_bits, top_k, max_distance, out_ptr, n_chunks):  # pragma: no cover - compiled
    nq = len(q_ids)
    n_out = np.zeros(nq, dtype=np.int64)
    n_cand = np.zeros(nq, dtype=np.int64)
    out_i = np.full(out_ptr[nq], -1, dtype=np.int64)
    out_d = np.full(out_ptr[nq], np.inf, dtype=np.float32)
    for c in numba.prange(n_chunks):
        seen = dead_bits.copy()
        cand = np.empty(len(indptr) - 1, dtype=np.int32)
        for qi in range(c, nq, n_chunks):
            qa = q_elems[q_indptr[qi] : q_indptr[qi + 1]]
            count = _gather(q_ptr, buckets, qi, bucket_start, members, seen, cand)
            for i in range(count):
                seen[cand[i] >> 6] = dead_bits[cand[i] >> 6]
            lo, slots, kept, measured = out_ptr[qi], out_ptr[qi + 1] - out_ptr[qi], 0, 0
            for i in range(count):
                j = cand[i]
                gid = ids[j]
                if gid == q_ids[qi]:
                    continue
                measured += 1
                inter = kernels.intersection(qa, indptr, elems, j)
                union = len(qa) + (indptr[j + 1] - indptr[j]) - inter
                d = np.float32(0.0) if union == 0 else np.float32(1.0 - inter / union)
                if d > max_distance or slots == 0:
                    continue
                if top_k:
                    kept = _keep(out_d, out_i, lo, kept, slots, d, gid)
                else:
                    out_d[lo + kept] = d
                    out_i[lo + kept] = gid
                    kept += 1
            if not top_k:
                _sort_region(out_d, out_i, lo, kept)
            n_out[qi] = kept
            n_cand[qi] = measured
    return n_out, out_i, out_d, n_cand


@dataclass(frozen=True)
class PairLists:
    """Per query its kept pairs, nearest first: ``neighbours[indptr[i]:indptr[i+1]]`` (item
    ids) with their ``distances``; ``n_candidates``: distinct pairs measured per query."""

    indptr: np.ndarray
    neighbours: np.ndarray
    distances: np.ndarray
    n_candidates: np.ndarray


def _compact(n_out: np.ndarray, out_i: np.ndarray, out_d: np.ndarray, out_ptr: np.ndarray,
             n_cand: np.ndarray) -> PairLists:
    starts = out_ptr[:-1]
    take = np.repeat(starts, n_out) + (np.arange(int(n_out.sum())) - np.repeat(
        np.concatenate([[0], np.cumsum(n_out)[:-1]]), n_out))
    indptr = np.concatenate([[0], np.cumsum(n_out)]).astype(np.int64)
    return PairLists(indptr, out_i[take], out_d[take], n_cand)


def _slots(k: int | None, bounds: np.ndarray) -> tuple[np.ndarray, bool]:
    if k is None:
        return bounds, False
    return np.minimum(bounds, k), True


def _frozen(*args: object) -> tuple:
    """The arguments with every array read-only: a join's inputs are in memory or mapped
    from segments, one numba type either way (see ``kernels.frozen``)."""
    return tuple(kernels.frozen(a) if isinstance(a, np.ndarray) else a for a in args)


def join_vectors(Q: np.ndarray, q_ids: np.ndarray, q_ptr: np.ndarray, buckets: np.ndarray,
                 tables: BucketTables, X: np.ndarray, ids: np.ndarray, dead_bits: np.ndarray, *,
                 metric: int, k: int | None, max_distance: float = np.inf,
                 prefilter: tuple[np.ndarray, np.ndarray, int] | None = None,
                 n_threads: int | None = None) -> PairLists:
    """For each query row ``Q[i]`` (item ``q_ids[i]``), its pairs with the rows of ``X`` in
    buckets ``buckets[q_ptr[i]:q_ptr[i+1]]`` of ``tables``: distinct, not itself, not
    removed (``dead_bits``), measured exactly; the ``k`` nearest (None: all) within
    ``max_distance``.  ``ids``: item id of each row of X.

    ``prefilter`` = (query codes, row codes, n_rerank), both as uint64 words
    (``lsh.word_codes``, ``lsh.query_words``): measure only the ``n_rerank`` candidates nearest the query by
    Hamming distance of their hyperplane codes (ties included), as ``Index.query`` does."""
    bounds = candidate_bounds(q_ptr, buckets, np.diff(np.asarray(tables.bucket_start)))
    slots, top_k = _slots(k, bounds)
    out_ptr = np.concatenate([[0], np.cumsum(slots)]).astype(np.int64)
    n_chunks = max(1, min(len(q_ids), n_threads or numba.get_num_threads()))
    ids = np.asarray(ids, np.int64)
    q_ids = np.ascontiguousarray(q_ids, np.int64)
    if prefilter is None:
        q_words, codes, n_rerank = np.zeros((len(q_ids), 0), np.uint64), np.zeros((len(X), 0), np.uint64), 0
    else:
        q_words, codes, n_rerank = prefilter
    n_out, out_i, out_d, n_cand = _join_vectors(*_frozen(
        np.ascontiguousarray(Q, np.float32), q_ids, q_ptr,
        np.ascontiguousarray(buckets, np.int64), np.asarray(tables.bucket_start),
        np.asarray(tables.members), X, ids, dead_bits, metric, top_k,
        np.float32(max_distance), out_ptr, q_words, codes, int(n_rerank), n_chunks,
    ))
    return _compact(n_out, out_i, out_d, out_ptr, n_cand)


def join_sets(q_indptr: np.ndarray, q_elems: np.ndarray, q_ids: np.ndarray, q_ptr: np.ndarray,
              buckets: np.ndarray, tables: BucketTables, indptr: np.ndarray, elems: np.ndarray,
              ids: np.ndarray, dead_bits: np.ndarray, *, k: int | None, max_distance: float = np.inf,
              n_threads: int | None = None) -> PairLists:
    """``join_vectors`` for sets (CSR ``q_indptr``/``q_elems`` against ``indptr``/``elems``),
    Jaccard distance 1 - |a & b| / |a | b|."""
    bounds = candidate_bounds(q_ptr, buckets, np.diff(np.asarray(tables.bucket_start)))
    slots, top_k = _slots(k, bounds)
    out_ptr = np.concatenate([[0], np.cumsum(slots)]).astype(np.int64)
    n_chunks = max(1, min(len(q_ids), n_threads or numba.get_num_threads()))
    n_out, out_i, out_d, n_cand = _join_sets(*_frozen(
        np.asarray(q_indptr, np.int64), np.asarray(q_elems, np.uint64), np.ascontiguousarray(q_ids, np.int64),
        q_ptr, np.ascontiguousarray(buckets, np.int64), np.asarray(tables.bucket_start),
        np.asarray(tables.members), np.asarray(indptr, np.int64), np.asarray(elems, np.uint64),
        np.asarray(ids, np.int64), dead_bits, top_k, np.float32(max_distance), out_ptr, n_chunks,
    ))
    return _compact(n_out, out_i, out_d, out_ptr, n_cand)
