"""Random hyperplanes (Charikar 2002) for cosine similarity.

Each bit is the side of a random hyperplane through the origin (or through the data mean,
when centred: non-negative features all sit in one orthant, so uncentred planes put nearly
every point on the same side and the buckets collapse).  P[bit equal] = 1 - angle / pi.

Partial whitening (``whiten`` = alpha > 0) adapts the planes to the data: ``fit`` learns the
mean and the covariance C = U diag(lambda) U^T of a seeded sample of rows, and the planes
become W = U diag(lambda^(-alpha/2)) U^T G (G the seeded Gaussian planes).  Hashing x with W
is hashing z = diag(lambda^(-alpha/2)) U^T (x - mean) with random planes, so in that space
P[bit equal] = 1 - angle(z1, z2) / pi still holds.  When the variance sits in a few
directions, random planes all cut the same directions and their bits are strongly
correlated (few, crowded buckets); alpha = 1 makes the bits uncorrelated but stretches the
low-variance directions, where near neighbours differ, so alpha in between is best.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import as_matrix, check_int, register
from audiolsh.hashing.multiprobe import (
    MAX_PERTURBED,
    MAX_SET_SIZE,
    perturbation_sets,
    probe_heap_scored,
    scored_probe_sequence,
)
from audiolsh.hashing.projection import project, sign_keys

FIT_SAMPLE = 100_000  # rows used to estimate the covariance for whitening
# Directions with less variance than this share of the largest are not stretched further.
EIGEN_FLOOR = 1e-6


def needs_centering(X: np.ndarray) -> bool:
    """True when the rows share a dominant direction (e.g. non-negative or dB features).

    Then most points fall on the same side of a plane through the origin; planes through
    the mean split them evenly.  The test: the mean is longer than half the rms row length.
    """
    A = np.asarray(X, dtype=np.float32)
    if len(A) == 0:
        return False
    rms = float(np.sqrt(np.mean(np.einsum("ij,ij->i", A, A))))
    return bool(np.linalg.norm(A.mean(axis=0, dtype=np.float64)) > 0.5 * rms)


@numba.njit(cache=True)
def _cheapest_flips(proj, weights, m):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Home keys (n, L), and per table the m bits nearest their plane: squared margins
    ascending (n, L, m) and what flipping each adds to the key (n, L, m): +2^j for a 0 bit,
    -2^j (mod 2^64) for a 1 bit.  One compiled pass: a lone query costs microseconds.
    Bits are ordered by a stable insertion sort of the margins (equal margins: lower bit
    first), with no allocation per table."""
    n, n_tables, n_bits = proj.shape
    home = np.zeros((n, n_tables), dtype=np.uint64)
    scores = np.empty((n, n_tables, m), dtype=np.float64)
    deltas = np.empty((n, n_tables, m), dtype=np.uint64)
    margin = np.empty(n_bits, dtype=np.float32)
    order = np.empty(n_bits, dtype=np.int64)
    for i in range(n):
        for t in range(n_tables):
            key = np.uint64(0)
            for b in range(n_bits):
                v = proj[i, t, b]
                if v > 0:
                    key |= weights[b]
                mb = abs(v)
                margin[b] = mb
                pos = b
                while pos > 0 and margin[order[pos - 1]] > mb:
                    order[pos] = order[pos - 1]
                    pos -= 1
                order[pos] = b
            home[i, t] = key
            for j in range(m):
                b = order[j]
                scores[i, t, j] = np.float64(margin[b]) ** 2
                if proj[i, t, b] > 0:
                    deltas[i, t, j] = ~weights[b] + np.uint64(1)
                else:
                    deltas[i, t, j] = weights[b]
    return home, scores, deltas


@numba.njit(cache=True, fastmath=False)
def query_probes(q, mean, planes, weights, n_tables, n_probes):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``query_probes_scored`` without the scores."""
    home, keys, tables, _ = query_probes_scored(q, mean, planes, weights, n_tables, n_probes)
    return home, keys, tables


@numba.njit(cache=True, fastmath=False)
def query_probes_scored(q, mean, planes, weights, n_tables, n_probes):  # type: ignore[no-untyped-def]  # pragma: no cover
    """One query's home keys (1, L) and its multi-probe sequence (keys (1, P) uint64, tables
    (1, P) int32, scores (1, P) float64), as ``HyperplaneLSH.probes`` gives them, without
    leaving compiled code:
    the projection of q - mean on the (dim, L*K) planes, ``_cheapest_flips`` and the probe
    heap.  ``n_probes`` must already be clamped to what the tables can give (``probe_cap``).
    The projection sums in the order ``projection.project`` does, so a query gets the
    bits ``HyperplaneLSH.keys`` gives it in any batch.  No fastmath, here or (inherited) in
    the heap: the scores add in the order they do there, and no multiply-add is fused."""
    n_bits = len(weights)
    proj = np.zeros((1, n_tables, n_bits), dtype=np.float32)
    flat = proj.reshape(n_tables * n_bits)
    for i in range(len(q)):
        z = q[i] - mean[i]
        for c in range(n_tables * n_bits):
            flat[c] += z * planes[i, c]
    home, scores, deltas = _cheapest_flips(proj, weights, min(n_bits, MAX_PERTURBED))
    keys, tables, probe_scores = probe_heap_scored(home, scores, deltas, n_probes, MAX_SET_SIZE)
    return home, keys, tables, probe_scores


def probe_cap(n_tables: int, n_bits: int) -> int:
    """Most probes the tables can give: every perturbation set of every table."""
    return n_tables * len(perturbation_sets(min(n_bits, MAX_PERTURBED)))


def key_balance(
    X: Any, *, n_bits: int, seed: int = 0, center: bool = True, n_tables: int = 4,
    sample: int = 20_000,
) -> float:
    """Collision entropy of plain (unwhitened) hyperplane keys per bit, in [0, 1].

    -log2 P[two random rows share a table's bucket] / n_bits, on a seeded sample of rows:
    about 1 when the bits are independent and balanced, low when the planes all cut the same
    few high-variance directions and crowd the rows into few buckets (the case whitening is
    for).  The pair rate is the unbiased count sum c(c-1) / (m(m-1)).
    """
    A = np.asarray(X, dtype=np.float32)
    m = min(len(A), sample)
    if m < 2:
        return 1.0
    rows = np.sort(np.random.default_rng([seed, 0x42_41]).choice(len(A), m, replace=False))
    family = HyperplaneLSH(A.shape[1], n_tables=n_tables, n_bits=n_bits, seed=seed, center=center)
    S = A[rows]
    keys = family.fit(S).keys(S)
    rates = []
    for t in range(n_tables):
        _, counts = np.unique(keys[:, t], return_counts=True)
        c = counts.astype(np.float64)
        rates.append(float((c * (c - 1)).sum()) / (m * (m - 1)))
    rate = float(np.mean(rates))
    return 1.0 if rate <= 0 else min(1.0, -np.log2(rate) / n_bits)


def check_whiten(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
        0.0 <= float(value) <= 1.0
    ):
        raise ParameterError(f"whiten must be a number in [0, 1], got {value!r}")
    return float(value)


@register
class HyperplaneLSH:
    """L tables of K random-hyperplane bits.

    Parameters
    ----------
    dim : vector dimension.
    n_tables : L.
    n_bits : K, bits per table (1..64).
    seed : the planes are drawn from it, so the same config gives the same buckets.
    center : subtract ``mean_`` before hashing; ``fit(X)`` learns it.
    whiten : alpha in [0, 1]; > 0 learns data-adaptive planes at ``fit`` (see the module
        docstring) and implies ``center``.  The learned planes (dim x L*K float32) are not
        in ``to_config()``: persist ``learned_arrays()`` beside it and pass them back to
        ``from_config(config, arrays=...)``.
    planes : learned planes to restore (with ``whiten`` > 0 and ``mean``).
    """

    name: ClassVar[str] = "hyperplane"

    def __init__(
        self,
        dim: int,
        *,
        n_tables: int = 8,
        n_bits: int = 16,
        seed: int = 0,
        center: bool = False,
        mean: np.ndarray | list[float] | None = None,
        whiten: float = 0.0,
        planes: np.ndarray | None = None,
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.n_tables = check_int("n_tables", n_tables, 1, 1024)
        self.n_bits = check_int("n_bits", n_bits, 1, 64)
        self.seed = check_int("seed", seed, 0)
        self.whiten = check_whiten(whiten)
        self.center = bool(center) or self.whiten > 0
        rng = np.random.default_rng([self.seed, 0x48_59_50])
        self.planes_ = rng.standard_normal((self.dim, self.n_tables * self.n_bits)).astype(
            np.float32
        )
        self.fitted_ = self.whiten == 0
        if planes is not None:
            if self.whiten == 0:
                raise ParameterError("learned planes only go with whiten > 0")
            P = np.asarray(planes, dtype=np.float32)
            if P.shape != self.planes_.shape or not np.isfinite(P).all():
                raise ParameterError(
                    f"learned planes must be finite with shape {self.planes_.shape}, got {P.shape}"
                )
            self.planes_ = np.ascontiguousarray(P)
            self.fitted_ = True
        self.mean_: np.ndarray | None = None
        if mean is not None:
            self.mean_ = np.asarray(mean, dtype=np.float32).reshape(self.dim)
        self._weights = np.left_shift(np.uint64(1), np.arange(self.n_bits, dtype=np.uint64))

    def fit(
        self, X: Any, *, learned: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    ) -> HyperplaneLSH:
        """Learn the centre (when ``center`` is set) and, with ``whiten``, the planes;
        ``learned``: ``self.learn(X)`` already computed (a tuner trying several shapes on one
        segment's rows computes it once)."""
        if not self.center:
            return self
        mean, U, lam = learned if learned is not None else self.learn(X)
        self.mean_ = mean
        if self.whiten > 0:
            self.planes_ = self._whitened_planes(U, lam)
            self.fitted_ = True
        return self

    def learn(self, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows' mean and, with ``whiten``, the eigenvectors and (floored) eigenvalues of
        the covariance of a seeded sample of them (empty when they do not vary)."""
        A = as_matrix(X, self.dim)
        mean = A.mean(axis=0, dtype=np.float64).astype(np.float32)
        if self.whiten == 0:
            return mean, np.zeros((self.dim, 0)), np.zeros(0)
        if len(A) > FIT_SAMPLE:
            rows = np.random.default_rng([self.seed, 0x57_48]).choice(len(A), FIT_SAMPLE, replace=False)
            A = A[np.sort(rows)]
        B = A - mean  # float32 products: half the time of float64 for the same whitening
        cov = (B.T @ B).astype(np.float64) / max(len(B) - 1, 1)
        lam, U = np.linalg.eigh(cov)
        top = float(lam.max()) if len(lam) else 0.0
        if top <= 0:
            return mean, np.zeros((self.dim, 0)), np.zeros(0)
        return mean, U, np.maximum(lam, top * EIGEN_FLOOR)

    def _whitened_planes(self, U: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """U diag(lambda^(-alpha/2)) U^T G, columns scaled to unit length (signs unchanged)."""
        G = np.random.default_rng([self.seed, 0x48_59_50]).standard_normal(self.planes_.shape)
        if not len(lam):
            return G.astype(np.float32)
        W = U @ (lam[:, None] ** (-self.whiten / 2) * (U.T @ G))
        W /= np.linalg.norm(W, axis=0, keepdims=True)
        return np.ascontiguousarray(W, dtype=np.float32)

    def _rows(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """The rows as float32 and the centre they are hashed around (zeros uncentred)."""
        A = as_matrix(X, self.dim)
        if not self.center:
            return A, np.zeros(self.dim, dtype=np.float32)
        if self.mean_ is None or not self.fitted_:
            raise ParameterError("a centred hyperplane family must be fit() before use")
        return A, np.ascontiguousarray(self.mean_, dtype=np.float32)

    def project(self, X: Any) -> np.ndarray:
        """Signed distances to every plane, shape (n, L, K) float32: the same bits for a row
        whatever the batch it comes in (``projection.project``), and as ``query_probes``
        sums a lone query."""
        A, mean = self._rows(X)
        return project(A, mean, self.planes_).reshape(len(A), self.n_tables, self.n_bits)

    def _keys(self, proj: np.ndarray) -> np.ndarray:
        bits = (proj > 0).astype(np.uint64)
        return (bits * self._weights).sum(axis=2, dtype=np.uint64)

    def keys(self, X: Any) -> np.ndarray:
        """Home bucket of every row in every table, (n, L) uint64: ``_keys(project(X))``
        without holding the projections."""
        A, mean = self._rows(X)
        return sign_keys(A, mean, self.planes_, self._weights)

    def codes(self, X: Any) -> np.ndarray:
        """The raw bits, (n, L*K) bool, e.g. to measure collision rates."""
        return (self.project(X) > 0).reshape(-1, self.n_tables * self.n_bits)

    def probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
        keys, tables, _ = self.scored_probes(X, n_probes)
        return keys, tables

    def scored_probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``probes`` and each probe's score: the sum of the squared margins of the bits it
        flips (0 for the home buckets), non-decreasing along a query's sequence."""
        proj = self.project(X)
        home, scores, deltas = _cheapest_flips(
            np.ascontiguousarray(proj), self._weights, min(self.n_bits, MAX_PERTURBED)
        )
        return scored_probe_sequence(home, scores, deltas, n_probes)

    def to_config(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "dim": self.dim,
            "n_tables": self.n_tables,
            "n_bits": self.n_bits,
            "seed": self.seed,
            "center": self.center,
            "mean": None if self.mean_ is None else [float(v) for v in self.mean_],
            "whiten": self.whiten,
            # Arrays kept beside the config (see learned_arrays), and the sample they came from.
            "learned": sorted(self.learned_arrays()),
            "fit_sample": FIT_SAMPLE if self.whiten > 0 else None,
        }

    def learned_arrays(self) -> dict[str, np.ndarray]:
        """State learned at fit that is too large for the config: the whitened planes."""
        return {"planes": self.planes_} if self.whiten > 0 else {}

    @classmethod
    def from_config(
        cls, config: dict[str, Any], *, arrays: dict[str, np.ndarray] | None = None
    ) -> HyperplaneLSH:
        """Rebuild from ``to_config()``; a whitened family also needs its ``learned_arrays()``.
        Configs written before whitening existed have no ``whiten`` and mean plain planes."""
        whiten = config.get("whiten", 0.0)
        planes = None
        if whiten:
            planes = (arrays or {}).get("planes")
            if planes is None:
                raise ParameterError(
                    "a whitened hyperplane family needs its learned 'planes' array beside the config"
                )
        return cls(
            config["dim"],
            n_tables=config["n_tables"],
            n_bits=config["n_bits"],
            seed=config["seed"],
            center=config.get("center", False),
            mean=config.get("mean"),
            whiten=whiten,
            planes=planes,
        )

    @staticmethod
    def collision_probability(cosine: float | np.ndarray) -> float | np.ndarray:
        """P[one bit equal] for two vectors with this cosine similarity."""
        return 1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi
