"""Indexes kept in a storage location: the vector/set ``Index`` and (``audiolsh.index.fingerprint``)
the landmark ``FingerprintIndex``, both on one segment lifecycle (``segments``)."""

from audiolsh.index.segments import ItemRows, SegmentBuild, SegmentedIndex
from audiolsh.index.vector import (
    INDEX_ENV,
    WHITEN_MIN_ROWS_PER_DIM,
    Hit,
    Index,
    IndexConfig,
    Session,
    build_segment,
)

__all__ = [
    "INDEX_ENV",
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
