"""The mode registry: every index a library can hold, as one object.

A mode knows the extracted modes it needs, its metric and index parameters, where its data sits
in an extraction (``Extracted``), how rows are prepared from it (one function, used when
indexing and when querying) and how ``similar`` queries it.  Adding a mode is one entry here
(and its extraction in ``library.extract``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.library.learned import COMBINED_PARTS, STANDARDISED, Learned

if TYPE_CHECKING:
    from audiolsh.library.extract import Extracted

#: Peak-pair sets of two excerpts of one track share little (Jaccard 0.02-0.2 on dev), so
#: every band is one min-hash (128 bands: a threshold of 0.01); candidates are ranked by how
#: many they share and the best PEAKS_CANDIDATES re-ranked by exact Jaccard.
PEAKS_THRESHOLD = 0.01
PEAKS_CANDIDATES = 100

Rows = Callable[[Learned, "Extracted"], tuple[Any, np.ndarray]]


@dataclass(frozen=True)
class Mode:
    """One index of a library.

    needs : the extracted modes (``--modes``) it is built from; it exists when all are there.
    metric : cosine, jaccard, or landmarks (the fingerprint index).
    source : where its data sits in an ``Extracted``: vectors, chroma_frames, peaks, landmarks.
    query : how ``similar`` ranks with it: "vector" (best passage's cosine), "sets" (Jaccard),
        "fused" (the combined score) or "vote" (S1's frame voting); None: not for ``similar``.
    """

    name: str
    needs: tuple[str, ...]
    metric: str
    source: str
    rows: Rows
    query: str | None = None
    index_params: Mapping[str, Any] = field(default_factory=dict)

    def rows_of(self, learned: Learned, ex: Extracted, *, what: str = "the clip") -> tuple[Any, np.ndarray]:
        """Prepared rows and their offsets (s); a clip without this mode's data is refused."""
        if self.source != "vectors" and getattr(ex, self.source) is None:
            raise ParameterError(f"{ex.path or what}: has no {self.source.replace('_', ' ')}")
        return self.rows(learned, ex)

    def index_config(self, seed: int) -> dict[str, Any]:
        return {"metric": self.metric, "seed": seed, **self.index_params}


def _vectors(name: str) -> Rows:
    def rows(learned: Learned, ex: Extracted) -> tuple[Any, np.ndarray]:
        X, offsets = ex.vectors[name]
        return learned.prepare(name, X), offsets
    return rows


def _chroma_frames(learned: Learned, ex: Extracted) -> tuple[Any, np.ndarray]:
    assert ex.chroma_frames is not None
    return ex.chroma_frames


def _peaks(learned: Learned, ex: Extracted) -> tuple[Any, np.ndarray]:
    assert ex.peaks is not None
    return learned.peak_sets(ex.peaks[0]), ex.peaks[1]


def _combined(learned: Learned, ex: Extracted) -> tuple[Any, np.ndarray]:
    return learned.combined_rows(ex)


def _landmarks(learned: Learned, ex: Extracted) -> tuple[Any, np.ndarray]:
    return ex.landmarks, np.zeros(0)


def _vector_mode(name: str) -> Mode:
    # Standardised features are already centred; raw log-mel statistics are not.
    center: str | bool = False if name in STANDARDISED else "auto"
    return Mode(name, (name,), "cosine", "vectors", _vectors(name),
                query=None if name == "embedding" else "vector", index_params={"center": center})


#: Every mode, in commit order (the fingerprint first, the combined index last).
REGISTRY: dict[str, Mode] = {m.name: m for m in (
    Mode("fingerprint", ("fingerprint",), "landmarks", "landmarks", _landmarks),
    _vector_mode("embedding"),
    _vector_mode("rhythm"),
    _vector_mode("timbre"),
    _vector_mode("chroma"),
    Mode("chroma_frames", ("chroma",), "cosine", "chroma_frames", _chroma_frames, query="vote",
         index_params={"center": "auto"}),
    Mode("peaks", ("peaks",), "jaccard", "peaks", _peaks, query="sets",
         index_params={"threshold": PEAKS_THRESHOLD, "n_candidates": PEAKS_CANDIDATES}),
    Mode("combined", COMBINED_PARTS, "cosine", "vectors", _combined, query="fused",
         index_params={"center": False}),
)}


def modes_for(extracted: Sequence[str]) -> list[Mode]:
    """The indexes a library of these extracted modes holds, in commit order."""
    return [m for m in REGISTRY.values() if all(n in extracted for n in m.needs)]

