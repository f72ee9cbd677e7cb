"""Compiled inner loops: probe lookup, de-duplication, exact distance and top-k in one pass.

Queries are split into one chunk per thread; each chunk owns a ``seen`` bit map over the
rows (n / 8 bytes, so it stays in cache), restored after every query from the list of rows
it gathered, so de-duplication costs O(candidates), not O(rows).
"""

from __future__ import annotations

import hashlib
import types
import warnings
from pathlib import Path
from typing import Any

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir as llvm_ir
from numba import types as nb_types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload

from audiolsh.hashing import hyperplane, multiprobe
from audiolsh.hashing.hyperplane import query_probes_scored

COSINE = 0
EUCLIDEAN = 1
JACCARD = 2


@numba.njit(inline="always")
def insert_counted(top_d, top_i, n, d, j):  # pragma: no cover - compiled
    """Insert (d, j) into the ascending top_d[:n], top_i[:n]; returns the new count.  While
    fewer than len(top_d) are held any d is taken (an ``inf`` too); then only a smaller one.
    Equal values keep their insertion order."""
    k = len(top_d)
    if n >= k and d >= top_d[k - 1]:
        return n
    pos = n if n < k else k - 1
    while pos > 0 and top_d[pos - 1] > d:
        top_d[pos] = top_d[pos - 1]
        top_i[pos] = top_i[pos - 1]
        pos -= 1
    top_d[pos] = d
    top_i[pos] = j
    return n + 1 if n < k else n


@numba.njit(inline="always")
def _insert(top_d, top_i, d, j):  # pragma: no cover - compiled
    """A full top-k (filled with ``inf`` at the start): an ``inf`` never enters."""
    insert_counted(top_d, top_i, len(top_d), d, j)


@numba.njit(inline="always")
def push(top_d, top_i, d, j):  # pragma: no cover - compiled
    """Insert (d, j) into a full top-k, once the caller has seen d beat the bound it holds in
    a local (``top_d[-1]``); returns the new bound.  Scans test the local before the call:
    reading the bound from ``top_d`` every row, or testing it inside this inlined call, ran
    them 2-2.5x slower (the compiler reloads it, as an insert's stores may alias the rows)."""
    k = len(top_d)
    insert_counted(top_d, top_i, k, d, j)
    return top_d[k - 1]


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


def _value(X, aux, j, t):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Entry (j, t) of a re-rank array as float32 (see ``search.compact``)."""


def _host_converts_half() -> bool:
    """The CPU converts float16 to float32 in one instruction (x86's F16C): the decode is
    then vectorised, else a table look-up is faster than LLVM's call per value."""
    try:
        return bool(llvm_binding.get_host_cpu_features().get("f16c", False))
    except RuntimeError:  # a host llvmlite cannot describe
        return False


HALF_IN_HARDWARE = _host_converts_half()


@intrinsic
def _half(typingctx, bits):  # type: ignore[no-untyped-def]
    """float16 bits (uint16) to float32, exactly, by the CPU's conversion."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.fpext(builder.bitcast(args[0], llvm_ir.HalfType()), llvm_ir.FloatType())
    return nb_types.float32(nb_types.uint16), codegen


@intrinsic
def half_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """float32 to the bits of the nearest float16 (ties to even, as numpy rounds), by the
    CPU's conversion: only where ``HALF_IN_HARDWARE``."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(builder.fptrunc(args[0], llvm_ir.HalfType()), llvm_ir.IntType(16))
    return nb_types.uint16(nb_types.float32), codegen


@overload(_value, inline="always")
def _value_impl(X, aux, j, t):  # type: ignore[no-untyped-def]
    # Chosen at compile time by the stored dtype: float16 arrives as its bits (numba has no
    # float16), converted by the CPU (vectorised: a scan of float16 rows from memory ran at
    # 13 ns a 128-d row against 29 for float32) or, without F16C, a 65536-entry table;
    # int8 is scaled and offset per dimension.
    if X.dtype == nb_types.uint16:
        if HALF_IN_HARDWARE:
            return lambda X, aux, j, t: _half(X[j, t])  # type: ignore[call-arg]
        return lambda X, aux, j, t: aux[X[j, t]]
    if X.dtype == nb_types.int8:
        return lambda X, aux, j, t: aux[t] * np.float32(X[j, t]) + aux[X.shape[1] + t]
    return lambda X, aux, j, t: X[j, t]


def _fold(q, X, aux):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The query as the cosine loop of ``_row_distance`` reads it, and a constant to add."""


@overload(_fold, inline="always")
def _fold_impl(q, X, aux):  # type: ignore[no-untyped-def]
    # int8: q . (scale * c + offset) = (q * scale) . c + q . offset, so the loop over a row is
    # a plain dot product with the codes (vectorised; decoding each value was 13x slower).
    if X.dtype == nb_types.int8:
        def fold(q, X, aux):  # type: ignore[no-untyped-def]
            d = X.shape[1]
            qf = np.empty(d, dtype=np.float32)
            qc = np.float32(0.0)
            for t in range(d):
                qf[t] = q[t] * aux[t]
                qc += q[t] * aux[d + t]
            return qf, qc
        return fold
    return lambda q, X, aux: (q, np.float32(0.0))


def _folded(X, aux, j, t):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Entry (j, t) as ``_fold``'s query multiplies it: ``_value`` without int8's scale and offset."""


@overload(_folded, inline="always")
def _folded_impl(X, aux, j, t):  # type: ignore[no-untyped-def]
    if X.dtype == nb_types.int8:
        return lambda X, aux, j, t: np.float32(X[j, t])
    return lambda X, aux, j, t: _value(X, aux, j, t)


@numba.njit(inline="always")
def _row_distance(q, qf, qc, X, aux, j, metric):  # pragma: no cover - compiled
    """``_vector_distance`` against a re-rank array that may be compact (``_value``); cosine
    reads the folded query ``qf``, ``qc`` (``_fold``)."""
    acc = np.float32(0.0)
    if metric == COSINE:
        for t in range(X.shape[1]):
            acc += qf[t] * _folded(X, aux, j, t)
        return np.float32(1.0) - (acc + qc)
    for t in range(X.shape[1]):
        diff = q[t] - _value(X, aux, j, t)
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
def _gather(b, bucket_start, members, seen, cand, count):  # pragma: no cover - compiled
    """Append bucket b's rows not yet seen (nor removed) to cand; returns the new count."""
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


@numba.njit(inline="always")
def _restore(seen, dead_bits, cand, count):  # pragma: no cover - compiled
    """Reset the seen map for the next query: only the words this query touched."""
    for i in range(count):
        w = cand[i] >> 6
        seen[w] = dead_bits[w]


@numba.njit(inline="always")
def _hamming(q_words, codes, j):  # pragma: no cover - compiled
    h = 0
    for t in range(codes.shape[1]):
        h += _popcount(q_words[t] ^ codes[j, t])
    return h


@numba.njit(inline="always")
def _rerank(q, cand, count, X, aux, metric, q_words, codes, n_rerank, ham, hist, top_d,
            top_i):  # pragma: no cover - compiled
    """Exact distances of the gathered rows ``cand[:count]`` into the sorted top-k
    (``top_d``, ``top_i``), read from ``X`` (float32, or a compact copy decoded with
    ``aux``, see ``_value``); with ``n_rerank > 0`` and row codes, only of the ``n_rerank``
    nearest by Hamming distance of their codes to ``q_words`` (ties included)."""
    qf, qc = _fold(q, X, aux)
    if n_rerank > 0 and codes.shape[1] > 0 and count > n_rerank:
        max_h = hist.shape[0]
        hist[:] = 0
        for i in range(count):
            h = _hamming(q_words, codes, cand[i])
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
        bound = top_d[-1]
        for i in range(count):
            if ham[i] <= radius:
                j = cand[i]
                dist = _row_distance(q, qf, qc, X, aux, j, metric)
                if dist < bound:
                    bound = push(top_d, top_i, dist, j)
    elif metric == COSINE:  # the metric a constant in each loop (``_measure``)
        _measure(q, qf, qc, X, aux, cand, count, COSINE, top_d, top_i)
    else:
        _measure(q, qf, qc, X, aux, cand, count, EUCLIDEAN, top_d, top_i)


@numba.njit(inline="always")
def _measure(q, qf, qc, X, aux, cand, count, metric, top_d, top_i):  # pragma: no cover
    """Exact distances of the rows ``cand[:count]`` into the top-k.  Called with the metric
    as a constant: read at run time in the loop, an int8 scan was not vectorised (46 ns a
    128-d row against 14)."""
    bound = top_d[-1]
    for i in range(count):
        j = cand[i]
        dist = _row_distance(q, qf, qc, X, aux, j, metric)
        if dist < bound:
            bound = push(top_d, top_i, dist, j)


@numba.njit(inline="always")
def _probe_until(q, keys, tables, scores, row, stop, table_start, bucket_keys, bucket_start,
                 members, seen, cand, X, aux, metric, top_d, top_i):  # pragma: no cover - compiled
    """Adaptive probing: walk the probe sequence in order, measuring each bucket's new rows
    at once, and stop before the first probe past the home buckets whose score exceeds
    ``stop`` x the k-th distance found so far: its rows would have to lie that far beyond the
    flipped planes, which rows nearer than the k-th rarely do (the ratio is learned at build,
    ``index.autotune``).  Near neighbours found early end the walk early.  Returns the rows
    gathered and the probes used."""
    n_home = len(table_start) - 1
    k = len(top_d)
    count = 0
    used = 0
    qf, qc = _fold(q, X, aux)
    for p in range(keys.shape[1]):
        if p >= n_home and scores[row, p] > stop * top_d[k - 1]:
            break
        used = p + 1
        b = _bucket(keys, tables, row, p, table_start, bucket_keys)
        if b < 0:
            continue
        start = count
        count = _gather(b, bucket_start, members, seen, cand, count)
        bound = top_d[k - 1]
        for i in range(start, count):
            j = cand[i]
            dist = _row_distance(q, qf, qc, X, aux, j, metric)
            if dist < bound:
                bound = push(top_d, top_i, dist, j)
    return count, used


@numba.njit(cache=True, fastmath=True, nogil=True)
def vectors_chunk(
    c, n_chunks, Q, probe_keys, probe_tables, table_start, bucket_keys, bucket_start, members,
    X, dead_bits, metric, q_codes, codes, n_rerank, aux, probe_scores, stop, prefilter,
    adaptive, max_h, out_i, out_d, n_cand, n_probed,
):  # pragma: no cover - compiled
    """Queries c, c + n_chunks, ... of ``_search_vectors`` into its output rows.  One function
    for the serial and the parallel build: each compiles it once, not its body inlined in a
    parallel loop (which took numba several times as long, per argument type)."""
    nq = Q.shape[0]
    n = X.shape[0]
    seen = dead_bits.copy()
    cand = np.empty(n, dtype=np.int32)
    ham = np.empty(n if prefilter else 0, dtype=np.uint16)
    hist = np.zeros(max_h, dtype=np.int64)
    for qi in range(c, nq, n_chunks):
        if adaptive:
            count, n_probed[qi] = _probe_until(
                Q[qi], probe_keys, probe_tables, probe_scores, qi, stop, table_start,
                bucket_keys, bucket_start, members, seen, cand, X, aux, metric, out_d[qi], out_i[qi])
            n_cand[qi] = count
            _restore(seen, dead_bits, cand, count)
            continue
        count = 0
        for p in range(probe_keys.shape[1]):
            b = _bucket(probe_keys, probe_tables, qi, p, table_start, bucket_keys)
            if b < 0:
                continue
            count = _gather(b, bucket_start, members, seen, cand, count)
        n_cand[qi] = count
        _restore(seen, dead_bits, cand, count)
        _rerank(Q[qi], cand, count, X, aux, metric, q_codes[qi], codes, n_rerank, ham, hist,
                out_d[qi], out_i[qi])


def _search_vectors(
    Q, probe_keys, probe_tables, table_start, bucket_keys, bucket_start, members,
    X, dead_bits, k, metric, n_chunks, q_codes, codes, n_rerank, aux, probe_scores, stop,
):  # pragma: no cover - compiled
    """Top-k of every query among the live rows of its probed buckets.

    Per query: walk the probed buckets and gather each live row once (``seen`` is a bit map
    over the rows that starts as a copy of ``dead_bits``, so removed rows are never
    gathered); then, with ``n_rerank > 0`` and per-row hash codes (the hyperplane bits of
    every table, as unsigned words), measure the Hamming distance of every gathered row's
    code to the query's and give an exact distance only to the ``n_rerank`` nearest by code
    (ties included): codes are a few bytes where a vector is hundreds.  The gathering and
    the measuring are separate loops over a flat buffer, so the random reads of codes and
    vectors are independent and overlap in the memory system.  ``X`` is the re-rank copy
    (float32 rows, or float16 bits / int8 decoded with ``aux``, see ``_value``).

    With ``stop`` > 0 and no pre-filter, each query probes adaptively (``_probe_until``,
    ``probe_scores`` the probes' scores).  Also returns the probes each query used.
    """
    nq = Q.shape[0]
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    n_probed = np.full(nq, probe_keys.shape[1], dtype=np.int64)
    prefilter = n_rerank > 0 and codes.shape[1] > 0
    adaptive = stop > 0 and not prefilter and probe_scores.shape[1] == probe_keys.shape[1]
    max_h = 64 * codes.shape[1] + 1
    for c in numba.prange(n_chunks):  # prange counts in uint64: the serial build's int64 body
        vectors_chunk(
            np.int64(c), n_chunks, Q, probe_keys, probe_tables, table_start, bucket_keys, bucket_start,
            members, X, dead_bits, metric, q_codes, codes, n_rerank, aux, probe_scores, stop, prefilter,
            adaptive, max_h, out_i, out_d, n_cand, n_probed)
    return out_i, out_d, n_cand, n_probed


@numba.njit(cache=True, fastmath=False)
def unit_rows(Q, normalise):  # pragma: no cover - compiled
    """float32 copy of the rows, unit length when ``normalise`` (zero rows stay zero), and
    whether every value is finite.  Bit for bit what ``brute.prepare`` gives: the norm sums
    the squares pairwise in float32 as numpy does.  ``fastmath=False`` is explicit: numba
    otherwise compiles a callee with its fastmath caller's flags (a division became a
    multiplication by the reciprocal, one ulp off)."""
    nq, d = Q.shape
    out = np.empty((nq, d), dtype=np.float32)
    sq = np.empty(d, dtype=np.float32)
    for i in range(nq):
        for t in range(d):
            v = np.float32(Q[i, t])
            if not np.isfinite(v):
                return out, False
            out[i, t] = v
            sq[t] = v * v
        if normalise:
            norm = np.float32(np.sqrt(_pairwise_sum(sq)))
            if norm > 0:
                for t in range(d):
                    out[i, t] = np.float32(out[i, t] / norm)
    return out, True


@numba.njit(cache=True, fastmath=False)
def _pairwise_block(a, lo, n):  # pragma: no cover - compiled
    """numpy's float32 pairwise sum of a[lo:lo+n] for n <= 128: 8 accumulators."""
    if n < 8:
        res = np.float32(0.0)
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(cache=True, fastmath=False)
def _pairwise_sum(a):  # pragma: no cover - compiled
    """numpy's float32 pairwise summation, same rounding: blocks of <= 128 summed by
    ``_pairwise_block``, larger runs split in two (the first half a multiple of 8) and the
    halves added.  An explicit stack stands in for numpy's recursion (numba cannot cache a
    recursive function)."""
    n = len(a)
    if n <= 128:
        return _pairwise_block(a, 0, n)
    depth = 64
    f_lo = np.empty(depth, dtype=np.int64)
    f_n = np.empty(depth, dtype=np.int64)
    f_stage = np.empty(depth, dtype=np.int64)
    vals = np.empty(depth, dtype=np.float32)
    sp, vp = 1, 0
    f_lo[0], f_n[0], f_stage[0] = 0, n, 0
    while sp > 0:
        top = sp - 1
        lo, m = f_lo[top], f_n[top]
        if m <= 128:
            vals[vp] = _pairwise_block(a, lo, m)
            vp += 1
            sp -= 1
            continue
        half = m // 2
        half -= half % 8
        if f_stage[top] == 0:
            f_stage[top] = 1
            f_lo[sp], f_n[sp], f_stage[sp] = lo, half, 0
            sp += 1
        elif f_stage[top] == 1:
            f_stage[top] = 2
            f_lo[sp], f_n[sp], f_stage[sp] = lo + half, m - half, 0
            sp += 1
        else:
            vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
            vp -= 1
            sp -= 1
    return vals[0]


def _search_hyperplane(
    Q, normalise, mean, planes, weights, n_probes, table_start, bucket_keys, bucket_start,
    members, X, dead_bits, k, metric, codes, code_bits, n_rerank, aux, stop,
):  # pragma: no cover - compiled
    """A few queries end to end in one call: float32 rows (unit length for cosine), random
    hyperplane keys and the multi-probe sequence (``hyperplane.query_probes``), bucket
    lookup, de-duplication and the exact re-rank (``_rerank``, as ``_search_vectors``).

    The probed buckets are resolved first, so the candidate buffer is sized by what they
    hold rather than by the rows.  ``codes`` are the row codes as ``_search_vectors`` reads
    them: ``code_bits`` > 0 when each 64-bit word packs 64 / code_bits tables' codes (low
    table first), 0 when there is one table per column.  Returns ids, distances, candidate
    counts, probes used, and False (nothing else) when a query holds NaN or infinite
    values.  With ``stop`` > 0 and no pre-filter each query probes adaptively
    (``_probe_until``).
    """
    nq = Q.shape[0]
    n = X.shape[0]
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    n_probed = np.zeros(nq, dtype=np.int64)
    A, finite = unit_rows(Q, normalise)
    if not finite:
        return out_i, out_d, n_cand, n_probed, False
    n_tables = len(table_start) - 1
    n_words = codes.shape[1]
    q_words = np.zeros(n_words, dtype=np.uint64)
    hist = np.zeros(64 * n_words + 1, dtype=np.int64)
    seen = dead_bits.copy()
    adaptive = stop > 0 and not (n_rerank > 0 and n_words > 0)
    # Adaptive walks do not know their buckets ahead: one buffer for the call.
    shared = np.empty(n if adaptive else 0, dtype=np.int32)
    for qi in range(nq):
        home, keys, tables, scores = query_probes_scored(A[qi], mean, planes, weights, n_tables, n_probes)
        if adaptive:
            count, n_probed[qi] = _probe_until(
                A[qi], keys, tables, scores, 0, stop, table_start, bucket_keys, bucket_start,
                members, seen, shared, X, aux, metric, out_d[qi], out_i[qi])
            n_cand[qi] = count
            _restore(seen, dead_bits, shared, count)
            continue
        n_probed[qi] = keys.shape[1]
        buckets = np.empty(keys.shape[1], dtype=np.int64)
        total = 0
        for p in range(keys.shape[1]):
            b = _bucket(keys, tables, 0, p, table_start, bucket_keys)
            buckets[p] = b
            if b >= 0:
                total += bucket_start[b + 1] - bucket_start[b]
        cand = np.empty(min(total, n), dtype=np.int32)
        count = 0
        for p in range(len(buckets)):
            b = buckets[p]
            if b < 0:
                continue
            count = _gather(b, bucket_start, members, seen, cand, count)
        n_cand[qi] = count
        _restore(seen, dead_bits, cand, count)
        prefilter = n_rerank > 0 and n_words > 0 and count > n_rerank
        if prefilter:
            q_words[:] = 0
            if code_bits > 0:
                per = 64 // code_bits
                # The codes keep a table's low code_bits bits: the query's key is cut to match.
                low = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(64 - code_bits)
                for t in range(n_tables):
                    q_words[t // per] |= (home[0, t] & low) << np.uint64(code_bits * (t % per))
            else:
                for t in range(n_tables):
                    q_words[t] = home[0, t]
        ham = np.empty(count if prefilter else 0, dtype=np.uint16)
        _rerank(A[qi], cand, count, X, aux, metric, q_words, codes, n_rerank, ham, hist, out_d[qi], out_i[qi])
    return out_i, out_d, n_cand, n_probed, True


def dead_bit_map(alive):  # type: ignore[no-untyped-def]
    """uint64 words, bit j set when row j is removed (alive[j] == 0); padding bits set."""
    n = len(alive)
    n_words = (n + 63) // 64
    dead = np.ones(n_words * 64, dtype=np.uint8)
    dead[:n] = np.asarray(alive, dtype=np.uint8) == 0
    return np.packbits(dead, bitorder="little").view(np.uint64).copy()


@numba.njit(inline="always")
def intersection(qa, indptr, elems, j):  # pragma: no cover - compiled
    """Size of the intersection of sorted set ``qa`` with row ``j`` of (indptr, elems)."""
    i, i1 = 0, len(qa)
    b, b1 = indptr[j], indptr[j + 1]
    inter = 0
    while i < i1 and b < b1:  # merge of two sorted sets
        if qa[i] == elems[b]:
            inter += 1
            i += 1
            b += 1
        elif qa[i] < elems[b]:
            i += 1
        else:
            b += 1
    return inter


@numba.njit(inline="always")
def _jaccard(qa, indptr, elems, j):  # pragma: no cover - compiled
    inter = intersection(qa, indptr, elems, j)
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


def _search_sets_counted(
    q_indptr, q_elems, probe_keys, probe_tables, table_start, bucket_keys, bucket_start,
    members, indptr, elems, alive, k, n_chunks, n_top,
):  # pragma: no cover - compiled
    """Collision counting (C2LSH, Gan et al. 2012): per query, count the probed bands each
    live row shares with it (with one row per band, a MinHash estimate of the Jaccard
    similarity), and give an exact Jaccard distance only to the ``n_top`` rows with the most
    collisions (equal counts: first gathered first).  With ``n_top`` >= the candidates this
    is ``_search_sets``, in the same order.  One pass over the buckets; ``counts`` is reset
    from the gathered list, so a query costs O(bucket members), not O(rows)."""
    nq = len(q_indptr) - 1
    n = len(indptr) - 1
    n_probes = probe_keys.shape[1]
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    for c in numba.prange(n_chunks):
        counts = np.zeros(n, dtype=np.int32)
        cand = np.empty(n, dtype=np.int32)
        hist = np.zeros(n_probes + 2, dtype=np.int64)
        for qi in range(c, nq, n_chunks):
            qa = q_elems[q_indptr[qi] : q_indptr[qi + 1]]
            count = 0
            for p in range(n_probes):
                b = _bucket(probe_keys, probe_tables, qi, p, table_start, bucket_keys)
                if b < 0:
                    continue
                for m in range(bucket_start[b], bucket_start[b + 1]):
                    j = members[m]
                    if alive[j] == 0:
                        continue
                    if counts[j] == 0:
                        cand[count] = j
                        count += 1
                    counts[j] += 1
            if count <= n_top:
                for i in range(count):
                    j = cand[i]
                    _insert(out_d[qi], out_i[qi], _jaccard(qa, indptr, elems, j), j)
                n_cand[qi] = count
            else:
                # The count that admits n_top rows: all above it, and the first of those at it.
                hist[:] = 0
                for i in range(count):
                    hist[min(counts[cand[i]], n_probes + 1)] += 1
                level = 0
                above = 0
                for h in range(n_probes + 1, 0, -1):
                    if above + hist[h] >= n_top:
                        level = h
                        break
                    above += hist[h]
                at_level = n_top - above
                for i in range(count):
                    j = cand[i]
                    cj = counts[j]
                    if cj < level:
                        continue
                    if cj == level:
                        if at_level == 0:
                            continue
                        at_level -= 1
                    _insert(out_d[qi], out_i[qi], _jaccard(qa, indptr, elems, j), j)
                n_cand[qi] = n_top
            for i in range(count):
                counts[cand[i]] = 0
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


def frozen(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only view (no copy).  numba compiles a kernel once per argument type,
    and a read-only array (a memory-mapped or Redis segment's) is another type than a
    writable one (built in memory): an index's arrays are frozen once when it is loaded, so
    one build of each kernel serves both (each takes a process tens of seconds to compile).
    Not per query: a view per call costs more than the read-only dispatch."""
    if not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


# numba's parallel lowering of the int8 re-rank trips its own pedantic scope check ("variable
# ... is not in scope", asking the user to report it) while compiling correct code (the int8
# answers are tested against numpy): not a message for the people who build an index.
warnings.filterwarnings("ignore", message=r"variable '.*' is not in scope", category=NumbaIRAssumptionWarning)


def _named(fn, suffix):  # type: ignore[no-untyped-def]
    """A copy of ``fn`` under another name.  numba's on-disk cache keys a function by its name
    and bytecode, not by ``parallel=``: two builds of one function would load each other's
    machine code (a lone query then paid for a thread-pool launch)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__)
    copy.__qualname__ = fn.__qualname__ + suffix
    return copy


# A parallel launch costs more than a lone query; few queries take the serial build, which
# releases the GIL so that a server's threads can search at once.
search_vectors_parallel = numba.njit(parallel=True, cache=True, fastmath=True)(
    _named(_search_vectors, "_parallel")
)
search_vectors_serial = numba.njit(cache=True, fastmath=True, nogil=True)(_named(_search_vectors, "_serial"))
search_sets_parallel = numba.njit(parallel=True, cache=True)(_named(_search_sets, "_parallel"))
search_sets_serial = numba.njit(cache=True, nogil=True)(_named(_search_sets, "_serial"))
search_sets_counted_parallel = numba.njit(parallel=True, cache=True)(
    _named(_search_sets_counted, "_parallel")
)
search_sets_counted_serial = numba.njit(cache=True, nogil=True)(_named(_search_sets_counted, "_serial"))


def _source_tag(*modules: types.ModuleType) -> str:
    """Short hash of the modules' source.  numba's disk cache notices edits to the file that
    defines a function, not to the files of the compiled functions it calls: naming the
    kernel after its callees' source makes an edit there compile a fresh kernel instead of
    loading one with the old callees inside."""
    digest = hashlib.blake2b(digest_size=6)
    for module in modules:
        try:
            digest.update(Path(str(module.__file__)).read_bytes())
        except OSError:  # no readable source (e.g. a zipped install): fall back to the name
            digest.update(module.__name__.encode())
    return digest.hexdigest()


# Serial only: it answers the few queries a parallel launch would cost more than.
search_hyperplane: Any = numba.njit(cache=True, fastmath=True, nogil=True)(
    _named(_search_hyperplane, "_" + _source_tag(hyperplane, multiprobe))
)
SERIAL_BELOW = 4


def search_vectors(Q, *args):  # type: ignore[no-untyped-def]
    kernel = search_vectors_serial if len(Q) < SERIAL_BELOW else search_vectors_parallel
    return kernel(Q, *args)


def search_sets(q_indptr, *args):  # type: ignore[no-untyped-def]
    kernel = search_sets_serial if len(q_indptr) - 1 < SERIAL_BELOW else search_sets_parallel
    return kernel(q_indptr, *args)


def search_sets_counted(q_indptr, *args):  # type: ignore[no-untyped-def]
    serial = len(q_indptr) - 1 < SERIAL_BELOW
    kernel = search_sets_counted_serial if serial else search_sets_counted_parallel
    return kernel(q_indptr, *args)


@numba.njit(cache=True, fastmath=True, nogil=True)
def rerank_vectors(Q, starts, X, live, metric, k):  # pragma: no cover - compiled
    """Exact top k of each query over its own candidate rows ``X[starts[q]:starts[q + 1]]``
    (rows fetched from elsewhere, e.g. a remote probe), skipping those with ``live`` 0:
    positions into X, distances, and the live candidates of each query."""
    nq = len(Q)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    for qi in range(nq):
        bound = out_d[qi, k - 1]
        for j in range(starts[qi], starts[qi + 1]):
            if live[j]:
                n_cand[qi] += 1
                dist = _vector_distance(Q[qi], X, j, metric)
                if dist < bound:
                    bound = push(out_d[qi], out_i[qi], dist, j)
    return out_i, out_d, n_cand


@numba.njit(cache=True, nogil=True)
def rerank_sets(q_indptr, q_elems, starts, indptr, elems, live, k):  # pragma: no cover - compiled
    """``rerank_vectors`` for sets: exact Jaccard distance over each query's candidate sets."""
    nq = len(q_indptr) - 1
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    for qi in range(nq):
        qa = q_elems[q_indptr[qi] : q_indptr[qi + 1]]
        for j in range(starts[qi], starts[qi + 1]):
            if live[j]:
                n_cand[qi] += 1
                _insert(out_d[qi], out_i[qi], _jaccard(qa, indptr, elems, j), j)
    return out_i, out_d, n_cand
