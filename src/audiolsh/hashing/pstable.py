"""p-stable projections (Datar, Immorlica, Indyk & Mirrokni 2004) for Euclidean distance.

h(x) = floor((a.x + b) / w) with a ~ N(0, I) and b ~ U[0, w).  Two points at distance c
share a hash with probability p(c) = 1 - 2 Phi(-w/c) - 2 c / (sqrt(2 pi) w) (1 - e^{-w^2 / 2c^2}).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtr  # the normal CDF; scipy.stats costs every command ~0.5 s to import

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import as_matrix, check_int, random_multipliers, register
from audiolsh.hashing.multiprobe import MAX_PERTURBED, scored_probe_sequence
from audiolsh.hashing.projection import floor_keys, project


@register
class PStableLSH:
    """L tables of K Gaussian projections quantised with ``bucket_width``."""

    name: ClassVar[str] = "pstable"

    def __init__(
        self,
        dim: int,
        *,
        n_tables: int = 8,
        n_hashes: int = 8,
        bucket_width: float = 4.0,
        seed: int = 0,
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.n_tables = check_int("n_tables", n_tables, 1, 1024)
        self.n_hashes = check_int("n_hashes", n_hashes, 1, 64)
        self.seed = check_int("seed", seed, 0)
        if not (isinstance(bucket_width, (int, float)) and math.isfinite(bucket_width)) or (
            bucket_width <= 0
        ):
            raise ParameterError(f"bucket_width must be a positive number, got {bucket_width!r}")
        self.bucket_width = float(bucket_width)
        rng = np.random.default_rng([self.seed, 0x50_53_54])
        n_proj = self.n_tables * self.n_hashes
        self.projections_ = rng.standard_normal((self.dim, n_proj)).astype(np.float32)
        self.offsets_ = rng.uniform(0, self.bucket_width, n_proj).astype(np.float32)
        self.multipliers_ = random_multipliers(rng, (self.n_tables, self.n_hashes))

    def fit(self, X: Any) -> PStableLSH:
        return self

    def project(self, X: Any) -> np.ndarray:
        """(a.x + b) / w for every projection, shape (n, L, K) float32: the same bits for a
        row whatever the batch it comes in (``projection.project``)."""
        A = as_matrix(X, self.dim)
        zero = np.zeros(self.dim, dtype=np.float32)
        P = project(A, zero, self.projections_, self.offsets_, self.bucket_width)
        return P.reshape(len(A), self.n_tables, self.n_hashes)

    def _keys(self, h: np.ndarray) -> np.ndarray:
        return (h.astype(np.int64).view(np.uint64) * self.multipliers_).sum(
            axis=2, dtype=np.uint64
        )

    def keys(self, X: Any) -> np.ndarray:
        """Home cell of every row in every table, (n, L) uint64: ``_keys(floor(project(X)))``
        without holding the projections."""
        A = as_matrix(X, self.dim)
        return floor_keys(A, self.projections_, self.offsets_, self.bucket_width, self.multipliers_)

    def probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
        keys, tables, _ = self.scored_probes(X, n_probes)
        return keys, tables

    def scored_probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``probes`` and each probe's score: the sum of the squared distances (in bucket
        widths) to the cell edges it crosses, 0 for the home cells; non-decreasing."""
        P = self.project(X)
        h = np.floor(P)
        home = self._keys(h)
        frac = P - h
        # Per coordinate the nearer neighbour slot: -1 when close to the lower edge, else +1.
        step_down = frac < 0.5
        dist = np.where(step_down, frac, 1.0 - frac)
        m = min(self.n_hashes, MAX_PERTURBED)
        order = np.argsort(dist, axis=2)[:, :, :m]
        scores = np.take_along_axis(dist, order, axis=2) ** 2
        mult = np.broadcast_to(self.multipliers_, h.shape)
        mult = np.take_along_axis(mult, order, axis=2)
        down = np.take_along_axis(step_down, order, axis=2)
        deltas = np.where(down, (~mult) + np.uint64(1), mult)
        return scored_probe_sequence(home, scores, deltas, n_probes)

    def to_config(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "dim": self.dim,
            "n_tables": self.n_tables,
            "n_hashes": self.n_hashes,
            "bucket_width": self.bucket_width,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PStableLSH:
        return cls(
            config["dim"],
            n_tables=config["n_tables"],
            n_hashes=config["n_hashes"],
            bucket_width=config["bucket_width"],
            seed=config["seed"],
        )

    def collision_probability(self, distance: float | np.ndarray) -> float | np.ndarray:
        """P[one hash equal] for two points at this Euclidean distance."""
        c = np.maximum(np.asarray(distance, dtype=np.float64), 1e-12)
        r = self.bucket_width / c
        return 1 - 2 * ndtr(-r) - 2 / (np.sqrt(2 * np.pi) * r) * (1 - np.exp(-(r**2) / 2))
