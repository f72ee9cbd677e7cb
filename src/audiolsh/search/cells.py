"""A few queries of a k-means (IVF) searcher in one compiled call.

The general path (``VectorLSH._search``) scores the centroids with BLAS, picks the probed
cells, then gathers and re-ranks in ``kernels.search_vectors``: right for a batch, but a
lone query then spends most of its time between the steps.  Here a query's centroid scores
(summed per centroid over the dimensions in order, vectorised across centroids), its home
cells (the near ties decided again in float64 exactly as ``KMeansLSH.keys`` does, so the
home cells are the batch path's), the other probed cells by gap (``KMeansLSH.probes``'s
order, up to rounding of near-equal gaps), the gathering and the exact re-rank run in one
call.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from audiolsh.hashing import kmeans
from audiolsh.hashing.kmeans import KMeansLSH
from audiolsh.search import kernels
from audiolsh.search.kernels import _bucket, _gather, _named, _rerank, _restore, _source_tag, unit_rows
from audiolsh.search.results import Neighbors


@numba.njit(cache=True, fastmath=False, nogil=True)
def query_cells(a, cent_t, bias, tol_scale, cmax, S, gaps, home, best_gap, best_slot, keys,
                tables):  # pragma: no cover - compiled
    """One unit query's probed cells into keys[0], tables[0] (their count is returned): the
    home cell of every table, then the other cells by ascending gap.  No fastmath: the
    float64 decision of near ties must sum as ``kmeans._refine_rows`` does."""
    n_tables, d, n_cells = cent_t.shape
    n_probes = keys.shape[1]
    m = n_probes - min(n_tables, n_probes)
    sq = 0.0
    for j in range(d):
        sq += np.float64(a[j]) * np.float64(a[j])
    tol = np.float32(tol_scale * (np.sqrt(sq) * cmax + 0.5 * cmax * cmax + 1e-30))
    for t in range(n_tables):
        S[:] = np.float32(0.0)
        for j in range(d):
            aj = a[j]
            row = cent_t[t, j]
            for c in range(n_cells):
                S[c] += aj * row[c]
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


def _search_cells(
    Q, normalise, cent_t, bias, tol_scale, cmax, n_probes, table_start, bucket_keys,
    bucket_start, members, X, dead_bits, k, metric, aux,
):  # pragma: no cover - compiled
    """ids, distances, candidate counts, and False (nothing else) on a non-finite query.
    cent_t: centroids (L, d, C); bias: (L, C) subtracted from the dot products.  The
    gathering and re-rank are ``kernels.search_vectors``'s, compiled alike."""
    nq = Q.shape[0]
    n = X.shape[0]
    n_tables, n_cells = cent_t.shape[0], cent_t.shape[2]
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    n_cand = np.zeros(nq, dtype=np.int64)
    A, finite = unit_rows(Q, normalise)
    if not finite:
        return out_i, out_d, n_cand, False
    n_probes = min(n_probes, n_tables * n_cells)
    m = max(n_probes - n_tables, 1)
    S = np.empty(n_cells, dtype=np.float32)
    gaps = np.empty(n_tables * n_cells, dtype=np.float64)
    home = np.empty(n_tables, dtype=np.int64)
    best_gap = np.empty(m, dtype=np.float64)
    best_slot = np.empty(m, dtype=np.int64)
    keys = np.empty((1, n_probes), dtype=np.uint64)
    tables = np.empty((1, n_probes), dtype=np.int32)
    seen = dead_bits.copy()
    no_words = np.zeros(0, dtype=np.uint64)
    no_codes = np.zeros((0, 0), dtype=np.uint64)
    hist = np.zeros(1, dtype=np.int64)
    ham = np.empty(0, dtype=np.uint16)
    for qi in range(nq):
        out = query_cells(A[qi], cent_t, bias, tol_scale, cmax, S, gaps, home, best_gap,
                          best_slot, keys, tables)
        total = 0
        buckets = np.empty(out, dtype=np.int64)
        for p in range(out):
            b = _bucket(keys, tables, 0, p, table_start, bucket_keys)
            buckets[p] = b
            if b >= 0:
                total += bucket_start[b + 1] - bucket_start[b]
        cand = np.empty(min(total, n), dtype=np.int32)
        count = 0
        for p in range(out):
            if buckets[p] >= 0:
                count = _gather(buckets[p], bucket_start, members, seen, cand, count)
        n_cand[qi] = count
        _restore(seen, dead_bits, cand, count)
        _rerank(A[qi], cand, count, X, aux, metric, no_words, no_codes, 0, ham, hist, out_d[qi], out_i[qi])
    return out_i, out_d, n_cand, True


# Serial (a few queries); fastmath as kernels.search_vectors, so distances are its own.
search_cells: Any = numba.njit(cache=True, fastmath=True, nogil=True)(
    _named(_search_cells, "_" + _source_tag(kernels, kmeans))
)


def fast_state(family: KMeansLSH) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """What ``search_cells`` reads of a fitted family, prepared once: centroids as (L, d, C),
    the bias, the tolerance scale and the largest centroid norm."""
    if family.centroids_ is None:
        return None
    cent_t = np.ascontiguousarray(family.centroids_.transpose(0, 2, 1))
    scale = kmeans.TOL_ULPS * (family.dim + 2) * 2.0**-24
    return cent_t, np.ascontiguousarray(family._bias), scale, family._cmax


def search_few(searcher: Any, A: np.ndarray, k: int, n_probes: int, metric: int) -> Neighbors:
    """k nearest rows of a few queries ``A`` (2-D, the searcher's dimension) of a k-means
    ``VectorLSH`` whose ``_cells`` state is set; short answers widen as the general path."""
    cent_t, bias, scale, cmax = searcher._cells
    t = searcher.tables_
    if (A.dtype != np.float32 and A.dtype != np.float64) or not A.flags.c_contiguous:
        A = np.ascontiguousarray(A, dtype=np.float32)
    found = search_cells(
        A, searcher.metric == "cosine", cent_t, bias, scale, cmax, n_probes, t.table_start,
        t.bucket_keys, t.bucket_start, t.members, searcher._exact_rows[0], searcher._dead_bits, k,
        metric, searcher._exact_rows[1],
    )
    return searcher._answer(A, found, k, n_probes, 0)  # type: ignore[no-any-return]
