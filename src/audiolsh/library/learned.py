"""What a library learns once and every builder and query then applies: the standardisers of
rhythm, timbre and chroma, the combined mode's fusion statistics and the peak pairs common to
the collection.

Fitting is an explicit stage (``fit``) on a deterministic sample, the library's first batch of
files in path order; its result is plain JSON in the library's config, so a builder in another
process or on another machine gets the same state from the config alone (``Learned(config)``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.features import normalisation as wccn
from audiolsh.features import peaks
from audiolsh.features.excerpts import BLOCKS
from audiolsh.features.scaling import COMBINED_VECTORS, JOINT, Fusion, Standardizer
from audiolsh.library.config import LibraryConfig

if TYPE_CHECKING:
    from audiolsh.library.extract import Extracted

log = logging.getLogger(__name__)

#: Modes whose rows are standardised with statistics of the first batch.
STANDARDISED = ("rhythm", "timbre", "chroma")
#: Chroma statistics are only centred: scaling each pitch class up to unit variance
#: amplifies the weak ones into noise.
SCALED = ("rhythm", "timbre")
NOT_FITTED = "the library learns them from its first batch (index some music, or Library.fit)"
#: The modes the combined mode fuses.
COMBINED_PARTS = ("rhythm", "timbre", "peaks")


class Learned:
    """The learned state of one library config, ready to prepare rows."""

    def __init__(self, config: LibraryConfig) -> None:
        self.config = config
        self.standardizers = {m: Standardizer.from_dict(s, m) for m, s in config.stats.items()}
        self.fusion = _load_fusion(config, self.standardizers)
        common = config.peaks_common
        self._common = np.unique(np.asarray(common or [], np.uint64))

    def missing(self) -> list[str]:
        """What the first batch has yet to give (empty once fitted)."""
        modes = self.config.modes
        out = [m for m in STANDARDISED if m in modes and m not in self.standardizers]
        if "peaks" in modes and self.config.peaks_common is None:
            out.append("peaks_common")
        if all(p in modes for p in COMBINED_PARTS) and self.fusion is None:
            out.append("fusion")
        return out

    def prepare(self, mode: str, X: np.ndarray, *, learned: bool = True) -> np.ndarray:
        """Raw features of a mode as they are stored and queried; ``learned=False`` leaves the
        learned normalisation out, as the combined mode's parts do."""
        std = self.standardizers.get(mode)
        if std is None and mode in STANDARDISED and mode in self.config.modes and len(X):
            raise ParameterError(f"no {mode} statistics yet: {NOT_FITTED}")
        return std(X, learned=learned) if std is not None else np.asarray(X, np.float32)

    def peak_sets(self, sets: Any) -> Any:
        """Peak sets (a SetBatch) as they are stored and queried: the common pairs left out."""
        if self.config.peaks_common is None and "peaks" in self.config.modes and len(sets):
            raise ParameterError(f"no common peak pairs yet: {NOT_FITTED}")
        return peaks.drop_elements(sets, self._common) if len(self._common) else sets

    def combined_rows(self, ex: Extracted) -> tuple[np.ndarray, np.ndarray]:
        """The combined index's rows of an extracted track or clip, and their offsets."""
        if self.fusion is None:
            raise ParameterError(f"no fusion statistics yet: {NOT_FITTED}")
        blocks = [self.prepare(m, ex.vectors[m][0], learned=False) for m in COMBINED_VECTORS]
        return self.fusion.combine(blocks), ex.vectors[COMBINED_VECTORS[0]][1]


def fit(config: LibraryConfig, batch: Sequence[Extracted]) -> LibraryConfig | None:
    """The config with what ``batch`` teaches added (the statistics a config already has stay
    frozen); None when there was nothing left to learn."""
    state = Learned(config)
    todo = state.missing()
    if not todo or not batch:
        return None
    stats = dict(config.stats)
    standardizers = dict(state.standardizers)
    for mode in STANDARDISED:
        if mode in todo:
            rows = [ex.vectors[mode][0] for ex in batch if mode in ex.vectors]
            if rows:
                standardizers[mode] = Standardizer.fit(
                    np.concatenate(rows), scale=mode in SCALED, blocks=BLOCKS.get(mode, ()), mode=mode,
                    normalisation=config.normalisation)
                stats[mode] = standardizers[mode].to_dict()
    new = replace(config, stats=stats)
    if "peaks_common" in todo or "fusion" in todo:
        from audiolsh.hashing import concat_sets

        sets = concat_sets([ex.peaks[0] for ex in batch])  # type: ignore[index]
        labels = np.repeat(np.arange(len(batch)), [len(ex.peaks[0]) for ex in batch])  # type: ignore[index]
    if "peaks_common" in todo:
        if len(batch) < peaks.COMMON_MIN_TRACKS:
            log.warning("the first batch has %d tracks, fewer than the %d needed to find the peak"
                        " pairs common to the collection: this library keeps every pair for good"
                        " (index at least %d files in its first run to have them left out)",
                        len(batch), peaks.COMMON_MIN_TRACKS, peaks.COMMON_MIN_TRACKS)
        new = replace(new, peaks_common=[int(e) for e in peaks.common_elements(sets, labels)])
    if "fusion" in todo:
        state = Learned(new)
        sets = state.peak_sets(sets)
        vectors = {p: state.prepare(p, np.concatenate([ex.vectors[p][0] for ex in batch]), learned=False)
                   for p in COMBINED_VECTORS}
        matrix = joint_matrix(new.normalisation, state.standardizers)
        if len(sets) >= 2:
            fusion = Fusion.fit(vectors, sets, labels, seed=config.seed, matrix=matrix)
        else:
            log.warning("one excerpt window in the first batch: combined mode uses unscaled scores")
            parts = (JOINT, "peaks") if matrix is not None else COMBINED_PARTS
            fusion = Fusion({p: (0.0, 1.0) for p in parts}, matrix)
        new = replace(new, fusion=fusion.to_dict())
    return new


def joint_matrix(normalisation: str, standardizers: dict[str, Standardizer]) -> np.ndarray | None:
    """The normalisation's "combined" matrix (None: the sum form)."""
    learned = wccn.load(normalisation)
    if learned is None or any(p not in standardizers for p in COMBINED_VECTORS):
        return None
    dim = sum(len(standardizers[p].mean) for p in COMBINED_VECTORS)
    return learned.matrix("combined", dim)


def _load_fusion(config: LibraryConfig, standardizers: dict[str, Standardizer]) -> Fusion | None:
    data = config.fusion
    if not data:
        return None
    matrix = joint_matrix(config.normalisation, standardizers) if JOINT in data else None
    if JOINT in data and matrix is None:
        raise IndexFormatError(
            f"the combined mode needs the {config.normalisation!r} normalisation's"
            " combined matrix, which this audiolsh lacks"
        )
    return Fusion.from_dict(data, matrix)
