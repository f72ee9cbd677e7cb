"""Exact search: the baseline every LSH answer is measured against, with the same API."""

from __future__ import annotations

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import check_int
from audiolsh.hashing.minhash import SetBatch, as_sets
from audiolsh.search import kernels
from audiolsh.search.results import Neighbors

METRICS = {"cosine": kernels.COSINE, "euclidean": kernels.EUCLIDEAN, "jaccard": kernels.JACCARD}
QUERY_CHUNK = 256
# The BLAS expansion |x|^2 - 2x.q + |q|^2 picks a short list; its members are then measured
# directly, so distances are exact and do not depend on how queries were batched.
SHORTLIST_EXTRA = 16


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ParameterError(f"unknown metric {metric!r}: choose one of {sorted(METRICS)}")
    return metric


def kernel_queries(A: np.ndarray) -> np.ndarray:
    """Query rows as the compiled searches read them: float32 or float64 and C-contiguous as
    given, else a float32 copy (the kernels normalise and check them themselves)."""
    if (A.dtype != np.float32 and A.dtype != np.float64) or not A.flags.c_contiguous:
        return np.ascontiguousarray(A, dtype=np.float32)
    return A


def prepare(X: np.ndarray, metric: str) -> np.ndarray:
    """float32 C-contiguous rows; unit length for cosine (zero rows stay zero)."""
    A = np.ascontiguousarray(X, dtype=np.float32)
    if A.ndim == 1:
        A = A[None, :]
    if A.ndim != 2:
        raise ParameterError(f"expected a 2-D array of vectors, got shape {A.shape!r}")
    if not np.isfinite(A).all():
        raise ParameterError("vectors contain NaN or infinite values")
    if metric == "cosine":
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        A = (A / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    return A


def top_k(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise k smallest of a dense (nq, n) distance matrix, sorted."""
    n = dist.shape[1]
    kk = min(k, n)
    part = np.argpartition(dist, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(dist), 1))
    d = np.take_along_axis(dist, part, axis=1)
    order = np.argsort(d, axis=1, kind="stable")
    ids = np.full((len(dist), k), -1, dtype=np.int64)
    out = np.full((len(dist), k), np.inf, dtype=np.float32)
    ids[:, :kk] = np.take_along_axis(part, order, axis=1)
    out[:, :kk] = np.take_along_axis(d, order, axis=1)
    return ids, out


class BruteForce:
    """Exact k-NN with numpy BLAS (vectors) or a compiled merge (sets)."""

    def __init__(self, metric: str = "cosine") -> None:
        self.metric = check_metric(metric)

    def fit(self, X: np.ndarray | SetBatch | list, alive: np.ndarray | None = None) -> BruteForce:
        if self.metric == "jaccard":
            self.sets_ = as_sets(X)  # type: ignore[arg-type]
            n = len(self.sets_)
        else:
            self.vectors_ = prepare(np.asarray(X), self.metric)
            # Euclidean distances are computed around the data mean: the norm expansion then
            # cancels far less for data away from the origin.
            self.center_ = (
                self.vectors_.mean(axis=0, dtype=np.float64).astype(np.float32)
                if self.metric == "euclidean" and len(self.vectors_)
                else np.zeros(self.vectors_.shape[1], np.float32)
            )
            self.centered_ = self.vectors_ - self.center_ if self.metric == "euclidean" else self.vectors_
            self.sq_norms_ = np.einsum("ij,ij->i", self.centered_, self.centered_)
            n = len(self.vectors_)
        self.alive_ = np.ones(n, np.uint8) if alive is None else np.asarray(alive, np.uint8)
        return self

    def __len__(self) -> int:
        return len(self.alive_)

    def search(self, Q: np.ndarray | SetBatch | list, k: int = 10) -> Neighbors:
        k = check_int("k", k, 1)
        if self.metric == "jaccard":
            qs = as_sets(Q)  # type: ignore[arg-type]
            ids, dist = kernels.jaccard_all(
                qs.indptr, qs.elements, self.sets_.indptr, self.sets_.elements, self.alive_, k
            )
            return Neighbors(ids, dist, np.full(len(qs), len(self), np.int64))
        Qp = prepare(np.asarray(Q), self.metric)
        if Qp.shape[1] != self.vectors_.shape[1]:
            raise ParameterError(
                f"query dimension {Qp.shape[1]} does not match the data's {self.vectors_.shape[1]}"
            )
        dead = self.alive_ == 0
        ids_parts, dist_parts = [], []
        for start in range(0, len(Qp), QUERY_CHUNK):
            q = Qp[start : start + QUERY_CHUNK]
            if self.metric == "cosine":
                dist = 1.0 - q @ self.vectors_.T
            else:
                qc = q - self.center_
                dots = qc @ self.centered_.T
                dist = self.sq_norms_[None, :] - 2.0 * dots + np.einsum("ij,ij->i", qc, qc)[:, None]
                np.maximum(dist, 0.0, out=dist)
            if dead.any():
                dist[:, dead] = np.inf
            ids, d = top_k(dist, 2 * k + SHORTLIST_EXTRA)
            ids, d = self._exact_shortlist(q, ids, d, k)
            ids_parts.append(ids)
            dist_parts.append(d)
        ids = np.concatenate(ids_parts)
        dist = np.concatenate(dist_parts)
        return Neighbors(ids, dist.astype(np.float32), np.full(len(Qp), len(self), np.int64))

    def _exact_shortlist(
        self, q: np.ndarray, ids: np.ndarray, approx: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        valid = np.isfinite(approx)
        rows = self.vectors_[np.maximum(ids, 0)]  # (nq, m, d)
        if self.metric == "cosine":
            d = 1.0 - np.einsum("qmd,qd->qm", rows, q)
        else:
            diff = rows - q[:, None, :]
            d = np.sqrt(np.einsum("qmd,qmd->qm", diff, diff))
        d = np.where(valid, d, np.inf).astype(np.float32)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(ids, order, axis=1)
        d = np.take_along_axis(d, order, axis=1)
        ids[~np.isfinite(d)] = -1
        return ids, d


def jaccard_rows(queries: SetBatch, sets: SetBatch, ids: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of each query with chosen rows of ``sets``: ``ids`` (nq, m)
    row numbers, -1 for none; returns (nq, m) float64, -inf where ids < 0."""
    return _jaccard_rows_kernel(  # type: ignore[no-any-return]
        queries.indptr, queries.elements, sets.indptr, sets.elements,
        np.ascontiguousarray(np.atleast_2d(ids), np.int64),
    )


@numba.njit(cache=True)
def _jaccard_rows_kernel(q_indptr, q_elems, indptr, elems, ids):  # type: ignore[no-untyped-def]  # pragma: no cover
    out = np.full(ids.shape, -np.inf)
    for qi in range(ids.shape[0]):
        qa = q_elems[q_indptr[qi] : q_indptr[qi + 1]]
        for j in range(ids.shape[1]):
            row = ids[qi, j]
            if row < 0:
                continue
            inter = kernels.intersection(qa, indptr, elems, row)
            union = len(qa) + (indptr[row + 1] - indptr[row]) - inter
            out[qi, j] = inter / union if union > 0 else 0.0
    return out
