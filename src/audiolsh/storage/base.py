"""The storage protocol: what the index needs from a backend, and nothing of LSH.

A backend keeps four things: the index config (JSON), immutable segments (named arrays plus
their own JSON config), the catalogue (tracks, items with their keys, removed item ids) and a
counter for item ids.  Every change goes through ``write()``, one atomic transaction: on a
clean exit everything in it is committed, on an exception or a crash nothing of it is.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError

FORMAT = "audiolsh-index"
FORMAT_VERSION = 1
#: The config every index keeps; other names hold what the object above it keeps (a library's
#: statistics live under "library" in its catalogue), so all of it is in one backend.
INDEX_CONFIG = "index"
#: Seconds a writer waits for another one's lock on a location (``factory.location_lock``).
LOCK_TIMEOUT_S = 600.0
#: Attempts (0.05 s apart) before a writer says, once, that it waits for another one's lock.
WAIT_SAID_AFTER = 20


class SegmentMissing(IndexFormatError, LookupError):
    """A listed segment is gone: a compaction dropped it after the reader listed the segments.
    Readers list again; it is an error only when it persists."""


@dataclass(frozen=True)
class SegmentInfo:
    id: str
    n_items: int
    config: dict[str, Any]
    created_at: float

    @classmethod
    def new(cls, *, n_items: int, config: dict[str, Any]) -> SegmentInfo:
        """A fresh segment: ids sort by creation time and never collide between writers."""
        now = time.time()
        return cls(f"{int(now * 1000):013d}-{uuid.uuid4().hex[:8]}", n_items, config, now)


@dataclass(frozen=True)
class Track:
    """One indexed source: an audio file, or a file of vectors."""

    id: int
    path: str
    content_hash: str
    duration_s: float | None
    added_at: float
    n_items: int
    kind: str = "audio"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "content_hash": self.content_hash,
            "duration_s": self.duration_s,
            "added_at": self.added_at,
            "n_items": self.n_items,
            "kind": self.kind,
            "meta": self.meta,
        }


class Item(NamedTuple):
    """A catalogue row (a tuple: a query resolves thousands, a frozen dataclass makes them 4x
    slower)."""

    id: int
    key: str
    track_id: int | None
    offset_s: float | None
    meta: dict[str, Any] | None


class Writer(Protocol):
    def set_config(self, config: dict[str, Any], name: str = INDEX_CONFIG) -> None: ...

    def allocate_ids(self, n: int) -> int:
        """Reserve n consecutive item ids and return the first."""
        ...

    def put_segment(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> None: ...

    def drop_segment(self, segment_id: str) -> None: ...

    def add_track(
        self, *, path: str, content_hash: str, duration_s: float | None, kind: str,
        meta: dict[str, Any] | None = None,
    ) -> int: ...

    def set_track_items(self, track_id: int, n_items: int) -> None: ...

    def set_track_meta(self, track_id: int, meta: dict[str, Any]) -> None:
        """Replace a track's meta (its tags, read after it was indexed)."""
        ...

    def remove_track(self, track_id: int) -> None: ...

    def add_items(
        self, ids: np.ndarray, keys: Sequence[str], track_ids: np.ndarray,
        offsets_s: np.ndarray, metas: Sequence[dict[str, Any] | None] | None,
    ) -> None: ...

    def delete_items(self, ids: np.ndarray) -> None:
        """Mark items removed (they stay in their segment until it is compacted)."""
        ...

    def forget_deleted(self, ids: np.ndarray) -> None:
        """Drop tombstones of items no segment holds any more."""
        ...


class Storage(Protocol):
    location: str

    def config(self, name: str = INDEX_CONFIG) -> dict[str, Any] | None: ...

    def version(self) -> int:
        """Changes whenever anyone commits; cheap to call before every query."""
        ...

    def segments(self) -> list[SegmentInfo]: ...

    def load_arrays(self, segment_id: str) -> dict[str, np.ndarray]:
        """A segment's arrays; ``SegmentMissing`` when it is no longer there."""
        ...

    def deleted(self) -> np.ndarray: ...

    def tracks(self) -> list[Track]: ...

    def track(self, track_id: int) -> Track | None: ...

    def track_by_hash(self, content_hash: str) -> Track | None: ...

    def items(self, ids: np.ndarray) -> list[Item | None]: ...

    def ids_for_keys(self, keys: Sequence[str]) -> np.ndarray: ...

    def ids_for_track(self, track_id: int) -> np.ndarray: ...

    def item_arrays(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track id (-1: none or unknown item) and offset (s, NaN: none) of each item id."""
        ...

    def track_items(self, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every item of the given tracks as arrays: item ids, their track ids and offsets (s)."""
        ...

    def n_items(self) -> int: ...

    def write(self) -> AbstractContextManager[Writer]: ...

    def mapped_files(self) -> list[Path]:
        """The files queries read through memory maps (the listed segments' arrays): what
        ``audiolsh.storage.page_in`` reads ahead; none for a backend that holds its arrays in
        the process's memory.  Never a file SQLite locks: closing a descriptor of it would drop
        the process's locks."""
        ...

    def close(self) -> None: ...


def duplicate_track(path: str, content_hash: str) -> ParameterError:
    return ParameterError(f"{path}: already indexed (a track with content {content_hash} exists)")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def align_items(ids: np.ndarray, found_ids: np.ndarray, found_tracks: np.ndarray,
                found_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrange looked-up item rows in the order of ``ids``: -1 / NaN where an id was not found."""
    ids = np.asarray(ids, np.int64).ravel()
    order = np.argsort(found_ids)
    found_ids = found_ids[order]
    pos = np.clip(np.searchsorted(found_ids, ids), 0, max(len(found_ids) - 1, 0))
    hit = (found_ids[pos] == ids) if len(found_ids) else np.zeros(len(ids), bool)
    tracks = np.where(hit, found_tracks[order][pos] if len(found_ids) else -1, -1).astype(np.int64)
    offsets = np.where(hit, found_offsets[order][pos] if len(found_ids) else np.nan, np.nan)
    return tracks, offsets.astype(np.float64)


def iter_chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def check_format_version(where: object, what: str, version: object, *, newest: int, oldest: int = 1,
                         too_old: str = "") -> int:
    """The format version of a persisted file, or IndexFormatError: newer than this audiolsh
    reads (upgrade), or older than it still reads (``too_old`` says why and what to do)."""
    if not isinstance(version, int) or version > newest:
        raise IndexFormatError(
            f"{where}: {what} format version {version!r} is newer than this audiolsh reads"
            f" ({newest}); upgrade audiolsh"
        )
    if version < oldest:
        raise IndexFormatError(
            f"{where}: {what} format version {version} is too old, older than this audiolsh reads"
            f" ({oldest}..{newest}){': ' + too_old if too_old else ''}"
        )
    return version
