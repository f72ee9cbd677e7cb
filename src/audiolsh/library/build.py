"""Building a library: audio files in, one decode per file, segments of every mode out.

The stages, each usable on its own so that they can run in other processes or machines:

1. extract (``library.extract``): a file's features for every mode, in parallel on an
   ``Executor``;
2. fit (``Library.fit``): the learned state, once, from the first batch of files in path order
   (:data:`FIRST_BATCH` of them, or all there are), stored in the library's config;
3. build (``build_part``): a ``LibraryPart``, every mode's segment for a batch of files, with
   item ids reserved in the library up front; ``save`` / ``load`` carry it between processes
   as arrays and JSON;
4. attach (``Library.attach``): parts committed, every mode first and the catalogue last.

``index_audio`` runs them all here.  Only the parent writes, in commits of ``commit_every``
files, so an interrupted run keeps every committed file and the next run skips them (their
content hash is in the catalogue) and goes on with the rest.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.audio import content_hash, find_audio
from audiolsh.errors import AudiolshError, IndexFormatError
from audiolsh.hashing import concat_sets
from audiolsh.index import ItemRows, SegmentBuild, build_segment
from audiolsh.library.extract import Extracted, extract_safe
from audiolsh.library.modes import modes_for
from audiolsh.parallel import Executor, LocalExecutor
from audiolsh.storage import SegmentInfo
from audiolsh.storage.base import check_format_version, dumps
from audiolsh.storage.embedded import save_array, write_atomic

if TYPE_CHECKING:
    from audiolsh.library.core import Library

log = logging.getLogger(__name__)

FIRST_BATCH = 32
PART_FORMAT = "audiolsh-library-part"
PART_VERSION = 1


@dataclass
class LibraryPart:
    """Every mode's segments for a batch of files, and the tracks for the catalogue."""

    tracks: list[dict[str, Any]] = field(default_factory=list)
    builds: dict[str, list[SegmentBuild]] = field(default_factory=dict)

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Arrays as .npy, the rest as JSON (never pickled); ``part.json`` is written last."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        modes: dict[str, list[dict[str, Any]]] = {}
        for name, builds in self.builds.items():
            modes[name] = []
            for i, b in enumerate(builds):
                sub = root / f"{name}-{i}"
                sub.mkdir(exist_ok=True)
                arrays = dict(b.arrays)
                if b.items is not None:
                    arrays.update({"_item_ids": b.items.ids, "_item_tracks": b.items.track_rows,
                                   "_item_offsets": b.items.offsets_s})
                for key, a in arrays.items():
                    save_array(sub / f"{key}.npy", a)
                modes[name].append({
                    "folder": sub.name, "arrays": sorted(arrays),
                    "info": {"id": b.info.id, "n_items": b.info.n_items, "config": b.info.config,
                             "created_at": b.info.created_at},
                    "tracks": b.tracks,
                    "items": None if b.items is None else {"keys": b.items.keys, "metas": b.items.metas},
                })
        doc = {"format": PART_FORMAT, "format_version": PART_VERSION, "tracks": self.tracks, "modes": modes}
        write_atomic(root / "part.json", dumps(doc).encode())

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> LibraryPart:
        root = Path(folder)
        try:
            doc = json.loads((root / "part.json").read_text())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{root}: not a saved library part ({exc})") from exc
        if doc.get("format") != PART_FORMAT:
            raise IndexFormatError(f"{root}: not a saved library part")
        check_format_version(root, "library part", doc.get("format_version"), newest=PART_VERSION)
        part = cls(doc["tracks"])
        for name, builds in doc["modes"].items():
            part.builds[name] = []
            for b in builds:
                sub = root / b["folder"]
                arrays = {k: np.load(sub / f"{k}.npy", allow_pickle=False) for k in b["arrays"]}
                items = None
                if b["items"] is not None:
                    items = ItemRows(arrays.pop("_item_ids"), b["items"]["keys"], arrays.pop("_item_tracks"),
                                     arrays.pop("_item_offsets"), b["items"]["metas"])
                info = SegmentInfo(**b["info"])
                part.builds[name].append(SegmentBuild(info, arrays, b["tracks"], items))
        return part


def build_part(library: Library, batch: Sequence[Extracted]) -> LibraryPart:
    """Every mode's segment for ``batch`` (modes that already hold a file leave it out)."""
    state = library.state()
    part = LibraryPart([{"path": ex.path, "content_hash": ex.content_hash, "duration_s": ex.duration_s,
                         "n_windows": int(ex.n_windows)} for ex in batch])
    for mode in modes_for(library.modes):
        have = library.mode_track_ids(mode.name)
        todo = [ex for ex in batch if ex.content_hash not in have]
        if not todo:
            continue
        tracks = [{"path": ex.path, "content_hash": ex.content_hash, "duration_s": ex.duration_s}
                  for ex in todo]
        if mode.metric == "landmarks":
            from audiolsh.index.fingerprint import build_segment as build_fingerprints

            part.builds[mode.name] = [build_fingerprints(tracks, [ex.landmarks for ex in todo])]
            continue
        index = library.indexes[mode.name]
        rows = [mode.rows_of(state, ex) for ex in todo]
        n = sum(len(offsets) for _, offsets in rows)
        owner = np.repeat(-2 - np.arange(len(todo)), [len(offsets) for _, offsets in rows])
        offsets_s = np.concatenate([np.asarray(o, np.float64) for _, o in rows])
        keys = [f"{ex.content_hash[:12]}@{o:.2f}" for ex, (_, offs) in zip(todo, rows) for o in offs]
        if n:
            parts = [data for data, offs in rows if len(offs)]
            data = concat_sets(parts) if mode.metric == "jaccard" else np.concatenate(
                [np.asarray(d) for d in parts])
            build = build_segment(index.config, data, index.reserve_ids(n))
        else:
            build = SegmentBuild(SegmentInfo.new(n_items=0, config={}), {})
        build.tracks = [{**t, "kind": "audio", "meta": None} for t in tracks]
        build.items = ItemRows(build.arrays.get("ids", np.zeros(0, np.int64)), keys, owner, offsets_s,
                               [None] * n)
        part.builds[mode.name] = [build]
    return part


@dataclass
class IngestReport:
    added: list[str]
    skipped: list[str]
    failed: list[tuple[str, str]]


def index_audio(
    library: Library,
    paths: Iterable[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    commit_every: int = 8,
    on_file: Callable[[str, str], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> IngestReport:
    """Index every audio file under ``paths``; ``on_file(path, status)`` reports progress.
    Extraction runs on ``executor`` (default: ``workers`` local processes)."""
    files = [str(p) for p in find_audio(paths)]
    report = IngestReport([], [], [])
    todo: list[tuple[str, str]] = []
    seen: set[str] = set()
    for f in files:
        try:
            digest = content_hash(f)
        except AudiolshError as exc:
            report.failed.append((f, str(exc)))
            continue
        if library.track_by_hash(digest) is not None or digest in seen:
            report.skipped.append(f)
            continue
        seen.add(digest)
        todo.append((f, digest))
    if on_plan:
        on_plan(len(todo))
    for f in report.skipped:
        on_file and on_file(f, "skipped")
    for f, msg in report.failed:
        on_file and on_file(f, f"failed: {msg}")
    if not todo:
        return report
    pending: list[Extracted] = []
    cfg = library.config

    def flush() -> None:
        if not pending:
            return
        library.add_batch(pending)
        report.added.extend(ex.path for ex in pending)
        pending.clear()

    first = len(library) == 0
    jobs = [(f, digest, cfg.modes, cfg.window_s, cfg.hop_s) for f, digest in todo]
    for result in (executor or LocalExecutor(workers)).map(extract_safe, jobs):
        if isinstance(result, Extracted):
            pending.append(result)
            on_file and on_file(result.path, "indexed")
            if len(pending) >= (max(commit_every, FIRST_BATCH) if first else commit_every):
                flush()
                first = False
        else:
            report.failed.append(result)
            on_file and on_file(result[0], f"failed: {result[1]}")
    flush()
    return report
