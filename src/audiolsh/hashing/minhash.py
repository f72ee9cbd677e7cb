"""MinHash (Broder 1997) for Jaccard similarity over sets, with banding.

A set is a sorted array of 64-bit element ids; a batch of sets is CSR (indptr, elements).
Signatures are computed with multiply-add-shift hashes in one numba pass, bands of ``rows``
signature values become one 64-bit bucket key each, and ``optimal_bands`` picks bands x rows
for a similarity threshold by weighing false positives against false negatives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import check_int, random_multipliers, register


@dataclass(frozen=True)
class SetBatch:
    """n sets in CSR form: set i is ``elements[indptr[i]:indptr[i+1]]`` (sorted, unique)."""

    indptr: np.ndarray
    elements: np.ndarray

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.elements[self.indptr[i] : self.indptr[i + 1]]

    def take(self, rows: np.ndarray) -> SetBatch:
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = np.repeat(self.indptr[rows] - indptr[:-1], lengths)
        return SetBatch(indptr, self.elements[starts + np.arange(indptr[-1])])


def _element_id(x: Any) -> int:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x) & 0xFFFF_FFFF_FFFF_FFFF
    data = x if isinstance(x, bytes) else str(x).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def as_sets(sets: SetBatch | Sequence[Iterable[Any]]) -> SetBatch:
    """Normalise sets of ints, strings or bytes to a CSR batch of 64-bit element ids."""
    if isinstance(sets, SetBatch):
        return sets
    arrays = [np.unique(np.fromiter((_element_id(x) for x in s), dtype=np.uint64)) for s in sets]
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    elements = np.concatenate(arrays) if arrays else np.zeros(0, np.uint64)
    return SetBatch(indptr, elements.astype(np.uint64))


@numba.njit(cache=True, nogil=True)
def _signatures(indptr, elements, a, b):  # pragma: no cover - compiled
    n = len(indptr) - 1
    k = len(a)
    out = np.full((n, k), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    for i in range(n):
        for e in range(indptr[i], indptr[i + 1]):
            x = elements[e]
            for j in range(k):
                h = np.uint32((a[j] * x + b[j]) >> np.uint64(32))
                if h < out[i, j]:
                    out[i, j] = h
    return out


def _band_probability(s: np.ndarray, bands: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return 1.0 - (1.0 - s[None, :] ** rows[:, None]) ** bands[:, None]


def optimal_bands(
    threshold: float,
    num_perm: int,
    *,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising the weighted FP + FN areas.

    FP is the probability mass of becoming a candidate below the threshold, FN the mass of
    being missed above it, both integrated over the Jaccard similarity.
    """
    if not 0.0 < threshold < 1.0:
        raise ParameterError(f"threshold must be in (0, 1), got {threshold!r}")
    num_perm = check_int("num_perm", num_perm, 2, 4096)
    total = false_positive_weight + false_negative_weight
    if total <= 0:
        raise ParameterError("the false positive and false negative weights must not both be 0")
    pairs = np.array(
        [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)],
        dtype=np.float64,
    )
    bands, rows = pairs[:, 0], pairs[:, 1]
    s_lo = np.linspace(0.0, threshold, 201)
    s_hi = np.linspace(threshold, 1.0, 201)
    fp = np.trapezoid(_band_probability(s_lo, bands, rows), s_lo, axis=1)
    fn = np.trapezoid(1.0 - _band_probability(s_hi, bands, rows), s_hi, axis=1)
    cost = (false_positive_weight * fp + false_negative_weight * fn) / total
    best = int(np.argmin(cost))
    return int(bands[best]), int(rows[best])


@register
class MinHashLSH:
    """MinHash signatures of ``num_perm`` values, banded into ``n_bands`` tables of ``n_rows``.

    Give ``threshold`` to choose bands x rows automatically (``optimal_bands``).
    """

    name: ClassVar[str] = "minhash"

    def __init__(
        self,
        *,
        num_perm: int = 128,
        n_bands: int | None = None,
        n_rows: int | None = None,
        threshold: float | None = None,
        seed: int = 0,
    ) -> None:
        self.num_perm = check_int("num_perm", num_perm, 2, 4096)
        self.seed = check_int("seed", seed, 0)
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ParameterError(f"threshold must be in (0, 1), got {threshold!r}")
        if n_bands is None or n_rows is None:
            if n_bands is not None or n_rows is not None:
                raise ParameterError("give both n_bands and n_rows, or neither (and a threshold)")
            self.threshold: float | None = 0.5 if threshold is None else float(threshold)
            n_bands, n_rows = optimal_bands(self.threshold, self.num_perm)
        else:
            self.threshold = None if threshold is None else float(threshold)
        self.n_bands = check_int("n_bands", n_bands, 1, self.num_perm)
        self.n_rows = check_int("n_rows", n_rows, 1, self.num_perm)
        if self.n_bands * self.n_rows > self.num_perm:
            raise ParameterError(
                f"n_bands * n_rows = {self.n_bands * self.n_rows} exceeds num_perm={self.num_perm}"
            )
        rng = np.random.default_rng([self.seed, 0x4D_48])
        self.a_ = random_multipliers(rng, (self.num_perm,))
        self.b_ = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)
        self.band_multipliers_ = random_multipliers(rng, (self.n_bands, self.n_rows))

    @property
    def n_tables(self) -> int:
        return self.n_bands

    def fit(self, sets: Any) -> MinHashLSH:
        return self

    def signatures(self, sets: SetBatch | Sequence[Iterable[Any]]) -> np.ndarray:
        """(n, num_perm) uint32 MinHash signatures; an empty set has all 0xFFFFFFFF."""
        batch = as_sets(sets)
        return _signatures(batch.indptr, batch.elements, self.a_, self.b_)  # type: ignore[no-any-return]

    def keys_from_signatures(self, sig: np.ndarray) -> np.ndarray:
        used = sig[:, : self.n_bands * self.n_rows].astype(np.uint64)
        bands = used.reshape(len(sig), self.n_bands, self.n_rows)
        return (bands * self.band_multipliers_).sum(axis=2, dtype=np.uint64)

    def keys(self, sets: Any) -> np.ndarray:
        return self.keys_from_signatures(self.signatures(sets))

    def probes(self, sets: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
        # Band keys have no neighbouring buckets: every band is probed once.
        home = self.keys(sets)
        # a writable copy for any row count: one numba type for a lone query and a batch
        return home, np.tile(np.arange(self.n_bands, dtype=np.int32), (len(home), 1))

    @staticmethod
    def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
        """Share of equal signature values, row by row."""
        return np.mean(np.asarray(sig_a) == np.asarray(sig_b), axis=-1)

    def candidate_probability(self, jaccard: float | np.ndarray) -> np.ndarray:
        """P[two sets share at least one band bucket] = 1 - (1 - s^r)^b."""
        s = np.atleast_1d(np.asarray(jaccard, dtype=np.float64))
        b = np.array([self.n_bands], dtype=np.float64)
        r = np.array([self.n_rows], dtype=np.float64)
        return _band_probability(s, b, r)[0]

    def to_config(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "num_perm": self.num_perm,
            "n_bands": self.n_bands,
            "n_rows": self.n_rows,
            "threshold": self.threshold,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MinHashLSH:
        return cls(
            num_perm=config["num_perm"],
            n_bands=config["n_bands"],
            n_rows=config["n_rows"],
            threshold=config.get("threshold"),
            seed=config["seed"],
        )


def concat_sets(batches: Sequence[SetBatch]) -> SetBatch:
    """One batch holding the sets of several batches, in order."""
    if not batches:
        return SetBatch(np.zeros(1, np.int64), np.zeros(0, np.uint64))
    lengths = np.concatenate([np.diff(b.indptr) for b in batches])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return SetBatch(indptr, np.concatenate([b.elements for b in batches]).astype(np.uint64))
