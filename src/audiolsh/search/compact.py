"""Compact re-rank copies of the rows: float16 or int8 beside the float32 rows.

The exact pass of a query reads a few hundred random rows; when the float32 rows do not fit
in memory those reads go to disk.  A compact copy (2 or 1 bytes a value instead of 4) keeps
the re-rank in memory while the float32 rows stay on disk (memory-mapped) for exact scans,
merges and ``Index.rows``.  int8 rows map each dimension's range [min, max] onto -127..127
(a scale and an offset per dimension, so one-signed features use every step): a value's
error is at most half a step, 1/508 of its dimension's range.  That is enough to swap the
neighbours near the k-th of clustered rows, so a query can measure the compact pass's best few
again on the float32 rows (``recheck_rows``; by default 2k for int8, ``default_recheck``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.search import kernels
from audiolsh.search.brute import kernel_queries
from audiolsh.search.kernels import _named, _source_tag, push, unit_rows

RERANK_DTYPES = ("float32", "float16", "int8")
#: Version of the compact copy's layout, kept in each segment's config.
RERANK_FORMAT = 1
CHUNK_ROWS = 65_536  # rows converted at a time: no float32 temporary of the whole matrix
# int8 rows are rechecked on the float32 rows by default, their best 2k: at 1M x 128 (tight
# clusters) that gave recall@10 0.984 against 0.897 unchecked and 0.985 for float32 rows;
# float16 loses 0.002 and is not rechecked (docs/results.md, issue #18, session 14).
INT8_RECHECK_PER_K = 2

# float16 values by their bits: the kernels read float16 rows as uint16 (numba has no
# float16) and decode them by the CPU's conversion (``kernels.HALF_IN_HARDWARE``), or where
# it has none with this table (256 KB, stays in cache).
_FLOAT16_TABLE = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
_NO_AUX = np.zeros(0, np.float32)


def check_rerank_dtype(value: object) -> str:
    if value not in RERANK_DTYPES:
        raise ParameterError(f"rerank_dtype must be one of {', '.join(RERANK_DTYPES)}, got {value!r}")
    return str(value)


@numba.njit(cache=True, nogil=True, parallel=True)
def _to_half(X, out):  # pragma: no cover - compiled
    """out = the float16 bits of X, by the CPU's conversion (``kernels.half_bits``)."""
    for i in numba.prange(X.shape[0]):
        for j in range(X.shape[1]):
            out[i, j] = kernels.half_bits(X[i, j])  # type: ignore[call-arg]


def compact_rows(X: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """The arrays a segment stores for ``dtype``: ``rerank`` (n, d) and, for int8,
    ``rerank_scale`` and ``rerank_offset`` (d,) float32 (x ~ offset + scale * code); nothing
    for float32.  Converted in chunks, so ``X`` may be
    a memory map larger than memory."""
    dtype = check_rerank_dtype(dtype)
    if dtype == "float32":
        return {}
    n, d = X.shape
    if dtype == "float16":
        out16 = np.empty((n, d), np.float16)
        for lo in range(0, n, CHUNK_ROWS):
            if kernels.HALF_IN_HARDWARE:  # numpy converts a value at a time: 9x slower
                _to_half(np.asarray(X[lo : lo + CHUNK_ROWS], np.float32),
                         out16[lo : lo + CHUNK_ROWS].view(np.uint16))
            else:
                out16[lo : lo + CHUNK_ROWS] = X[lo : lo + CHUNK_ROWS]
        return {"rerank": out16}
    top = np.full(d, -np.inf, np.float32)
    bottom = np.full(d, np.inf, np.float32)
    for lo in range(0, n, CHUNK_ROWS):
        block = X[lo : lo + CHUNK_ROWS]
        np.maximum(top, block.max(axis=0, initial=-np.inf), out=top)
        np.minimum(bottom, block.min(axis=0, initial=np.inf), out=bottom)
    if n == 0:
        top[:], bottom[:] = 0.0, 0.0
    offset = ((top + bottom) / 2).astype(np.float32)
    scale = np.where(top > bottom, (top - bottom) / 254.0, 1.0).astype(np.float32)
    out8 = np.empty((n, d), np.int8)
    for lo in range(0, n, CHUNK_ROWS):
        q = np.rint((X[lo : lo + CHUNK_ROWS] - offset) / scale)
        out8[lo : lo + CHUNK_ROWS] = np.clip(q, -127, 127)
    return {"rerank": out8, "rerank_scale": scale, "rerank_offset": offset}


def kernel_rows(vectors: np.ndarray, rerank: np.ndarray | None, scale: np.ndarray | None = None,
                offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What the search kernels read for the exact pass: the rows and their decoding table
    (``kernels._value``): float32 rows as they are, float16 as bits and the float16 table,
    int8 and its per-dimension scales then offsets."""
    if rerank is None:
        return vectors, _NO_AUX
    if rerank.shape != vectors.shape:
        raise ParameterError(f"re-rank rows of shape {rerank.shape} for rows of shape {vectors.shape}")
    if rerank.dtype == np.float16:
        return rerank.view(np.uint16), _FLOAT16_TABLE
    d = vectors.shape[1]
    if rerank.dtype == np.int8 and scale is not None and offset is not None and (
            scale.shape == offset.shape == (d,)):
        return rerank, np.concatenate([scale, offset]).astype(np.float32)
    raise ParameterError(f"re-rank rows of type {rerank.dtype} without a valid scale and offset")


def rerank_dtype_of(rerank: np.ndarray | None) -> str:
    return "float32" if rerank is None else {np.dtype(np.float16): "float16"}.get(rerank.dtype, "int8")


def _recheck_rows(Q, normalise, X, ids, k, euclidean):  # pragma: no cover - compiled
    """Per query, the k nearest of its candidate rows ``ids`` (-1: none) by their float32 rows
    X: ids and distances (1 - cos, or squared L2), nearest first."""
    nq, m = ids.shape
    out_i = np.full((nq, k), -1, dtype=np.int64)
    out_d = np.full((nq, k), np.inf, dtype=np.float32)
    A, finite = unit_rows(Q, normalise)
    if not finite:
        return out_i, out_d
    d = X.shape[1]
    for qi in range(nq):
        q = A[qi]
        bound = out_d[qi, k - 1]
        for j in range(m):
            r = ids[qi, j]
            if r < 0:
                continue
            acc = np.float32(0.0)
            if euclidean:
                for t in range(d):
                    diff = q[t] - X[r, t]
                    acc += diff * diff
            else:
                for t in range(d):
                    acc += q[t] * X[r, t]
                acc = np.float32(1.0) - acc
            if acc < bound:
                bound = push(out_d[qi], out_i[qi], acc, r)
    return out_i, out_d


# named after the callees' source (kernels._source_tag): an edit there compiles it afresh
_recheck: Any = numba.njit(cache=True, fastmath=True, nogil=True)(
    _named(_recheck_rows, "_" + _source_tag(kernels)))


def default_recheck(rerank: np.ndarray | None, k: int) -> int:
    """The rows a query of a segment with this compact copy rechecks when not told."""
    return INT8_RECHECK_PER_K * k if rerank is not None and rerank.dtype == np.int8 else 0


def recheck_rows(vectors: np.ndarray, Q: object, ids: np.ndarray, k: int,
                 metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of each query's candidates ``ids`` (row numbers, -1: none; the compact
    pass's best few) measured again on the float32 ``vectors``: ids and distances (1 - cos
    or L2), nearest first.  ``Q``: the queries as given (prepared here as ``prepare`` does).
    A query reads ``ids.shape[1]`` float32 rows (random reads of a memory map), so the swaps
    int8 makes near the k-th neighbour are undone for a few rows' reads, not the whole
    re-rank's."""
    A = Q if isinstance(Q, np.ndarray) else np.asarray(Q)
    if A.ndim == 1:
        A = A[None]
    A = kernel_queries(A)
    euclidean = metric == "euclidean"
    got, dist = _recheck(A, metric == "cosine", vectors, np.ascontiguousarray(ids, np.int64), k, euclidean)
    return got, (np.sqrt(dist) if euclidean else dist)
