"""The Index: a durable collection of vectors (or sets) searched with LSH and exact re-ranking.

    with Index.create("music.idx", metric="cosine") as index:
        index.add(vectors, keys=names)
        hits = index.query(clip_vectors, k=10)

Rows live in immutable segments.  Every ``add`` (or ``session``) commits one new segment and
its catalogue rows atomically; ``remove`` writes tombstones; when there are too many segments
or too many tombstones the small ones are merged.  Each segment keeps the config of the hash
family it was built with (seed, tables, bits, centre, bucket width), so the same index can be
rebuilt anywhere and gives the same buckets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.hashing import MinHashLSH, SetBatch, as_sets, concat_sets
from audiolsh.hashing import from_config as family_from_config
from audiolsh.hashing.base import HashFamily, check_int
from audiolsh.index import autotune, keyfile
from audiolsh.index.build import DEFAULT_TABLES, FAMILY_ARRAY_PREFIX, IndexConfig, build_segment, concat_rows
from audiolsh.index.remote import Stale
from audiolsh.index.remote import search as remote_search
from audiolsh.index.segments import ItemRows, SegmentBuild, SegmentedIndex
from audiolsh.search import BruteForce, BucketTables, Neighbors, SetLSH, VectorLSH, merge, prepare
from audiolsh.search.compact import RERANK_FORMAT, default_recheck
from audiolsh.search.kernels import SERIAL_BELOW
from audiolsh.storage import Item, SegmentInfo, Storage, Track
from audiolsh.storage.base import Writer, check_format_version
from audiolsh.storage.redis_remote import RemoteLayout

log = logging.getLogger(__name__)

WHITENED_PROBES_PER_TABLE = 32


def _family(info: SegmentInfo, arrays: dict[str, np.ndarray]) -> HashFamily:
    learned = {
        name[len(FAMILY_ARRAY_PREFIX):]: a for name, a in arrays.items()
        if name.startswith(FAMILY_ARRAY_PREFIX)
    }
    return family_from_config(info.config["family"], arrays=learned)


def _operating_point(seg: _Segment) -> dict[str, Any] | None:
    """The segment's stored operating point (``autotune``), None when it was built without
    one or by a newer version than this one reads."""
    point = seg.info.config.get("operating_point")
    if point is None or point.get("version", 0) > autotune.VERSION:
        return None
    return point  # type: ignore[no-any-return]


def _with_keys(build: SegmentBuild, key_arrays: dict[str, np.ndarray]) -> SegmentBuild:
    """The build with its rows' key arrays stored beside its others (``keyfile``)."""
    info = replace(build.info, config={**build.info.config, "keys": keyfile.config()})
    return replace(build, info=info, arrays={**build.arrays, **key_arrays})


def _empty(n_queries: int, k: int) -> Neighbors:
    return Neighbors(
        np.full((n_queries, k), -1, np.int64),
        np.full((n_queries, k), np.inf, np.float32),
        np.zeros(n_queries, np.int64),
    )


@dataclass
class _Segment:
    """A segment as a query sees it.  A remote one (``remote``: its buckets and rows stay in
    Redis) holds only its ids and hash family; its searcher loads on first use (a merge, an
    exact scan), which fetches the whole segment."""

    info: SegmentInfo
    ids: np.ndarray
    family: HashFamily
    _searcher: VectorLSH | SetLSH | None = None
    remote: RemoteLayout | None = None
    _load: Callable[[], VectorLSH | SetLSH] | None = None
    _order: np.ndarray | None = None
    _sorted_ids: np.ndarray | None = None
    #: track id and offset of every row, read from the catalogue on first use: an item's track
    #: and offset never change, so this holds for the segment's life (removals: ``alive``)
    _items: tuple[np.ndarray, np.ndarray] | None = None
    #: uint8 per row, 0: removed
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    _n_live: int = 0
    n_candidates: int = 0
    _first_id: int | None = -1  # -1: not looked at yet; None: the ids are not a range
    #: ids then -1, when they are not a range: row -1 wraps onto the -1 (``item_ids``)
    _row_ids: np.ndarray | None = None
    #: (lowest id, row of each id from it then -1) or (0, None): see ``positions``
    _rows_by_id: tuple[int, np.ndarray | None] | None = None
    #: the key arrays (``keyfile``), None: the keys are in the catalogue only
    key_arrays: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids)  # a memory map's indexing costs more than its rows
        self.set_alive(np.ones(len(self.ids), np.uint8))

    def item_ids(self, rows: np.ndarray) -> np.ndarray:
        """Item ids of a search's row numbers (int64, fresh from the search, overwritten in
        place and returned), -1 staying -1."""
        if self._first_id == -1:
            # Rows of one add have consecutive ids: a row's id is its number plus the first.
            # A k-means segment stores its rows cell by cell, so there a copy of the ids with
            # a -1 after them maps every row in one take (row -1 wraps onto the -1).
            ids = self.ids
            self._first_id = int(ids[0]) if ids[-1] - ids[0] == len(ids) - 1 and bool(
                np.all(ids[1:] > ids[:-1])) else None
            if self._first_id is None:
                self._row_ids = np.append(ids, np.int64(-1)).astype(np.int64, copy=False)
                self.ids = self._row_ids[:-1]
        if self._first_id == 0:
            return rows
        if self._first_id is not None:
            np.add(rows, self._first_id, out=rows, where=rows >= 0)
            return rows
        assert self._row_ids is not None
        return self._row_ids.take(rows, out=rows, mode="wrap")  # unbuffered: each in place

    @property
    def searcher(self) -> VectorLSH | SetLSH:
        if self._searcher is None:
            assert self._load is not None
            self._searcher = self._load()
            self.set_alive(self.alive)
        return self._searcher

    def set_alive(self, alive: np.ndarray) -> None:
        self.alive = np.ascontiguousarray(alive, dtype=np.uint8)
        self._n_live = int(self.alive.sum())
        if self._searcher is not None:
            self._searcher.alive_ = self.alive
            if isinstance(self._searcher, SetLSH):  # a query-time setting: follows set_params
                self._searcher.default_candidates = self.n_candidates

    @property
    def n_live(self) -> int:
        return self._n_live

    @property
    def n_stored(self) -> int:
        return len(self.ids)

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Row of each item id in this segment, -1 where it is not here.  A merged or k-means
        segment's ids are in no order, but they span little more than their count: a table
        from id to row is one take (an argsort of millions of ids is a query's time); ids
        spread wider than ROW_TABLE_SPAN times their count are looked up in a sort order."""
        ids = np.asarray(ids, np.int64)
        if not len(self.ids):
            return np.full(len(ids), -1, np.int64)
        if self._rows_by_id is None:
            self._rows_by_id = _rows_by_id(self.ids)
        low, table = self._rows_by_id
        if table is not None:
            at = ids - low
            at[(at < 0) | (at >= len(table) - 1)] = -1  # onto the table's closing -1
            return table.take(at).astype(np.int64, copy=False)
        if self._order is None:
            self._order = np.argsort(self.ids, kind="stable")
            self._sorted_ids = self.ids[self._order]
        assert self._sorted_ids is not None
        p = np.clip(np.searchsorted(self._sorted_ids, ids), 0, len(self.ids) - 1)
        return np.where(self._sorted_ids[p] == ids, self._order[p], -1)


#: ``_Segment.positions`` keeps a table from id to row while the ids span at most this many
#: times their count (4 bytes a slot: at most 8 bytes a row, as the sort order took).
ROW_TABLE_SPAN = 2


def _rows_by_id(ids: np.ndarray) -> tuple[int, np.ndarray | None]:
    """(lowest id, the row of each id from it up to the highest, -1 for none, then one
    more -1), or (0, None) when the ids spread too wide for a table."""
    low, high = int(ids.min()), int(ids.max())
    span = high - low + 1
    if span > ROW_TABLE_SPAN * len(ids):
        return 0, None
    table = np.full(span + 1, -1, np.int32 if len(ids) < 2**31 else np.int64)
    table[ids - low] = np.arange(len(ids), dtype=table.dtype)
    return low, table


class Hit(NamedTuple):
    """One search answer, resolved against the catalogue (a tuple, like ``Item``: ``hits``
    makes k of them per query)."""

    id: int
    key: str
    distance: float
    track_id: int | None = None
    offset_s: float | None = None
    meta: dict[str, Any] | None = None


class Session:
    """Collects adds and removals and commits them as one segment in one transaction."""

    def __init__(self, index: Index) -> None:
        self._index = index
        self._data: list[Any] = []
        self._keys: list[str | None] = []
        self._track_rows: list[np.ndarray] = []
        self._offsets: list[np.ndarray] = []
        self._metas: list[dict[str, Any] | None] = []
        self._tracks: list[dict[str, Any]] = []
        self._removed_tracks: list[int] = []

    def add_track(
        self, path: str | os.PathLike[str], *, content_hash: str, duration_s: float | None = None,
        kind: str = "audio", meta: dict[str, Any] | None = None,
    ) -> int:
        """Register a source; returns a handle to pass as ``track`` to ``add``."""
        self._tracks.append(
            {"path": os.fspath(path), "content_hash": content_hash, "duration_s": duration_s,
             "kind": kind, "meta": meta}
        )
        return -len(self._tracks) - 1  # resolved at commit

    def remove_track(self, track_id: int) -> None:
        self._removed_tracks.append(track_id)

    def add(
        self, data: Any, keys: Sequence[str] | None = None, *, track: int | None = None,
        offsets_s: Sequence[float] | np.ndarray | None = None,
        meta: Sequence[dict[str, Any] | None] | None = None,
    ) -> None:
        idx = self._index
        batch: Any
        if idx.config.metric == "jaccard":
            batch = as_sets(data)
        else:
            batch = prepare(np.asarray(data), idx.config.metric)
            dim = idx.config.dim or (self._data[0].shape[1] if self._data else batch.shape[1])
            if batch.shape[1] != dim:
                raise ParameterError(
                    f"vectors of dimension {batch.shape[1]} cannot go into an index of"
                    f" dimension {dim}"
                )
        n = len(batch)
        if n == 0:
            return
        if keys is None:
            keys = [None] * n  # type: ignore[list-item]  # the item id, once allocated
        if len(keys) != n:
            raise ParameterError(f"{len(keys)} keys for {n} rows")
        if offsets_s is not None and len(offsets_s) != n:
            raise ParameterError(f"{len(offsets_s)} offsets for {n} rows")
        if meta is not None and len(meta) != n:
            raise ParameterError(f"{len(meta)} metadata entries for {n} rows")
        self._data.append(batch)
        self._keys += [None if k is None else str(k) for k in keys]
        self._track_rows.append(np.full(n, -1 if track is None else track, dtype=np.int64))
        self._offsets.append(
            np.full(n, np.nan) if offsets_s is None else np.asarray(offsets_s, dtype=np.float64)
        )
        self._metas += list(meta) if meta is not None else [None] * n

    def __len__(self) -> int:
        return len(self._keys)

    def commit(self) -> np.ndarray:
        """Write everything collected; returns the new item ids."""
        ids = self._index._commit(self)
        self.__init__(self._index)  # type: ignore[misc]
        return ids


class Index(SegmentedIndex[_Segment]):
    """Open with ``Index.open(location)`` or make one with ``Index.create(location, ...)``;
    a location is a directory or ``memory://name`` (None, create only: private memory)."""

    kind = "vector"

    def __init__(self, storage: Storage, config: IndexConfig, *, readonly: bool = False) -> None:
        self.config = config
        super().__init__(storage, readonly=readonly)

    @classmethod
    def _new_config(cls, **params: Any) -> dict[str, Any]:
        config = IndexConfig(**params)  # "auto" resolves to its family here
        if config.n_tables is None and config.family == "kmeans":  # one partition is IVF
            config.n_tables = 1
        elif config.n_tables is None and config.family != "hyperplane":  # not tuned: the fixed default
            config.n_tables = DEFAULT_TABLES
        return asdict(config.validate())

    @classmethod
    def _from_config(cls, storage: Storage, data: dict[str, Any] | None, *, readonly: bool) -> Index:
        if data is None:
            raise IndexFormatError(
                f"{storage.location}: the index has no config (was its creation interrupted?)")
        return cls(storage, IndexConfig.from_dict(data), readonly=readonly)

    # reading state ----------------------------------------------------------------------

    def _max_segments(self) -> int:
        return self.config.max_segments

    def _reload_config(self) -> None:
        data = self.storage.config()  # first: the segments take query settings from it
        if data is not None:
            self.config = IndexConfig.from_dict(data)

    def _mark_live(self) -> None:
        deleted = self.storage.deleted()
        for seg in self._segments:
            seg.n_candidates = self.config.n_candidates or 0
            seg.set_alive(~np.isin(seg.ids, deleted))

    def _load_stored(self, info: SegmentInfo) -> _Segment:
        local = getattr(self.storage, "load_local_arrays", None)
        if local is None:
            return self._open_segment(info, self.storage.load_arrays(info.id))
        # The Hamming pre-filter and the compact re-rank copy are local only; a remote
        # segment's keys come with the catalogue's round trip.
        arrays, layout = local(info.id, skip=("codes", "rerank", "rerank_scale", "rerank_offset",
                                              *keyfile.ARRAYS))
        if layout is None:
            return self._open_segment(info, arrays)
        return _Segment(info, arrays["ids"], _family(info, arrays), remote=layout,
                        _load=lambda: self._searcher(info, self.storage.load_arrays(info.id)),
                        key_arrays=keyfile.readable(info.config, arrays))

    def _open_segment(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> _Segment:
        searcher = self._searcher(info, arrays)
        return _Segment(info, arrays["ids"], searcher.family, searcher,
                        key_arrays=keyfile.readable(info.config, arrays))

    def _searcher(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> VectorLSH | SetLSH:
        family = _family(info, arrays)
        tables = BucketTables.from_arrays(arrays)
        if info.config["metric"] == "jaccard":
            assert isinstance(family, MinHashLSH)
            sets = SetBatch(arrays["indptr"], arrays["elements"])
            return SetLSH(family, n_candidates=self.config.n_candidates).load(sets, tables)
        if "rerank" in info.config:  # a compact re-rank copy (issue #18): a layout we read?
            check_format_version(f"{self.location}: segment {info.id}", "re-rank copy",
                                 info.config["rerank"].get("format_version"), newest=RERANK_FORMAT)
        return VectorLSH(family, metric=info.config["metric"]).load(
            arrays["vectors"], tables, codes=arrays.get("codes"), rerank=arrays.get("rerank"),
            rerank_scale=arrays.get("rerank_scale"), rerank_offset=arrays.get("rerank_offset"))

    def __len__(self) -> int:
        self._refresh()
        return sum(s.n_live for s in self._segments)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and len(self.storage.ids_for_keys([key])) > 0

    def _row_items(self, seg: _Segment) -> tuple[np.ndarray, np.ndarray]:
        if seg._items is None:
            seg._items = self.storage.item_arrays(seg.ids)
        return seg._items

    def item_arrays(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track id (-1: none, unknown or removed item) and offset (s, NaN: none) of each item
        id; from the segments' cached rows, so a query makes no catalogue round trip."""
        self._refresh()
        ids = np.asarray(ids, np.int64).ravel()
        tracks = np.full(len(ids), -1, np.int64)
        offsets = np.full(len(ids), np.nan)
        for seg in self._segments:
            p = seg.positions(ids)
            hit = p >= 0
            if not hit.any():
                continue
            hit[hit] = seg.alive[p[hit]] == 1
            row_tracks, row_offsets = self._row_items(seg)
            tracks[hit], offsets[hit] = row_tracks[p[hit]], row_offsets[p[hit]]
        return tracks, offsets

    def track_items(self, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every live item of the given tracks: item ids, their track ids and offsets (s), by id."""
        self._refresh()
        wanted = np.unique(np.asarray(track_ids, np.int64))
        ids, tracks, offsets = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        for seg in self._segments:
            row_tracks, row_offsets = self._row_items(seg)
            sel = np.isin(row_tracks, wanted) & (seg.alive == 1)
            ids.append(seg.ids[sel])
            tracks.append(row_tracks[sel])
            offsets.append(row_offsets[sel])
        all_ids = np.concatenate(ids)
        order = np.argsort(all_ids, kind="stable")
        return all_ids[order], np.concatenate(tracks)[order], np.concatenate(offsets)[order]

    @property
    def segments(self) -> list[SegmentInfo]:
        self._refresh()
        return [s.info for s in self._segments]

    def tracks(self) -> list[Track]:
        return self.storage.tracks()

    def track_by_hash(self, content_hash: str) -> Track | None:
        return self.storage.track_by_hash(content_hash)

    def items(self, ids: np.ndarray) -> list[Item | None]:
        return self.storage.items(ids)

    def info(self) -> dict[str, Any]:
        self._refresh()
        n = sum(s.n_live for s in self._segments)
        # A remote segment's tables and rows are in Redis: counted there, not fetched for this.
        local = [s for s in self._segments if s.remote is None or s._searcher is not None]
        table_bytes = sum(
            s.searcher.index_nbytes if isinstance(s.searcher, VectorLSH) else s.searcher.tables_.nbytes
            for s in local
        )
        data_bytes = sum(
            s.searcher.vectors_.nbytes + sum(a.nbytes for a in s.searcher.rerank_arrays().values())
            if isinstance(s.searcher, VectorLSH)
            else s.searcher.sets_.elements.nbytes + s.searcher.sets_.indptr.nbytes
            for s in local
        )
        return {
            "location": self.storage.location,
            "config": asdict(self.config),
            "n_items": n,
            "n_tracks": len(self.storage.tracks()),
            "n_deleted": int(sum(len(s.ids) - s.n_live for s in self._segments)),
            "segments": [
                {"id": s.info.id, "n_items": s.info.n_items, "n_live": s.n_live,
                 "family": s.info.config["family"], "remote": s.remote is not None}
                for s in self._segments
            ],
            "data_bytes": int(data_bytes),
            "table_bytes": int(table_bytes),
            "table_bytes_per_item": table_bytes / n if n else 0.0,
        }

    def live_data(self) -> tuple[Any, np.ndarray]:
        """All live rows (prepared) and their ids, across segments."""
        self._refresh()
        ids = [s.ids[s.alive == 1] for s in self._segments]
        if self.config.metric == "jaccard":
            parts = [
                s.searcher.sets_.take(np.flatnonzero(s.alive))  # type: ignore[union-attr]
                for s in self._segments
            ]
            return concat_sets(parts), np.concatenate(ids) if ids else np.zeros(0, np.int64)
        if not self._segments:
            return np.zeros((0, self.config.dim or 0), np.float32), np.zeros(0, np.int64)
        vecs = np.concatenate(
            [np.asarray(s.searcher.vectors_)[s.alive == 1] for s in self._segments]  # type: ignore[union-attr]
        )
        return vecs, np.concatenate(ids)

    def rows(self, ids: np.ndarray) -> Any:
        """The stored (prepared) live rows of the given item ids, in their order: an (n, dim)
        array, or a SetBatch for sets. Unknown or removed ids raise."""
        data, found = self.rows_found(ids)
        if not found.all():
            raise ParameterError(f"unknown or removed item ids {np.asarray(ids)[~found][:5].tolist()}")
        return data

    def rows_found(self, ids: np.ndarray) -> tuple[Any, np.ndarray]:
        """Like ``rows`` but never raises: rows of unknown or removed ids are zero vectors or
        empty sets, and ``found`` (bool per id) says which ids were live."""
        self._refresh()
        ids = np.asarray(ids, np.int64).ravel()
        seg_of = np.full(len(ids), -1, np.int64)
        pos = np.zeros(len(ids), np.int64)
        for i, seg in enumerate(self._segments):
            p = seg.positions(ids)
            hit = p >= 0
            hit[hit] = seg.alive[p[hit]] == 1
            seg_of[hit], pos[hit] = i, p[hit]
        found = seg_of >= 0
        if self.config.metric == "jaccard":
            lengths = np.zeros(len(ids), np.int64)
            parts = []
            for i, seg in enumerate(self._segments):
                sel = np.flatnonzero(seg_of == i)
                if len(sel):
                    batch = self._segment_rows(seg, pos[sel])
                    lengths[sel] = np.diff(batch.indptr)
                    parts.append((sel, batch))
            indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            elements = np.zeros(int(indptr[-1]), np.uint64)
            for sel, batch in parts:
                starts = indptr[sel]
                within = np.arange(len(batch.elements)) - np.repeat(batch.indptr[:-1], np.diff(batch.indptr))
                elements[np.repeat(starts, np.diff(batch.indptr)) + within] = batch.elements
            return SetBatch(indptr, elements), found
        out = np.zeros((len(ids), self.config.dim or 0), np.float32)
        for i, seg in enumerate(self._segments):
            sel = seg_of == i
            if sel.any():
                out[sel] = self._segment_rows(seg, pos[sel])
        return out, found

    def _segment_rows(self, seg: _Segment, rows: np.ndarray) -> Any:
        """Stored rows of a segment (a SetBatch for sets): from Redis for a remote one."""
        if seg.remote is not None and seg._searcher is None:
            got = self.storage.fetch_rows(seg.remote, rows)  # type: ignore[attr-defined]
            return got.vectors if got.vectors is not None else SetBatch(got.indptr, got.elements)
        if isinstance(seg.searcher, SetLSH):
            return seg.searcher.sets_.take(rows)
        return np.asarray(seg.searcher.vectors_)[rows]

    # queries ----------------------------------------------------------------------------

    def query(
        self, data: Any, k: int = 10, *, n_probes: int | None = None,
        n_rerank: int | None = None, exact: bool = False, recall: float | None = None,
        recheck: int | None = None,
    ) -> Neighbors:
        """k nearest items per query row; ids are the index's item ids (see ``hits``).
        ``recall``: the recall@10 to probe for in segments built for a target (see
        ``IndexConfig.target_recall``), instead of their own; ``n_probes`` overrides it.
        ``recheck``: segments with a compact re-rank copy (``IndexConfig.rerank_dtype``)
        measure their best ``max(k, recheck)`` again on the float32 rows (0: none; None:
        ``compact.default_recheck``, 2k for int8 rows)."""
        k = check_int("k", k, 1)
        if recheck is not None:
            recheck = check_int("recheck", recheck, 0)
        if recall is not None:
            recall = autotune.check_recall(recall, "recall")
        if getattr(self.storage, "remote", False) and not exact:
            return self._query_remote(data, k, n_probes, n_rerank, recall)
        self._refresh()
        # Each segment's searcher checks and prepares the rows itself (prepared once more
        # here, a unit row's last bits would move): the index adds only the id mapping.
        parts = [self._search_segment(seg, data, k, n_probes, n_rerank, exact, recall, recheck)
                 for seg in self._segments if seg.n_live]
        if parts:
            return merge(parts, k)
        metric = self.config.metric
        return _empty(len(as_sets(data) if metric == "jaccard" else prepare(np.asarray(data), metric)), k)

    def load_kernels(self, data: Any, k: int = 10, **options: Any) -> None:
        """Load what a query of the rows ``data`` runs (segments, compiled kernels), running
        no batch kernel where a family allows (k-means cells): a command that times its
        queries calls this first, and a parallel kernel's call costs a thread-pool round trip
        even for a few rows.  ``options`` as ``query``'s."""
        rows = np.asarray(data)
        self.query(rows[:1], k, **options)  # the segments and the one-row kernels
        if rows.ndim != 2 or len(rows) < SERIAL_BELOW:
            return
        if options.get("exact") or not all(
            seg.remote is None and isinstance(seg.searcher, VectorLSH)
            and seg.searcher.load_kernels(rows, k) for seg in self._segments if seg.n_live
        ):
            self.query(rows[:SERIAL_BELOW], k, **options)

    def _search_segment(self, seg: _Segment, data: Any, k: int, n_probes: int | None,
                        n_rerank: int | None, exact: bool, recall: float | None = None,
                        recheck: int | None = None) -> Neighbors:
        probes = n_probes if n_probes is not None else self.config.n_probes
        if exact:
            brute = BruteForce(self.config.metric).fit(
                seg.searcher.sets_ if isinstance(seg.searcher, SetLSH) else seg.searcher.vectors_,
                alive=seg.alive,
            )
            res = brute.search(data, k)
        elif isinstance(seg.searcher, VectorLSH):
            rerank = self.config.n_rerank if n_rerank is None else n_rerank
            point = _operating_point(seg)
            stop = 0.0
            if probes is None and point is not None:
                # Adaptive probing needs every candidate measured: no Hamming pre-filter (a
                # segment without row codes has none to apply).
                if rerank == 0 or not seg.searcher.codes_.shape[1]:
                    probes, stop = autotune.pick(point, recall)
                else:
                    probes = autotune.fixed_probes(point, recall)
            res = seg.searcher.search(
                data, k, n_probes=probes or self._default_probes(seg), n_rerank=rerank, stop=stop,
                recheck=default_recheck(seg.searcher.rerank_, k) if recheck is None else recheck,
            )
        else:
            res = seg.searcher.search(data, k, n_probes=probes or self._default_probes(seg))
        seg.item_ids(res.ids)  # in place: no second answer object
        return res

    def _query_remote(self, data: Any, k: int, n_probes: int | None, n_rerank: int | None,
                      recall: float | None = None) -> Neighbors:
        """A query of a remote-probe index: one round trip for every query and segment, which
        also tells whether anyone committed since (then the segment list is read again)."""
        metric = self.config.metric
        queries: Any = as_sets(data) if metric == "jaccard" else prepare(np.asarray(data), metric)
        if metric != "jaccard" and self.config.dim is not None and queries.shape[1] != self.config.dim:
            raise ParameterError(
                f"query dimension {queries.shape[1]} does not match the index's {self.config.dim}")

        if metric == "jaccard":  # what the local collision counting measures
            budget = self.config.n_candidates or 0
        else:
            budget = self.config.n_rerank if n_rerank is None else check_int("n_rerank", n_rerank, 0)

        def probes_of(seg: Any) -> int:
            return n_probes or self.config.n_probes or self._default_probes(seg, recall)

        for _ in range(5):
            remote = [s for s in self._segments if s.n_live and s.remote is not None]
            try:  # with no segment to search, the round trip still checks the version
                parts = remote_search(self.storage, remote, queries, metric, k,  # type: ignore[arg-type]
                                      probes_of, self._version, budget)
            except Stale:
                self._refresh()
                continue
            parts += [self._search_segment(s, queries, k, n_probes, n_rerank, False, recall)
                      for s in self._segments if s.n_live and s.remote is None]
            return merge(parts, k) if parts else _empty(len(queries), k)
        raise IndexFormatError(f"{self.location}: the index kept changing during the query; try again")

    def _default_probes(self, seg: _Segment, recall: float | None = None) -> int:
        point = _operating_point(seg)
        if point is not None:
            return autotune.fixed_probes(point, recall)
        if self.config.n_probes is None and hasattr(seg.family, "default_probes"):
            return int(seg.family.default_probes)  # a learned partition's, by its cells
        if getattr(seg.family, "whiten", 0.0) > 0:
            return WHITENED_PROBES_PER_TABLE * seg.family.n_tables
        return self.config.default_probes

    def keys(self, ids: np.ndarray) -> list[str | None]:
        """The key of each item id (any shape, read flat), None for -1 and for an unknown or
        removed id.  From the segments' key arrays by indexing; segments written before them
        are read from the catalogue (one read)."""
        table, slots = self.key_table(ids)
        return [table[j] for j in slots.ravel().tolist()]

    def key_table(self, ids: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """``keys`` without a string per id: the keys of the distinct ids (None as in
        ``keys``), and for each id (shaped as ``ids``) the place of its key among them."""
        ids = np.asarray(ids, np.int64)
        wanted, inverse = np.unique(ids.ravel(), return_inverse=True)
        found: list[str | None] = [None] * len(wanted)
        elsewhere = []
        for seg, at, rows in self._live_rows(wanted):
            if seg.key_arrays is None:
                elsewhere.append(at)
                continue
            decoded = keyfile.decode(*seg.key_arrays, rows)
            if len(at) == len(wanted):  # all here (one segment): the list as it comes
                found = list(decoded)
                continue
            for j, key in zip(at.tolist(), decoded):
                found[j] = key
        if elsewhere:
            at = np.concatenate(elsewhere)
            for j, it in zip(at.tolist(), self.storage.items(wanted[at])):
                found[j] = None if it is None else it.key
        return found, inverse.reshape(ids.shape)

    def key_bytes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``key_table`` as UTF-8 bytes, with no string at all: the distinct live ids' keys end
        to end (offsets, bytes) and each id's slot among them (-1: none, as ``keys``' None),
        shaped as ``ids``.  None when a segment keeps its keys in the catalogue only."""
        ids = np.asarray(ids, np.int64)
        wanted, inverse = np.unique(ids.ravel(), return_inverse=True)
        slot = np.full(len(wanted) + 1, -1, np.int64)
        parts: list[dict[str, np.ndarray]] = []
        n = 0
        for seg, at, rows in self._live_rows(wanted):
            if seg.key_arrays is None:
                return None
            slot[at] = np.arange(n, n + len(at))
            n += len(at)
            parts.append(keyfile.take(*seg.key_arrays, rows))
        joined = parts[0] if len(parts) == 1 else keyfile.concat(parts) if parts else keyfile.encode([])
        return joined[keyfile.OFFSETS], joined[keyfile.BYTES], slot[inverse].reshape(ids.shape)

    def _live_rows(self, wanted: np.ndarray) -> Iterator[tuple[_Segment, np.ndarray, np.ndarray]]:
        """For each segment holding some of the distinct ids ``wanted`` live: the segment,
        their places in ``wanted`` and their rows."""
        self._refresh()
        for seg in self._segments:
            p = seg.positions(wanted)
            hit = p >= 0
            hit[hit] = seg.alive[p[hit]] == 1
            if hit.any():
                at = np.flatnonzero(hit)
                yield seg, at, p[at]

    def hits(self, result: Neighbors) -> list[list[Hit]]:
        """Resolve a query's ids to keys, tracks and offsets (one catalogue read)."""
        wanted = np.unique(result.ids[result.ids >= 0])
        by_id = dict(zip(wanted.tolist(), self.storage.items(wanted)))
        out = []
        for ids, dists in zip(result.ids.tolist(), result.distances.tolist()):
            row = []
            for i, d in zip(ids, dists):
                it = by_id.get(i)  # None for -1 and for an item removed since the search
                if it is not None:
                    row.append(Hit(i, it.key, d, it.track_id, it.offset_s, it.meta))
            out.append(row)
        return out

    # writing ----------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Group adds into one commit: ``with index.session() as s: s.add(...)``."""
        s = Session(self)
        yield s
        s.commit()

    def add(
        self, data: Any, keys: Sequence[str] | None = None, *,
        offsets_s: Sequence[float] | np.ndarray | None = None,
        meta: Sequence[dict[str, Any] | None] | None = None,
    ) -> np.ndarray:
        """Add rows (vectors, or sets for jaccard) in one commit; returns their item ids."""
        s = Session(self)
        s.add(data, keys, offsets_s=offsets_s, meta=meta)
        return s.commit()

    def _commit(self, s: Session) -> np.ndarray:
        self._check_writable()
        n = len(s)
        metric = self.config.metric
        data: Any = concat_rows(s._data, metric) if n else None
        dim = int(data.shape[1]) if n and metric != "jaccard" else None
        ids = np.zeros(0, np.int64)
        build = SegmentBuild(SegmentInfo.new(n_items=0, config={}), {})
        if n:
            self._refresh()
            self._check_dim(dim)
            # The segment (k-means and all) is built outside the write transaction, on ids
            # reserved up front: another writer waits for a commit, not for a build.
            ids = self.reserve_ids(n)
            config = self.config if self.config.dim is not None else replace(self.config, dim=dim)
            build = build_segment(config, data, ids, prepared=True)
        with self.storage.write() as w:
            for tid in s._removed_tracks:
                dead = self.storage.ids_for_track(tid)
                if len(dead):
                    w.delete_items(dead)
                w.remove_track(tid)
            # Another writer may have given a new index its dimension since: what is stored now
            # decides (in this transaction, so no one else can).
            self._reload_config()
            self._check_dim(dim)
            if dim is not None and self.config.dim is None:
                self.config = replace(self.config, dim=dim)
                w.set_config(asdict(self.config))
            build.tracks = [{**t, "n_items": None} for t in s._tracks]
            build.items = ItemRows(
                ids, [str(i) if k is None else k for i, k in zip(ids.tolist(), s._keys)],
                np.concatenate(s._track_rows) if s._track_rows else np.zeros(0, np.int64),
                np.concatenate(s._offsets) if s._offsets else np.zeros(0), s._metas)
            self._attach_in(w, build)
        self._after_write()
        return ids

    def _check_dim(self, dim: int | None) -> None:
        if dim is not None and self.config.dim is not None and self.config.dim != dim:
            raise ParameterError(f"vectors of dimension {dim}, but the index {self.storage.location}"
                                 f" holds vectors of dimension {self.config.dim}")

    def attach(self, builds: Sequence[SegmentBuild]) -> list[list[int]]:
        self._refresh()  # another writer may have given a new index its dimension meanwhile
        for b in builds:
            self._check_build(b)
        return super().attach(builds)

    def _attach_in(self, w: Writer, build: SegmentBuild) -> list[int]:
        items = build.items
        if build.arrays and items is not None and len(items.ids):
            # The keys in the segment's row order (a k-means build reorders its rows).
            item_ids = np.asarray(items.ids)
            sorter = np.argsort(item_ids, kind="stable")
            rows = sorter[np.searchsorted(item_ids, build.arrays["ids"], sorter=sorter).clip(
                0, len(sorter) - 1)]
            if np.array_equal(item_ids[rows], build.arrays["ids"]):
                build = _with_keys(build, keyfile.encode([items.keys[i] for i in rows.tolist()]))
        return super()._attach_in(w, build)

    def _check_build(self, build: SegmentBuild) -> None:
        """A build made elsewhere fits this index: its metric and dimension."""
        cfg = build.info.config
        if build.info.n_items and cfg.get("metric") != self.config.metric:
            raise ParameterError(
                f"a {cfg.get('metric')} segment cannot join a {self.config.metric} index")
        vectors = build.arrays.get("vectors")
        if vectors is not None and self.config.dim is not None and vectors.shape[1] != self.config.dim:
            raise ParameterError(
                f"vectors of dimension {vectors.shape[1]} cannot go into an index of"
                f" dimension {self.config.dim}")
        if vectors is not None and self.config.dim is None:
            self.set_params(dim=int(vectors.shape[1]))

    def remove(self, keys: Sequence[str]) -> int:
        """Remove every item with one of these keys; returns how many were removed."""
        self._check_writable()
        ids = self.storage.ids_for_keys(list(keys))
        if len(ids):
            with self.storage.write() as w:
                w.delete_items(ids)
            self._after_write()
        return len(ids)

    def missing_keys(self, keys: Sequence[str]) -> list[str]:
        """The keys no item of the index has, in the order given."""
        held = {it.key for it in self.storage.items(self.storage.ids_for_keys(list(keys))) if it is not None}
        return [k for k in keys if k not in held]

    def remove_track(self, track_id: int) -> int:
        """Remove a source and all of its items; returns how many items went."""
        self._check_writable()
        if self.storage.track(track_id) is None:
            raise ParameterError(f"no track with id {track_id}")
        n = len(self.storage.ids_for_track(track_id))
        s = Session(self)
        s.remove_track(track_id)
        s.commit()
        return n

    def _merge(self, chosen: Sequence[_Segment]) -> SegmentBuild | None:
        # Rows in id order: a merge of many segments gives what one build of them would.
        ids = np.concatenate([s.ids[s.alive == 1] for s in chosen])
        if not len(ids):
            return None
        order = np.argsort(ids, kind="stable")
        if self.config.metric == "jaccard":
            data: Any = concat_sets(
                [s.searcher.sets_.take(np.flatnonzero(s.alive)) for s in chosen]  # type: ignore[union-attr]
            ).take(order)
        else:
            data = np.concatenate(
                [np.asarray(s.searcher.vectors_)[s.alive == 1] for s in chosen]  # type: ignore[union-attr]
            )[order]
        build = build_segment(self.config, data, ids[order], prepared=True)
        # The live rows' keys, copied byte for byte (a segment without them: the catalogue's).
        parts = []
        for s in chosen:
            rows = np.flatnonzero(s.alive)
            if s.key_arrays is not None:
                parts.append(keyfile.take(*s.key_arrays, rows))
                continue
            found = [None if it is None else it.key for it in self.storage.items(s.ids[rows])]
            if None in found:  # removed meanwhile: the catalogue keeps the keys
                return build
            parts.append(keyfile.encode(found))  # type: ignore[arg-type]
        # build rows -> their place in ``ids`` (the chosen segments' live rows in turn)
        built = np.asarray(build.arrays["ids"])
        place = order[np.searchsorted(ids[order], built)]
        merged = keyfile.concat(parts)
        return _with_keys(build, keyfile.take(merged[keyfile.OFFSETS], merged[keyfile.BYTES], place))

    def _after_merge(self, w: Writer, chosen: Sequence[_Segment]) -> None:
        removed = np.concatenate([s.ids[s.alive == 0] for s in chosen])
        if len(removed):
            w.forget_deleted(removed)

    def set_params(self, **params: Any) -> None:
        """Store new parameters (e.g. from ``tune``); build-time ones rebuild the segments."""
        self._check_writable()
        self._refresh()  # compared with what is stored now, not when this handle last looked
        fixed = [f for f in ("metric", "dim") if f in params and params[f] != getattr(self.config, f)]
        if fixed and len(self) > 0:
            raise ParameterError(
                f"cannot change {' and '.join(fixed)} of an index that holds items;"
                " create a new index"
            )
        new = replace(self.config, **params).validate()
        build_changed = any(
            getattr(new, f) != getattr(self.config, f)
            for f in ("n_tables", "n_bits", "bucket_width", "center", "whiten", "num_perm", "threshold",
                      "family", "target_recall", "rerank_dtype", "max_table_bytes")
        )
        with self.storage.write() as w:
            w.set_config(asdict(new))
        self.config = new
        self._refresh()
        if build_changed:
            self.compact(full=True)

