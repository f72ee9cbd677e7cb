"""Storage backends behind one protocol: embedded (default, on disk) and memory."""

from audiolsh.storage.base import FORMAT, FORMAT_VERSION, Item, SegmentInfo, Storage, Track
from audiolsh.storage.embedded import EmbeddedStorage
from audiolsh.storage.memory import MemoryStorage

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "EmbeddedStorage",
    "Item",
    "MemoryStorage",
    "SegmentInfo",
    "Storage",
    "Track",
]
