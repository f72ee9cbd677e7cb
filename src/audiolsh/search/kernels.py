"""Compiled inner loops: probe lookup, de-duplication, exact distance and top-k in one pass.

Queries are split into one chunk per thread; each chunk owns a ``seen`` bit map over the
rows (n / 8 bytes, so it stays in cache), restored after every query from the list of rows
it gathered, so de-duplication costs O(candidates), not O(rows).
"""

from __future__ import annotations

import types

import numba
import numpy as np

COSINE = 0
EUCLIDEAN = 1
JACCARD = 2


@numba.njit(inline="always")
def _insert(top_d, top_i, d, j):  # pragma: no cover - compiled
    k = len(top_d)
    if d >= top_d[k - 1]:
        return
    pos = k - 1
    while pos > 0 and top_d[pos - 1] > d:
        top_d[pos] = top_d[pos - 1]
        top_i[pos] = top_i[pos - 1]
        pos -= 1
    top_d[pos] = d
    top_i[pos] = j


@numba.njit(inline="always")
def _find(bucket_keys, lo, hi, key):  # pragma: no cover - compiled
    while lo < hi:
        mid = (lo + hi) >> 1
        if bucket_keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(inline="always")
def _vector_distance(q, X, j, metric):  # pragma: no cover - compiled
    acc = np.float32(0.0)
    if metric == COSINE:
        for t in range(X.shape[1]):
            acc += q[t] * X[j, t]
        return np.float32(1.0) - acc
    for t in range(X.shape[1]):
        diff = q[t] - X[j, t]
        acc += diff * diff
    return acc


@numba.njit(inline="always")
def _popcount(x):  # pragma: no cover - compiled
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(inline="always")
def _bucket(probe_keys, probe_tables, qi, p, table_start, bucket_keys):  # pragma: no cover
    """Index of the probed bucket, or -1 when the table has no such key."""
    t = probe_tables[qi, p]
    hi = table_start[t + 1]
    b = _find(bucket_keys, table_start[t], hi, probe_keys[qi, p])
    if b == hi or bucket_keys[b] != probe_keys[qi, p]:
        return -1
    return b


@numba.njit(inline="always")
def _hamming_row(q_codes, qi, codes, j):  # pragma: no cover - compiled
    h = 0
    for t in range(codes.shape[1]):
        h += _popcount(q_codes[qi, t] ^ codes[j, t])
    return h


def _search_vectors(
    Q, probe_keys, probe_tables, table_start, bucket_keys, bucket_start, members,
    X, dead_bits, k, metric, n_chunks, q_codes, codes, n_rerank,
):  # pragma: no cover - compiled
    """Top-k of every query among the live rows of its probed buckets.

    Per query: walk the probed buckets and gather each live row once (``seen`` is a bit map
    over the rows that starts as a copy of ``dead_bits``, so removed rows are never
    gathered); then, with ``n_rerank > 0`` and per-row hash codes (the hyperplane bits of
    every table, as unsigned words), measure the Hamming distance of every gathered row's
    code to the query's and give an exact distance only to the ``n_rerank`` nearest by code
    (ties included): codes are a few bytes where a vector is hundreds.  The gathering and
    the measuring are separate loops over a flat buffer, so the random reads of codes and
    vectors are independent and overlap in the memory system.
    """
    nq = Q.shape[0]
    n = X.shape[0]
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    prefilter = n_rerank > 0 and codes.shape[1] > 0
    max_h = 64 * codes.shape[1] + 1
    for c in numba.prange(n_chunks):
        seen = dead_bits.copy()
        cand = np.empty(n, dtype=np.int32)
        ham = np.empty(n if prefilter else 0, dtype=np.uint16)
        hist = np.zeros(max_h, dtype=np.int64)
        for qi in range(c, nq, n_chunks):
            count = 0
            for p in range(probe_keys.shape[1]):
                b = _bucket(probe_keys, probe_tables, qi, p, table_start, bucket_keys)
                if b < 0:
                    continue
                for m in range(bucket_start[b], bucket_start[b + 1]):
                    j = members[m]
                    w = j >> 6
                    bit = np.uint64(1) << np.uint64(j & 63)
                    if seen[w] & bit:
                        continue
                    seen[w] |= bit
                    cand[count] = j
                    count += 1
            n_cand[qi] = count
            # Restore the map for the next query: only the words this query touched.
            for i in range(count):
                w = cand[i] >> 6
                seen[w] = dead_bits[w]
            if prefilter and count > n_rerank:
                hist[:] = 0
                for i in range(count):
                    h = _hamming_row(q_codes, qi, codes, cand[i])
                    ham[i] = h
                    hist[h] += 1
                # The Hamming radius that admits n_rerank candidates.
                radius = max_h
                total = 0
                for h in range(max_h):
                    total += hist[h]
                    if total >= n_rerank:
                        radius = h
                        break
                for i in range(count):
                    if ham[i] <= radius:
                        j = cand[i]
                        _insert(out_d[qi], out_i[qi], _vector_distance(Q[qi], X, j, metric), j)
            else:
                for i in range(count):
                    j = cand[i]
                    _insert(out_d[qi], out_i[qi], _vector_distance(Q[qi], X, j, metric), j)
    return out_i, out_d, n_cand


def dead_bit_map(alive):  # type: ignore[no-untyped-def]
    """uint64 words, bit j set when row j is removed (alive[j] == 0); padding bits set."""
    n = len(alive)
    n_words = (n + 63) // 64
    dead = np.ones(n_words * 64, dtype=np.uint8)
    dead[:n] = np.asarray(alive, dtype=np.uint8) == 0
    return np.packbits(dead, bitorder="little").view(np.uint64).copy()


@numba.njit(inline="always")
def _jaccard(qa, indptr, elems, j):  # pragma: no cover - compiled
    i, i1 = 0, len(qa)
    b, b1 = indptr[j], indptr[j + 1]
    inter = 0
    while i < i1 and b < b1:
        if qa[i] == elems[b]:
            inter += 1
            i += 1
            b += 1
        elif qa[i] < elems[b]:
            i += 1
        else:
            b += 1
    union = len(qa) + (indptr[j + 1] - indptr[j]) - inter
    if union == 0:
        return np.float32(0.0)
    return np.float32(1.0 - inter / union)


def _search_sets(
    q_indptr, q_elems, probe_keys, probe_tables, table_start, bucket_keys, bucket_start,
    members, indptr, elems, alive, k, n_chunks,
):  # pragma: no cover - compiled
    nq = len(q_indptr) - 1
    n = len(indptr) - 1
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    for c in numba.prange(n_chunks):
        seen = np.zeros(n, dtype=np.uint8)
        for qi in range(c, nq, n_chunks):
            qa = q_elems[q_indptr[qi] : q_indptr[qi + 1]]
            count = 0
            for p in range(probe_keys.shape[1]):
                b = _bucket(probe_keys, probe_tables, qi, p, table_start, bucket_keys)
                if b < 0:
                    continue
                for m in range(bucket_start[b], bucket_start[b + 1]):
                    j = members[m]
                    if seen[j] != 0:
                        continue
                    seen[j] = 1
                    if alive[j] == 0:
                        continue
                    count += 1
                    _insert(out_d[qi], out_i[qi], _jaccard(qa, indptr, elems, j), j)
            n_cand[qi] = count
            for p in range(probe_keys.shape[1]):
                b = _bucket(probe_keys, probe_tables, qi, p, table_start, bucket_keys)
                if b < 0:
                    continue
                for m in range(bucket_start[b], bucket_start[b + 1]):
                    seen[members[m]] = 0
    return out_i, out_d, n_cand


@numba.njit(parallel=True, cache=True)
def jaccard_all(q_indptr, q_elems, indptr, elems, alive, k):  # pragma: no cover - compiled
    """Exact top-k by Jaccard distance against every stored set (the brute-force baseline)."""
    nq = len(q_indptr) - 1
    n = len(indptr) - 1
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    for qi in numba.prange(nq):
        qa = q_elems[q_indptr[qi] : q_indptr[qi + 1]]
        for j in range(n):
            if alive[j] != 0:
                _insert(out_d[qi], out_i[qi], _jaccard(qa, indptr, elems, j), j)
    return out_i, out_d


def _named(fn, suffix):  # type: ignore[no-untyped-def]
    """A copy of ``fn`` under another name.  numba's on-disk cache keys a function by its name
    and bytecode, not by ``parallel=``: two builds of one function would load each other's
    machine code (a lone query then paid for a thread-pool launch)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__)
    copy.__qualname__ = fn.__qualname__ + suffix
    return copy


# A parallel launch costs more than a lone query; few queries take the serial build.
search_vectors_parallel = numba.njit(parallel=True, cache=True, fastmath=True)(
    _named(_search_vectors, "_parallel")
)
search_vectors_serial = numba.njit(cache=True, fastmath=True)(_named(_search_vectors, "_serial"))
search_sets_parallel = numba.njit(parallel=True, cache=True)(_named(_search_sets, "_parallel"))
search_sets_serial = numba.njit(cache=True)(_named(_search_sets, "_serial"))
SERIAL_BELOW = 4


def search_vectors(Q, *args):  # type: ignore[no-untyped-def]
    kernel = search_vectors_serial if len(Q) < SERIAL_BELOW else search_vectors_parallel
    return kernel(Q, *args)


def search_sets(q_indptr, *args):  # type: ignore[no-untyped-def]
    kernel = search_sets_serial if len(q_indptr) - 1 < SERIAL_BELOW else search_sets_parallel
    return kernel(q_indptr, *args)
