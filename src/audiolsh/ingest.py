"""Audio into the index: decode, per-second embeddings, commit in batches, resume by content.

Workers decode and extract in parallel processes; only the parent writes to the index, in
commits of ``commit_every`` files, so an interrupted run keeps every committed file and the
next run skips them (their content hash is in the catalogue) and goes on with the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from audiolsh.audio import content_hash, find_audio, load
from audiolsh.errors import AudiolshError
from audiolsh.features import logmel_embeddings
from audiolsh.index import Index

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
MIN_DURATION_S = 1.0
MAX_DURATION_S = 3 * 3600.0


@dataclass(frozen=True)
class Extracted:
    path: str
    content_hash: str
    duration_s: float
    embeddings: np.ndarray
    offsets_s: np.ndarray


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
        min_duration_s=MIN_DURATION_S, max_duration_s=MAX_DURATION_S,
    )
    E, offsets = logmel_embeddings(y, sr=sr)
    return E, offsets + offset_s, len(y) / sr


def extract(path: str, digest: str) -> Extracted:
    E, offsets, duration_s = embed_clip(path)
    return Extracted(path, digest, duration_s, E, offsets)


def _extract_safe(path: str, digest: str) -> Extracted | tuple[str, str]:
    try:
        return extract(path, digest)
    except AudiolshError as exc:
        return (path, str(exc))
    except Exception as exc:  # a decoder crash must not stop the batch
        return (path, f"{path}: {type(exc).__name__}: {exc}")


def index_audio(
    index: Index,
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
        if index.track_by_hash(digest) is not None or digest in seen:
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

    def flush() -> None:
        if not pending:
            return
        with index.session() as s:
            for ex in pending:
                handle = s.add_track(
                    ex.path, content_hash=ex.content_hash, duration_s=ex.duration_s
                )
                keys = [f"{ex.path}@{o:.1f}" for o in ex.offsets_s]
                s.add(ex.embeddings, keys, track=handle, offsets_s=ex.offsets_s)
        report.added.extend(ex.path for ex in pending)
        pending.clear()

    def handle(result: Extracted | tuple[str, str]) -> None:
        if isinstance(result, Extracted):
            pending.append(result)
            on_file and on_file(result.path, "indexed")
            if len(pending) >= commit_every:
                flush()
        else:
            report.failed.append(result)
            on_file and on_file(result[0], f"failed: {result[1]}")

    if n_workers == 1:
        for f, digest in todo:
            handle(_extract_safe(f, digest))
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            futures: list[Future[Extracted | tuple[str, str]]] = [
                pool.submit(_extract_safe, f, d) for f, d in todo
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
                     duration_s: float | None = 30.0) -> list[Passage]:
    """Where in the collection a clip's passage sounds nearest.

    Every second of the clip queries the index; each hit votes for (track, start of the
    clip in that track), weighted by its cosine similarity.  The best k starts are returned.
    """
    E, offsets, _ = embed_clip(path, offset_s=offset_s, duration_s=duration_s)
    offsets = offsets - offset_s  # positions within the analysed excerpt
    res = index.query(E, per_window)
    hits = index.hits(res)
    tracks = {t.id: t for t in index.tracks()}
    rows = [
        (h.track_id, round((h.offset_s or 0.0) - q_off), 1.0 - h.distance)
        for row, q_off in zip(hits, offsets.tolist()) for h in row if h.track_id is not None
    ]
    # A start before the track's beginning is no passage of it.
    rows = [r for r in rows if r[1] >= 0]
    if not rows:
        return []
    keys, inverse = np.unique(
        np.array([r[:2] for r in rows], dtype=np.int64), axis=0, return_inverse=True
    )
    weights = np.array([r[2] for r in rows], dtype=np.float64)
    score = np.bincount(inverse.ravel(), weights=weights) / len(E)
    votes = np.bincount(inverse.ravel())
    best = np.argsort(-score)[:k]
    return [
        Passage(int(keys[i, 0]), tracks[int(keys[i, 0])].path if int(keys[i, 0]) in tracks else "?",
                float(keys[i, 1]), float(score[i]), int(votes[i]))
        for i in best
    ]

