"""Within-track normalisation learned from other music: which directions of a descriptor vary
inside one piece, and should count less when two windows are compared.

Two windows of one track differ by section (an intro and the theme), by instrument entries and
by dynamics; two tracks differ by what makes them different pieces. Within-class covariance
normalisation (WCCN, Hatch et al. 2006) whitens the *within-track* scatter of the
standardised vectors: directions along which one track's windows spread widely are shrunk,
directions that stay put inside a track (and so tell tracks apart) are stretched. The cosine
of the transformed vectors is a Mahalanobis-like similarity for "same piece".

A third matrix, "combined", normalises rhythm and timbre jointly (:func:`joint_rows`) for the
combined mode, so that it also weighs how the two descriptors co-vary inside a track.

The matrices are learned once, by ``benchmarks/train_normalisation.py``, from corpora that
share no track with the evaluation sets, and ship with the package as ``data/<name>.npz``
(plain arrays, no pickle). A library records the name it was built with and applies the
same matrix to its rows and to every query. They were learned on 10-s windows of game music
(the header says which corpora); a library with other windows, or other music, gets the same
matrices, which may then help less (``--normalisation none`` leaves them out).

    W = within-track covariance of the standardised windows (each minus its track's mean)
    W' = (1 - shrinkage) W + shrinkage * trace(W) / d * I
    A = W'^(-1/2)            rows are transformed as Z @ A (A is symmetric)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features.excerpts import standardize
from audiolsh.files import ast_race_retry

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT", "FORMAT", "NAMES", "Normalisation", "fit_within_track", "joint_rows", "load", "save"]

DEFAULT = "wccn-v1"
"""The normalisation new libraries use."""
NAMES = (DEFAULT, "none")
FORMAT = "audiolsh-normalisation"
FORMAT_VERSION = 1
SHRINKAGE = 0.2  # chosen on held-out tracks (timbre acc@2 0.865 at 0.2, 0.838 at 0.5)


def fit_within_track(Z: np.ndarray, labels: np.ndarray, *, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """WCCN matrix (d, d) float32 from standardised rows ``Z`` (n, d) and their track ``labels``.

    ``shrinkage`` in [0, 1] pulls the within-track covariance towards a multiple of the identity
    (1 gives a scaled identity, i.e. plain cosine): with a few thousand windows of a few hundred
    tracks, the smallest eigenvalues are noise and would be blown up otherwise.
    """
    Z = np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels)
    if Z.ndim != 2 or len(Z) != len(labels):
        raise ParameterError(f"expected (n, d) rows and n labels, got {Z.shape} and {labels.shape}")
    if not 0.0 <= shrinkage <= 1.0:
        raise ParameterError(f"shrinkage must be within 0..1, got {shrinkage!r}")
    tracks, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if np.count_nonzero(counts >= 2) < 2:
        raise ParameterError("need at least two tracks with two or more windows each")
    means = np.zeros((len(tracks), Z.shape[1]))
    np.add.at(means, inv, Z)
    means /= counts[:, None]
    D = Z - means[inv]
    W = D.T @ D / max(len(Z) - len(tracks), 1)
    d = W.shape[0]
    W = (1.0 - shrinkage) * W + shrinkage * np.trace(W) / d * np.eye(d)
    ev, V = np.linalg.eigh(W)
    ev = np.maximum(ev, 1e-12 * max(float(ev.max()), 1e-30))
    return ((V * ev**-0.5) @ V.T).astype(np.float32)


def joint_rows(parts: Sequence[np.ndarray], blocks: Sequence[tuple[int, ...]]) -> np.ndarray:
    """Rows of several descriptors side by side, every block at unit length (float32).

    ``parts``: (n, d_i) standardised rows; ``blocks``: each part's block sizes (``()``: one
    block). This is what the "combined" matrix normalises: rhythm (one block) and timbre (its
    MFCC and spectral-pattern blocks) weigh the same before the learned normalisation.
    """
    # standardize() with no centre or scale is the blocks' unit scaling alone.
    return np.concatenate([standardize(X, np.float32(0.0), np.float32(1.0), tuple(sizes) or (X.shape[1],))
                           for X, sizes in zip(parts, blocks)], axis=1)


@dataclass(frozen=True)
class Normalisation:
    """Learned matrices by mode, and where they came from (``meta``: corpora, sizes, shrinkage)."""

    name: str
    matrices: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def matrix(self, mode: str, dim: int) -> np.ndarray | None:
        """The mode's matrix, None when this normalisation has none for it; raises when it was
        learned for vectors of another dimension (the descriptor changed since)."""
        A = self.matrices.get(mode)
        if A is None:
            return None
        if A.shape != (dim, dim):
            raise ParameterError(
                f"normalisation {self.name!r} was learned for {mode} vectors of dimension {A.shape[0]},"
                f" these have {dim}: retrain it (benchmarks/train_normalisation.py) or use 'none'"
            )
        return A


def save(path: str, name: str, matrices: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a normalisation as a plain npz: one float32 array per mode and a JSON header."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name, **meta}
    arrays = {f"mode_{m}": np.asarray(A, np.float32) for m, A in matrices.items()}
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)  # type: ignore[arg-type]


def _read(name: str) -> Normalisation:
    if name not in NAMES:
        raise ParameterError(f"unknown normalisation {name!r}: choose from {list(NAMES)}")
    res = resources.files("audiolsh.features").joinpath("data").joinpath(f"{name}.npz")
    if not res.is_file():
        raise ParameterError(f"normalisation {name!r}: its file is missing from the installed package data")
    with resources.as_file(res) as path:
        header, matrices = ast_race_retry(partial(_load, path))
    for A in matrices.values():
        A.setflags(write=False)  # shared by every library of the process
    return Normalisation(name, matrices, header)


def _load(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["header"]).decode())
        if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
            raise ParameterError(f"{path}: not a normalisation of format version {FORMAT_VERSION}")
        return header, {k[len("mode_"):]: np.array(data[k]) for k in data.files if k.startswith("mode_")}


@lru_cache(maxsize=4)
def load(name: str) -> Normalisation | None:
    """The shipped normalisation called ``name``; None for "none"."""
    if name == "none":
        return None
    return _read(name)
