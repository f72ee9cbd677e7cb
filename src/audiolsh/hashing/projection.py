"""Random projections that give the same bits however the rows are batched.

A BLAS matrix product picks its summation order by the shape of the call (a lone row goes
through a matrix-vector kernel, the rows left over after the blocks through another), so
hashing rows all at once, in chunks or one at a time can give projections that differ in
the last bit, and a row within rounding of a plane or a cell edge lands in another bucket:
a build split across processes would not match one build.  Here every projection is

    out[i, c] = 0;  for k in 0..d-1 in order:  out[i, c] += (x[i, k] - mean[k]) * planes[k, c]

in float32, each operation rounded on its own (no fastmath: no reassociation, no fused
multiply-add), which is the order ``hyperplane.query_probes`` sums a lone query in.  The
loops run over blocks of rows, input dims in order, then output columns innermost: every
column is its own accumulator, so the compiler vectorises across columns without changing
any sum, and the result of a row depends on nothing but that row.  A few rows take the
serial build (no thread-pool launch), many the parallel one; both give the same bits.
"""

from __future__ import annotations

import types

import numba
import numpy as np

# Rows per block: the block's accumulators (ROWS x TILE float32) stay in the L1 cache while
# every row of the planes is read once per block.
ROWS = 16
# Output columns per tile, so that many tables do not push the accumulators out of L1.
TILE = 256
# Fewer rows than this take the serial build.
PARALLEL_FROM = 256


@numba.njit(cache=True, fastmath=False, nogil=True)
def _project_block(A, lo, hi, mean, planes, c0, c1, acc):  # pragma: no cover - compiled
    """acc[r, c - c0] = sum over k in order of (A[lo + r, k] - mean[k]) * planes[k, c].

    Four dims per pass over an accumulator, two rows per pass over the planes: a value is
    loaded and stored once per four products, each product still added on its own in k
    order, so the sums are those of one dim per pass.  The innermost loops index 1-D views
    from 0: an index numba cannot prove non-negative (c0 + c) gets a wrap-around check
    that turns the vector loads into gathers."""
    n_dim = planes.shape[0]
    width = c1 - c0
    n_rows = hi - lo
    for r in range(n_rows):
        acc[r, :width] = np.float32(0.0)
    k = 0
    while k + 4 <= n_dim:
        p0, p1, p2, p3 = planes[k, c0:c1], planes[k + 1, c0:c1], planes[k + 2, c0:c1], planes[k + 3, c0:c1]
        m0, m1, m2, m3 = mean[k], mean[k + 1], mean[k + 2], mean[k + 3]
        r = 0
        while r + 2 <= n_rows:
            x, y = A[lo + r], A[lo + r + 1]
            x0, x1, x2, x3 = x[k] - m0, x[k + 1] - m1, x[k + 2] - m2, x[k + 3] - m3
            y0, y1, y2, y3 = y[k] - m0, y[k + 1] - m1, y[k + 2] - m2, y[k + 3] - m3
            u, v = acc[r], acc[r + 1]
            for c in range(width):
                q0, q1, q2, q3 = p0[c], p1[c], p2[c], p3[c]
                u[c] = (((u[c] + x0 * q0) + x1 * q1) + x2 * q2) + x3 * q3
                v[c] = (((v[c] + y0 * q0) + y1 * q1) + y2 * q2) + y3 * q3
            r += 2
        if r < n_rows:
            x = A[lo + r]
            x0, x1, x2, x3 = x[k] - m0, x[k + 1] - m1, x[k + 2] - m2, x[k + 3] - m3
            u = acc[r]
            for c in range(width):
                u[c] = (((u[c] + x0 * p0[c]) + x1 * p1[c]) + x2 * p2[c]) + x3 * p3[c]
        k += 4
    while k < n_dim:
        p0 = planes[k, c0:c1]
        for r in range(n_rows):
            x0 = A[lo + r, k] - mean[k]
            u = acc[r]
            for c in range(width):
                u[c] += x0 * p0[c]
        k += 1


def _tile(n_cols, group):  # pragma: no cover - compiled
    """Columns per tile: whole groups (a table's K columns), about TILE in all."""
    return min(n_cols, max(1, TILE // group) * group)


def _project_chunk(A, lo, hi, mean, planes, offsets, width, out, acc):  # pragma: no cover - compiled
    """out[i] = (projection of row i + offsets) / width for the rows lo..hi."""
    n_cols = planes.shape[1]
    tile = _tile(n_cols, 1)
    for b in range(lo, hi, ROWS):
        e = min(hi, b + ROWS)
        for c0 in range(0, n_cols, tile):
            c1 = min(n_cols, c0 + tile)
            _project_block(A, b, e, mean, planes, c0, c1, acc)
            off = offsets[c0:c1]
            for r in range(e - b):
                src = acc[r]
                dst = out[b + r, c0:c1]
                for c in range(c1 - c0):
                    dst[c] = (src[c] + off[c]) / width


def _sign_chunk(A, lo, hi, mean, planes, weights, keys, acc):  # pragma: no cover - compiled
    """keys[i, t] = sum of weights[j] over the bits j of table t whose projection is > 0."""
    n_bits = len(weights)
    n_cols = planes.shape[1]
    tile = _tile(n_cols, n_bits)
    for b in range(lo, hi, ROWS):
        e = min(hi, b + ROWS)
        for c0 in range(0, n_cols, tile):
            c1 = min(n_cols, c0 + tile)
            _project_block(A, b, e, mean, planes, c0, c1, acc)
            for r in range(e - b):
                for t in range((c1 - c0) // n_bits):
                    v = acc[r, t * n_bits : (t + 1) * n_bits]
                    key = np.uint64(0)
                    for j in range(n_bits):
                        if v[j] > 0:
                            key |= weights[j]
                    keys[b + r, c0 // n_bits + t] = key


def _floor_chunk(A, lo, hi, mean, planes, offsets, width, multipliers, keys, acc):  # pragma: no cover
    """keys[i, t] = sum over j of floor((projection + offset) / width) * multipliers[t, j],
    mod 2^64 (the int64 cell numbers read as uint64)."""
    n_hashes = multipliers.shape[1]
    n_cols = planes.shape[1]
    tile = _tile(n_cols, n_hashes)
    for b in range(lo, hi, ROWS):
        e = min(hi, b + ROWS)
        for c0 in range(0, n_cols, tile):
            c1 = min(n_cols, c0 + tile)
            _project_block(A, b, e, mean, planes, c0, c1, acc)
            for r in range(e - b):
                for t in range((c1 - c0) // n_hashes):
                    v = acc[r, t * n_hashes : (t + 1) * n_hashes]
                    off = offsets[c0 + t * n_hashes : c0 + (t + 1) * n_hashes]
                    mult = multipliers[c0 // n_hashes + t]
                    key = np.uint64(0)
                    for j in range(n_hashes):
                        cell = np.int64(np.floor((v[j] + off[j]) / width))
                        key += np.uint64(cell) * mult[j]
                    keys[b + r, c0 // n_hashes + t] = key


def _chunks(n, n_chunks):  # pragma: no cover - compiled
    """Row ranges of ``n_chunks`` nearly equal chunks, each a whole number of blocks."""
    blocks = (n + ROWS - 1) // ROWS
    per = (blocks + n_chunks - 1) // n_chunks
    return per * ROWS


def _project_rows(A, mean, planes, offsets, width, n_chunks):  # pragma: no cover - compiled
    n = A.shape[0]
    out = np.empty((n, planes.shape[1]), dtype=np.float32)
    step = _chunks(n, n_chunks)
    for j in numba.prange(n_chunks):
        acc = np.empty((ROWS, _tile(planes.shape[1], 1)), dtype=np.float32)
        _project_chunk(A, min(n, j * step), min(n, (j + 1) * step), mean, planes, offsets, width, out, acc)
    return out


def _sign_rows(A, mean, planes, weights, n_chunks):  # pragma: no cover - compiled
    n = A.shape[0]
    keys = np.empty((n, planes.shape[1] // len(weights)), dtype=np.uint64)
    step = _chunks(n, n_chunks)
    for j in numba.prange(n_chunks):
        acc = np.empty((ROWS, _tile(planes.shape[1], len(weights))), dtype=np.float32)
        _sign_chunk(A, min(n, j * step), min(n, (j + 1) * step), mean, planes, weights, keys, acc)
    return keys


def _floor_rows(A, mean, planes, offsets, width, multipliers, n_chunks):  # pragma: no cover - compiled
    n = A.shape[0]
    keys = np.empty((n, multipliers.shape[0]), dtype=np.uint64)
    step = _chunks(n, n_chunks)
    for j in numba.prange(n_chunks):
        acc = np.empty((ROWS, _tile(planes.shape[1], multipliers.shape[1])), dtype=np.float32)
        _floor_chunk(
            A, min(n, j * step), min(n, (j + 1) * step), mean, planes, offsets, width, multipliers,
            keys, acc,
        )
    return keys


def _compile(fn, *, parallel=False):  # type: ignore[no-untyped-def]
    """A compiled copy of ``fn``; the parallel copy under another name, since numba's disk
    cache keys a function by name and bytecode, not by ``parallel=``."""
    if parallel:
        copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel", fn.__defaults__)
        copy.__qualname__ = fn.__qualname__ + "_parallel"
        fn = copy
    return numba.njit(cache=True, fastmath=False, nogil=True, parallel=parallel)(fn)


_helper = numba.njit(cache=True, fastmath=False, nogil=True)
_project_chunk = _helper(_project_chunk)
_sign_chunk = _helper(_sign_chunk)
_floor_chunk = _helper(_floor_chunk)
_chunks = _helper(_chunks)
_tile = _helper(_tile)
_KERNELS = {
    name: (_compile(fn), _compile(fn, parallel=True))
    for name, fn in (("project", _project_rows), ("sign", _sign_rows), ("floor", _floor_rows))
}


def _run(name: str, A: np.ndarray, *args: object) -> np.ndarray:
    serial, parallel = _KERNELS[name]
    if len(A) < PARALLEL_FROM:
        return serial(A, *args, 1)  # type: ignore[no-any-return]
    return parallel(A, *args, numba.get_num_threads())  # type: ignore[no-any-return]


def project(
    A: np.ndarray, mean: np.ndarray, planes: np.ndarray,
    offsets: np.ndarray | None = None, width: float = 1.0,
) -> np.ndarray:
    """((A - mean) @ planes + offsets) / width, (n, C) float32, summed as the module says.

    A: (n, d) float32 C-contiguous rows; mean: (d,) float32; planes: (d, C) float32.
    Without offsets (and width 1) the projection is the plain sum, bit for bit (but for
    the sign of a zero)."""
    if offsets is None:
        offsets = np.zeros(planes.shape[1], dtype=np.float32)
    return _run("project", A, mean, planes, offsets, np.float32(width))


def sign_keys(A: np.ndarray, mean: np.ndarray, planes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Hyperplane keys (n, L) uint64: bit j of table t set when the projection on column
    t * K + j (K = len(weights)) is > 0, as ``project`` gives it; weights[j] = 2^j."""
    return _run("sign", A, mean, planes, weights)


def floor_keys(
    A: np.ndarray, planes: np.ndarray, offsets: np.ndarray, width: float, multipliers: np.ndarray
) -> np.ndarray:
    """p-stable keys (n, L) uint64: sum over j of floor(project(A, 0, planes, offsets,
    width)[:, t * K + j]) * multipliers[t, j] mod 2^64, multipliers (L, K) uint64."""
    mean = np.zeros(planes.shape[0], dtype=np.float32)
    return _run("floor", A, mean, planes, offsets, np.float32(width), multipliers)
