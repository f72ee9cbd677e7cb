"""Cross-polytope LSH (Andoni, Indyk, Laarhoven, Razenshteyn & Schmidt 2015) for cosine.

One hash rotates x (zero-padded to D, the next power of two >= dim) and returns the vertex
of the cross-polytope {+-e_i} nearest to it: the coordinate of largest magnitude and its
sign, one of 2D values (log2 D + 1 bits).  The rotation is pseudo-random, as in FALCONN:
ROUNDS rounds of random sign flips, each followed by a fast Hadamard transform, O(D log D)
instead of a dense D x D product.  A table's key packs K such hashes; ``n_bits`` of them in
all, the last cross-polytope using only the first 2^(b-1) coordinates when b < log2 D + 1
bits are left (FALCONN's "last CP dimension"), so any key length from 1 to 64 bits works.

Multi-probe (the paper's section 5): a vertex v of one hash scores (|y|_max - y_v)^2 for
+e_v (and (|y|_max + y_v)^2 for -e_v), the home vertex 0; a probe picks one vertex per hash
and scores the sum.  Per query, a heap over partial probes (table, hash c, rank of c's vertex)
yields the probes of all tables in ascending score: a partial probe either takes the next
worse vertex of hash c or fixes it and moves on to hash c + 1 with its best vertex, which
adds nothing, so a partial probe never scores above its completions and every probe is
reached once.  The home buckets come first.

Every row is hashed in a fixed order of float32 operations (no fastmath), so its keys do
not depend on the batch it comes in.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import as_matrix, check_int, register
from audiolsh.hashing.multiprobe import heap_pop, heap_push
from audiolsh.hashing.projection import _compile

ROUNDS = 3  # sign flips + Hadamard transforms per rotation (FALCONN's default: 3)
# Vertices kept per hash for multi-probe: the heap never needs a rank past the probes asked.
MAX_RANK = 64
PARALLEL_FROM = 256


def cp_layout(dim: int, n_bits: int) -> tuple[int, int, int]:
    """(D, K, last_dim): rotation dimension, hashes per table, coordinates of the last one."""
    D = 1 << max(0, math.ceil(math.log2(dim)))
    per = int(math.log2(D)) + 1  # bits of one full cross-polytope
    k = -(-n_bits // per)
    last_bits = n_bits - (k - 1) * per
    return D, k, 1 << (last_bits - 1)


@numba.njit(cache=True, fastmath=False, nogil=True)
def _fht(v):  # pragma: no cover - compiled
    """In-place unnormalised Walsh-Hadamard transform of a power-of-two length vector."""
    n = len(v)
    h = 1
    while h < n:
        for i in range(0, n, 2 * h):
            for j in range(i, i + h):
                a = v[j]
                b = v[j + h]
                v[j] = a + b
                v[j + h] = a - b
        h *= 2


@numba.njit(cache=True, fastmath=False, nogil=True)
def _rotate(x, mean, signs, t, c, out):  # pragma: no cover - compiled
    """out = the pseudo-rotation (t, c) of x - mean, zero-padded to len(out)."""
    d = len(x)
    out[:] = np.float32(0.0)
    for i in range(d):
        out[i] = x[i] - mean[i]
    for r in range(signs.shape[2]):
        s = signs[t, c, r]
        for i in range(len(out)):
            out[i] = out[i] * s[i]
        _fht(out)


@numba.njit(cache=True, fastmath=False, nogil=True)
def _vertex(y, width):  # pragma: no cover - compiled
    """Nearest vertex of the cross-polytope on y[:width]: i for +e_i, i + width for -e_i
    (the first on a tie), and |y|_max."""
    best = y[0]
    v = 0
    if -y[0] > best:
        best = -y[0]
        v = width
    for i in range(1, width):
        if y[i] > best:
            best = y[i]
            v = i
        elif -y[i] > best:
            best = -y[i]
            v = i + width
    return v, best


@numba.njit(cache=True, fastmath=False, nogil=True)
def _row_keys(x, mean, signs, widths, shifts, keys_out, buf):  # pragma: no cover - compiled
    n_tables, k = signs.shape[0], signs.shape[1]
    for t in range(n_tables):
        key = np.uint64(0)
        for c in range(k):
            _rotate(x, mean, signs, t, c, buf)
            v, _ = _vertex(buf, widths[c])
            key = (key << np.uint64(shifts[c])) | np.uint64(v)
        keys_out[t] = key


def _keys_rows(A, mean, signs, widths, shifts):  # pragma: no cover - compiled
    n = A.shape[0]
    keys = np.empty((n, signs.shape[0]), dtype=np.uint64)
    for i in numba.prange(n):
        buf = np.empty(signs.shape[3], dtype=np.float32)
        _row_keys(A[i], mean, signs, widths, shifts, keys[i], buf)
    return keys


_keys_serial = _compile(_keys_rows)
_keys_parallel = _compile(_keys_rows, parallel=True)


def _probe_rows(A, mean, signs, widths, shifts, bases, n_probes):  # pragma: no cover - compiled
    """Per row: the home keys, then probes in ascending score (module docstring).  A heap
    entry is (score, table, ranks chosen so far in mixed radix ``bases`` (vertices kept per
    hash), 2 * hash + 1 when a vertex is not the home one)."""
    n = A.shape[0]
    n_tables, k, _, D = signs.shape
    keys = np.empty((n, n_probes), dtype=np.uint64)
    tables = np.empty((n, n_probes), dtype=np.int32)
    for i in numba.prange(n):
        buf = np.empty(D, dtype=np.float32)
        # per (table, hash): vertices by ascending score, and their scores
        max_rank = bases.max()
        verts = np.empty((n_tables, k, max_rank), dtype=np.int64)
        scores = np.empty((n_tables, k, max_rank), dtype=np.float64)
        ranks = np.empty((n_tables, k), dtype=np.int64)  # vertices kept
        for t in range(n_tables):
            for c in range(k):
                _rotate(A[i], mean, signs, t, c, buf)
                w = widths[c]
                home, top = _vertex(buf, w)
                m = min(bases[c], n_probes)  # a probe at rank r follows r of its table
                verts[t, c, 0] = home
                scores[t, c, 0] = 0.0
                kept = 1
                for v in range(2 * w):
                    if v == home:
                        continue
                    y = buf[v] if v < w else -buf[v - w]
                    s = np.float64(top - y) ** 2
                    if kept == m and s >= scores[t, c, m - 1]:
                        continue
                    pos = kept if kept < m else m - 1
                    while pos > 1 and scores[t, c, pos - 1] > s:
                        scores[t, c, pos] = scores[t, c, pos - 1]
                        verts[t, c, pos] = verts[t, c, pos - 1]
                        pos -= 1
                    scores[t, c, pos] = s
                    verts[t, c, pos] = v
                    if kept < m:
                        kept += 1
                ranks[t, c] = kept
        out = 0
        for t in range(min(n_tables, n_probes)):
            key = np.uint64(0)
            for c in range(k):
                key = (key << np.uint64(shifts[c])) | np.uint64(verts[t, c, 0])
            keys[i, out] = key
            tables[i, out] = t
            out += 1
        if out < n_probes:
            cap = n_tables + 2 * (k + 2) * (n_probes + n_tables) + 64
            h_score = np.empty(cap, dtype=np.float64)
            h_table = np.empty(cap, dtype=np.int32)
            h_ranks = np.empty(cap, dtype=np.int64)
            h_step = np.empty(cap, dtype=np.int32)
            chosen = np.zeros(k, dtype=np.int64)
            size = 0
            for t in range(n_tables):
                size = heap_push(h_score, h_table, h_ranks, h_step, size, 0.0, t, 0, 0)
            while out < n_probes and size > 0 and size + 2 <= cap:
                score, t, r = h_score[0], h_table[0], h_ranks[0]
                c, moved = h_step[0] >> 1, h_step[0] & 1
                size = heap_pop(h_score, h_table, h_ranks, h_step, size)
                if c == k:
                    if moved == 0:
                        continue  # the home bucket, already given
                    rest = r
                    for j in range(k - 1, -1, -1):
                        chosen[j] = rest % bases[j]
                        rest //= bases[j]
                    key = np.uint64(0)
                    for j in range(k):
                        key = (key << np.uint64(shifts[j])) | np.uint64(verts[t, j, chosen[j]])
                    keys[i, out] = key
                    tables[i, out] = t
                    out += 1
                    continue
                rank = r % bases[c]
                if rank + 1 < ranks[t, c]:  # the next worse vertex of hash c
                    size = heap_push(h_score, h_table, h_ranks, h_step, size,
                                     score - scores[t, c, rank] + scores[t, c, rank + 1],
                                     t, r + 1, 2 * c + 1)
                # hash c fixed: on to the next hash at its best vertex (or complete)
                nxt = r * bases[c + 1] if c + 1 < k else r
                size = heap_push(h_score, h_table, h_ranks, h_step, size, score, t, nxt,
                                 2 * (c + 1) + moved)
        for j in range(out, n_probes):  # fewer buckets than asked: repeat the last probe
            keys[i, j] = keys[i, out - 1]
            tables[i, j] = tables[i, out - 1]
    return keys, tables


_probes_serial = _compile(_probe_rows)
_probes_parallel = _compile(_probe_rows, parallel=True)


@register
class CrossPolytopeLSH:
    """L tables of ``n_bits``-bit cross-polytope keys (module docstring).

    Parameters
    ----------
    dim : vector dimension.
    n_tables : L.
    n_bits : key bits per table (1..64): K = ceil(n_bits / (log2 D + 1)) cross-polytopes.
    seed : the random signs are drawn from it, so the same config gives the same buckets.
    center : hash x - ``mean_`` (learned by ``fit``): rows that share a dominant direction
        would otherwise all land on the same few vertices.
    """

    name: ClassVar[str] = "cross-polytope"

    def __init__(
        self, dim: int, *, n_tables: int = 8, n_bits: int = 16, seed: int = 0,
        center: bool = False, mean: np.ndarray | list[float] | None = None,
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.n_tables = check_int("n_tables", n_tables, 1, 1024)
        self.n_bits = check_int("n_bits", n_bits, 1, 64)
        self.seed = check_int("seed", seed, 0)
        self.center = bool(center)
        self.rotation_dim, self.n_hashes, self.last_dim = cp_layout(self.dim, self.n_bits)
        rng = np.random.default_rng([self.seed, 0x43_50])
        signs = rng.integers(0, 2, (self.n_tables, self.n_hashes, ROUNDS, self.rotation_dim))
        self.signs_ = (signs * 2 - 1).astype(np.float32)
        widths = np.full(self.n_hashes, self.rotation_dim, np.int64)
        widths[-1] = self.last_dim
        self._widths = widths
        # bits each hash takes in the key: log2(width) + 1
        self._shifts = np.array([int(math.log2(w)) + 1 for w in widths], np.int64)
        # vertices kept per hash for multi-probe; their ranks pack into one int64
        self._bases = np.minimum(2 * widths, MAX_RANK)
        if float(np.log2(self._bases).sum()) > 62:
            raise ParameterError(f"n_bits must be <= 62 for cross-polytope hashing, got {self.n_bits}")
        self.mean_: np.ndarray | None = None
        if mean is not None:
            self.mean_ = np.asarray(mean, dtype=np.float32).reshape(self.dim)

    def fit(self, X: Any) -> CrossPolytopeLSH:
        if self.center:
            self.mean_ = as_matrix(X, self.dim).mean(axis=0, dtype=np.float64).astype(np.float32)
        return self

    def _rows(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        A = as_matrix(X, self.dim)
        if not self.center:
            return A, np.zeros(self.dim, np.float32)
        if self.mean_ is None:
            raise ParameterError("a centred cross-polytope family must be fit() before use")
        return A, self.mean_

    def keys(self, X: Any) -> np.ndarray:
        A, mean = self._rows(X)
        kernel = _keys_serial if len(A) < PARALLEL_FROM else _keys_parallel
        return kernel(A, mean, self.signs_, self._widths, self._shifts)  # type: ignore[no-any-return]

    def probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
        A, mean = self._rows(X)
        n_probes = max(1, min(int(n_probes), self.probe_cap))
        kernel = _probes_serial if len(A) < PARALLEL_FROM else _probes_parallel
        return kernel(A, mean, self.signs_, self._widths, self._shifts,  # type: ignore[no-any-return]
                      self._bases, n_probes)

    @property
    def probe_cap(self) -> int:
        """Most distinct probes: every vertex combination a table can give (capped)."""
        per_table = 1
        for b in self._bases:
            per_table = min(per_table * int(b), 1 << 20)
        return self.n_tables * per_table

    def rotate(self, X: Any) -> np.ndarray:
        """The rotated rows (n, L, K, D) float32 (for tests and diagnostics)."""
        A, mean = self._rows(X)
        out = np.empty((len(A), self.n_tables, self.n_hashes, self.rotation_dim), np.float32)
        for i in range(len(A)):
            for t in range(self.n_tables):
                for c in range(self.n_hashes):
                    _rotate(A[i], mean, self.signs_, t, c, out[i, t, c])
        return out

    def hashes(self, X: Any) -> np.ndarray:
        """Every cross-polytope's vertex (n, L, K) int64, e.g. to measure collision rates."""
        R = self.rotate(X)
        out = np.empty(R.shape[:3], np.int64)
        for c, w in enumerate(self._widths):
            y = R[:, :, c, :w]
            i = np.abs(y).argmax(axis=2)
            neg = np.take_along_axis(y, i[..., None], axis=2)[..., 0] < 0
            out[:, :, c] = i + neg * w
        return out

    def to_config(self) -> dict[str, Any]:
        return {
            "family": self.name, "dim": self.dim, "n_tables": self.n_tables,
            "n_bits": self.n_bits, "seed": self.seed, "center": self.center,
            "mean": None if self.mean_ is None else [float(v) for v in self.mean_],
            "rounds": ROUNDS,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CrossPolytopeLSH:
        if config.get("rounds", ROUNDS) != ROUNDS:
            raise ParameterError(f"cross-polytope config with {config['rounds']} rotation rounds:"
                                 f" this version hashes with {ROUNDS}")
        return cls(config["dim"], n_tables=config["n_tables"], n_bits=config["n_bits"],
                   seed=config["seed"], center=config.get("center", False), mean=config.get("mean"))

    @staticmethod
    def collision_probability(cosine: float | np.ndarray, width: int) -> np.ndarray:
        """P[one cross-polytope hash of ``width`` coordinates equal] for two vectors with this
        cosine similarity, under a Gaussian random rotation: with (u_i, w_i) i.i.d. standard
        bivariate normal pairs of correlation rho, 2 * width * P[u_1 > |u_j| and w_1 > |w_j|
        for all j > 1] = 2 width * E[F(u_1, w_1)^(width - 1); u_1, w_1 > 0], F(a, b) =
        P[|u| < a, |w| < b], by Gauss-Legendre quadrature."""
        from scipy.special import ndtr

        rho = np.atleast_1d(np.clip(np.asarray(cosine, dtype=np.float64), -1.0, 1.0))
        out = np.empty(rho.shape)
        if width == 1:  # one coordinate: the sign of a projection (a hyperplane)
            return 1.0 - np.arccos(rho) / np.pi
        nodes, weights = np.polynomial.legendre.leggauss(96)
        hi = 6.0
        g = (nodes + 1) * hi / 2  # (0, hi)
        gw = weights * hi / 2
        u = nodes * hi  # (-hi, hi) for the inner integral over u
        uw = weights * hi
        for j, r in enumerate(rho):
            if r > 1 - 1e-9:
                out[j] = 1.0
                continue
            s = math.sqrt(max(1 - r * r, 1e-18))
            a, b = g[:, None], g[None, :]
            # F(a, b) = int_{-a}^{a} phi(x) [Phi((b - r x)/s) - Phi((-b - r x)/s)] dx
            x = a[:, :, None] * (u[None, None, :] / hi)
            phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
            inner = ndtr((b[:, :, None] - r * x) / s) - ndtr((-b[:, :, None] - r * x) / s)
            F = (phi * inner * (a[:, :, None] / hi) * uw).sum(axis=2)
            dens = np.exp(-(a * a - 2 * r * a * b + b * b) / (2 * s * s)) / (2 * math.pi * s)
            out[j] = 2 * width * float((gw[:, None] * gw[None, :] * dens * F ** (width - 1)).sum())
        return out
