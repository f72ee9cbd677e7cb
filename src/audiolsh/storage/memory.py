"""In-memory backend: same contract as the embedded one, nothing on disk (tests, scratch)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.storage.base import (
    INDEX_CONFIG,
    Item,
    SegmentInfo,
    SegmentMissing,
    Track,
    align_items,
    duplicate_track,
)


class _State:
    def __init__(self) -> None:
        self.config: dict[str, dict[str, Any]] = {}
        self.segments: dict[str, tuple[SegmentInfo, dict[str, np.ndarray]]] = {}
        self.tracks: dict[int, Track] = {}
        self.items: dict[int, Item] = {}
        self.deleted: set[int] = set()
        self.next_id = 0
        self.next_track = 1


class MemoryWriter:
    def __init__(self, state: _State) -> None:
        self.s = state

    def set_config(self, config: dict[str, Any], name: str = INDEX_CONFIG) -> None:
        self.s.config[name] = copy.deepcopy(config)

    def allocate_ids(self, n: int) -> int:
        start = self.s.next_id
        self.s.next_id += n
        return start

    def put_segment(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> None:
        frozen = {}
        for name, a in arrays.items():
            a = np.array(a)
            a.flags.writeable = False
            frozen[name] = a
        self.s.segments[info.id] = (info, frozen)

    def drop_segment(self, segment_id: str) -> None:
        self.s.segments.pop(segment_id, None)

    def add_track(
        self, *, path: str, content_hash: str, duration_s: float | None, kind: str,
        meta: dict[str, Any] | None = None,
    ) -> int:
        import time

        if any(t.content_hash == content_hash for t in self.s.tracks.values()):
            raise duplicate_track(path, content_hash)
        tid = self.s.next_track
        self.s.next_track += 1
        self.s.tracks[tid] = Track(tid, path, content_hash, duration_s, time.time(), 0, kind, meta or {})
        return tid

    def set_track_items(self, track_id: int, n_items: int) -> None:
        t = self.s.tracks[track_id]
        self.s.tracks[track_id] = Track(
            t.id, t.path, t.content_hash, t.duration_s, t.added_at, n_items, t.kind, t.meta
        )

    def set_track_meta(self, track_id: int, meta: dict[str, Any]) -> None:
        t = self.s.tracks.get(track_id)
        if t is not None:
            self.s.tracks[track_id] = dataclasses.replace(t, meta=copy.deepcopy(meta))

    def remove_track(self, track_id: int) -> None:
        self.s.tracks.pop(track_id, None)

    def add_items(
        self, ids: np.ndarray, keys: Sequence[str], track_ids: np.ndarray,
        offsets_s: np.ndarray, metas: Sequence[dict[str, Any] | None] | None,
    ) -> None:
        meta_iter = metas if metas is not None else itertools.repeat(None)
        rows = zip(ids.tolist(), keys, track_ids.tolist(), offsets_s.tolist(), meta_iter)
        for i, key, tid, off, meta in rows:
            self.s.items[i] = Item(
                i, key, None if tid < 0 else tid, None if off != off else off, meta
            )

    def delete_items(self, ids: np.ndarray) -> None:
        for i in ids.tolist():
            self.s.items.pop(i, None)
            self.s.deleted.add(i)

    def forget_deleted(self, ids: np.ndarray) -> None:
        self.s.deleted.difference_update(ids.tolist())


class _Shared:
    """What every handle of one memory location sees: the state, its version, the write lock."""

    def __init__(self) -> None:
        self.state = _State()
        self.version = 0
        self.lock = threading.Lock()


#: Named memory locations (``memory://name``) of this process: handles opened with one name
#: share their data, as handles of one directory do.
_NAMED: dict[str, _Shared] = {}
_NAMED_LOCK = threading.Lock()


#: The writers' lock of each named location (``location_lock``).
_WRITER_LOCKS: dict[str, threading.Lock] = {}


@contextmanager
def location_lock(name: str) -> Iterator[None]:
    """Hold the writers' lock of ``memory://name`` (a library's writers in this process)."""
    with _NAMED_LOCK:
        lock = _WRITER_LOCKS.setdefault(name, threading.Lock())
    with lock:
        yield


class MemoryStorage:
    """Everything in dicts; a write is applied to a copy and swapped in on success.

    ``name``: handles of one name share their data for the life of the process (None: private).
    """

    def __init__(self, name: str | None = None) -> None:
        self.location = f"memory://{name}" if name else ":memory:"
        if name is None:
            self._shared = _Shared()
        else:
            with _NAMED_LOCK:
                self._shared = _NAMED.setdefault(name, _Shared())

    @staticmethod
    def exists(name: str) -> bool:
        return name in _NAMED

    @staticmethod
    def forget(name: str) -> None:
        """Drop a named location's data (its open handles keep what they had)."""
        with _NAMED_LOCK:
            _NAMED.pop(name, None)

    @property
    def _state(self) -> _State:
        return self._shared.state

    def config(self, name: str = INDEX_CONFIG) -> dict[str, Any] | None:
        return copy.deepcopy(self._state.config.get(name))

    def version(self) -> int:
        return self._shared.version

    def segments(self) -> list[SegmentInfo]:
        return [info for info, _ in self._state.segments.values()]

    def load_arrays(self, segment_id: str) -> dict[str, np.ndarray]:
        found = self._state.segments.get(segment_id)
        if found is None:
            raise SegmentMissing(f"{self.location}: segment {segment_id} is gone")
        return dict(found[1])

    def deleted(self) -> np.ndarray:
        return np.fromiter(sorted(self._state.deleted), dtype=np.int64)

    def tracks(self) -> list[Track]:
        return sorted(self._state.tracks.values(), key=lambda t: t.id)

    def track(self, track_id: int) -> Track | None:
        return self._state.tracks.get(track_id)

    def track_by_hash(self, content_hash: str) -> Track | None:
        return next((t for t in self._state.tracks.values() if t.content_hash == content_hash), None)

    def items(self, ids: np.ndarray) -> list[Item | None]:
        return [self._state.items.get(int(i)) for i in np.asarray(ids).ravel()]

    def ids_for_keys(self, keys: Sequence[str]) -> np.ndarray:
        wanted = set(keys)
        return np.fromiter(
            sorted(i for i, it in self._state.items.items() if it.key in wanted), dtype=np.int64
        )

    def ids_for_track(self, track_id: int) -> np.ndarray:
        return np.fromiter(
            sorted(i for i, it in self._state.items.items() if it.track_id == track_id),
            dtype=np.int64,
        )

    def item_arrays(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        items = self._state.items
        found = [items[i] for i in np.unique(np.asarray(ids, np.int64)).tolist() if i in items]
        return align_items(ids, *_item_columns(found))

    def track_items(self, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wanted = set(np.asarray(track_ids, np.int64).tolist())
        found = sorted((it for it in self._state.items.values() if it.track_id in wanted),
                       key=lambda it: it.id)
        return _item_columns(found)

    def n_items(self) -> int:
        return len(self._state.items)

    @contextmanager
    def write(self) -> Iterator[MemoryWriter]:
        shared = self._shared
        with shared.lock:
            staged = copy.copy(shared.state)
            staged.config = dict(shared.state.config)
            staged.segments = dict(shared.state.segments)
            staged.tracks = dict(shared.state.tracks)
            staged.items = dict(shared.state.items)
            staged.deleted = set(shared.state.deleted)
            yield MemoryWriter(staged)
            shared.state = staged
            shared.version += 1

    def mapped_files(self) -> list[Path]:
        return []

    def close(self) -> None:
        pass


def _item_columns(items: list[Item]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([it.id for it in items], np.int64),
            np.array([-1 if it.track_id is None else it.track_id for it in items], np.int64),
            np.array([np.nan if it.offset_s is None else it.offset_s for it in items], np.float64))
