"""A learned partition as a hash: k-means cells (spherical for cosine), as an IVF index uses.

``fit`` runs Lloyd's k-means on a seeded sample of the rows, once per table (each table
its own sample and start), so the cells follow the data: dense regions get many small
cells, empty space none, where data-independent hashes cut both alike.  A row's key in a
table is the number of its nearest centroid (largest x.c for spherical cells, whose
centroids are unit vectors; largest x.c - |c|^2 / 2, the nearest in Euclidean distance,
otherwise).  Multi-probe visits the next nearest cells of every table, best first, by how
much farther their centroid is than the home one (the gap of the score, which for
Euclidean cells is half the gap of the squared distances).

Scores come from one BLAS product per table; BLAS sums in an order that depends on the
shape of the call, so a row within rounding of two centroids could land in either by the
batch it came in.  Every score is within ``tol`` of its exact value, so the rows whose best
two scores are closer than 2 tol (few) are decided again in float64, summed in a fixed
order: a row's keys do not depend on the batch.

The centroids (L, C, dim) are what the family learned: persisted beside the config
(``learned_arrays``), never recomputed on open.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import as_matrix, check_int, register
from audiolsh.hashing.projection import PARALLEL_FROM, _compile

# Lloyd iterations: faiss trains IVF with 10, but 6 gave the same recall at every probe count
# on the real embeddings and the anisotropic mixture (docs/results.md) in 0.6-0.7x the build.
N_ITER = 6
FIT_PER_CELL = 40  # sample rows per cell (faiss warns below 39)
FIT_MAX = 200_000  # ... and at most this many
ASSIGN_BLOCK = 1 << 19  # scores per block of rows assigned to cells (2 MB)
ASSIGN_BLOCKS_PER_WORKER = 4  # blocks a worker thread must have before a second one starts
TOL_ULPS = 4.0  # score error bound, in units of d * 2^-24 * |x| |c|


def _refine_rows(S, A, C, bias, tol, labels, score):  # pragma: no cover - compiled
    """Nearest cell of every row and its score, from the BLAS scores S (n, C) and labels, the
    first best score's cell of every row (``np.argmax``, vectorised): the best is decided
    again exactly (float64, fixed order; the lowest cell on a tie) among the cells within
    2 tol, for the rows that have more than one (few)."""
    n, n_cells = S.shape
    for i in numba.prange(n):
        best = labels[i]
        limit = S[i, best] - 2 * tol[i]
        close = 0
        for c in range(n_cells):
            close += np.int64(S[i, c] >= limit)
        if close > 1:
            exact_best = -np.inf
            for c in range(n_cells):
                if S[i, c] >= limit:
                    acc = 0.0
                    for j in range(A.shape[1]):
                        acc += np.float64(A[i, j]) * np.float64(C[c, j])
                    acc -= np.float64(bias[c])
                    if acc > exact_best:
                        exact_best = acc
                        best = c
            labels[i] = best
        score[i] = S[i, best]


@numba.njit(cache=True, nogil=True)
def _accumulate(X, labels, n_cells):  # pragma: no cover - compiled
    """Per cell: the sum of its rows (float64, in row order) and their count."""
    sums = np.zeros((n_cells, X.shape[1]), dtype=np.float64)
    counts = np.zeros(n_cells, dtype=np.int64)
    for i in range(X.shape[0]):
        c = labels[i]
        counts[c] += 1
        for j in range(X.shape[1]):
            sums[c, j] += X[i, j]
    return sums, counts


def _select(S, home, n_tables, n_cells, n_probes):  # pragma: no cover - compiled
    """Per row: the home cell of every table, then the n_probes - L other cells with the
    smallest gap (home score - score) across tables, ascending (equal gaps: lower table,
    then lower cell).  S: (n, L * C) scores; keys are cell numbers."""
    n = S.shape[0]
    keys = np.empty((n, n_probes), dtype=np.uint64)
    tables = np.empty((n, n_probes), dtype=np.int32)
    m = n_probes - min(n_tables, n_probes)
    for i in numba.prange(n):
        for t in range(min(n_tables, n_probes)):
            keys[i, t] = home[i, t]
            tables[i, t] = t
        if m == 0:
            continue
        gaps = np.empty(n_tables * n_cells, dtype=np.float64)
        for t in range(n_tables):
            top = np.float64(S[i, t * n_cells + home[i, t]])
            for c in range(n_cells):
                gaps[t * n_cells + c] = max(top - np.float64(S[i, t * n_cells + c]), 0.0)
            gaps[t * n_cells + home[i, t]] = np.inf  # given already
        # the m-th smallest gap, then the slots up to it in slot order, stably by gap
        limit = np.partition(gaps, m - 1)[m - 1]
        slots = np.empty(m, dtype=np.int64)
        found = 0
        for s in range(len(gaps)):
            if gaps[s] < limit:
                slots[found] = s
                found += 1
        for s in range(len(gaps)):
            if found == m:
                break
            if gaps[s] == limit:
                slots[found] = s
                found += 1
        order = np.argsort(gaps[slots], kind="mergesort")
        for r in range(m):
            s = slots[order[r]]
            keys[i, n_tables + r] = np.uint64(s % n_cells)
            tables[i, n_tables + r] = s // n_cells
    return keys, tables


_KERNELS = {
    name: (_compile(fn), _compile(fn, parallel=True))
    for name, fn in (("refine", _refine_rows), ("select", _select))
}


def _run(name: str, n_rows: int, *args: Any) -> Any:
    """The serial kernel for a few rows (a thread-pool launch costs more), else the parallel."""
    serial, parallel = _KERNELS[name]
    return (serial if n_rows < PARALLEL_FROM else parallel)(*args)


@register
class KMeansLSH:
    """L tables of C learned cells.

    Parameters
    ----------
    dim : vector dimension.
    n_tables : L partitions (1 is an IVF index; each more costs a fit and a copy of the ids).
    n_cells : C cells per table.
    seed : the fit sample and the starting centroids come from it: the same seed and the
        same rows give the same cells.
    spherical : cosine cells (unit centroids, largest x.c) instead of Euclidean ones.
    centroids : learned centroids (L, C, dim) to restore.
    """

    name: ClassVar[str] = "kmeans"

    def __init__(
        self, dim: int, *, n_tables: int = 1, n_cells: int = 256, seed: int = 0,
        spherical: bool = True, centroids: np.ndarray | None = None,
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.n_tables = check_int("n_tables", n_tables, 1, 64)
        self.n_cells = check_int("n_cells", n_cells, 1, 1 << 20)
        self.seed = check_int("seed", seed, 0)
        self.spherical = bool(spherical)
        self.centroids_: np.ndarray | None = None
        if centroids is not None:
            C = np.asarray(centroids, dtype=np.float32)
            shape = (self.n_tables, self.n_cells, self.dim)
            if C.shape != shape or not np.isfinite(C).all():
                raise ParameterError(f"learned centroids must be finite with shape {shape}, got {C.shape}")
            self._set_centroids(np.ascontiguousarray(C))

    def _set_centroids(self, C: np.ndarray) -> None:
        self.centroids_ = C
        self._bias = (
            np.zeros(C.shape[:2], np.float32) if self.spherical
            else (0.5 * np.einsum("tcd,tcd->tc", C, C)).astype(np.float32)
        )
        self._cmax = float(np.sqrt(np.einsum("tcd,tcd->tc", C, C).max(initial=0.0)))

    @property
    def default_probes(self) -> int:
        """Probes for a first answer before tuning: 1/16 of the cells of every table, >= 8."""
        return self.n_tables * min(self.n_cells, max(8, self.n_cells // 16))

    # fitting -------------------------------------------------------------------------

    def fit(self, X: Any) -> KMeansLSH:
        """Lloyd's k-means per table on a seeded sample of the rows (module docstring)."""
        A = as_matrix(X, self.dim)
        if len(A) == 0:
            raise ParameterError("k-means cells need at least one row to fit")
        cents = np.empty((self.n_tables, self.n_cells, self.dim), np.float32)
        for t in range(self.n_tables):
            cents[t] = self._fit_table(A, t)
        self._set_centroids(cents)
        return self

    def fit_rows(self, n_rows: int) -> int:
        """Rows of the seeded sample each table's Lloyd iterations run on, of ``n_rows``."""
        return min(n_rows, max(self.n_cells, min(FIT_MAX, FIT_PER_CELL * self.n_cells)))

    def _fit_table(self, A: np.ndarray, t: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, t, 0x4B_4D])
        m = self.fit_rows(len(A))
        S = A[np.sort(rng.choice(len(A), m, replace=False))] if m < len(A) else A
        start = rng.choice(len(S), self.n_cells, replace=self.n_cells > len(S))
        C = self._normalise(S[np.sort(start)].astype(np.float32))
        for _ in range(N_ITER):
            labels, score = self._nearest(S, C)
            sums, counts = _accumulate(S, labels, self.n_cells)
            empty = np.flatnonzero(counts == 0)
            new = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
            if len(empty):
                # An empty cell restarts at the rows worst served by their own cell.
                worst = np.argsort(score, kind="stable")[: len(empty)]
                new[empty[: len(worst)]] = S[worst]
                keep = empty[len(worst):]
                new[keep] = C[keep]
            C = self._normalise(new)
        return C

    def _normalise(self, C: np.ndarray) -> np.ndarray:
        if not self.spherical:
            return np.ascontiguousarray(C, dtype=np.float32)
        norms = np.linalg.norm(C, axis=1, keepdims=True)
        return np.ascontiguousarray(np.where(norms > 0, C / np.maximum(norms, 1e-30), C), dtype=np.float32)

    def _nearest(self, A: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell of every row among centroids C (C, dim), and its score."""
        bias = np.zeros(len(C), np.float32) if self.spherical else (
            0.5 * np.einsum("cd,cd->c", C, C)).astype(np.float32)
        cmax = float(np.sqrt(np.einsum("cd,cd->c", C, C).max(initial=0.0)))
        return self._assign(A, C, bias, cmax)

    def _assign(self, A: np.ndarray, C: np.ndarray, bias: np.ndarray,
                cmax: float) -> tuple[np.ndarray, np.ndarray]:
        """Nearest cell and its score of every row, ASSIGN_BLOCK scores at a time: a whole
        (n, C) product spends longer writing fresh pages than multiplying (5x at 80k x 2048),
        and a small block is still in cache when the refine pass reads it.  Near ties are
        decided exactly, so the blocking does not change a key.  Many rows: one worker per
        numba thread, each a share of the blocks with single-threaded BLAS (multithreaded
        BLAS on blocks this size spins waiting on a shared machine: 1.8x the wall time of one
        thread at load 6); the rows may be a memory map, read a block at a time."""
        n = len(A)
        labels = np.empty(n, np.int64)
        score = np.empty(n, np.float32)
        rows = max(64, ASSIGN_BLOCK // max(len(C), 1))
        starts = range(0, n, rows)
        CT = C.T
        refine = _KERNELS["refine"][0]  # serial: a block is in cache; a thread-pool launch costs more

        def work(share: range) -> None:
            buf = np.empty((min(rows, n), len(C)), np.float32)
            for lo in share:
                part = np.asarray(A[lo : lo + rows], dtype=np.float32)
                S = buf[: len(part)]
                np.matmul(part, CT, out=S)
                S -= bias
                hi = lo + len(part)
                np.argmax(S, axis=1, out=labels[lo:hi])
                refine(S, part, C, bias, self._tol(part, cmax), labels[lo:hi], score[lo:hi])

        workers = min(numba.get_num_threads(), len(starts) // ASSIGN_BLOCKS_PER_WORKER)
        if workers <= 1:
            work(starts)
        else:
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
                list(pool.map(work, [starts[w::workers] for w in range(workers)]))
        return labels, score

    def _tol(self, A: np.ndarray, cmax: float) -> np.ndarray:
        norms = np.sqrt(np.einsum("ij,ij->i", A, A, dtype=np.float64))
        scale = TOL_ULPS * (self.dim + 2) * 2.0**-24
        return (scale * (norms * cmax + 0.5 * cmax * cmax + 1e-30)).astype(np.float32)

    # hashing -------------------------------------------------------------------------

    def _fitted(self) -> np.ndarray:
        if self.centroids_ is None:
            raise ParameterError("a k-means family must be fit() before use")
        return self.centroids_

    def scores(self, X: Any) -> np.ndarray:
        """x.c (- |c|^2 / 2 for Euclidean cells) for every cell, (n, L, C) float32."""
        C = self._fitted()
        A = as_matrix(X, self.dim)
        out = np.empty((len(A), self.n_tables, self.n_cells), np.float32)
        for t in range(self.n_tables):
            np.matmul(A, C[t].T, out=out[:, t])
            out[:, t] -= self._bias[t]
        return out

    def _keys(self, A: np.ndarray) -> np.ndarray:
        C = self._fitted()
        keys = np.empty((len(A), self.n_tables), np.uint64)
        for t in range(self.n_tables):
            keys[:, t] = self._assign(A, C[t], self._bias[t], self._cmax)[0]
        return keys

    def keys(self, X: Any) -> np.ndarray:
        """Home cell of every row in every table, (n, L) uint64."""
        return self._keys(as_matrix(X, self.dim))

    def probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
        """The home cells, then the nearest other cells of all tables, best first."""
        keys, tables, _ = self.scored_probes(X, n_probes)
        return keys, tables

    def scored_probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``probes`` and every probe's gap (its table's home score less its score, 0 for the
        home cells; float64, (n, P)), what the adaptive walk compares with its stop."""
        A = as_matrix(X, self.dim)
        S = self.scores(A)
        home = self._keys(A).astype(np.int64)
        P = max(1, min(int(n_probes), self.n_tables * self.n_cells))
        flat = S.reshape(len(A), self.n_tables * self.n_cells)  # -1 cannot size no rows
        keys, tables = _run("select", len(A), flat, home, self.n_tables, self.n_cells, P)
        t = tables.astype(np.int64)
        top = np.take_along_axis(flat, t * self.n_cells + np.take_along_axis(home, t, axis=1), axis=1)
        own = np.take_along_axis(flat, t * self.n_cells + keys.astype(np.int64), axis=1)
        gaps = np.maximum(top.astype(np.float64) - own, 0.0)
        return keys, tables, gaps

    # persistence ---------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        return {
            "family": self.name, "dim": self.dim, "n_tables": self.n_tables,
            "n_cells": self.n_cells, "seed": self.seed, "spherical": self.spherical,
            "n_iter": N_ITER, "fit_per_cell": FIT_PER_CELL, "learned": ["centroids"],
        }

    def learned_arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self._fitted()}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, arrays: dict[str, np.ndarray] | None = None) -> KMeansLSH:
        centroids = (arrays or {}).get("centroids")
        if centroids is None:
            raise ParameterError("a k-means family needs its learned 'centroids' array beside the config")
        return cls(config["dim"], n_tables=config["n_tables"], n_cells=config["n_cells"],
                   seed=config["seed"], spherical=config["spherical"], centroids=centroids)
