"""Building a library: audio files in, one decode per file, segments of every mode out.

The stages, each usable on its own so that they can run in other processes or machines:

1. extract (``library.extract``): a file's features for every mode, in parallel on an
   ``Executor``;
2. fit (``Library.fit``): the learned state, once, from the first batch of files in path order
   (:data:`FIRST_BATCH` of them, or all there are), stored in the library's config;
3. build (``build_part``): a ``LibraryPart``, every mode's segment for a batch of files, with
   item ids reserved in the library up front; or (``build_from_spec``) from a ``BuildSpec``,
   the library's config and index configs as JSON, with no handle on the library: its rows are
   numbered locally and get their ids at attach.  ``save`` / ``load`` (a folder) and
   ``to_bytes`` / ``from_bytes`` (one zip) carry a part between processes as arrays and JSON;
4. attach (``Library.attach``): parts committed, every mode first and the catalogue last.

``index_audio`` runs them all here.  Only the parent writes, in commits of ``commit_every``
files, so an interrupted run keeps every committed file and the next run skips them (their
content hash is in the catalogue) and goes on with the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.audio import content_hash, find_audio
from audiolsh.audio.decode import EMPTY_FILE
from audiolsh.errors import AudioError, AudiolshError, IndexFormatError
from audiolsh.files import shown, stat_key
from audiolsh.hashing import concat_sets
from audiolsh.index import IndexConfig, ItemRows, SegmentBuild, build_segment
from audiolsh.library.config import LibraryConfig
from audiolsh.library.extract import MAX_DURATION_S, Extracted, extract_safe
from audiolsh.library.learned import Learned
from audiolsh.library.modes import modes_for
from audiolsh.library.tags import has_tags_read, read_tags
from audiolsh.parallel import Executor, LocalExecutor, thread_map, usable_cores
from audiolsh.storage import SegmentInfo
from audiolsh.storage.base import check_format_version, dumps
from audiolsh.storage.embedded import save_array, write_atomic

if TYPE_CHECKING:
    from audiolsh.library.core import Library

log = logging.getLogger(__name__)

FIRST_BATCH = 32
#: The content hash of an empty file (refused as ``EMPTY_FILE``, each by name).
EMPTY_HASH = hashlib.sha1(b"").hexdigest()
PART_FORMAT = "audiolsh-library-part"
#: 2: ``local_ids`` (a part built without a writable library numbers its rows from 0 in each
#: mode; ``Library.attach`` gives them ids)
PART_VERSION = 2
SPEC_FORMAT = "audiolsh-build-spec"
SPEC_VERSION = 1


@dataclass
class LibraryPart:
    """Every mode's segments for a batch of files, and the tracks for the catalogue.

    ``local_ids``: the rows of each mode are numbered 0..n-1 (built from a ``BuildSpec``
    without reserving); ``Library.attach`` reserves their ids, in the order of the parts.
    """

    tracks: list[dict[str, Any]] = field(default_factory=list)
    builds: dict[str, list[SegmentBuild]] = field(default_factory=dict)
    local_ids: bool = False

    def _layout(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``part.json``'s document and every array by its file name in the folder."""
        files: dict[str, np.ndarray] = {}
        modes: dict[str, list[dict[str, Any]]] = {}
        for name, builds in self.builds.items():
            modes[name] = []
            for i, b in enumerate(builds):
                sub = f"{name}-{i}"
                arrays = dict(b.arrays)
                if b.items is not None:
                    arrays.update({"_item_ids": b.items.ids, "_item_tracks": b.items.track_rows,
                                   "_item_offsets": b.items.offsets_s})
                files.update({f"{sub}/{key}.npy": a for key, a in arrays.items()})
                modes[name].append({
                    "folder": sub, "arrays": sorted(arrays),
                    "info": {"id": b.info.id, "n_items": b.info.n_items, "config": b.info.config,
                             "created_at": b.info.created_at},
                    "tracks": b.tracks,
                    "items": None if b.items is None else {"keys": b.items.keys, "metas": b.items.metas},
                })
        doc = {"format": PART_FORMAT, "format_version": PART_VERSION, "tracks": self.tracks,
               "local_ids": self.local_ids, "modes": modes}
        return doc, files

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Arrays as .npy, the rest as JSON (never pickled); ``part.json`` is written last."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        doc, files = self._layout()
        for rel, a in files.items():
            (root / rel).parent.mkdir(exist_ok=True)
            save_array(root / rel, a)
        write_atomic(root / "part.json", dumps(doc).encode())

    def to_bytes(self) -> bytes:
        """What ``save`` writes, as one uncompressed zip archive: a part sent between machines."""
        doc, files = self._layout()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for rel, a in files.items():
                with zf.open(rel, "w", force_zip64=True) as f:
                    np.save(f, np.ascontiguousarray(a), allow_pickle=False)
            zf.writestr("part.json", dumps(doc))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, folder: str | os.PathLike[str]) -> LibraryPart:
        """A part from ``to_bytes``, unpacked into ``folder`` and loaded memory-mapped."""
        root = Path(folder)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = zf.namelist()
                if any(n.startswith("/") or ".." in Path(n).parts for n in names):
                    raise ValueError("member outside the folder")
                zf.extractall(root)
        except (zipfile.BadZipFile, ValueError) as exc:
            raise IndexFormatError(f"{root}: not a saved library part ({exc})") from None
        return cls.load(root, mmap=True)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, mmap: bool = False) -> LibraryPart:
        """A saved part; ``mmap``: its arrays memory-mapped (read-only) instead of read."""
        root = Path(folder)
        try:
            doc = json.loads((root / "part.json").read_text())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{root}: not a saved library part ({exc})") from exc
        if doc.get("format") != PART_FORMAT:
            raise IndexFormatError(f"{root}: not a saved library part")
        check_format_version(root, "library part", doc.get("format_version"), newest=PART_VERSION)
        part = cls(doc["tracks"], local_ids=bool(doc.get("local_ids", False)))
        for name, builds in doc["modes"].items():
            part.builds[name] = []
            for b in builds:
                sub = root / b["folder"]
                arrays = {k: np.load(sub / f"{k}.npy", allow_pickle=False, mmap_mode="r" if mmap else None)
                          for k in b["arrays"]}
                items = None
                if b["items"] is not None:
                    items = ItemRows(arrays.pop("_item_ids"), b["items"]["keys"], arrays.pop("_item_tracks"),
                                     arrays.pop("_item_offsets"), b["items"]["metas"])
                info = SegmentInfo(**b["info"])
                part.builds[name].append(SegmentBuild(info, arrays, b["tracks"], items))
        return part


@dataclass(frozen=True)
class BuildSpec:
    """What building a part needs from a library, as plain data: its config (the learned state
    with it), every vector mode's index config and, per mode, which of the files to build it
    already holds (a run stopped between the modes and the catalogue).  A builder in another
    process or machine gets it as JSON and needs no handle on the library."""

    config: LibraryConfig
    index_configs: dict[str, IndexConfig]
    held: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, library: Library, content_hashes: Iterable[str] = ()) -> BuildSpec:
        wanted = set(content_hashes)
        held = {m.name: frozenset(wanted & set(library.mode_track_ids(m.name)))
                for m in modes_for(library.modes)}
        return cls(library.state().config, {n: i.config for n, i in library.indexes.items()},
                   {n: h for n, h in held.items() if h})

    def to_dict(self) -> dict[str, Any]:
        return {"format": SPEC_FORMAT, "format_version": SPEC_VERSION, "library": self.config.to_dict(),
                "indexes": {n: asdict(c) for n, c in self.index_configs.items()},
                "held": {n: sorted(h) for n, h in self.held.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildSpec:
        if data.get("format") != SPEC_FORMAT:
            raise IndexFormatError("not a library build spec")
        check_format_version("build spec", "build spec", data.get("format_version"), newest=SPEC_VERSION)
        return cls(LibraryConfig.from_dict(data["library"], "build spec"),
                   {n: IndexConfig.from_dict(c) for n, c in data["indexes"].items()},
                   {n: frozenset(h) for n, h in data["held"].items()})


def build_part(library: Library, batch: Sequence[Extracted]) -> LibraryPart:
    """Every mode's segment for ``batch`` (modes that already hold a file leave it out), with
    item ids reserved in ``library``."""
    spec = BuildSpec.of(library, (ex.content_hash for ex in batch))
    return build_from_spec(spec, batch, reserve=lambda name, n: library.indexes[name].reserve_ids(n))


def build_from_spec(spec: BuildSpec, batch: Sequence[Extracted], *,
                    reserve: Callable[[str, int], np.ndarray] | None = None) -> LibraryPart:
    """``build_part`` from a spec: ``reserve(mode, n)`` gives item ids, or None numbers each
    mode's rows from 0 (a ``local_ids`` part: ``Library.attach`` gives the ids)."""
    state = Learned(spec.config)
    part = LibraryPart([{"path": shown(ex.path), "content_hash": ex.content_hash, "duration_s": ex.duration_s,
                         "n_windows": int(ex.n_windows), "tags": ex.tags} for ex in batch],
                       local_ids=reserve is None)
    for mode in modes_for(spec.config.modes):
        have = spec.held.get(mode.name, frozenset())
        todo = [ex for ex in batch if ex.content_hash not in have]
        if not todo:
            continue
        tracks = [{"path": shown(ex.path), "content_hash": ex.content_hash, "duration_s": ex.duration_s}
                  for ex in todo]
        if mode.metric == "landmarks":
            from audiolsh.index.fingerprint import build_segment as build_fingerprints

            part.builds[mode.name] = [build_fingerprints(tracks, [ex.landmarks for ex in todo])]
            continue
        rows = [mode.rows_of(state, ex) for ex in todo]
        n = sum(len(offsets) for _, offsets in rows)
        owner = np.repeat(-2 - np.arange(len(todo)), [len(offsets) for _, offsets in rows])
        offsets_s = np.concatenate([np.asarray(o, np.float64) for _, o in rows])
        keys = [f"{ex.content_hash[:12]}@{o:.2f}" for ex, (_, offs) in zip(todo, rows) for o in offs]
        ids = np.zeros(0, np.int64)
        if n:
            parts = [data for data, offs in rows if len(offs)]
            data = concat_sets(parts) if mode.metric == "jaccard" else np.concatenate(
                [np.asarray(d) for d in parts])
            ids = np.arange(n, dtype=np.int64) if reserve is None else reserve(mode.name, n)
            build = build_segment(spec.index_configs[mode.name], data, ids)
        else:
            build = SegmentBuild(SegmentInfo.new(n_items=0, config={}), {})
        build.tracks = [{**t, "kind": "audio", "meta": None} for t in tracks]
        # The items in the rows' own order, as the keys, owners and offsets are: a k-means
        # build stores its rows cell by cell, and its "ids" array follows them.
        build.items = ItemRows(ids, keys, owner, offsets_s, [None] * n)
        part.builds[mode.name] = [build]
    return part


def number_items(builds: Sequence[SegmentBuild], reserve: Callable[[int], np.ndarray]) -> list[SegmentBuild]:
    """Builds whose rows are numbered locally (0..n-1 each), with item ids reserved now: one
    reservation for all of them, given in the builds' order."""
    sizes = [0 if b.items is None else len(b.items.ids) for b in builds]
    if not sum(sizes):
        return list(builds)
    ids = reserve(sum(sizes))
    out = []
    for b, start, n in zip(builds, np.cumsum([0, *sizes[:-1]]).tolist(), sizes):
        if b.items is None or not n:
            out.append(b)
            continue
        mine = ids[start:start + n]
        arrays = {**b.arrays, "ids": mine[np.asarray(b.arrays["ids"], np.int64)]}
        items = replace(b.items, ids=mine[np.asarray(b.items.ids, np.int64)])
        out.append(SegmentBuild(b.info, arrays, b.tracks, items))
    return out


@dataclass
class IngestReport:
    added: list[str]
    skipped: list[str]
    failed: list[tuple[str, str]]
    #: entries of walked folders that are not regular files (a FIFO, a device, a link loop)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    #: files indexed before tags were read (library format 6) whose tags this run read
    tagged: list[str] = field(default_factory=list)


def audio_files(paths: Iterable[str | os.PathLike[str]], report: IngestReport,
                on_file: Callable[[str, str], None] | None = None) -> list[str]:
    """The audio files under ``paths`` (``find_audio``), absolute: the catalogue names a file
    wherever the library is read from later (a server's working folder is not the indexer's).
    Walked entries that are not regular files go to ``report.ignored`` and
    ``on_file(path, "ignored: <problem>")``; folders that cannot be read to ``report.failed`` and
    ``on_file(path, "failed: <path>: <problem>")``."""

    def skip(path: Path, problem: str) -> None:
        report.ignored.append((str(path), problem))
        if on_file:
            on_file(str(path), f"ignored: {problem}")

    def unreadable(folder: Path, problem: str) -> None:
        report.failed.append((os.path.abspath(folder), f"{shown(folder)}: {problem}"))
        if on_file:
            on_file(str(folder), f"failed: {report.failed[-1][1]}")

    return [os.path.abspath(p) for p in find_audio(paths, on_skip=skip, on_error=unreadable)]


def _hash_or_error(path: str) -> tuple[str | None, str]:
    try:
        return content_hash(path), ""
    except AudiolshError as exc:
        return None, str(exc)


def _hash_and_stat(path: str) -> tuple[str | None, str, tuple[int, int, int, int] | None]:
    """:func:`_hash_or_error` and the file's :func:`~audiolsh.files.stat_key` if it was the same
    before and after the read (None: it changed meanwhile, or cannot be stat'ed)."""
    try:
        before = stat_key(os.stat(path))
    except OSError:
        before = None
    digest, error = _hash_or_error(path)
    try:
        after = stat_key(os.stat(path))
    except OSError:
        after = None
    return digest, error, before if before == after else None


def hash_stream(files: Sequence[str], workers: int | None = None, *,
                on_hashed: Callable[[str, int, bool], None] | None = None,
                known: Mapping[str, str] | None = None,
                stats: dict[str, tuple[int, int, int, int]] | None = None,
                ) -> Generator[tuple[str | None, str], None, None]:
    """(content hash, "") or (None, error) of each of ``files``, in order, as they are taken,
    read in ``workers`` threads (default and at most: the usable cores) a few files ahead.
    hashlib releases the GIL, so the cores hash side by side (on a large collection this is all
    a resumed run does), and a file is hashed shortly before it is decoded, so the second read
    finds it in the page cache.  ``on_hashed(path, len(files), failed)`` follows each file;
    ``known`` maps files to the hashes a caller read already (not read again); ``stats``, if
    given, gets each hashed file's stat key, taken around the read (left out if the file
    changed meanwhile)."""
    known = known or {}
    cores = usable_cores()
    todo = (f for f in files if f not in known)
    with contextlib.closing(thread_map(_hash_and_stat, todo, min(workers or cores, cores))) as read:
        for f in files:
            if f in known:
                out: tuple[str | None, str] = (known[f], "")
            else:
                digest, error, key = next(read)
                out = (digest, error)
                if stats is not None and key is not None and digest is not None:
                    stats[f] = key
            if on_hashed:
                on_hashed(f, len(files), out[0] is None)
            yield out


def plan_file(f: str, digest: str | None, error: str, indexed: Callable[[str], object],
              report: IngestReport, later: dict[str, list[str]]) -> str:
    """Where ``f``, of content ``digest`` (None: its hash failed with ``error``), goes:
    ``"failed"`` (in ``report.failed``: unreadable or empty; empty files are never
    deduplicated), ``"skipped"`` (in ``report.skipped``: ``indexed(digest)`` is truthy),
    ``"later"`` (in ``later[digest]``: a file of its content is planned before it) or
    ``"todo"`` (to extract; ``later[digest]`` starts empty).  A later file of the same content
    is "already indexed" only once the first is indexed: if that one fails, the next is tried."""
    if digest is None:
        report.failed.append((f, error))
        return "failed"
    if digest == EMPTY_HASH:
        report.failed.append((f, str(AudioError(f, EMPTY_FILE))))
        return "failed"
    if indexed(digest):
        report.skipped.append(f)
        return "skipped"
    if digest in later:
        later[digest].append(f)
        return "later"
    later[digest] = []
    return "todo"


def plan_files(files: Iterable[str], hashes: Iterable[tuple[str | None, str]],
               indexed: Callable[[str], object], report: IngestReport
               ) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """:func:`plan_file` of each of ``files`` given their (content hash, "") or (None, error):
    (path, digest) to extract, and the later files of the same content as one of them, by
    digest."""
    todo: list[tuple[str, str]] = []
    later: dict[str, list[str]] = {}
    for f, (digest, error) in zip(files, hashes):
        if plan_file(f, digest, error, indexed, report, later) == "todo" and digest is not None:
            todo.append((f, digest))
    return todo, later


def index_audio(
    library: Library,
    paths: Iterable[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    commit_every: int = 8,
    on_file: Callable[[str, str], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    max_duration_s: float | None = MAX_DURATION_S,
    on_extracted: Callable[[str, float | None], None] | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    on_hashed: Callable[[str, int, bool], None] | None = None,
    known_hashes: Mapping[str, str] | None = None,
) -> IngestReport:
    """Index every audio file under ``paths`` (``roots``: the folders names are relative to,
    default ``paths``); ``on_file(path, status)`` reports progress,
    ``on_extracted(path, duration_s)`` each planned file as its extraction ends (the audio it
    held, for a rate; ``None`` when it failed); ``on_hashed(path, n_files, failed)`` each file as
    its content hash is read (``known_hashes``: files' hashes a caller read, not read again);
    ``on_plan(n)`` whenever the count of files that are or may be extracted changes (the files
    not yet hashed count: it falls to the planned count as the hashes come in, and rises by the
    copies tried again when the first of a content failed).
    The hashes are read a few files ahead of the extraction, which starts once there are as many
    new files as workers (or every file is hashed). Extraction runs on ``executor`` (default:
    ``workers`` local processes); a file longer than ``max_duration_s`` (``None``: no limit) is
    refused, after decoding one frame past it.
    Tags of tracks indexed before tags were read (a format-6 library) are read for the files
    found already indexed and stored in one commit once every file is planned."""
    report = IngestReport([], [], [])
    paths = list(paths)
    files = audio_files(paths, report, on_file)
    library.add_roots(paths if roots is None else list(roots))
    run = executor or LocalExecutor(workers)
    cfg = library.config
    untagged = {t.content_hash: t for t in library.tracks() if not has_tags_read(t)}
    tags: dict[int, dict[str, Any]] = {}
    extracted: set[str] = set()  # contents this run extracted (committed or pending)
    later: dict[str, list[str]] = {}
    digests: dict[str, str] = {}  # of the files handed to extraction
    pending: list[Extracted] = []
    planned = len(files)

    def indexed(digest: str) -> bool:
        return digest in extracted or library.track_by_hash(digest) is not None

    def job(f: str, digest: str) -> tuple[Any, ...]:
        digests[f] = digest
        return (f, digest, cfg.modes, cfg.window_s, cfg.hop_s, max_duration_s)

    def planned_jobs(hashes: Iterator[tuple[str | None, str]]) -> Iterator[tuple[Any, ...]]:
        nonlocal planned
        for f, (digest, error) in zip(files, hashes):
            where = plan_file(f, digest, error, indexed, report, later)
            if where == "failed":
                on_file and on_file(f, f"failed: {report.failed[-1][1]}")
            elif where == "skipped":
                on_file and on_file(f, "skipped")
                track = untagged.get(digest or "")
                if track is not None and track.id not in tags:
                    tags[track.id] = read_tags(f)
                    report.tagged.append(f)
            if where == "todo" and digest is not None:
                yield job(f, digest)
            else:
                planned -= 1
                on_plan and on_plan(planned)
        library.set_tags(tags)  # every file planned: the tags read, in one commit

    def flush() -> None:
        if not pending:
            return
        added = {library.track(tid).content_hash for tid in library.add_batch(pending)}  # type: ignore[union-attr]
        for ex in pending:  # another writer may have added some meanwhile
            (report.added if ex.content_hash in added else report.skipped).append(ex.path)
        pending.clear()

    on_plan and on_plan(planned)
    first = len(library) == 0
    hashes = hash_stream(files, getattr(run, "workers", None), on_hashed=on_hashed, known=known_hashes)
    with contextlib.closing(hashes):
        jobs: Iterable[tuple[Any, ...]] = planned_jobs(hashes)
        while True:
            again: list[tuple[str, str]] = []
            for result in run.map(extract_safe, jobs):
                if isinstance(result, Extracted):
                    pending.append(result)
                    extracted.add(result.content_hash)
                    on_file and on_file(result.path, "indexed")
                    on_extracted and on_extracted(result.path, result.duration_s)
                    for f in later.pop(result.content_hash, []):
                        report.skipped.append(f)
                        on_file and on_file(f, "skipped")
                    if len(pending) >= (max(commit_every, FIRST_BATCH) if first else commit_every):
                        flush()
                        first = False
                else:
                    report.failed.append(result)
                    on_file and on_file(result[0], f"failed: {result[1]}")
                    on_extracted and on_extracted(result[0], None)
                    digest = digests[result[0]]
                    same = later.get(digest)
                    if same:  # the next file of this content is tried itself (its name may decode it)
                        again.append((same.pop(0), digest))
                    else:
                        later.pop(digest, None)
            hashes.close()  # every file was hashed and planned
            if not again:
                break
            jobs = [job(f, digest) for f, digest in again]
            planned += len(again)
            on_plan and on_plan(planned)
    flush()
    library.store_missing_scale()
    return report
