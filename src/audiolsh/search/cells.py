"""The queries of a k-means (IVF) searcher in one compiled call, serial for a few and
parallel for a batch.

The general path (``VectorLSH._search``) scores the centroids with BLAS, picks the probed
cells, then gathers and re-ranks in ``kernels.search_vectors``; a lone query then spends most
of its time between the steps.  Here a query's centroid scores (summed per centroid four
dimensions a pass, vectorised across centroids), its home cells (the near ties decided again
in float64 exactly as ``KMeansLSH.keys`` does, so the home cells are the batch path's), the
other probed cells by gap (``KMeansLSH.probes``'s order, up to rounding of near-equal gaps),
the gathering and the exact re-rank run in one call.  When one table holds its rows cell by
cell (``index.families.by_cell``), a probed cell is measured where it lies.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from audiolsh.hashing import kmeans
from audiolsh.hashing.kmeans import KMeansLSH
from audiolsh.search import kernels
from audiolsh.search.brute import kernel_queries
from audiolsh.search.kernels import (
    _bucket,
    _fold,
    _gather,
    _named,
    _probe_until,
    _rerank,
    _restore,
    _row_distance,
    _source_tag,
    push,
    unit_rows,
)
from audiolsh.search.results import Neighbors


@numba.njit(cache=True, fastmath=True, nogil=True)
def _score_cells(a, cent, S):  # pragma: no cover - compiled
    """S[c] = a . centroid c, with cent (d, C): four dimensions a pass over S (a quarter of
    its loads and stores), fused multiply-adds.  Any order and rounding of the sum stays
    within tol of the exact score, which is all the home cell relies on (``query_cells``)."""
    d, n_cells = cent.shape
    S[:] = np.float32(0.0)
    j = 0
    while j + 4 <= d:
        a0, a1, a2, a3 = a[j], a[j + 1], a[j + 2], a[j + 3]
        r0, r1, r2, r3 = cent[j], cent[j + 1], cent[j + 2], cent[j + 3]
        for c in range(n_cells):
            S[c] += a0 * r0[c] + a1 * r1[c] + a2 * r2[c] + a3 * r3[c]
        j += 4
    for jj in range(j, d):
        aj = a[jj]
        row = cent[jj]
        for c in range(n_cells):
            S[c] += aj * row[c]


@numba.njit(cache=True, fastmath=False, nogil=True)
def query_cells(a, cent_t, bias, tol_scale, cmax, S, gaps, home, best_gap, best_slot, keys,
                tables):  # pragma: no cover - compiled
    """One unit query's probed cells into keys[0], tables[0] (their count is returned): the
    home cell of every table, then the other cells by ascending gap.  No fastmath here: the
    float64 decision of near ties must sum as ``kmeans._refine_rows`` does."""
    n_tables, d, n_cells = cent_t.shape
    n_probes = keys.shape[1]
    m = n_probes - min(n_tables, n_probes)
    sq = 0.0
    for j in range(d):
        sq += np.float64(a[j]) * np.float64(a[j])
    tol = np.float32(tol_scale * (np.sqrt(sq) * cmax + 0.5 * cmax * cmax + 1e-30))
    for t in range(n_tables):
        _score_cells(a, cent_t[t], S)
        best = 0
        for c in range(n_cells):
            S[c] -= bias[t, c]
            if S[c] > S[best]:
                best = c
        limit = S[best] - 2 * tol
        close = 0
        for c in range(n_cells):
            if S[c] >= limit:
                close += 1
        if close > 1:  # as kmeans._refine_rows decides
            exact_best = -np.inf
            for c in range(n_cells):
                if S[c] >= limit:
                    acc = 0.0
                    for j in range(d):
                        acc += np.float64(a[j]) * np.float64(cent_t[t, j, c])
                    acc -= np.float64(bias[t, c])
                    if acc > exact_best:
                        exact_best = acc
                        best = c
        home[t] = best
        top = np.float64(S[best])
        for c in range(n_cells):
            gaps[t * n_cells + c] = max(top - np.float64(S[c]), 0.0)
        gaps[t * n_cells + best] = np.inf
    # the m smallest gaps, ascending; equal gaps in slot order (kmeans._select's order)
    found = 0
    top_gap, top_slot = best_gap[:m], best_slot[:m]
    for s in range(n_tables * n_cells if m > 0 else 0):
        found = kernels.insert_counted(top_gap, top_slot, found, gaps[s], s)
    out = 0
    for t in range(min(n_tables, n_probes)):
        keys[0, out] = np.uint64(home[t])
        tables[0, out] = t
        out += 1
    for r in range(found):
        keys[0, out] = np.uint64(best_slot[r] % n_cells)
        tables[0, out] = best_slot[r] // n_cells
        out += 1
    return out


@numba.njit(inline="always")
def _none_removed(dead_bits, lo, hi):  # pragma: no cover - compiled
    """No row of lo to hi - 1 is removed: the few words of the bit map that cover them."""
    if hi <= lo:
        return True
    for w in range(lo >> 6, ((hi - 1) >> 6) + 1):
        if dead_bits[w]:
            return False
    return True


@numba.njit(inline="always")
def _rename(ids, names):  # pragma: no cover - compiled
    """Row numbers to the rows' ids (-1, no row, indexes names' last entry, -1)."""
    if names.shape[0]:
        for j in range(ids.shape[0]):
            ids[j] = names[ids[j]]


@numba.njit(inline="always")
def _scan_rows(q, qf, qc, X, aux, lo, hi, metric, top_d, top_i):  # pragma: no cover
    """Rows lo to hi - 1 into the top-k.  Called with the metric as a constant: with it read
    at run time in the loop, an int8 scan was not vectorised (46 ns a row against 14)."""
    bound = top_d[-1]
    for j in range(lo, hi):
        dist = _row_distance(q, qf, qc, X, aux, j, metric)
        if dist < bound:
            bound = push(top_d, top_i, dist, j)


def _cells_chunk(
    c, n_chunks, A, cent_t, bias, tol_scale, cmax, n_probes, table_start, bucket_keys,
    bucket_start, members, X, dead_bits, k, metric, aux, cell_rows, names, stop, m, contiguous,
    out_i, out_d, n_cand, used,
):  # pragma: no cover - compiled
    """Queries c, c + n_chunks, ... of ``_search_cells`` into its output rows: one function
    for the serial and the parallel build, compiled once (its body inlined in a parallel loop
    took numba several times as long, per argument type)."""
    nq = A.shape[0]
    n = X.shape[0]
    n_tables, n_cells = cent_t.shape[0], cent_t.shape[2]
    S = np.empty(n_cells, dtype=np.float32)
    gaps = np.empty(n_tables * n_cells, dtype=np.float64)
    home = np.empty(n_tables, dtype=np.int64)
    best_gap = np.empty(m, dtype=np.float64)
    best_slot = np.empty(m, dtype=np.int64)
    keys = np.empty((1, n_probes), dtype=np.uint64)
    tables = np.empty((1, n_probes), dtype=np.int32)
    seen = dead_bits.copy() if not contiguous else dead_bits[:0].copy()
    cand = np.empty(0 if contiguous else n, dtype=np.int32)
    no_words = np.zeros(0, dtype=np.uint64)
    no_codes = np.zeros((0, 0), dtype=np.uint64)
    hist = np.zeros(1, dtype=np.int64)
    ham = np.empty(0, dtype=np.uint16)
    scores = np.zeros((1, n_probes), dtype=np.float64)
    for qi in range(c, nq, n_chunks):
        out = query_cells(A[qi], cent_t, bias, tol_scale, cmax, S, gaps, home, best_gap,
                          best_slot, keys, tables)
        used[qi] = out
        top_d, top_i = out_d[qi], out_i[qi]
        if contiguous:
            q = A[qi]
            qf, qc = _fold(q, X, aux)
            count = 0
            for p in range(out):
                if stop > 0 and p >= n_tables and best_gap[p - n_tables] > stop * top_d[k - 1]:
                    used[qi] = p
                    break
                cell = keys[0, p]
                lo, hi = cell_rows[cell], cell_rows[cell + 1]
                bound = top_d[k - 1]
                if _none_removed(dead_bits, lo, hi):  # the usual case: no test per row
                    if metric == kernels.COSINE:  # the metric a constant in each loop
                        _scan_rows(q, qf, qc, X, aux, lo, hi, kernels.COSINE, top_d, top_i)
                    else:
                        _scan_rows(q, qf, qc, X, aux, lo, hi, kernels.EUCLIDEAN, top_d, top_i)
                    count += hi - lo
                    continue
                for j in range(lo, hi):
                    if dead_bits[j >> 6] & (np.uint64(1) << np.uint64(j & 63)):
                        continue
                    dist = _row_distance(q, qf, qc, X, aux, j, metric)
                    if dist < bound:
                        bound = push(top_d, top_i, dist, j)
                    count += 1
            n_cand[qi] = count
            _rename(out_i[qi], names)
            continue
        if stop > 0:  # the probes' gaps as kernels._probe_until reads scores
            for p in range(n_tables, out):
                scores[0, p] = best_gap[p - n_tables]
            count, used[qi] = _probe_until(
                A[qi], keys[:, :out], tables[:, :out], scores, 0, stop, table_start, bucket_keys,
                bucket_start, members, seen, cand, X, aux, metric, top_d, top_i)
            n_cand[qi] = count
            _restore(seen, dead_bits, cand, count)
            _rename(top_i, names)
            continue
        count = 0
        for p in range(out):
            b = _bucket(keys, tables, 0, p, table_start, bucket_keys)
            if b >= 0:
                count = _gather(b, bucket_start, members, seen, cand, count)
        n_cand[qi] = count
        _restore(seen, dead_bits, cand, count)
        _rerank(A[qi], cand, count, X, aux, metric, no_words, no_codes, 0, ham, hist,
                out_d[qi], out_i[qi])
        _rename(out_i[qi], names)


def _search_cells(
    Q, normalise, cent_t, bias, tol_scale, cmax, n_probes, table_start, bucket_keys,
    bucket_start, members, X, dead_bits, k, metric, aux, cell_rows, n_chunks, names, stop,
):  # pragma: no cover - compiled
    """ids, distances, candidate counts, probes used, and False (nothing else) on a
    non-finite query.
    cent_t: centroids (L, d, C); bias: (L, C) subtracted from the dot products.  The
    gathering and re-rank are ``kernels.search_vectors``'s, compiled alike.  ``cell_rows``
    (C + 1 offsets, else empty): one table whose cell c holds rows cell_rows[c] to
    cell_rows[c + 1] (``index.families.by_cell``): a probed cell is then measured where it
    lies, with no bucket look-up, gathering or seen map (no row is in two probed cells).
    Queries are dealt to ``n_chunks`` workers (one in the serial build).  ``names`` (n + 1,
    the last -1; else empty): the ids the answers give the rows (``VectorLSH.name_rows``).

    ``stop`` > 0 probes adaptively: the cells are measured in probe order, and the walk ends
    before the first cell past the home cells whose gap (how much farther its centroid is
    than the home one, ``query_cells``) exceeds ``stop`` x the k-th distance found so far
    (squared for Euclidean): near neighbours found early end it early, so easy queries
    probe few cells and hard ones up to ``n_probes``.  The answer is then exactly the fixed
    search's with as many probes as the query used."""
    nq = Q.shape[0]
    n_tables, n_cells = cent_t.shape[0], cent_t.shape[2]
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    n_probes = min(n_probes, n_tables * n_cells)
    used = np.full(nq, n_probes, dtype=np.int64)
    A, finite = unit_rows(Q, normalise)
    if not finite:
        return out_i, out_d, n_cand, used, False
    m = max(n_probes - n_tables, 1)
    contiguous = cell_rows.shape[0] == n_cells + 1
    for c in numba.prange(n_chunks):  # prange counts in uint64: the serial build's int64 body
        cells_chunk(np.int64(c), n_chunks, A, cent_t, bias, tol_scale, cmax, n_probes, table_start,
                    bucket_keys, bucket_start, members, X, dead_bits, k, metric, aux, cell_rows, names,
                    stop, m, contiguous, out_i, out_d, n_cand, used)
    return out_i, out_d, n_cand, used, True


# fastmath as kernels.search_vectors, so distances are its own.  Serial for a few queries (a
# thread-pool launch costs more than they do, and it releases the GIL); parallel for batches.
_TAG = "_" + _source_tag(kernels, kmeans)
cells_chunk: Any = numba.njit(cache=True, fastmath=True, nogil=True)(_named(_cells_chunk, _TAG))
search_cells: Any = numba.njit(cache=True, fastmath=True, nogil=True)(_named(_search_cells, _TAG))
search_cells_parallel: Any = numba.njit(cache=True, fastmath=True, parallel=True)(
    _named(_search_cells, _TAG + "_parallel")
)


def cell_rows(tables: Any, n_rows: int, n_cells: int) -> np.ndarray:
    """Offsets of every cell's rows (C + 1) when there is one table and its cells hold
    consecutive rows in cell order (as ``index.families.by_cell`` stores them), else empty."""
    none = np.zeros(0, np.int64)
    if tables.n_tables != 1 or len(tables.members) != n_rows:
        return none
    if n_rows and not np.array_equal(tables.members, np.arange(n_rows, dtype=tables.members.dtype)):
        return none
    keys = np.asarray(tables.bucket_keys, np.int64)
    sizes = np.zeros(n_cells, np.int64)
    if len(keys) and (keys.min() < 0 or keys.max() >= n_cells or (np.diff(keys) <= 0).any()):
        return none
    sizes[keys] = np.diff(np.asarray(tables.bucket_start, np.int64))
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def fast_state(family: KMeansLSH, tables: Any, n_rows: int) -> tuple | None:
    """What ``search_cells`` reads of a fitted family and its tables, prepared once:
    centroids as (L, d, C), the bias, the tolerance scale, the largest centroid norm and
    the cells' row offsets (``cell_rows``)."""
    if family.centroids_ is None:
        return None
    cent_t = np.ascontiguousarray(family.centroids_.transpose(0, 2, 1))
    scale = kmeans.TOL_ULPS * (family.dim + 2) * 2.0**-24
    return (kernels.frozen(cent_t), kernels.frozen(np.ascontiguousarray(family._bias)), scale,
            family._cmax, kernels.frozen(cell_rows(tables, n_rows, family.n_cells)))


def search_cells_of(searcher: Any, A: np.ndarray, k: int, n_probes: int, metric: int,
                    stop: float = 0.0) -> Neighbors:
    """k nearest rows of the queries ``A`` (2-D, the searcher's dimension) of a k-means
    ``VectorLSH`` whose ``_cells`` state is set, in one compiled call (serial for a few
    queries, parallel for more); short answers widen as the general path.  ``stop`` > 0:
    adaptive probing, ``n_probes`` the most (``_search_cells``)."""
    kernel, args = _call(searcher, A, k, n_probes, metric, stop)
    return searcher._answer(args[0], kernel(*args), k, n_probes, 0)  # type: ignore[no-any-return]


def load_cells_kernel(searcher: Any, A: np.ndarray, k: int, n_probes: int, metric: int,
                      stop: float = 0.0) -> None:
    """Load the kernel ``search_cells_of`` would run for these queries (from numba's cache),
    without running it: a parallel call costs a thread-pool round trip even for one row."""
    kernel, args = _call(searcher, A, k, n_probes, metric, stop)
    kernel.compile(tuple(numba.typeof(a) for a in args))


def _call(searcher: Any, A: np.ndarray, k: int, n_probes: int, metric: int,
          stop: float) -> tuple[Any, tuple]:
    cent_t, bias, scale, cmax, offsets = searcher._cells
    A = kernel_queries(A)
    if len(A) < kernels.SERIAL_BELOW:
        kernel, chunks = search_cells, 1
    else:
        kernel, chunks = search_cells_parallel, min(len(A), 4 * numba.get_num_threads())
    return kernel, (
        A, searcher.metric == "cosine", cent_t, bias, scale, cmax, n_probes, *searcher._kernel_tables,
        searcher._exact_rows[0], searcher._dead_bits, k,
        metric, searcher._exact_rows[1], offsets, chunks, searcher._names, stop,
    )
