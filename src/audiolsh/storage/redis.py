"""The shared-store backend: a whole index in Redis, under one key prefix (redis-py).

    redis://[:password@]host:port/db?prefix=NAME     rediss:// for TLS
    unix:///path/redis.sock?db=N&prefix=NAME

Keys (``P`` is the prefix):

    P:format          the manifest (JSON): format name and version, written at creation
    P:version         an integer, INCR'd by every commit
    P:config          hash  config name -> JSON
    P:counters        hash  next_id, next_track
    P:segments        hash  segment id -> JSON (n_items, config, created_at, where its arrays are)
    P:seg:ID:TOKEN:J:I  chunk I of array J of a segment: binary .npy bytes (never pickle), in
                      chunks below Redis's 512 MB value limit
    P:tracks          hash  track id -> JSON;  P:hashes  hash  content hash -> track id
    P:items           hash  item id -> 16 bytes (int64 track id, -1: none; float64 offset, NaN:
                      none) + JSON [key, meta], so ``item_arrays`` and ``items`` are one HMGET
    P:keyids          hash  key -> packed int64 item ids;  P:trackids  hash  track id -> same
    P:deleted         set of removed item ids
    P:lock            the writers' lease lock (its lease: the location's ``lease=SECONDS``)
    P:pending         set of the segment keys the lock's holder has written but not committed

Commit protocol: a writer takes the lease lock (``SET NX PX``, renewed while it is held), writes
its segments' arrays under keys nothing references yet, stages every catalogue change in
memory, and applies them at the end in one MULTI/EXEC together with the version INCR and the
lock's release, WATCHing the lock so that a writer whose lease expired commits nothing.  A
writer killed before EXEC leaves the previous version whole and at most unreferenced segment
keys, listed in P:pending, which the next writer deletes (and then sweeps the prefix's segment
keys with SCAN, never KEYS, for any a writer that lost its lease wrote after that).  Reads,
inside a write too, see the last committed state.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.errors import IndexFormatError
from audiolsh.storage.base import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_CONFIG,
    LOCK_TIMEOUT_S,
    WAIT_SAID_AFTER,
    Item,
    SegmentInfo,
    SegmentMissing,
    Track,
    align_items,
    check_format_version,
    dumps,
    duplicate_track,
    iter_chunks,
)
from audiolsh.storage.redis_codec import (
    _LOC,
    _client,
    _from_npy,
    _guard,
    _item,
    _item_value,
    _npy_bytes,
    _pack_ids,
    _redis,
    _redis_errors,
    _track,
    _unpack_ids,
    _unreachable,
    describe,
    join,
    lease_of,
    location_mode,
    parent,
    parse,
    storage_exists,
)
from audiolsh.storage.redis_remote import (
    PROBE,
    PROBE_ARRAYS,
    VECTORS,
    Probed,
    RemoteLayout,
    decode,
    probe_args,
    probed_rows,
    read_arrays,
    remote_ready,
    write_probe_hashes,
)

log = logging.getLogger(__name__)

#: Segment arrays are stored in values of at most this many bytes (Redis allows 512 MB).
CHUNK_BYTES = 64 * 2**20
#: The manifest's format version of an index in remote-probe mode.
REMOTE_FORMAT_VERSION = 2
#: Commands with more fields than this are split (still inside the one MULTI/EXEC).
BATCH = 10_000

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2])
else return 0 end
"""



class RedisWriter:
    """Stages a write's changes; ``RedisStorage.write`` applies them in one MULTI/EXEC."""

    def __init__(self, storage: RedisStorage, token: str) -> None:
        self.st = storage
        self.location = storage.location
        self.token = token
        self.r = storage._r
        self.k = storage._key
        self.config: dict[str, str] = {}
        self.counters: dict[str, int] = {}
        self.new_segments: dict[str, str] = {}
        self.dropped: set[str] = set()
        self.written: list[str] = []  # segment chunk keys of this write
        self.tracks: dict[int, dict[str, Any] | None] = {}
        self.hashes: dict[str, int | None] = {}
        self.items: dict[int, bytes | None] = {}
        self.keyids: dict[str, set[int]] = {}
        self.trackids: dict[int, set[int]] = {}
        self.deleted: dict[int, bool] = {}

    # counters and config

    def _counter(self, name: str, first: int) -> int:
        if name not in self.counters:
            value = self.r.hget(self.k("counters"), name)
            self.counters[name] = first if value is None else int(value)
        return self.counters[name]

    @_guard
    def set_config(self, config: dict[str, Any], name: str = INDEX_CONFIG) -> None:
        self.config[name] = dumps(config)

    @_guard
    def allocate_ids(self, n: int) -> int:
        start = self._counter("next_id", 0)
        self.counters["next_id"] = start + int(n)
        return start

    # segments

    @_guard
    def put_segment(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> None:
        base = self.k(f"seg:{info.id}:{self.token}")
        remote, full = None, arrays
        if self.st.remote and remote_ready(arrays):
            n_tables = len(arrays["table_start"]) - 1
            width = int(arrays[VECTORS].shape[1]) if VECTORS in arrays else 0
            remote = RemoteLayout(base, n_tables, len(arrays["ids"]), width)
            arrays = {n: a for n, a in arrays.items() if n not in PROBE_ARRAYS}
        layout = []
        pipe = self.r.pipeline(transaction=False)
        queued = 0
        for j, (name, array) in enumerate(arrays.items()):
            data = _npy_bytes(array)
            chunks = list(iter_chunks(len(data), self.st.chunk_bytes)) or [slice(0, 0)]
            for i, part in enumerate(chunks):
                key = f"{base}:{j}:{i}"
                self.written.append(key)
                pipe.sadd(self.k("pending"), key)  # before the value: no stray key goes unlisted
                pipe.set(key, bytes(data[part]))
                queued += part.stop - part.start
                if queued >= self.st.chunk_bytes:
                    pipe.execute()
                    queued = 0
            layout.append([name, len(chunks)])
        pipe.execute()
        record: dict[str, Any] = {
            "n_items": info.n_items, "config": info.config, "created_at": info.created_at,
            "base": base, "arrays": layout,
        }
        if remote is not None:
            self.written += remote.keys()
            self.r.sadd(self.k("pending"), *remote.keys())
            write_probe_hashes(self.r.pipeline(transaction=False), remote, full, self.st.chunk_bytes)
            record["remote"] = remote.to_dict()
        self.new_segments[info.id] = dumps(record)
        self.dropped.discard(info.id)

    @_guard
    def drop_segment(self, segment_id: str) -> None:
        self.new_segments.pop(segment_id, None)
        self.dropped.add(segment_id)

    # tracks

    def _get_track(self, track_id: int) -> dict[str, Any] | None:
        if track_id in self.tracks:
            return self.tracks[track_id]
        data = self.r.hget(self.k("tracks"), str(track_id))
        return None if data is None else json.loads(data)  # type: ignore[no-any-return]

    @_guard
    def add_track(
        self, *, path: str, content_hash: str, duration_s: float | None, kind: str,
        meta: dict[str, Any] | None = None,
    ) -> int:
        staged = self.hashes.get(content_hash, -1)
        if staged is not None and (staged != -1 or self.r.hexists(self.k("hashes"), content_hash)):
            raise duplicate_track(path, content_hash)
        tid = self._counter("next_track", 1)
        self.counters["next_track"] = tid + 1
        self.tracks[tid] = Track(tid, path, content_hash, duration_s, time.time(), 0, kind,
                                 meta or {}).to_dict()
        self.hashes[content_hash] = tid
        return tid

    @_guard
    def set_track_items(self, track_id: int, n_items: int) -> None:
        track = self._get_track(track_id)
        if track is not None:
            self.tracks[track_id] = {**track, "n_items": int(n_items)}

    @_guard
    def set_track_meta(self, track_id: int, meta: dict[str, Any]) -> None:
        track = self._get_track(track_id)
        if track is not None:
            self.tracks[track_id] = {**track, "meta": dict(meta)}

    @_guard
    def remove_track(self, track_id: int) -> None:
        track = self._get_track(track_id)
        if track is not None:
            self.tracks[track_id] = None
            self.hashes[track["content_hash"]] = None

    # items

    def _load_sets(self, staged: dict[Any, set[int]], hash_name: str, wanted: Sequence[Any]) -> None:
        missing = list(dict.fromkeys(w for w in wanted if w not in staged))
        for part in iter_chunks(len(missing), BATCH):
            names = missing[part]
            values = self.r.hmget(self.k(hash_name), [str(n) for n in names])
            for name, value in zip(names, values):
                staged[name] = set(_unpack_ids(value).tolist())

    def _get_items(self, ids: list[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        rest = []
        for i in ids:
            if i not in self.items:
                rest.append(i)
            elif (staged := self.items[i]) is not None:
                out[i] = staged
        for part in iter_chunks(len(rest), BATCH):
            chunk = rest[part]
            for i, v in zip(chunk, self.r.hmget(self.k("items"), [str(i) for i in chunk])):
                if v is not None:
                    out[i] = v
        return out

    @_guard
    def add_items(
        self, ids: np.ndarray, keys: Sequence[str], track_ids: np.ndarray,
        offsets_s: np.ndarray, metas: Sequence[dict[str, Any] | None] | None,
    ) -> None:
        ids_l = np.asarray(ids, np.int64).tolist()
        tids = np.asarray(track_ids, np.int64).tolist()
        offs = np.asarray(offsets_s, np.float64).tolist()
        meta_l: Sequence[dict[str, Any] | None] = [None] * len(ids_l) if metas is None else metas
        self._load_sets(self.keyids, "keyids", keys)
        self._load_sets(self.trackids, "trackids", [t for t in set(tids) if t >= 0])
        for i, key, tid, off, meta in zip(ids_l, keys, tids, offs, meta_l):
            self.items[i] = _item_value(key, tid if tid >= 0 else -1, off, meta)
            self.keyids[key].add(i)
            if tid >= 0:
                self.trackids[tid].add(i)

    @_guard
    def delete_items(self, ids: np.ndarray) -> None:
        ids_l = np.asarray(ids, np.int64).tolist()
        found = {i: _item(i, v) for i, v in self._get_items(ids_l).items()}
        self._load_sets(self.keyids, "keyids", [it.key for it in found.values()])
        self._load_sets(self.trackids, "trackids",
                        [it.track_id for it in found.values() if it.track_id is not None])
        for i in ids_l:
            it = found.get(i)
            if it is not None:
                self.items[i] = None
                self.keyids[it.key].discard(i)
                if it.track_id is not None:
                    self.trackids[it.track_id].discard(i)
            self.deleted[i] = True

    @_guard
    def forget_deleted(self, ids: np.ndarray) -> None:
        for i in np.asarray(ids, np.int64).tolist():
            self.deleted[i] = False

    # commit

    def queue(self, pipe: Any) -> None:
        """Every staged change as commands of the commit's MULTI."""
        k = self.k
        if self.config:
            pipe.hset(k("config"), mapping=self.config)
        if self.counters:
            pipe.hset(k("counters"), mapping=self.counters)
        if self.dropped:
            infos = self.r.hmget(k("segments"), sorted(self.dropped))
            chunk_keys = [key for data in infos if data is not None for key in _chunk_keys(data)]
            pipe.hdel(k("segments"), *sorted(self.dropped))
            for part in iter_chunks(len(chunk_keys), BATCH):
                pipe.unlink(*chunk_keys[part])
        if self.new_segments:
            pipe.hset(k("segments"), mapping=self.new_segments)
        _apply(pipe, k("tracks"), {str(t): None if d is None else dumps(d) for t, d in self.tracks.items()})
        _apply(pipe, k("hashes"), {h: None if t is None else str(t) for h, t in self.hashes.items()})
        _apply(pipe, k("items"), {str(i): v for i, v in self.items.items()})
        _apply(pipe, k("keyids"), {key: _pack_ids(s) if s else None for key, s in self.keyids.items()})
        _apply(pipe, k("trackids"), {str(t): _pack_ids(s) if s else None
                                     for t, s in self.trackids.items()})
        add = [i for i, on in self.deleted.items() if on]
        gone = [i for i, on in self.deleted.items() if not on]
        for part in iter_chunks(len(add), BATCH):
            pipe.sadd(k("deleted"), *add[part])
        for part in iter_chunks(len(gone), BATCH):
            pipe.srem(k("deleted"), *gone[part])


def _apply(pipe: Any, key: str, changes: dict[str, Any]) -> None:
    """HSET the values, HDEL the Nones, in batches."""
    sets = [(f, v) for f, v in changes.items() if v is not None]
    dels = [f for f, v in changes.items() if v is None]
    for part in iter_chunks(len(sets), BATCH):
        pipe.hset(key, mapping=dict(sets[part]))
    for part in iter_chunks(len(dels), BATCH):
        pipe.hdel(key, *dels[part])


def _chunk_keys(data: bytes | str) -> list[str]:
    """Every key of a segment: its array chunks and, for a remote one, its probe hashes."""
    seg = json.loads(data)
    keys = [f"{seg['base']}:{j}:{i}" for j, (_, n) in enumerate(seg["arrays"]) for i in range(n)]
    if "remote" in seg:
        keys += RemoteLayout.from_dict(seg["base"], seg["remote"]).keys()
    return keys





# ------------------------------------------------------------------------------ storage


class RedisStorage:
    """Open (or create) the index under ``?prefix=`` of a Redis database.

    ``lease_s``: how long the write lock outlives a writer that died (renewed while held;
    default: the location's ``lease=SECONDS``, else 30 s);
    ``lock_timeout_s``: how long a writer waits for another one; ``version_ttl_s``: how long
    ``version()`` may answer from its cache (a handle sees its own commits at once).
    """

    chunk_bytes = CHUNK_BYTES

    def __init__(self, url: str, *, create: bool = False, readonly: bool = False,
                 lease_s: float | None = None, lock_timeout_s: float = 60.0,
                 version_ttl_s: float = 0.5) -> None:
        redis_url, self.prefix, self.location = parse(url)
        self._asked_mode = location_mode(url)
        #: remote-probe mode: new segments keep buckets and rows in Redis (see redis_remote)
        self.remote = False
        self._probe_sha: str | None = None
        self.readonly = readonly
        self.lease_s = lease_of(url) if lease_s is None else lease_s
        self.lock_timeout_s = lock_timeout_s
        self.version_ttl_s = version_ttl_s
        self._version: tuple[int, float] | None = None
        self._r = _client(redis_url)
        try:
            self._open(create)
        except BaseException:
            self._r.close()
            raise

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @_guard
    def _open(self, create: bool) -> None:
        manifest = self._r.get(self._key("format"))
        if manifest is None:
            if not create or self.readonly:
                raise IndexFormatError(
                    f"{self.location}: no index here; create one with `audiolsh index`"
                    " or `audiolsh vectors add`")
            made = self._asked_mode or "shared"
            data = {"format": FORMAT, "storage": "redis", "mode": made, "created_at": time.time(),
                    # a reader that knows no remote segments must refuse such an index
                    "format_version": REMOTE_FORMAT_VERSION if made == "remote" else FORMAT_VERSION}
            pipe = self._r.pipeline(transaction=True)
            pipe.set(self._key("format"), json.dumps(data), nx=True)
            pipe.setnx(self._key("version"), 0)
            pipe.execute()
            manifest = self._r.get(self._key("format"))
        try:
            data = json.loads(manifest)
        except ValueError as exc:
            raise IndexFormatError(f"{self.location}: unreadable manifest ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise IndexFormatError(f"{self.location}: not an audiolsh index")
        check_format_version(self.location, "index", data.get("format_version"),
                             newest=REMOTE_FORMAT_VERSION)
        mode = data.get("mode", "shared")
        if self._asked_mode is not None and self._asked_mode != mode:
            raise IndexFormatError(
                f"{self.location}: this index was made in {mode} mode, not {self._asked_mode};"
                f" open it with ?mode={mode} or without a mode")
        self.remote = mode == "remote"

    # reads -------------------------------------------------------------------------------

    @_guard
    def config(self, name: str = INDEX_CONFIG) -> dict[str, Any] | None:
        data = self._r.hget(self._key("config"), name)
        return None if data is None else json.loads(data)  # type: ignore[no-any-return]

    @_guard
    def version(self) -> int:
        now = time.monotonic()
        if self._version is not None and now - self._version[1] < self.version_ttl_s:
            return self._version[0]
        value = int(self._r.get(self._key("version")) or 0)
        self._version = (value, now)
        return value

    @_guard
    def segments(self) -> list[SegmentInfo]:
        out = []
        for sid, data in self._r.hgetall(self._key("segments")).items():
            seg = json.loads(data)
            out.append(SegmentInfo(sid.decode(), seg["n_items"], seg["config"], seg["created_at"]))
        return sorted(out, key=lambda s: (s.created_at, s.id))

    def _record(self, segment_id: str) -> dict[str, Any]:
        data = self._r.hget(self._key("segments"), segment_id)
        if data is None:
            raise SegmentMissing(f"{self.location}: segment {segment_id} is gone")
        return json.loads(data)  # type: ignore[no-any-return]

    def _chunked(self, segment_id: str, seg: dict[str, Any],
                 skip: Collection[str] = ()) -> dict[str, np.ndarray]:
        """The segment's chunked arrays, but those named in ``skip``."""
        wanted = [(j, name, n) for j, (name, n) in enumerate(seg["arrays"]) if name not in skip]
        pipe = self._r.pipeline(transaction=True)
        pipe.hexists(self._key("segments"), segment_id)
        for j, _, n in wanted:
            for i in range(n):
                pipe.get(f"{seg['base']}:{j}:{i}")
        listed, *chunks = pipe.execute()
        if not listed or any(c is None for c in chunks):
            raise SegmentMissing(f"{self.location}: segment {segment_id} is gone")
        arrays = {}
        at = 0
        for _, name, n in wanted:
            parts = chunks[at:at + n]
            at += n
            arrays[name] = _from_npy(parts[0] if n == 1 else b"".join(parts),
                                     f"{self.location}: segment {segment_id}")
        return arrays

    @_guard
    def load_arrays(self, segment_id: str) -> dict[str, np.ndarray]:
        seg = self._record(segment_id)
        arrays = self._chunked(segment_id, seg)
        if "remote" in seg:
            try:
                arrays.update(read_arrays(self._r, RemoteLayout.from_dict(seg["base"], seg["remote"])))
            except LookupError:
                raise SegmentMissing(f"{self.location}: segment {segment_id} is gone") from None
        return arrays

    @_guard
    def load_local_arrays(self, segment_id: str, skip: Collection[str] = (),
                          ) -> tuple[dict[str, np.ndarray], RemoteLayout | None]:
        """For a remote segment: its chunked arrays but ``skip`` (what a remote query does not
        need), and where its probe hashes are.  For another segment: all of its arrays."""
        seg = self._record(segment_id)
        if "remote" not in seg:
            return self._chunked(segment_id, seg), None
        layout = RemoteLayout.from_dict(seg["base"], seg["remote"])
        return self._chunked(segment_id, seg, skip), layout

    @_guard
    def probe(self, queries: Sequence[tuple[Sequence[RemoteLayout], Sequence[bytes]]],
              budget: int = 0) -> list[tuple[int, list[Probed | None]]]:
        """Run ``PROBE`` for each query (the remote segments it searches, and its packed probes
        of each): all queries in one round trip, one command per query.  Each answer carries
        the index version it saw.  ``budget`` > 0: at most that many rows of a segment come
        back, those in the most probed buckets."""
        if not queries:
            return []
        version_key = self._key("version")
        for attempt in range(2):
            if self._probe_sha is None:
                self._probe_sha = self._r.script_load(PROBE)
            try:
                if len(queries) == 1:  # the common case: one command on a pooled connection
                    layouts, probes = queries[0]
                    replies = [self._call("EVALSHA", self._probe_sha, 1, version_key,
                                          *probe_args(layouts, probes, budget))]
                else:
                    pipe = self._r.pipeline(transaction=False)
                    for layouts, probes in queries:
                        pipe.execute_command(
                            "EVALSHA", self._probe_sha, 1, version_key, *probe_args(layouts, probes, budget))
                    replies = pipe.execute()
                break
            except _redis.exceptions.NoScriptError:  # a restarted or flushed server
                if attempt:
                    raise
                self._probe_sha = None
        out = [decode(reply, layouts) for reply, (layouts, _) in zip(replies, queries)]
        self._version = (max(v for v, _ in out), time.monotonic())
        return out

    def _call(self, *args: Any) -> Any:
        """One command and its reply, without redis-py's per-call retry and bookkeeping (a
        query's latency is mostly its one round trip); a broken connection is dropped."""
        pool = self._r.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command(*args)
            return conn.read_response()
        except (_redis.exceptions.ConnectionError, _redis.exceptions.TimeoutError):
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    @_guard
    def fetch_rows(self, layout: RemoteLayout, rows: np.ndarray) -> Probed:
        """The data of some rows of a remote segment (one round trip)."""
        names = np.asarray(rows, "<u4").tobytes()
        fields = [names[4 * i:4 * i + 4] for i in range(len(rows))]
        values = self._hmget_raw(layout.rows_key, fields)
        if any(v is None for v in values):
            raise SegmentMissing(f"{self.location}: rows of a segment are gone")
        return probed_rows(np.asarray(rows, np.int64), values, layout.width)

    def _hmget_raw(self, key: str, fields: Sequence[Any]) -> list[Any]:
        pipe = self._r.pipeline(transaction=False)
        for part in iter_chunks(len(fields), BATCH):
            pipe.hmget(key, fields[part])
        return [v for values in pipe.execute() for v in values]

    @_guard
    def deleted(self) -> np.ndarray:
        return np.array(sorted(int(i) for i in self._r.smembers(self._key("deleted"))), dtype=np.int64)

    @_guard
    def tracks(self) -> list[Track]:
        return sorted((_track(d) for d in self._r.hgetall(self._key("tracks")).values()),
                      key=lambda t: t.id)

    @_guard
    def track(self, track_id: int) -> Track | None:
        data = self._r.hget(self._key("tracks"), str(int(track_id)))
        return None if data is None else _track(data)

    @_guard
    def track_by_hash(self, content_hash: str) -> Track | None:
        tid = self._r.hget(self._key("hashes"), content_hash)
        return None if tid is None else self.track(int(tid))

    def _hmget(self, key: str, fields: Sequence[Any]) -> list[Any]:
        """HMGET of many fields in one round trip (a pipeline of batches)."""
        if not len(fields):
            return []
        pipe = self._r.pipeline(transaction=False)
        for part in iter_chunks(len(fields), BATCH):
            pipe.hmget(self._key(key), [str(f) for f in fields[part]])
        return [v for values in pipe.execute() for v in values]

    @_guard
    def items(self, ids: np.ndarray) -> list[Item | None]:
        wanted = [int(i) for i in np.asarray(ids).ravel()]
        unique = sorted(set(wanted))
        found = {i: _item(i, v) for i, v in zip(unique, self._hmget("items", unique)) if v is not None}
        return [found.get(i) for i in wanted]

    @_guard
    def ids_for_keys(self, keys: Sequence[str]) -> np.ndarray:
        unique = list(dict.fromkeys(keys))
        found = [_unpack_ids(v) for v in self._hmget("keyids", unique) if v]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)

    @_guard
    def ids_for_track(self, track_id: int) -> np.ndarray:
        return np.sort(_unpack_ids(self._r.hget(self._key("trackids"), str(int(track_id)))))

    def _locations(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found ids, their track ids, their offsets) of the items among ``ids``."""
        pairs = [(i, v[:_LOC.size]) for i, v in zip(ids, self._hmget("items", ids)) if v is not None]
        if not pairs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
        loc = np.frombuffer(b"".join(p[1] for p in pairs), dtype=[("t", "<i8"), ("o", "<f8")])
        return (np.array([p[0] for p in pairs], np.int64), loc["t"].astype(np.int64),
                loc["o"].astype(np.float64))

    @_guard
    def item_arrays(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unique = np.unique(np.asarray(ids, np.int64)).tolist()
        return align_items(ids, *self._locations(unique))

    @_guard
    def track_items(self, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tids = np.unique(np.asarray(track_ids, np.int64)).tolist()
        found = [_unpack_ids(v) for v in self._hmget("trackids", tids) if v]
        ids = np.unique(np.concatenate(found)).tolist() if found else []
        return self._locations(ids)

    @_guard
    def n_items(self) -> int:
        return int(self._r.hlen(self._key("items")))

    # writes ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[RedisWriter]:
        if self.readonly:
            raise IndexFormatError(f"{self.location}: opened read-only")
        token = uuid.uuid4().hex
        self._lock(token)
        stop = threading.Event()
        lost = threading.Event()
        renew = threading.Thread(target=self._renew, args=(token, stop, lost), daemon=True,
                                 name="audiolsh-redis-lease")
        renew.start()
        writer = RedisWriter(self, token)
        committed = False
        try:
            self._collect_garbage()
            yield writer
            stop.set()
            renew.join()
            self._commit(writer, lost)
            committed = True
        except _redis_errors() as exc:
            raise _unreachable(self.location, exc) from None
        finally:
            stop.set()
            renew.join()
            if not committed:
                with contextlib.suppress(*_redis_errors()):
                    self._discard(writer)
                    self._r.eval(_RELEASE, 1, self._key("lock"), token)

    def _discard(self, writer: RedisWriter) -> None:
        """Delete the segment keys of a write that did not commit.  An interruption during EXEC
        may have committed it after all: then its segments are listed, and stay."""
        ids = list(writer.new_segments)
        listed = self._r.hmget(self._key("segments"), ids) if ids else []
        if any(d is not None and json.loads(d)["base"].endswith(writer.token) for d in listed):
            return
        for part in iter_chunks(len(writer.written), BATCH):
            self._r.unlink(*writer.written[part])
            self._r.srem(self._key("pending"), *writer.written[part])

    @_guard
    def _lock(self, token: str) -> None:
        _take_lease(self._r, self._key("lock"), token, self.lease_s, self.lock_timeout_s, self.location)

    def _renew(self, token: str, stop: threading.Event, lost: threading.Event) -> None:
        _keep_lease(self._r, self._key("lock"), token, self.lease_s, stop, lost)

    def _commit(self, writer: RedisWriter, lost: threading.Event) -> None:
        lock = self._key("lock")
        lost_lock = IndexFormatError(
            f"{self.location}: the write lock expired before the commit (another writer took"
            " it); nothing was committed")
        lease_ms = max(1, int(self.lease_s * 1000))
        if lost.is_set() or not self._r.eval(_RENEW, 1, lock, writer.token, lease_ms):
            raise lost_lock
        with self._r.pipeline(transaction=True) as pipe:
            pipe.watch(lock)
            if pipe.get(lock) != writer.token.encode():
                raise lost_lock
            pipe.multi()
            pipe.incr(self._key("version"))
            writer.queue(pipe)
            pipe.delete(self._key("pending"), lock)
            try:
                results = pipe.execute()
            except _redis.exceptions.WatchError:
                raise lost_lock from None
        self._version = (int(results[0]), time.monotonic())

    def _collect_garbage(self) -> None:
        """Delete segment keys no committed segment names: a writer died before its commit (or
        lost its lease).  Its keys are listed in P:pending; a sweep of the prefix's segment keys
        (SCAN) then finds any it wrote after the list was taken."""
        pending = self._key("pending")
        stray = list(self._r.smembers(pending))
        if not stray:
            return
        for part in iter_chunks(len(stray), BATCH):
            self._r.unlink(*stray[part])
        self._r.delete(pending)
        live = {json.loads(d)["base"] for d in self._r.hvals(self._key("segments"))}
        pattern = _glob_escape(self._key("seg:")) + "*"
        stale = []
        for key in self._r.scan_iter(match=pattern, count=1000):
            if key.decode().rsplit(":", 2)[0] not in live:
                stale.append(key)
        for part in iter_chunks(len(stale), BATCH):
            self._r.unlink(*stale[part])

    def segment_keys(self) -> set[str]:
        """Ids of the segments that have arrays stored (committed or not): for tests."""
        pattern = _glob_escape(self._key("seg:")) + "*"
        start = len(self._key("seg:"))
        return {k.decode()[start:].split(":", 1)[0] for k in self._r.scan_iter(match=pattern)}

    def mapped_files(self) -> list[Path]:
        return []  # segments are fetched into the process's memory

    def close(self) -> None:
        with contextlib.suppress(*_redis_errors()):
            self._r.close()


def _take_lease(r: Any, key: str, token: str, lease_s: float, timeout_s: float, where: str) -> None:
    """Take the lease lock ``key`` (``SET NX PX``), waiting up to ``timeout_s`` for its holder."""
    deadline = time.monotonic() + timeout_s
    lease_ms = max(1, int(lease_s * 1000))
    for attempt in itertools.count():
        if r.set(key, token, nx=True, px=lease_ms):
            return
        if time.monotonic() > deadline:
            raise IndexFormatError(
                f"{where}: another writer holds the write lock (waited {timeout_s:g} s);"
                " try again when it is done")
        if attempt == WAIT_SAID_AFTER:
            log.warning("%s: waiting for another writer to finish (a killed writer's lock runs out"
                        " within %g s)", where, lease_s)
        time.sleep(0.05)


def _keep_lease(r: Any, key: str, token: str, lease_s: float, stop: threading.Event,
                lost: threading.Event) -> None:
    """Renew a held lease every third of it until ``stop``; ``lost`` when another took it."""
    lease_ms = max(1, int(lease_s * 1000))
    while not stop.wait(lease_s / 3):
        try:
            if not r.eval(_RENEW, 1, key, token, lease_ms):
                lost.set()
                return
        except _redis_errors():
            pass  # the holder's next commit reports it


@contextlib.contextmanager
def location_lock(location: str, *, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the writers' lock of a location (a library: every index under its prefix), a lease
    as the write lock's (``?lease=``), renewed while held: a killed holder's lock expires."""
    url, prefix, where = parse(location)
    lease_s = lease_of(location)
    key = f"{prefix}:writer-lock"
    token = uuid.uuid4().hex
    r = _client(url)
    stop, lost = threading.Event(), threading.Event()
    renew = threading.Thread(target=_keep_lease, args=(r, key, token, lease_s, stop, lost),
                             daemon=True, name="audiolsh-redis-location-lease")
    try:
        try:
            _take_lease(r, key, token, lease_s, timeout_s, where)
        except _redis_errors() as exc:
            raise _unreachable(where, exc) from None
        renew.start()
        yield
    finally:
        stop.set()
        if renew.is_alive():
            renew.join()
        with contextlib.suppress(*_redis_errors()):
            r.eval(_RELEASE, 1, key, token)
        r.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


__all__ = ["RedisStorage", "describe", "join", "location_lock", "parent", "parse", "storage_exists"]
