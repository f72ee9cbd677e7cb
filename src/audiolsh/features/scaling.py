"""Learned scalings of feature rows: the per-mode standardiser and the combined mode's fusion.

Both are fitted once, on a library's first batch (or the evaluation's training rows), stored
as JSON in the library's config and applied identically when rows are indexed and queried.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features import normalisation as wccn
from audiolsh.features.excerpts import BLOCKS, fit_standardizer, standardize
from audiolsh.search.brute import prepare

log = logging.getLogger(__name__)

#: Modes whose standardised rows go through a learned normalisation (``features.normalisation``).
NORMALISED = ("rhythm", "timbre")
#: The combined mode's vector parts, in the order its rows put them.
COMBINED_VECTORS = ("rhythm", "timbre")
#: The joint form's key for the combined vectors' statistics (``Fusion``).
JOINT = "vectors"
FUSION_PAIRS = 2000


@dataclass
class Standardizer:
    """Per-dimension centre and scale learned from the first committed batch, then frozen;
    ``blocks``: the sizes of the parts each scaled to unit length after (``excerpts.BLOCKS``);
    ``matrix``: the learned normalisation (``normalisation``, by name) applied last."""

    mean: np.ndarray
    std: np.ndarray
    blocks: tuple[int, ...] = ()
    matrix: np.ndarray | None = None
    normalisation: str | None = None

    @classmethod
    def fit(cls, X: np.ndarray, *, scale: bool = True, blocks: tuple[int, ...] = (),
            mode: str = "", normalisation: str = "none") -> Standardizer:
        mean, std = fit_standardizer(X, scale=scale)
        return cls(mean, std, tuple(blocks), *_learned(normalisation, mode, len(mean)))

    def __call__(self, X: np.ndarray, *, learned: bool = True) -> np.ndarray:
        """Standardised rows; with ``learned`` (and a matrix) normalised too."""
        if X.shape[1] != len(self.mean):
            raise ParameterError(
                f"features of dimension {X.shape[1]} do not match the library's {len(self.mean)}"
            )
        Z = standardize(X, self.mean, self.std, self.blocks)
        return Z if self.matrix is None or not learned else (Z @ self.matrix).astype(np.float32)

    def invert(self, Z: np.ndarray) -> np.ndarray:
        """Raw-scale rows that this standardiser maps back to the stored rows ``Z``."""
        Z = np.asarray(Z, np.float64)
        if self.matrix is not None:
            Z = np.linalg.solve(self.matrix.astype(np.float64), Z.T).T  # the matrix is symmetric
        return (Z * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.blocks:
            out["blocks"] = list(self.blocks)
        if self.normalisation:
            out["normalisation"] = self.normalisation
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], mode: str = "") -> Standardizer:
        mean = np.asarray(data["mean"], np.float32)
        return cls(mean, np.asarray(data["std"], np.float32),
                   tuple(int(b) for b in data.get("blocks") or ()),
                   *_learned(data.get("normalisation") or "none", mode, len(mean)))


def _learned(name: str, mode: str, dim: int) -> tuple[np.ndarray | None, str | None]:
    """The named normalisation's matrix for ``mode`` (and the name), or (None, None)."""
    learned = wccn.load(name)
    matrix = learned.matrix(mode, dim) if learned is not None and mode in NORMALISED else None
    return matrix, (name if matrix is not None else None)


def pairs_of_different_tracks(labels: np.ndarray, n_pairs: int,
                              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers (a, b) of up to ``n_pairs`` random pairs of distinct rows of different tracks
    (``labels``: track per row); of one track only, pairs of distinct rows."""
    labels = np.asarray(labels)
    n = len(labels)
    a = rng.integers(0, n, n_pairs)
    b = (a + rng.integers(1, max(n, 2), n_pairs)) % max(n, 1)
    if len(np.unique(labels)) > 1:
        for _ in range(64):  # redraw the partners from the same track
            same = np.flatnonzero(labels[a] == labels[b])
            if not len(same):
                break
            b[same] = rng.integers(0, n, len(same))
        keep = labels[a] != labels[b]
        a, b = a[keep], b[keep]
    return a, b


def _spread(values: np.ndarray) -> float:
    """The std of a part's similarities, 1 when they hardly vary (one track, copies): a
    z-score by a vanishing std would blow that part up."""
    sd = float(np.std(values))
    return sd if sd > 1e-6 else 1.0


@dataclass(frozen=True)
class Fusion:
    """Mean and std of each combined part's similarity over random pairs of windows.

    Two forms. Joint (``stats`` has "vectors" and "peaks"; ``matrix`` is the learned
    normalisation's "combined" matrix): the rhythm and timbre blocks, each at unit length, are
    concatenated and normalised jointly (:func:`features.normalisation.joint_rows`), and the
    score is the z-scored cosine of those rows plus the z-scored Jaccard. Sum (``stats`` has
    "rhythm", "timbre" and "peaks"; libraries without a learned normalisation, and those of
    formats 3 and 4): the z-scored rhythm cosine plus timbre cosine plus Jaccard.
    """

    stats: dict[str, tuple[float, float]]
    matrix: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def joint(self) -> bool:
        return JOINT in self.stats

    @property
    def weights(self) -> np.ndarray:
        """Sum form: 1/std of the vector parts, normalised to sum 1."""
        w = np.array([1.0 / self.stats[p][1] for p in COMBINED_VECTORS])
        return w / w.sum()

    def combine(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """The combined index's rows from the parts' standardised rows (rhythm, timbre).

        Joint: the jointly normalised unit-block rows. Sum: unit blocks scaled by
        sqrt(weight), so that the cosine of two rows is the weighted sum of the blocks' cosines,
        i.e. (up to a constant) the fused rhythm + timbre score."""
        if self.joint:
            if self.matrix is None:
                raise ParameterError("the joint combined form needs its learned matrix")
            X = wccn.joint_rows(blocks, [BLOCKS.get(p, ()) for p in COMBINED_VECTORS]) @ self.matrix
            return prepare(X, "cosine").astype(np.float32)
        parts = [prepare(B, "cosine") * np.float32(np.sqrt(w)) for B, w in zip(blocks, self.weights)]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def score(self, vector_cosine: np.ndarray, jaccard: np.ndarray) -> np.ndarray:
        """The fused score from the combined rows' cosine and the peak sets' Jaccard."""
        mu, sd = self.stats["peaks"]
        peaks_z = (np.asarray(jaccard) - mu) / sd
        if self.joint:
            v_mu, v_sd = self.stats[JOINT]
            return (np.asarray(vector_cosine) - v_mu) / v_sd + peaks_z
        w_sum = sum(1.0 / self.stats[p][1] for p in COMBINED_VECTORS)
        offset = sum(self.stats[p][0] / self.stats[p][1] for p in COMBINED_VECTORS)
        return np.asarray(vector_cosine) * w_sum - offset + peaks_z

    def to_dict(self) -> dict[str, list[float]]:
        return {p: [float(m), float(s)] for p, (m, s) in self.stats.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], matrix: np.ndarray | None = None) -> Fusion:
        stats = {p: (float(v[0]), float(v[1])) for p, v in data.items()}
        return cls(stats, matrix if JOINT in stats else None)

    @classmethod
    def fit(cls, vectors: dict[str, np.ndarray], sets: Any, labels: np.ndarray, *, seed: int = 0,
            n_pairs: int = FUSION_PAIRS, matrix: np.ndarray | None = None) -> Fusion:
        """Statistics from random pairs of rows (prepared vectors, peak SetBatch) of different
        tracks (``labels``: track per row), as a query meets most of a collection; rows of one
        track only give pairs of distinct rows, with a warning. With ``matrix`` (the learned
        "combined" normalisation) the joint form, else the sum form."""
        from audiolsh.search.brute import jaccard_rows

        a, b = pairs_of_different_tracks(labels, n_pairs, np.random.default_rng(seed))
        if len(np.unique(labels)) < 2:
            log.warning("fusion statistics from one track only: index more tracks in the first batch")
        stats = {}
        if matrix is not None:
            U = cls({JOINT: (0.0, 1.0), "peaks": (0.0, 1.0)}, matrix).combine(
                [vectors[p] for p in COMBINED_VECTORS])
            s = np.einsum("ij,ij->i", U[a], U[b])
            stats[JOINT] = (float(s.mean()), _spread(s))
        else:
            for p in COMBINED_VECTORS:
                U = prepare(vectors[p], "cosine")
                s = np.einsum("ij,ij->i", U[a], U[b])
                stats[p] = (float(s.mean()), _spread(s))
        j = jaccard_rows(sets.take(a), sets, b[:, None])[:, 0]
        stats["peaks"] = (float(j.mean()), _spread(j))
        return cls(stats, matrix)
