"""What sounds like this: tracks ranked by rhythm, timbre, chroma, peaks or combined.

A clip is cut into the library's excerpt windows; every window queries the mode's index; each
hit is a (track, passage, similarity); a track's score is its best passage's similarity.
``worst`` asks for the least similar tracks of the whole collection: the nearest neighbours
of the negated query under cosine, i.e. the passages with the lowest cosine to the clip.
``combined`` takes its candidates from the combined index (rhythm and timbre, normalised
jointly or weighted, ``library.Fusion``) and from the peaks index, and re-ranks them by the
fused score, which adds the peak sets' Jaccard; its ``worst`` re-ranks the passages of lowest
combined-row cosine (rhythm and timbre), so a passage that is least similar only through its
peak sets can be missed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import check_int
from audiolsh.library import Extracted, Library, Mode
from audiolsh.query.hits import Hits, as_ids, offset_key, search, track_windows, window_items
from audiolsh.search.brute import jaccard_rows, prepare

log = logging.getLogger(__name__)

BY = ("rhythm", "timbre", "chroma", "combined", "peaks")
METHODS = {"rhythm": ("vector",), "timbre": ("vector",), "combined": ("vector",),
           "chroma": ("vector", "vote"), "peaks": ("minhash",)}
VOTES_PER_FRAME = 10


@dataclass(frozen=True)
class SimilarTrack:
    track_id: int
    path: str
    score: float
    rank: int
    offset_s: float | None
    query_offset_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mode_name(by: str, method: str) -> str:
    """The library mode that answers ``--by`` with ``--method``."""
    return "chroma_frames" if method == "vote" else by


def check_query(library: Library, by: str, method: str | None) -> Mode:
    """The mode that answers ``by`` with ``method`` (its default when None); raises when the
    method does not apply or the library lacks the mode."""
    if by not in BY:
        raise ParameterError(f"--by must be one of {list(BY)}, got {by!r}")
    method = method or METHODS[by][0]
    if method not in METHODS[by]:
        raise ParameterError(f"--method {method!r} does not apply to --by {by}; use {list(METHODS[by])}")
    return library.mode(mode_name(by, method))


def fused_scores(library: Library, clip_sets: Any, hits: Hits, cosine: np.ndarray) -> np.ndarray:
    """The combined score of hits: the combined rows' cosine plus the Jaccard of the query
    window's peak set (``clip_sets`` row ``hits.rows``) and the hit window's."""
    fusion = library.fusion
    assert fusion is not None
    pid = window_items(library, "peaks", hits.tracks, hits.offsets)
    jac = np.zeros(len(hits))
    ok = np.flatnonzero(pid >= 0)
    if len(ok):
        # A window removed meanwhile comes back as an empty set: Jaccard 0, like a missing one.
        cand, _found = library.index("peaks").rows_found(pid[ok])
        jac[ok] = jaccard_rows(clip_sets.take(hits.rows[ok]), cand, np.arange(len(ok))[:, None])[:, 0]
    return fusion.score(cosine, jac)


def peak_candidates(library: Library, clip_sets: Any, clip_rows: np.ndarray, k: int) -> Hits:
    """Hits of the clip's peak sets in the peaks index, with the combined rows' cosine as their
    values (``distances``): the combined mode's second source of candidates, for passages that
    only their peak pairs place near (the combined vectors' LSH would pass them over)."""
    n_peaks = len(library.index("peaks"))
    if n_peaks == 0:
        empty = np.zeros(0, np.int64)
        return Hits(empty, empty, np.zeros(0), np.zeros(0))
    hits = search(library, "peaks", clip_sets, min(k, n_peaks))
    cid = window_items(library, "combined", hits.tracks, hits.offsets)
    ok = cid >= 0
    hits, cid = hits.take(ok), cid[ok]
    stored, found = library.index("combined").rows_found(cid)
    Q = prepare(np.asarray(clip_rows, np.float32)[hits.rows], "cosine")
    cosine = np.einsum("ij,ij->i", Q, prepare(np.asarray(stored, np.float32), "cosine")).astype(np.float64)
    return Hits(hits.rows, hits.tracks, hits.offsets, cosine).take(found)


def _union(a: Hits, b: Hits, *, exclude: Collection[int], n_rows: int) -> Hits:
    """Hits (query row, track, offset, value) of two sources, each (row, window) once, without
    the excluded tracks."""
    both = Hits(*(np.concatenate(pair) for pair in zip(
        (a.rows, a.tracks, a.offsets, a.distances), (b.rows, b.tracks, b.offsets, b.distances))))
    keep = (both.tracks >= 0) & ~np.isin(both.tracks, as_ids(exclude))
    _, first = np.unique(offset_key(both.tracks, both.offsets) * n_rows + both.rows, return_index=True)
    once = np.zeros(len(both), bool)
    once[first] = True
    return both.take(keep & once)


def best_per_track(tracks: np.ndarray, values: np.ndarray, *, higher_is_better: bool = True) -> tuple[
        np.ndarray, np.ndarray]:
    """For each distinct track, the position of its best value; ordered best first."""
    key = -values if higher_is_better else values
    order = np.lexsort((key, tracks))
    t_sorted = tracks[order]
    first = np.ones(len(order), bool)
    first[1:] = t_sorted[1:] != t_sorted[:-1]
    best = order[first]
    rank = np.argsort(-values[best] if higher_is_better else values[best], kind="stable")
    return tracks[best[rank]], best[rank]


def similar(library: Library, clip: Extracted, *, by: str = "combined", k: int = 10,
            worst: bool = False, method: str | None = None,
            exclude: Collection[int] = ()) -> list[SimilarTrack]:
    """The k tracks most (or, with ``worst``, least) similar to a clip."""
    mode = check_query(library, by, method)
    k = check_int("k", k, 1)
    if worst and mode.query == "sets":
        raise ParameterError("--worst is not defined for peak sets: Jaccard has no opposite direction")
    if mode.query == "vote":
        return _vote(library, clip, k=k, worst=worst, exclude=exclude)
    n_items = len(library.index(mode.name))
    if n_items == 0:
        return []
    state = library.state()
    data, q_offsets = mode.rows_of(state, clip)
    if len(q_offsets) == 0:
        raise ParameterError(f"{clip.path or 'the clip'}: too short to analyse")
    clip_sets = None
    if mode.query == "fused":
        if clip.peaks is None or len(clip.peaks[0]) != len(q_offsets):
            raise ParameterError(f"{clip.path or 'the clip'}: the combined mode needs its peak sets")
        clip_sets = state.peak_sets(clip.peaks[0])
    if worst:
        data = -np.asarray(data)
    kk = min(n_items, max(50, 20 * k))
    exact = False
    while True:
        hits = search(library, mode.name, data, kk, exact=exact).known(exclude)
        if mode.query == "sets":
            sim = 1.0 - hits.distances
        else:
            # cosine distance of the (maybe negated) query -> the clip's own cosine similarity
            sim = hits.distances - 1.0 if worst else 1.0 - hits.distances
        if mode.query == "fused":
            if not worst:
                hits = _union(Hits(hits.rows, hits.tracks, hits.offsets, sim),
                              peak_candidates(library, clip_sets, data, kk),
                              exclude=exclude, n_rows=len(q_offsets))
                sim = hits.distances
            sim = fused_scores(library, clip_sets, hits, sim)
        found, pos = best_per_track(hits.tracks, sim, higher_is_better=not worst)
        if len(found) >= k or exact:
            break
        if kk >= n_items:
            # The buckets held fewer than k tracks: an empty bucket never means an empty answer.
            exact = True
        kk = min(n_items, kk * 4)
    return _results(library, found[:k], sim[pos[:k]], hits.offsets[pos[:k]], q_offsets[hits.rows[pos[:k]]])


def _results(library: Library, tracks: np.ndarray, scores: np.ndarray, offsets: np.ndarray,
             q_offsets: np.ndarray) -> list[SimilarTrack]:
    out = []
    for rank, (t, s, o, q) in enumerate(zip(tracks.tolist(), scores.tolist(), offsets.tolist(),
                                            q_offsets.tolist())):
        track = library.track(int(t))
        out.append(SimilarTrack(int(t), track.path if track else "?", round(float(s), 6), rank + 1,
                                None if np.isnan(o) else round(float(o), 3),
                                None if np.isnan(q) else round(float(q), 3)))
    return out


def _vote(library: Library, clip: Extracted, *, k: int, worst: bool,
          exclude: Collection[int]) -> list[SimilarTrack]:
    """S1: every query chroma frame votes for the tracks of its nearest frames; votes are
    normalised by each track's frame count."""
    mode = library.mode("chroma_frames")
    n_items = len(library.index(mode.name))
    frames, _q_times = mode.rows_of(library.state(), clip)
    if len(frames) == 0 or n_items == 0:
        return []
    data = -np.asarray(frames) if worst else np.asarray(frames)
    tracks = search(library, mode.name, data, min(VOTES_PER_FRAME, n_items)).known(exclude).tracks
    if len(tracks) == 0:
        return []
    uniq, votes = np.unique(tracks, return_counts=True)
    n_frames = library.mode_items(mode.name)
    frames_per_track = np.array([max(1, n_frames.get(t, 1)) for t in uniq.tolist()], np.float64)
    score = votes / frames_per_track
    order = np.argsort(-score, kind="stable")[:k]
    nan = np.full(len(order), np.nan)
    return _results(library, uniq[order], score[order], nan, nan)


def stored_clip(library: Library, track_id: int, *, by: str, method: str | None = None) -> Extracted:
    """A track already in the library as a query: its stored rows, no decoding."""
    mode = check_query(library, by, method)
    track = library.track(track_id)
    if track is None:
        raise ParameterError(f"no track with id {track_id}")
    fields: dict[str, Any] = {"vectors": {}, "chroma_frames": None, "peaks": None}
    for part in [library.mode(n) for n in mode.needs] if mode.query == "fused" else [mode]:
        ids, offsets = track_windows(library, part.name, track_id)
        data = library.index(part.name).rows(ids)  # only this track's rows
        if part.source == "vectors":
            # Stored rows are already standardised (and normalised): undo it so the query path
            # can redo it.
            X = np.asarray(data)
            std = library.standardizer(part.name)
            if std is not None:
                X = std.invert(X)
            fields["vectors"][part.name] = (X.astype(np.float32), offsets)
        else:
            fields[part.source] = (data if part.source == "peaks" else np.asarray(data), offsets)
    return Extracted(track.path, track.content_hash, track.duration_s or 0.0, fields["vectors"],
                     fields["chroma_frames"], fields["peaks"])
