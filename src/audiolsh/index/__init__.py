"""Indexes kept in a storage location: the vector/set ``Index`` and (``audiolsh.index.fingerprint``)
the landmark ``FingerprintIndex``, both on one segment lifecycle (``segments``)."""

from audiolsh.index.build import WHITEN_MIN_ROWS_PER_DIM, IndexConfig, build_segment
from audiolsh.index.segments import ItemRows, SegmentBuild, SegmentedIndex
from audiolsh.index.vector import Hit, Index, Session

__all__ = [
    "WHITEN_MIN_ROWS_PER_DIM",
    "Hit",
    "Index",
    "IndexConfig",
    "ItemRows",
    "SegmentBuild",
    "SegmentedIndex",
    "Session",
    "build_segment",
]
