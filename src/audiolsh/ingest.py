"""Audio into a library: one decode per file, every mode extracted, batch commits, resume.

Workers decode and extract in parallel processes; only the parent writes to the index, in
commits of ``commit_every`` files, so an interrupted run keeps every committed file and the
next run skips them (their content hash is in the catalogue) and goes on with the rest. The
first commit into an empty library waits for :data:`FIRST_BATCH` files (or all there are):
the library learns its standardisation, fusion statistics and common peak pairs from it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiolsh.audio import content_hash, find_audio, load
from audiolsh.errors import AudiolshError
from audiolsh.features import logmel_embeddings
from audiolsh.features.windows import window_starts, window_stats
from audiolsh.hashing import as_sets
from audiolsh.index import Index
from audiolsh.library import Library
from audiolsh.storage import Track

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
MIN_DURATION_S = 3.0
MAX_DURATION_S = 3 * 3600.0


@dataclass(frozen=True)
class Extracted:
    """Everything one decode of a file yields, for every mode of a library."""

    path: str
    content_hash: str
    duration_s: float
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    chroma_frames: tuple[np.ndarray, np.ndarray] | None = None
    peaks: tuple[Any, np.ndarray] | None = None
    landmarks: Any = None

    @property
    def n_windows(self) -> int:
        for X, _ in self.vectors.values():
            return len(X)
        return 0


@dataclass
class IngestReport:
    added: list[str]
    skipped: list[str]
    failed: list[tuple[str, str]]


def embed_clip(
    path: str | os.PathLike[str], *, offset_s: float = 0.0, duration_s: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-second embeddings of a file (or an excerpt): (E, offsets_s, duration_s)."""
    y, sr = load(
        path, sr=SAMPLE_RATE, offset_s=offset_s, duration_s=duration_s,
        min_duration_s=1.0, max_duration_s=MAX_DURATION_S,
    )
    E, offsets = logmel_embeddings(y, sr=sr)
    return E, offsets + offset_s, len(y) / sr


def analyse(y: np.ndarray, sr: int, *, modes: Sequence[str], window_s: float, hop_s: float,
            path: str = "", content_hash: str = "") -> Extracted:
    """Extract every enabled mode from one decoded signal (a track, or a query clip)."""
    from audiolsh.features.excerpts import excerpt_features

    duration_s = len(y) / sr
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    chroma_frames = peaks = landmarks = None
    if "embedding" in modes:
        E, offsets = logmel_embeddings(y, sr=sr)
        vectors["embedding"] = (E, offsets)
    if "fingerprint" in modes:
        from audiolsh.features.landmarks import landmarks as extract_landmarks

        landmarks = extract_landmarks(y, sr)
    wanted = [m for m in ("rhythm", "timbre", "chroma", "peaks") if m in modes]
    if wanted:
        feats = excerpt_features(y, sr, window_s=window_s, hop_s=hop_s, modes=tuple(wanted))
        starts = window_starts(duration_s, window_s=window_s, hop_s=hop_s)
        for m in ("rhythm", "timbre"):
            if m in feats:
                vectors[m] = (np.asarray(feats[m].X, np.float32), np.asarray(feats[m].offsets_s))
                starts = vectors[m][1]
        if "chroma" in feats:
            frames = np.asarray(feats["chroma"].X, np.float32)
            times = np.asarray(feats["chroma"].offsets_s, np.float64)
            chroma_frames = (frames, times)
            vectors["chroma"] = (window_stats(frames, times, starts, window_s=window_s), starts)
        if "peaks" in feats:
            peaks = (as_sets(feats["peaks"].X),  # type: ignore[arg-type]
                     np.asarray(feats["peaks"].offsets_s))
    return Extracted(path, content_hash, duration_s, vectors, chroma_frames, peaks, landmarks)


def extract(path: str, digest: str, modes: Sequence[str], window_s: float, hop_s: float) -> Extracted:
    y, sr = load(path, sr=SAMPLE_RATE, min_duration_s=MIN_DURATION_S, max_duration_s=MAX_DURATION_S)
    return analyse(y, sr, modes=modes, window_s=window_s, hop_s=hop_s, path=path, content_hash=digest)


def _extract_safe(path: str, digest: str, modes: Sequence[str], window_s: float,
                  hop_s: float) -> Extracted | tuple[str, str]:
    try:
        return extract(path, digest, modes, window_s, hop_s)
    except AudiolshError as exc:
        return (path, str(exc))
    except Exception as exc:  # a decoder crash must not stop the batch
        return (path, f"{path}: {type(exc).__name__}: {exc}")


FIRST_BATCH = 32


def index_audio(
    library: Library,
    paths: Iterable[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    commit_every: int = 8,
    on_file: Callable[[str, str], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> IngestReport:
    """Index every audio file under ``paths``; ``on_file(path, status)`` reports progress."""
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
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    pending: list[Extracted] = []
    cfg = library.config
    args = (cfg.modes, cfg.window_s, cfg.hop_s)

    def flush() -> None:
        if not pending:
            return
        library.add_batch(pending)
        report.added.extend(ex.path for ex in pending)
        pending.clear()

    first = len(library) == 0

    def handle(result: Extracted | tuple[str, str]) -> None:
        nonlocal first
        if isinstance(result, Extracted):
            pending.append(result)
            on_file and on_file(result.path, "indexed")
            if len(pending) >= (max(commit_every, FIRST_BATCH) if first else commit_every):
                flush()
                first = False
        else:
            report.failed.append(result)
            on_file and on_file(result[0], f"failed: {result[1]}")

    if n_workers == 1:
        for f, digest in todo:
            handle(_extract_safe(f, digest, *args))
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            futures: list[Future[Extracted | tuple[str, str]]] = [
                pool.submit(_extract_safe, f, d, *args) for f, d in todo
            ]
            for fut in futures:
                handle(fut.result())
    flush()
    return report


@dataclass(frozen=True)
class Passage:
    track_id: int
    path: str
    offset_s: float
    score: float
    votes: int


def nearest_passages(index: Index, path: str | os.PathLike[str], *, k: int = 5,
                     per_window: int = 10, offset_s: float = 0.0,
                     duration_s: float | None = 30.0,
                     resolve: Callable[[np.ndarray], np.ndarray] | None = None,
                     track: Callable[[int], Track | None] | None = None) -> list[Passage]:
    """Where in the collection a clip's passage sounds nearest.

    Every second of the clip queries the index; each hit votes for (track, start of the
    clip in that track), weighted by its cosine similarity.  The best k starts are returned.
    ``resolve`` maps the index's track ids to the caller's (a library's) and ``track`` looks
    those up; by default the index's own catalogue is used.
    """
    E, offsets, _ = embed_clip(path, offset_s=offset_s, duration_s=duration_s)
    offsets = offsets - offset_s  # positions within the analysed excerpt
    res = index.query(E, per_window)
    hits = index.hits(res)
    rows = np.array(
        [(h.track_id, (h.offset_s or 0.0) - q_off, 1.0 - h.distance)
         for row, q_off in zip(hits, offsets.tolist()) for h in row if h.track_id is not None],
        dtype=np.float64,
    ).reshape(-1, 3)
    tracks = rows[:, 0].astype(np.int64)
    if resolve is not None:
        tracks = resolve(tracks)
    if track is None:
        catalogue = {t.id: t for t in index.tracks()}
        track = catalogue.get
    starts = np.round(rows[:, 1]).astype(np.int64)
    # A start before the track's beginning is no passage of it.
    keep = (starts >= 0) & (tracks >= 0)
    if not keep.any():
        return []
    keys, inverse = np.unique(np.stack([tracks[keep], starts[keep]], axis=1), axis=0,
                              return_inverse=True)
    score = np.bincount(inverse.ravel(), weights=rows[keep, 2]) / len(E)
    votes = np.bincount(inverse.ravel())
    best = np.argsort(-score)[:k]
    out = []
    for i in best:
        t = track(int(keys[i, 0]))
        out.append(Passage(int(keys[i, 0]), t.path if t else "?", float(keys[i, 1]),
                           float(score[i]), int(votes[i])))
    return out
