"""Storage backends behind one protocol: embedded (default, on disk) and memory; a location
string picks one (``open_storage``)."""

from audiolsh.storage.base import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_CONFIG,
    Item,
    SegmentInfo,
    SegmentMissing,
    Storage,
    Track,
)
from audiolsh.storage.embedded import EmbeddedStorage
from audiolsh.storage.factory import (
    Location,
    describe,
    join,
    location_lock,
    open_storage,
    parent,
    split,
    storage_exists,
    storage_started,
)
from audiolsh.storage.memory import MemoryStorage

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_CONFIG",
    "EmbeddedStorage",
    "Item",
    "Location",
    "MemoryStorage",
    "SegmentInfo",
    "SegmentMissing",
    "Storage",
    "Track",
    "describe",
    "join",
    "location_lock",
    "open_storage",
    "parent",
    "split",
    "storage_exists",
    "storage_started",
]
