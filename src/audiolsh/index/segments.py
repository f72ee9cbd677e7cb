"""The segment lifecycle both index kinds share: open or create at a location, refresh the
segment list after anyone's commit, attach segments built elsewhere, merge small or dirty ones.

A kind (``Index``, ``FingerprintIndex``) says how its config is checked, how a segment's arrays
become a searchable segment, which rows of it are live, and how chosen segments merge into one
``SegmentBuild``; everything else (writes, retries after a concurrent compaction, the choice of
what to merge, stale-segment detection) is here once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.storage import Location, SegmentInfo, SegmentMissing, Storage, open_storage, storage_exists
from audiolsh.storage.base import Writer

log = logging.getLogger(__name__)

#: A segment with more than this share of dead rows is rewritten.
DIRTY_SHARE = 0.3


@dataclass
class ItemRows:
    """Catalogue rows of a built segment: one per stored row, in its order.  ``track_rows``:
    -2 - i for the build's i-th track, a track id (>= 0) already in the index, or -1 (none)."""

    ids: np.ndarray
    keys: list[str]
    track_rows: np.ndarray
    offsets_s: np.ndarray
    metas: list[dict[str, Any] | None]


@dataclass
class SegmentBuild:
    """A segment built anywhere (``build_segment``), ready to ``attach``: its arrays, the tracks
    it brings (``add_track`` fields) and, for item indexes, its catalogue rows.  ``timings``:
    seconds of the build and of its parts (``build_s``, ``tune_s``), not stored."""

    info: SegmentInfo
    arrays: dict[str, np.ndarray]
    tracks: list[dict[str, Any]] = field(default_factory=list)
    items: ItemRows | None = None
    timings: dict[str, float] = field(default_factory=dict)


class LoadedSegment(Protocol):
    info: SegmentInfo

    @property
    def n_live(self) -> int: ...

    @property
    def n_stored(self) -> int: ...


S = TypeVar("S", bound=LoadedSegment)
_I = TypeVar("_I", bound="SegmentedIndex[Any]")


class _StaleSegments(Exception):
    """Raised inside a write to roll it back: the segments it would merge are gone."""


def load_retrying(load: Any, *, attempts: int = 5, delay_s: float = 0.05) -> None:
    """Run ``load``; when a compaction removed a segment between listing and mapping it, list again."""
    for attempt in range(attempts):
        try:
            load()
            return
        except SegmentMissing:
            if attempt == attempts - 1:
                raise
            time.sleep(delay_s)


class SegmentedIndex(Generic[S]):
    """Base of the index kinds.  ``auto_compact=False`` keeps every committed segment (a bulk
    build attaches many, then calls ``compact(full=True)`` once)."""

    kind: ClassVar[str] = "index"

    def __init__(self, storage: Storage, *, readonly: bool = False) -> None:
        self.storage = storage
        self.readonly = readonly
        self.auto_compact = True
        self._segments: list[S] = []
        self._version = -1
        self._refresh()

    # what a kind gives ------------------------------------------------------------------

    @classmethod
    def _new_config(cls, **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_config(cls: type[_I], storage: Storage, data: dict[str, Any] | None, *,
                     readonly: bool) -> _I:
        raise NotImplementedError

    def _open_segment(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> S:
        raise NotImplementedError

    def _load_stored(self, info: SegmentInfo) -> S:
        """A listed segment, from its stored arrays."""
        return self._open_segment(info, self.storage.load_arrays(info.id))

    def _mark_live(self) -> None:
        """Set each loaded segment's live rows after the list changed."""

    def _reload_config(self) -> None:
        """Pick up a config another handle stored (before the segments load)."""

    def _max_segments(self) -> int:
        raise NotImplementedError

    def _merge(self, chosen: Sequence[S]) -> SegmentBuild | None:
        """The chosen segments' live rows as one build (None: no live rows)."""
        raise NotImplementedError

    def _bind(self, w: Writer, build: SegmentBuild, track_ids: list[int]) -> dict[str, np.ndarray]:
        """The build's arrays with its tracks' new ids written in, where the arrays name them."""
        return build.arrays

    def _after_merge(self, w: Writer, chosen: Sequence[S]) -> None:
        """Extra catalogue clean-up in a compaction's write."""

    def _config_for(self, info: SegmentInfo) -> dict[str, Any] | None:
        """The index config to store with a new segment when the stored one would let an older
        audiolsh open the index and misread the segment (None: keep it)."""
        return None

    def _put_segment(self, w: Writer, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> None:
        config = self._config_for(info)
        if config is not None:
            w.set_config(config)
        w.put_segment(info, arrays)

    # opening ----------------------------------------------------------------------------

    @classmethod
    def create(cls: type[_I], location: Location | None = None, *, exist_ok: bool = False,
               **params: Any) -> _I:
        """A new index at ``location`` (a directory, ``memory://name``; None: private memory).

        Its config is written last, so a storage without one is an interrupted creation: it is
        finished here.  ``exist_ok``: an existing index is opened instead."""
        config = cls._new_config(**params)
        storage = open_storage(location, create=True)  # an existing one is opened
        try:
            stored = storage.config()
            if stored is not None:
                if not exist_ok:
                    raise IndexFormatError(f"{location}: an index already exists here")
                return cls._from_config(storage, stored, readonly=False)
            with storage.write() as w:
                w.set_config(config)
            return cls._from_config(storage, config, readonly=False)
        except BaseException:
            storage.close()
            raise

    @classmethod
    def open(cls: type[_I], location: Location, *, readonly: bool = False) -> _I:
        storage = open_storage(location, readonly=readonly)
        try:
            return cls._from_config(storage, storage.config(), readonly=readonly)
        except BaseException:
            storage.close()
            raise

    @classmethod
    def open_or_create(cls: type[_I], location: Location, **params: Any) -> _I:
        if storage_exists(location):
            storage = open_storage(location)
            stored = storage.config()
            storage.close()
            if stored is not None:
                return cls.open(location)
        return cls.create(location, exist_ok=True, **params)

    def close(self) -> None:
        self.storage.close()

    def __enter__(self: _I) -> _I:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        return self.storage.location

    # state ------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Reload the segment list when someone committed since we last looked."""
        version = self.storage.version()
        if version == self._version:
            return
        self._reload_config()
        load_retrying(self._load_segments)
        self._version = version

    def _load_segments(self) -> None:
        loaded = {s.info.id: s for s in self._segments}
        segments = []
        for info in self.storage.segments():
            seg = loaded.get(info.id)
            if seg is None:
                seg = self._load_stored(info)
            segments.append(seg)
        self._segments = segments
        self._mark_live()

    def _check_writable(self) -> None:
        if self.readonly:
            raise IndexFormatError(f"{self.storage.location}: opened read-only")

    def _after_write(self) -> None:
        self._refresh()
        if self.auto_compact:
            self._maybe_compact()

    # writing ----------------------------------------------------------------------------

    def reserve_ids(self, n: int) -> np.ndarray:
        """``n`` item ids no other build will use, for a segment built elsewhere."""
        self._check_writable()
        with self.storage.write() as w:
            start = w.allocate_ids(n)
        return np.arange(start, start + n, dtype=np.int64)

    def attach(self, builds: Sequence[SegmentBuild]) -> list[list[int]]:
        """Commit segments built elsewhere, with their tracks and items, in one atomic write;
        returns each build's new track ids."""
        self._check_writable()
        listed = {info.id for info in self.storage.segments()}
        again = [b.info.id for b in builds if b.arrays and b.info.id in listed]
        if again or len({b.info.id for b in builds}) < len(builds):
            raise ParameterError(f"{self.location}: segment {again[0] if again else 'given twice'} is"
                                 " already attached")
        with self.storage.write() as w:
            out = [self._attach_in(w, b) for b in builds]
        self._after_write()
        return out

    def _attach_in(self, w: Writer, build: SegmentBuild) -> list[int]:
        tids = []
        items = build.items
        for t in build.tracks:
            t = dict(t)
            n_items = t.pop("n_items", None)
            tid = w.add_track(**t)
            if n_items is not None:
                w.set_track_items(tid, int(n_items))
            tids.append(tid)
        if build.arrays:
            self._put_segment(w, build.info, self._bind(w, build, tids))
        if items is not None and len(items.ids):
            rows = np.asarray(items.track_rows, np.int64)
            new = rows <= -2
            bound = rows.copy()
            bound[new] = np.asarray(tids, np.int64)[-rows[new] - 2]
            w.add_items(items.ids, items.keys, bound, items.offsets_s, items.metas)
            for i, tid in enumerate(tids):
                if build.tracks[i].get("n_items") is None:
                    w.set_track_items(tid, int(np.sum(bound == tid)))
        return tids

    def _maybe_compact(self) -> None:
        segs = self._segments
        if len(segs) > self._max_segments() or any(_dead(s) > DIRTY_SHARE for s in segs):
            self.compact()

    def _choose(self, full: bool) -> list[S]:
        """Segments to merge, smallest first: the largest is rewritten only when it is dirty,
        holds less than half of the live rows, or ``full`` is asked for, so that adding one
        batch at a time costs amortised O(n log n)."""
        segs = sorted(self._segments, key=lambda s: s.n_live)
        if not segs or full:
            return segs
        total = sum(s.n_live for s in segs)
        chosen = segs
        if len(segs) > 1 and segs[-1].n_live > total / 2 and _dead(segs[-1]) <= DIRTY_SHARE:
            chosen = segs[:-1]
        if len(chosen) < 2 and all(s.n_live == s.n_stored for s in chosen):
            return []
        return chosen

    def compact(self, *, full: bool = False) -> None:
        """Merge segments and drop removed rows (see ``_choose``); ``full`` merges all of them
        into one, as one build of the live rows would make it."""
        self._check_writable()
        self._refresh()
        chosen = self._choose(full)
        if not chosen:
            return
        build = self._merge(chosen)
        try:
            with self.storage.write() as w:
                live = {info.id for info in self.storage.segments()}
                if any(s.info.id not in live for s in chosen):
                    raise _StaleSegments
                if build is not None:
                    self._put_segment(w, build.info, build.arrays)
                for s in chosen:
                    w.drop_segment(s.info.id)
                self._after_merge(w, chosen)
        except _StaleSegments:
            # Another writer compacted these segments first; its result stands.
            log.info("compaction skipped: segments changed under us")
            self._refresh()
            return
        log.info("compacted %d %s segments into one of %d rows", len(chosen), self.kind,
                 build.info.n_items if build else 0)
        self._refresh()


def _dead(seg: LoadedSegment) -> float:
    return 1 - seg.n_live / max(1, seg.n_stored)
