"""The web app's glue: uploads in, domain calls, records out.  Routes call only this.

Every query of an upload passes the admission queue (``admission``: at most ``settings.workers``
analysed at once, ``settings.max_queue`` waiting, the rest refused with 503) and runs with one
library handle borrowed from the pool for its whole length (decoding included), so none shares
a handle.  The pool holds one handle more than the workers, for the catalogue's cheap requests,
which never wait behind an analysis.
"""

from __future__ import annotations

import logging
import math
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from audiolsh import __version__
from audiolsh.errors import AudioError, AudiolshError, ParameterError, StorageUnavailable
from audiolsh.library import Library, is_library
from audiolsh.library import analyse as analyse_clip
from audiolsh.library.tags import TAG_FIELDS, track_name
from audiolsh.query.identify import MIN_CLIP_S, identify_clip, identify_segments
from audiolsh.query.records import (
    identify_record,
    match_record,
    named,
    segment_record,
    similar_record,
    track_record,
)
from audiolsh.query.similar import check_query, own_track, stored_clip
from audiolsh.query.similar import similar as run_similar
from audiolsh.storage.page_in import PageIn, page_in
from audiolsh.web import uploads
from audiolsh.web.admission import Admission
from audiolsh.web.errors import BadQuery, BadUpload, Busy, NotFound
from audiolsh.web.plots import query_plots
from audiolsh.web.pool import LibraryPool
from audiolsh.web.served import ServedFiles
from audiolsh.web.settings import Settings

log = logging.getLogger(__name__)

#: The page's tabs, the CLI's default (combined) first.
PAGE_BY = ("combined", "rhythm", "timbre", "chroma", "peaks")
MAX_K = 100
WARM_UP_S = 8.0
#: Uploads at least this long get the segments timeline (two of identify_segments' 10-s windows).
SEGMENTS_MIN_S = 20.0
NO_FINGERPRINT = "this library was built without the fingerprint mode that identification needs"
NO_WORST = "least similar is not defined for peak sets: their Jaccard similarity has no opposite"


@dataclass(frozen=True)
class Clip:
    """A decoded upload: what was analysed and what to call it."""

    name: str
    scan: np.ndarray  # up to max_scan_s, for the segments
    sr: int
    analysed_s: float

    @property
    def y(self) -> np.ndarray:
        """The part analysed for similarity and plots: the first ``analysed_s``."""
        return self.scan[: round(self.analysed_s * self.sr)]

    @property
    def duration_s(self) -> float:
        return len(self.y) / self.sr

    @property
    def scanned_s(self) -> float:
        return len(self.scan) / self.sr


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def track_row(track: Any) -> dict[str, Any]:
    """A catalogue track for the page and the API: ``name`` as the CLI's tables name it, the
    tags (``title`` the file name, the others null when untagged), the absolute path."""
    return {
        "track_id": int(track.id), "name": track_name(track), "path": track.path,
        **{k: v for k, v in track_record(track).items() if k in TAG_FIELDS},
        "duration_s": None if track.duration_s is None else round(float(track.duration_s), 2),
        "n_items": int(track.n_items), "added_at": float(track.added_at),
        "content_hash": track.content_hash,
    }


def _matches(row: dict[str, Any], needle: str) -> bool:
    """A case-insensitive search of a track's name, tags and file name."""
    return any(needle in str(row.get(k) or "").casefold() for k in ("name", "artist", "title", "album")) \
        or needle in Path(row["path"]).name.casefold()


class QueryService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admission = Admission(workers=settings.workers, max_queue=settings.max_queue,
                                   timeout_s=settings.queue_timeout_s)
        self.pool = LibraryPool(settings.index_path, size=settings.workers + 1,
                                timeout_s=settings.queue_timeout_s)
        self._clusters: tuple[tuple[int, ...], dict[int, int], list[list[int]]] | None = None
        self.served = ServedFiles()
        #: set when the server shuts down: background work ends early
        self.stop = threading.Event()
        self.paged_in: PageIn | None = None

    def close(self) -> None:
        self.stop.set()
        self.pool.close()

    # queries -----------------------------------------------------------------------------

    @contextmanager
    def _clip(self, stream: BinaryIO, filename: str | None, *, min_clip_s: float | None = None
              ) -> Iterator[tuple[Library, Clip, float]]:
        """Spool and decode an upload while holding a worker and a library handle (``min_clip_s``:
        the shortest accepted, default the server's; identification takes any clip of 1 s).

        Also yields the time the handle was obtained: ``elapsed_ms`` counts decoding and
        analysis, as the CLI's does, not the wait for a free worker.
        """
        s = self.settings
        name = uploads.display_name(filename)
        with self.admission.slot(), \
                uploads.spooled(stream, max_bytes=s.max_upload_bytes, tmp_dir=s.tmp_dir) as path, \
                self.pool.borrow() as library:
            t0 = time.perf_counter()
            y, sr = uploads.decode(path, name, max_analysis_s=s.max_analysis_s,
                                   min_clip_s=s.min_clip_s if min_clip_s is None else min_clip_s,
                                   max_scan_s=s.max_scan_s)
            try:
                yield library, Clip(name, y, sr, s.max_analysis_s), t0
            except AudioError as exc:  # the analysis found nothing to use: named as decoding's are
                raise BadUpload(f"{name}: {exc.problem}") from None

    def identify(self, stream: BinaryIO, filename: str | None, *,
                 min_confidence: float | None = None) -> dict[str, Any]:
        """The identify record of an upload (the CLI's ``identify --format jsonl`` line)."""
        with self._clip(stream, filename, min_clip_s=MIN_CLIP_S) as (library, clip, t0):
            record = self._identify(library, clip, min_confidence)
            record["elapsed_ms"] = round(_ms_since(t0), 1)
        return record

    def segments(self, stream: BinaryIO, filename: str | None, *,
                 min_confidence: float | None = None) -> dict[str, Any]:
        """Which track plays when in an upload (the CLI's ``identify --segments`` line)."""
        with self._clip(stream, filename, min_clip_s=MIN_CLIP_S) as (library, clip, t0):
            if "fingerprint" not in library.modes:
                raise BadQuery(NO_FINGERPRINT)
            record: dict[str, Any] = {"query": clip.name,
                                      "segments": self._segments(library, clip, min_confidence)}
            record["elapsed_ms"] = round(_ms_since(t0), 1)
        return record

    def similar(self, stream: BinaryIO, filename: str | None, *, by: str, k: int,
                worst: bool, include_self: bool = False) -> dict[str, Any]:
        """The similar record of an upload (the CLI's ``similar --format jsonl`` line)."""
        with self._clip(stream, filename) as (library, clip, t0):
            self._check_by(library, by, worst=worst)
            features = self._features(library, clip, [by])
            match = match_record(own_track(library, clip.y, clip.sr), library)
            record = self._similar(library, clip, features, by=by, k=k, worst=worst, match=match,
                                   include_self=include_self)
            record["elapsed_ms"] = round(_ms_since(t0), 1)
        return record

    def analyse(self, stream: BinaryIO, filename: str | None, *, k: int | None = None,
                include_self: bool = False, min_confidence: float | None = None) -> dict[str, Any]:
        """Everything the page shows for one upload, from one decode (similarity only for
        uploads of the server's ``min_clip_s`` or more)."""
        k = self.settings.page_k if k is None else k
        with self._clip(stream, filename, min_clip_s=MIN_CLIP_S) as (library, clip, t0):
            out = self._analyse(library, clip, k=k, include_self=include_self, min_confidence=min_confidence)
            out["elapsed_ms"] = round(_ms_since(t0), 1)
        return out

    def _analyse(self, library: Library, clip: Clip, *, k: int, include_self: bool = False,
                 min_confidence: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"query": clip.name, "duration_s": round(clip.duration_s, 2),
                               "scanned_s": round(clip.scanned_s, 2)}
        if "fingerprint" in library.modes:
            out["identify"] = self._identify(library, clip, min_confidence)
        else:
            out["identify"] = None
        long = "fingerprint" in library.modes and clip.scanned_s >= SEGMENTS_MIN_S
        out["segments"] = self._segments(library, clip, min_confidence) if long else None
        match = out["identify"] and out["identify"]["match"]
        match = match if match and match["matched"] else None  # a weak candidate is not the clip's track
        short = clip.duration_s < self.settings.min_clip_s
        by_list = [b for b in PAGE_BY if not short and self._answers(library, b)]
        features = self._features(library, clip, by_list) if by_list else None
        lists = []
        for by in by_list:
            most: list[int] = []  # the least similar leave out the tracks of the most similar list
            for worst in (False, True):
                try:
                    self._check_by(library, by, worst=worst)
                    record = self._similar(library, clip, features, by=by, k=k, worst=worst, match=match,
                                           include_self=include_self, most=most)
                except StorageUnavailable:
                    raise  # a 503 for the whole request, and the pool drops the handle
                except AudiolshError as exc:
                    record = {"query": clip.name, "match": match, "results": [], "error": str(exc)}
                most = [r["track_id"] for r in record["results"]]
                lists.append({"by": by, "worst": worst, **record})
        if short:
            lists = [{"by": "combined", "worst": False, "query": clip.name, "match": match, "results": [],
                      "error": f"too short for similarity: {uploads.seconds(clip.duration_s)} of audio,"
                               f" at least {self.settings.min_clip_s:g} s is needed"}]
        out["similar"] = lists
        t0 = time.perf_counter()
        out["plots"] = query_plots(clip.y, clip.sr)
        out["plots"]["elapsed_ms"] = round(_ms_since(t0), 1)
        return out

    def _identify(self, library: Library, clip: Clip, min_confidence: float | None = None) -> dict[str, Any]:
        if "fingerprint" not in library.modes:
            raise BadQuery(NO_FINGERPRINT)
        t0 = time.perf_counter()
        match, reason = identify_clip(library, clip.y, clip.sr, min_confidence=min_confidence, name=clip.name)
        if reason is not None:  # the web's parameter, not the command line's option
            reason = reason.replace("--min-confidence", "min_confidence")
        return identify_record(clip.name, match, library=library, elapsed_ms=_ms_since(t0), reason=reason)

    @staticmethod
    def _segments(library: Library, clip: Clip, min_confidence: float | None = None) -> list[dict[str, Any]]:
        return [segment_record(start_s, end_s, m, library=library) for start_s, end_s, m in
                identify_segments(library, clip.scan, clip.sr, min_confidence=min_confidence)]

    @staticmethod
    def _answers(library: Library, by: str) -> bool:
        """Whether the library holds what ``by`` needs (combined: rhythm, timbre and peaks)."""
        try:
            check_query(library, by, None)
        except ParameterError:
            return False
        return True

    @staticmethod
    def _check_by(library: Library, by: str, *, worst: bool = False) -> None:
        try:
            mode = check_query(library, by, None)
        except ParameterError as exc:
            raise BadQuery(str(exc).replace(f"{library.path}: ", "")) from None
        if worst and mode.query == "sets":
            raise BadQuery(NO_WORST)

    def _features(self, library: Library, clip: Clip, modes: Any) -> Any:
        cfg = library.config
        wanted: set[str] = set()
        for by in modes:
            wanted.update(check_query(library, by, None).needs)
        return analyse_clip(clip.y, clip.sr, modes=tuple(sorted(wanted)), window_s=cfg.window_s,
                            hop_s=cfg.hop_s, path=clip.name)

    def _similar(self, library: Library, clip: Clip, features: Any, *, by: str, k: int, worst: bool,
                 match: dict[str, Any] | None, include_self: bool,
                 most: list[int] | None = None) -> dict[str, Any]:
        """``match``: the clip's own track, left out unless ``include_self``; ``most``: the
        tracks of the most similar list when it was just made (``worst`` leaves them out)."""
        t0 = time.perf_counter()
        own = () if match is None or include_self else (match["track_id"],)
        try:
            found = run_similar(library, features, by=by, k=k, worst=worst, exclude=own,
                                most=most if worst else None)
        except ParameterError as exc:
            raise BadQuery(str(exc)) from None
        return similar_record(clip.name, found, match=match, library=library, elapsed_ms=_ms_since(t0))

    def track_similar(self, track_id: int, *, by: str, k: int, worst: bool) -> dict[str, Any]:
        """The tracks that sound like a library track (the CLI's ``similar --track`` line):
        its stored rows are the query, nothing is decoded, and it is left out of its own list."""
        with self.admission.slot(), self.pool.borrow() as library:
            t0 = time.perf_counter()
            if library.track(track_id) is None:
                raise NotFound(f"no track with id {track_id}")
            self._check_by(library, by, worst=worst)
            query = stored_clip(library, track_id, by=by)
            try:
                found = run_similar(library, query, by=by, k=k, worst=worst, exclude={track_id})
            except ParameterError as exc:
                raise BadQuery(str(exc)) from None
            match = named({"path": query.path, "track_id": track_id}, library)
            record = {**similar_record(query.path, found, match=match, library=library), "track_id": track_id}
            record["elapsed_ms"] = round(_ms_since(t0), 1)
        return record

    # the catalogue -----------------------------------------------------------------------

    def playlist(self, track_ids: list[int]) -> str:
        """An extended M3U playlist of library tracks, in the order given: each track's
        ``#EXTINF`` (seconds, "Artist - Title" or the file name) and its path."""
        def work(lib: Library) -> list[Any]:
            return [lib.track(t) for t in track_ids]

        lines = ["#EXTM3U"]
        for tid, track in zip(track_ids, self._with_library(work)):
            if track is None:
                raise NotFound(f"no track with id {tid}")
            seconds = -1 if track.duration_s is None else round(float(track.duration_s))
            # One line each: a name or path with a line break would split the entry.
            name = " ".join(track_name(track).split())
            lines += [f"#EXTINF:{seconds},{name}", track.path.replace("\n", " ").replace("\r", " ")]
        return "\n".join(lines) + "\n"


    def _with_library(self, work: Callable[[Library], Any]) -> Any:
        with self.pool.borrow() as library:
            return work(library)

    def tracks(self, *, offset: int = 0, limit: int = 50, q: str = "") -> dict[str, Any]:
        """A page of the catalogue, optionally filtered by a case-insensitive name substring."""
        rows = self._with_library(lambda lib: [track_row(t) for t in lib.tracks()])
        needle = q.strip().casefold()
        if needle:
            rows = [r for r in rows if _matches(r, needle)]
        rows.sort(key=lambda r: r["track_id"])
        return {"total": len(rows), "offset": offset, "limit": limit, "items": rows[offset: offset + limit]}

    def track_audio(self, track_id: int) -> tuple[Path, str]:
        """The audio file of a catalogue track and its media type: only the catalogue's own file
        (an absolute path, the content hash it was indexed with) is served."""
        track = self._with_library(lambda lib: lib.track(track_id))
        if track is None:
            raise NotFound(f"no track with id {track_id}")
        path = self.served.path_of(track)
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path, media_type

    def overview(self, *, q: str = "") -> dict[str, Any]:
        """The library page: summary, every track with its group, and the groups."""
        def work(lib: Library) -> dict[str, Any]:
            tracks = sorted(lib.tracks(), key=lambda t: t.id)
            info = lib.info()
            groups_of, groups = self._cluster(lib, tracks)
            return {"info": info, "tracks": tracks, "groups_of": groups_of, "groups": groups}

        data = self._with_library(work)
        rows = []
        for t in data["tracks"]:
            row = track_row(t)
            row["group"] = data["groups_of"].get(t.id)
            rows.append(row)
        by_id = {r["track_id"]: r for r in rows}
        needle = q.strip().casefold()
        shown = [r for r in rows if _matches(r, needle)] if needle else rows
        info = data["info"]
        return {
            "location": info["location"], "modes": info["modes"], "n_tracks": info["n_tracks"],
            "duration_s": info["duration_s"], "window_s": info["window_s"], "hop_s": info["hop_s"],
            "normalisation": info.get("normalisation", "none"),
            "n_items": {name: i.get("n_items", i.get("n_hashes")) for name, i in info["indexes"].items()},
            "tracks": shown, "q": q, "cluster_by": self.settings.cluster_by,
            "groups": [[by_id[t] for t in g if t in by_id] for g in data["groups"]],
        }

    def _cluster(self, lib: Library, tracks: list[Any]) -> tuple[dict[int, int], list[list[int]]]:
        """Groups of similar tracks, cached until the catalogue changes."""
        key = tuple(t.id for t in tracks)
        if self._clusters is not None and self._clusters[0] == key:
            return self._clusters[1], self._clusters[2]
        from audiolsh.query.clusters import cluster_library

        by = self.settings.cluster_by
        n = self.settings.n_clusters or int(np.clip(round(math.sqrt(len(tracks) / 2)), 2, 8))
        groups_of: dict[int, int] = {}
        groups: list[list[int]] = []
        if by in lib.indexes and len(tracks) >= max(n, 3):
            try:
                c = cluster_library(lib, by=by, n_clusters=n)
            except StorageUnavailable:
                raise
            except AudiolshError as exc:
                log.warning("no groups for the library page: %s", exc)
            else:
                groups = [[int(c.ids[i]) for i in members] for members in c.groups()]
                groups_of = {int(t): int(g) + 1 for t, g in zip(c.ids.tolist(), c.labels.tolist())}
        self._clusters = (key, groups_of, groups)
        return groups_of, groups

    def health(self) -> dict[str, Any]:
        """``status`` "ok", or "unavailable" (with a ``detail``) when the library's storage
        cannot be reached or the library is gone.  Asks the storage directly, on a connection
        of its own, so it neither waits for a free worker nor disturbs one."""
        out: dict[str, Any] = {"status": "ok", "version": __version__, "workers": self.settings.workers,
                               "busy": self.admission.running, "queued": self.admission.waiting,
                               "max_queue": self.settings.max_queue, "pid": os.getpid()}
        try:
            present = is_library(self.settings.index_path)
        except StorageUnavailable:
            present = None
        except AudiolshError as exc:
            log.warning("health: %s", exc)
            present = None
        if not present:
            out["status"] = "unavailable"
            out["detail"] = ("the library's storage cannot be reached right now" if present is None
                             else "the library is no longer there")
            return out
        # The size from the spare handle if one is free at once; never waits behind an analysis.
        try:
            with self.pool.borrow(timeout_s=0) as library:
                out.update(library.sizes())
        except StorageUnavailable:
            out["status"] = "unavailable"
            out["detail"] = "the library's storage cannot be reached right now"
        except (AudiolshError, Busy) as exc:
            log.warning("health: no library size: %s", exc)
        return out

    def n_tracks(self) -> int:
        return int(self._with_library(len))

    # startup -----------------------------------------------------------------------------

    def page_in(self) -> None:
        """Read the library's index files into the page cache (``Library.page_in``); the
        handle is given back at once, so no query waits for it."""
        try:
            with self.pool.borrow() as library:
                files = library.mapped_files()
        except (AudiolshError, Busy) as exc:
            log.info("page-in skipped: %s", exc)
            return
        self.paged_in = done = page_in(files, stop=self.stop)
        if done.skipped:
            log.info("page-in skipped: %s", done.skipped)
        else:
            log.info("read %d index files (%.0f MB) into memory in %.1f s%s", done.files, done.bytes / 1e6,
                     done.seconds, " (stopped)" if done.stopped else "")

    def warm_up(self) -> None:
        """Open every worker's handle and run one synthetic query on each (JIT, index loading)."""
        from audiolsh.audio import synth
        from audiolsh.library import SAMPLE_RATE

        t0 = time.perf_counter()
        y = synth.music(duration_s=WARM_UP_S, sr=SAMPLE_RATE, seed=0)
        clip = Clip("warm-up", y, SAMPLE_RATE, WARM_UP_S)
        with ExitStack() as stack:
            libraries = [stack.enter_context(self.pool.borrow()) for _ in range(self.settings.workers)]
            for library in libraries:
                try:
                    self._analyse(library, clip, k=1)
                except StorageUnavailable:
                    raise  # the pool drops the handles; requests answer 503 until it is back
                except AudiolshError as exc:  # an empty library, a missing mode: fine
                    log.info("warm-up: %s", exc)
        log.info("warmed up %d workers in %.1f s", self.settings.workers, time.perf_counter() - t0)
