"""Random hyperplanes (Charikar 2002) for cosine similarity.

Each bit is the side of a random hyperplane through the origin (or through the data mean,
when centred: non-negative features all sit in one orthant, so uncentred planes put nearly
every point on the same side and the buckets collapse).  P[bit equal] = 1 - angle / pi.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import as_matrix, check_int, register
from audiolsh.hashing.multiprobe import MAX_PERTURBED, probe_sequence


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
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.n_tables = check_int("n_tables", n_tables, 1, 1024)
        self.n_bits = check_int("n_bits", n_bits, 1, 64)
        self.seed = check_int("seed", seed, 0)
        self.center = bool(center)
        rng = np.random.default_rng([self.seed, 0x48_59_50])
        self.planes_ = rng.standard_normal((self.dim, self.n_tables * self.n_bits)).astype(
            np.float32
        )
        self.mean_: np.ndarray | None = None
        if mean is not None:
            self.mean_ = np.asarray(mean, dtype=np.float32).reshape(self.dim)
        self._weights = np.left_shift(np.uint64(1), np.arange(self.n_bits, dtype=np.uint64))

    def fit(self, X: Any) -> HyperplaneLSH:
        """Learn the centre from data (only used when ``center`` is set)."""
        if self.center:
            self.mean_ = as_matrix(X, self.dim).mean(axis=0, dtype=np.float64).astype(np.float32)
        return self

    def project(self, X: Any) -> np.ndarray:
        """Signed distances to every plane, shape (n, L, K)."""
        A = as_matrix(X, self.dim)
        if self.center:
            if self.mean_ is None:
                raise ParameterError("a centred hyperplane family must be fit() before use")
            A = A - self.mean_
        return (A @ self.planes_).reshape(len(A), self.n_tables, self.n_bits)

    def _keys(self, proj: np.ndarray) -> np.ndarray:
        bits = (proj > 0).astype(np.uint64)
        return (bits * self._weights).sum(axis=2, dtype=np.uint64)

    def keys(self, X: Any) -> np.ndarray:
        return self._keys(self.project(X))

    def codes(self, X: Any) -> np.ndarray:
        """The raw bits, (n, L*K) bool, e.g. to measure collision rates."""
        return (self.project(X) > 0).reshape(-1, self.n_tables * self.n_bits)

    def probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
        proj = self.project(X)
        home = self._keys(proj)
        m = min(self.n_bits, MAX_PERTURBED)
        margin = np.abs(proj)
        order = np.argpartition(margin, m - 1, axis=2)[:, :, :m] if m < self.n_bits else None
        if order is None:
            order = np.argsort(margin, axis=2)
        else:
            order = np.take_along_axis(
                order, np.take_along_axis(margin, order, axis=2).argsort(axis=2), axis=2
            )
        scores = np.take_along_axis(margin, order, axis=2) ** 2
        # Flipping bit j adds +2^j if it is 0 and -2^j (mod 2^64) if it is 1.
        weight = self._weights[order]
        is_set = np.take_along_axis(proj, order, axis=2) > 0
        deltas = np.where(is_set, (~weight) + np.uint64(1), weight)
        return probe_sequence(home, scores, deltas, n_probes)

    def to_config(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "dim": self.dim,
            "n_tables": self.n_tables,
            "n_bits": self.n_bits,
            "seed": self.seed,
            "center": self.center,
            "mean": None if self.mean_ is None else [float(v) for v in self.mean_],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HyperplaneLSH:
        return cls(
            config["dim"],
            n_tables=config["n_tables"],
            n_bits=config["n_bits"],
            seed=config["seed"],
            center=config.get("center", False),
            mean=config.get("mean"),
        )

    @staticmethod
    def collision_probability(cosine: float | np.ndarray) -> float | np.ndarray:
        """P[one bit equal] for two vectors with this cosine similarity."""
        return 1.0 - np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi
