"""The default backend: a directory with a JSON manifest, a SQLite catalogue and .npy segments.

    index/
      manifest.json         format name and version (written once, atomically)
      catalogue.sqlite      config, segments, tracks, items, tombstones (WAL, synchronous=FULL)
      segments/<id>/*.npy   immutable arrays, memory-mapped by readers

Commit protocol: inside one SQLite write transaction (BEGIN IMMEDIATE, so one writer at a
time) the segment's arrays are written to temporary files, fsynced, renamed and the folder
fsynced; then the catalogue rows are inserted and the transaction commits.  The SQLite commit
is the only commit point: a crash before it leaves at most an unreferenced segment folder,
which the next writer deletes; a crash after it loses nothing.  Readers see the last commit
(WAL snapshot) and keep their memory maps of segments that a later compaction drops.  Before
each query a reader compares 48 bytes of the WAL-index header (``catalogue.sqlite-shm``),
which every commit rewrites, and asks SQLite for the catalogue's version only when they moved.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.errors import IndexFormatError
from audiolsh.files import ast_race_retry
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

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CATALOGUE = "catalogue.sqlite"
SEGMENTS = "segments"
#: The file a location's writers lock (``location_lock``).
WRITER_LOCK = "writer.lock"
#: The first copy of the WAL-index header in the catalogue's ``-shm`` file: a change counter,
#: the last valid frame and the salts, rewritten by every commit (sqlite.org/walformat.html).
WAL_INDEX_HEADER = 48

SCHEMA = """
CREATE TABLE IF NOT EXISTS config (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    id TEXT PRIMARY KEY, n_items INTEGER NOT NULL, config TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, content_hash TEXT NOT NULL UNIQUE,
    duration_s REAL, added_at REAL NOT NULL, n_items INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL, meta TEXT
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, track_id INTEGER, offset_s REAL, meta TEXT
);
CREATE INDEX IF NOT EXISTS items_key ON items (key);
CREATE INDEX IF NOT EXISTS items_track ON items (track_id);
CREATE TABLE IF NOT EXISTS deleted (id INTEGER PRIMARY KEY);
"""


class SegmentArrays(dict[str, np.ndarray]):
    """A stored segment's arrays: one that is missing (its file deleted by hand) is an
    IndexFormatError naming the segment, not a KeyError deep in a search."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def __missing__(self, name: str) -> np.ndarray:
        raise IndexFormatError(f"{self.where} is damaged: its array {name!r} ({name}.npy) is missing")


def catalogue_error(root: Path, exc: sqlite3.Error) -> IndexFormatError:
    """A SQLite error of a library's catalogue in the user's words, naming the library."""
    said = str(exc)
    if "readonly" in said or "unable to open" in said:
        return IndexFormatError(
            f"{root}: the catalogue cannot be opened ({said}): SQLite keeps {CATALOGUE}-shm beside it,"
            " so even reading needs write permission on the folder (or a writer holding it open)")
    if "locked" in said or "busy" in said:
        return IndexFormatError(f"{root}: the catalogue is locked by another process ({said}); try again")
    if type(exc) is sqlite3.DatabaseError or "malformed" in said or "not a database" in said:
        return IndexFormatError(f"{root}: the catalogue is damaged ({said})")
    return IndexFormatError(f"{root}: the catalogue cannot be used ({said})")


class _Catalogue(sqlite3.Connection):
    """A catalogue connection whose SQLite errors are ``catalogue_error``s (a duplicate's
    IntegrityError stays, for ``add_track``)."""

    root = Path()

    def _said(self, run: Any, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        try:
            return run(*args, **kwargs)  # type: ignore[no-any-return]
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise catalogue_error(self.root, exc) from exc

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        return self._said(super().execute, *args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        return self._said(super().executemany, *args, **kwargs)

    def executescript(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        return self._said(super().executescript, *args, **kwargs)


class _SharedFds:
    """Descriptors this process opens on files that its SQLite connections lock (the catalogue's
    -shm file, whose header ``version`` reads).  POSIX locks belong to a process and a file:
    closing any descriptor of the file drops every lock the process holds on it, SQLite's too,
    and then another process's writer may checkpoint and delete the WAL under a reader that
    goes on reading a stale snapshot.  So one descriptor a file is shared by the storages of
    this process and closed by the last of them, after its connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [users, fd, ...]
        self._keys: dict[int, tuple[int, int]] = {}

    def acquire(self, path: Path) -> int:
        """A descriptor of ``path`` to read (-1 when it cannot be opened); ``release`` it."""
        with self._lock:
            try:
                st = os.stat(path)
                entry = self._fds.get((st.st_dev, st.st_ino))
                if entry is None:
                    fd = os.open(path, os.O_RDONLY)
                    st = os.fstat(fd)  # replaced since the stat: keyed by what was opened
                    entry = self._fds.setdefault((st.st_dev, st.st_ino), [0])
                    entry.append(fd)  # a second one of the same file is kept, not closed
                    self._keys[fd] = (st.st_dev, st.st_ino)
            except OSError:
                return -1
            entry[0] += 1
            return entry[1]

    def release(self, fd: int) -> None:
        with self._lock:
            key = self._keys.get(fd)
            entry = None if key is None else self._fds.get(key)
            if key is None or entry is None:
                return
            entry[0] -= 1
            if entry[0] <= 0:
                del self._fds[key]
                for each in entry[1:]:
                    self._keys.pop(each, None)
                    os.close(each)


_SHARED_FDS = _SharedFds()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file, fsync it, rename it over ``path``, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def save_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EmbeddedWriter:
    def __init__(self, storage: EmbeddedStorage, db: sqlite3.Connection) -> None:
        self.st = storage
        self.db = db
        self.written: list[Path] = []

    def set_config(self, config: dict[str, Any], name: str = INDEX_CONFIG) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO config (name, value) VALUES (?, ?)", (name, dumps(config))
        )

    def allocate_ids(self, n: int) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = 'next_id'").fetchone()
        start = 0 if row is None else int(row[0])
        self.db.execute(
            "INSERT OR REPLACE INTO counters (name, value) VALUES ('next_id', ?)", (start + n,)
        )
        return start

    def put_segment(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> None:
        folder = self.st.root / SEGMENTS / info.id
        folder.mkdir(parents=True, exist_ok=False)
        self.written.append(folder)
        for name, array in arrays.items():
            save_array(folder / f"{name}.npy", array)
        fsync_dir(folder)
        fsync_dir(folder.parent)
        self.db.execute(
            "INSERT INTO segments (id, n_items, config, created_at) VALUES (?, ?, ?, ?)",
            (info.id, info.n_items, dumps(info.config), info.created_at),
        )

    def drop_segment(self, segment_id: str) -> None:
        self.db.execute("DELETE FROM segments WHERE id = ?", (segment_id,))

    def add_track(
        self, *, path: str, content_hash: str, duration_s: float | None, kind: str,
        meta: dict[str, Any] | None = None,
    ) -> int:
        try:
            cur = self.db.execute(
                "INSERT INTO tracks (path, content_hash, duration_s, added_at, kind, meta)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (path, content_hash, duration_s, time.time(), kind, dumps(meta or {})),
            )
        except sqlite3.IntegrityError as exc:
            raise duplicate_track(path, content_hash) from exc
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def set_track_items(self, track_id: int, n_items: int) -> None:
        self.db.execute("UPDATE tracks SET n_items = ? WHERE id = ?", (n_items, track_id))

    def set_track_meta(self, track_id: int, meta: dict[str, Any]) -> None:
        self.db.execute("UPDATE tracks SET meta = ? WHERE id = ?", (dumps(meta), track_id))

    def remove_track(self, track_id: int) -> None:
        self.db.execute("DELETE FROM tracks WHERE id = ?", (track_id,))

    def add_items(
        self, ids: np.ndarray, keys: Sequence[str], track_ids: np.ndarray,
        offsets_s: np.ndarray, metas: Sequence[dict[str, Any] | None] | None,
    ) -> None:
        tids = [None if t < 0 else t for t in track_ids.tolist()]
        offs = [None if o != o else o for o in offsets_s.tolist()]
        meta_json = [None] * len(ids) if metas is None else [
            None if m is None else dumps(m) for m in metas
        ]
        self.db.executemany(
            "INSERT INTO items (id, key, track_id, offset_s, meta) VALUES (?, ?, ?, ?, ?)",
            zip(ids.tolist(), keys, tids, offs, meta_json),
        )

    def delete_items(self, ids: np.ndarray) -> None:
        rows = [(i,) for i in np.asarray(ids, dtype=np.int64).tolist()]
        self.db.executemany("DELETE FROM items WHERE id = ?", rows)
        self.db.executemany("INSERT OR IGNORE INTO deleted (id) VALUES (?)", rows)

    def forget_deleted(self, ids: np.ndarray) -> None:
        rows = [(i,) for i in np.asarray(ids, dtype=np.int64).tolist()]
        self.db.executemany("DELETE FROM deleted WHERE id = ?", rows)


class EmbeddedStorage:
    """Open (or create) an index directory."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False, readonly: bool = False):
        self.root = Path(root)
        self.location = str(self.root)
        self.readonly = readonly
        self._own_commits = 0
        self._shm: int | None = None  # descriptor of the catalogue's -shm file; -1: unusable
        self._seen_header = b""
        self._data_version = 0
        manifest = self.root / MANIFEST
        if not manifest.exists():
            if not create:
                raise IndexFormatError(
                    f"{self.root}: no index here (no {MANIFEST}); create one with `audiolsh index`"
                    " or `audiolsh vectors add`"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / SEGMENTS).mkdir(exist_ok=True)
            self._db = self._connect()
            write_atomic(
                manifest,
                json.dumps(
                    {
                        "format": FORMAT,
                        "format_version": FORMAT_VERSION,
                        "storage": "embedded",
                        "catalogue": CATALOGUE,
                        "segments": SEGMENTS,
                        "created_at": time.time(),
                    },
                    indent=2,
                ).encode(),
            )
        else:
            self._check_manifest(manifest)
            self._db = self._connect()

    def _check_manifest(self, manifest: Path) -> None:
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{manifest}: unreadable manifest ({exc})") from exc
        if data.get("format") != FORMAT:
            raise IndexFormatError(f"{manifest}: not an audiolsh index")
        check_format_version(manifest, "index", data.get("format_version"), newest=FORMAT_VERSION)

    def _connect(self) -> sqlite3.Connection:
        path = self.root / CATALOGUE
        try:
            if self.readonly:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                     isolation_level=None, timeout=30, factory=_Catalogue)
            else:
                db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30,
                                     factory=_Catalogue)
        except sqlite3.Error as exc:
            raise catalogue_error(self.root, exc) from exc
        assert isinstance(db, _Catalogue)
        db.root = self.root
        if not self.readonly:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(SCHEMA)
        return db

    # reads -------------------------------------------------------------------------------

    def config(self, name: str = INDEX_CONFIG) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM config WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])  # type: ignore[no-any-return]

    def version(self) -> int:
        # Every commit rewrites the WAL-index header: while its bytes stay the same, no one
        # committed, and one read of 48 bytes replaces a SQLite statement before each query.
        # Read before data_version, so a commit in between is seen now or on the next call.
        header = self._wal_index_header()
        if not header or header != self._seen_header:
            # data_version moves on other connections' commits only; count our own as well.
            self._data_version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            self._seen_header = header
        return (self._data_version << 32) + self._own_commits

    def _wal_index_header(self) -> bytes:
        """The catalogue's WAL-index header, b"" when it cannot be read (then every
        ``version`` asks SQLite).  The -shm file lives while our connection is open."""
        if self._shm is None:
            self._db.execute("PRAGMA data_version").fetchone()  # maps the -shm file
            self._shm = _SHARED_FDS.acquire(self.root / f"{CATALOGUE}-shm")
        if self._shm < 0:
            return b""
        header = os.pread(self._shm, WAL_INDEX_HEADER, 0)
        return header if len(header) == WAL_INDEX_HEADER else b""

    def segments(self) -> list[SegmentInfo]:
        rows = self._db.execute(
            "SELECT id, n_items, config, created_at FROM segments ORDER BY created_at, id"
        ).fetchall()
        return [SegmentInfo(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def load_arrays(self, segment_id: str) -> dict[str, np.ndarray]:
        folder = self.root / SEGMENTS / segment_id
        arrays = SegmentArrays(f"{self.root}: segment {segment_id}")
        damaged = None
        for p in sorted(folder.glob("*.npy")):
            try:
                arrays[p.stem] = ast_race_retry(partial(np.load, p, mmap_mode="r", allow_pickle=False))
            except FileNotFoundError:
                arrays.clear()
                break
            except (OSError, ValueError) as exc:
                damaged = f"{p.name}: {exc}"
                break
        # A compaction commits the segment's removal before any writer deletes its folder: when
        # it is still listed after the read, the read saw every file (and a file it could not
        # read is damaged, not being deleted).
        listed = self._db.execute("SELECT 1 FROM segments WHERE id = ?", (segment_id,)).fetchone()
        if listed is not None and damaged is not None:
            raise IndexFormatError(f"{arrays.where} is damaged ({damaged})")
        if listed is None or not arrays:
            raise SegmentMissing(f"{self.root}: segment {segment_id} is gone")
        return arrays

    def deleted(self) -> np.ndarray:
        rows = self._db.execute("SELECT id FROM deleted ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    @staticmethod
    def _track(r: tuple[Any, ...]) -> Track:
        return Track(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"))

    _TRACK_COLS = "id, path, content_hash, duration_s, added_at, n_items, kind, meta"

    def tracks(self) -> list[Track]:
        rows = self._db.execute(f"SELECT {self._TRACK_COLS} FROM tracks ORDER BY id").fetchall()
        return [self._track(r) for r in rows]

    def track(self, track_id: int) -> Track | None:
        r = self._db.execute(
            f"SELECT {self._TRACK_COLS} FROM tracks WHERE id = ?", (track_id,)
        ).fetchone()
        return None if r is None else self._track(r)

    def track_by_hash(self, content_hash: str) -> Track | None:
        r = self._db.execute(
            f"SELECT {self._TRACK_COLS} FROM tracks WHERE content_hash = ?", (content_hash,)
        ).fetchone()
        return None if r is None else self._track(r)

    def items(self, ids: np.ndarray) -> list[Item | None]:
        wanted = np.asarray(ids, np.int64).ravel().tolist()
        rows = self._select_in("SELECT id, key, track_id, offset_s, meta FROM items WHERE id IN ({})",
                               sorted(set(wanted)))
        found = {r[0]: Item(r[0], r[1], r[2], r[3], None if r[4] is None else json.loads(r[4])) for r in rows}
        return [found.get(i) for i in wanted]

    def ids_for_keys(self, keys: Sequence[str]) -> np.ndarray:
        rows = self._select_in("SELECT id FROM items WHERE key IN ({})", list(keys))
        return np.array(sorted(r[0] for r in rows), dtype=np.int64)

    def ids_for_track(self, track_id: int) -> np.ndarray:
        rows = self._db.execute(
            "SELECT id FROM items WHERE track_id = ? ORDER BY id", (track_id,)
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _select_in(self, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (its ``IN ({})`` filled with placeholders) for all ``values``, in
        chunks below SQLite's parameter limit."""
        rows: list[tuple[Any, ...]] = []
        for chunk in iter_chunks(len(values), 900):
            part = list(values[chunk])
            rows += self._db.execute(sql.format(",".join("?" * len(part))), part).fetchall()
        return rows

    def item_arrays(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self._select_in(
            "SELECT id, coalesce(track_id, -1), coalesce(offset_s, 'nan') FROM items WHERE id IN ({})",
            np.unique(np.asarray(ids, np.int64)).tolist(),
        )
        return align_items(ids, *_columns(rows))

    def track_items(self, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self._select_in(
            "SELECT id, track_id, coalesce(offset_s, 'nan') FROM items WHERE track_id IN ({})",
            np.unique(np.asarray(track_ids, np.int64)).tolist(),
        )
        rows.sort(key=lambda r: r[0])
        return _columns(rows)

    def n_items(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])

    # writes ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[EmbeddedWriter]:
        if self.readonly:
            raise IndexFormatError(f"{self.root}: opened read-only")
        self._db.execute("BEGIN IMMEDIATE")
        writer = EmbeddedWriter(self, self._db)
        try:
            self._collect_garbage()
            yield writer
        except BaseException:
            self._db.execute("ROLLBACK")
            for folder in writer.written:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        self._db.execute("COMMIT")
        self._own_commits += 1

    def _collect_garbage(self) -> None:
        """Delete segment folders no committed row names (a crashed write, a compaction)."""
        live = {r[0] for r in self._db.execute("SELECT id FROM segments")}
        for folder in (self.root / SEGMENTS).iterdir():
            if folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)

    def mapped_files(self) -> list[Path]:
        # Not the catalogue: reading it through a descriptor of our own would, on closing it,
        # drop this process's SQLite locks on it (see _SharedFds).
        files: list[Path] = []
        for info in self.segments():
            files += sorted((self.root / SEGMENTS / info.id).glob("*.npy"))
        return files

    def close(self) -> None:
        self._db.close()
        if self._shm is not None and self._shm >= 0:
            _SHARED_FDS.release(self._shm)
            self._shm = -1


@contextlib.contextmanager
def location_lock(root: str | os.PathLike[str], *, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the writers' lock of a directory location (``flock`` on ``root/writer.lock``, the
    folder made if need be): one writer of a library at a time.  The kernel releases it when its
    holder dies, so a killed writer never leaves it held."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        for attempt in itertools.count():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise IndexFormatError(
                        f"{root}: another writer holds the lock (waited {timeout_s:g} s);"
                        " try again when it is done") from None
                if attempt == WAIT_SAID_AFTER:
                    log.warning("%s: waiting for another writer to finish", root)
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _columns(rows: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(id, track id, offset) rows as three arrays."""
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    A = np.array(rows, dtype=np.float64)
    return A[:, 0].astype(np.int64), A[:, 1].astype(np.int64), A[:, 2]
