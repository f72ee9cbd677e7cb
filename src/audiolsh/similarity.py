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
from audiolsh.index import Index
from audiolsh.ingest import Extracted
from audiolsh.library import COMBINED_PARTS, Library
from audiolsh.search import Neighbors
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


def needed_modes(by: str, method: str) -> tuple[str, ...]:
    if by == "combined":
        return COMBINED_PARTS
    return (by,)


def check_query(library: Library, by: str, method: str | None) -> str:
    """The method to use for ``by`` (its default when None); raises when the library lacks it."""
    if by not in BY:
        raise ParameterError(f"--by must be one of {list(BY)}, got {by!r}")
    method = method or METHODS[by][0]
    if method not in METHODS[by]:
        raise ParameterError(f"--method {method!r} does not apply to --by {by}; use {list(METHODS[by])}")
    missing = [m for m in needed_modes(by, method) if m not in library.modes]
    if missing:
        raise ParameterError(
            f"{library.path}: the library was built without {missing}; re-index with those modes"
        )
    return method


def _query_rows(library: Library, name: str, clip: Extracted) -> tuple[Any, np.ndarray]:
    if name == "combined":
        return library.combined_rows(clip)
    if name == "peaks":
        if clip.peaks is None:
            raise ParameterError("the clip has no peak sets")
        return library.peak_sets(clip.peaks[0]), clip.peaks[1]
    if name == "chroma_frames":
        if clip.chroma_frames is None:
            raise ParameterError("the clip has no chroma frames")
        return clip.chroma_frames
    X, offsets = clip.vectors[name]
    return library.prepare(name, X), offsets


def hit_arrays(library: Library, name: str, res: Neighbors) -> tuple[np.ndarray, ...]:
    """Flatten a result into arrays: (query row, library track id, item offset, distance)."""
    valid = res.ids >= 0
    rows = np.nonzero(valid)[0]
    sub_track, offsets = library.indexes[name].storage.item_arrays(res.ids[valid])
    tracks = library.resolve_tracks(name, sub_track)
    return rows, tracks, offsets, res.distances[valid].astype(np.float64)


def _offset_key(tracks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One int64 per (track, offset to 10 ms) for joining windows across indexes."""
    centis = np.round(np.nan_to_num(offsets, nan=-1.0) * 100).astype(np.int64)
    return tracks.astype(np.int64) * 10_000_000 + centis


def window_rows(library: Library, name: str, tracks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Item ids in the ``name`` index of the windows (library track, offset s); -1 where absent."""
    keys, vals = library.track_map(name)  # the mode's track ids (sorted) -> library track ids
    out = np.full(len(tracks), -1, np.int64)
    if not len(keys) or not len(tracks):
        return out
    by_lib = np.argsort(vals)
    pos = np.clip(np.searchsorted(vals[by_lib], tracks), 0, len(vals) - 1)
    sub = np.where(vals[by_lib][pos] == tracks, keys[by_lib][pos], -1)
    ids, sub_tracks, sub_offsets = library.indexes[name].storage.track_items(np.unique(sub[sub >= 0]))
    have = _offset_key(sub_tracks, sub_offsets)
    order = np.argsort(have)
    want = _offset_key(sub, offsets)
    p = np.clip(np.searchsorted(have[order], want), 0, max(len(have) - 1, 0))
    hit = (sub >= 0) & (have[order][p] == want) if len(have) else np.zeros(len(want), bool)
    out[hit] = ids[order][p[hit]]
    return out


def fused_scores(library: Library, clip_sets: Any, rows: np.ndarray, tracks: np.ndarray,
                 offsets: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    """The combined score of hits: the combined rows' cosine plus the Jaccard of the query
    window's peak set (``clip_sets`` row ``rows``) and the hit window's."""
    assert library.fusion is not None
    pid = window_rows(library, "peaks", tracks, offsets)
    jac = np.zeros(len(rows))
    ok = np.flatnonzero(pid >= 0)
    if len(ok):
        # A window removed meanwhile comes back as an empty set: Jaccard 0, like a missing one.
        cand, _found = library.indexes["peaks"].rows_found(pid[ok])
        jac[ok] = jaccard_rows(clip_sets.take(rows[ok]), cand, np.arange(len(ok))[:, None])[:, 0]
    return library.fusion.score(cosine, jac)


def peak_candidates(library: Library, clip_sets: Any, clip_rows: np.ndarray,
                    k: int) -> tuple[np.ndarray, ...]:
    """Hits of the clip's peak sets in the peaks index, as (query row, track, offset, combined
    cosine): the combined mode's second source of candidates, for passages that only their peak
    pairs place near (the combined vectors' LSH would pass them over)."""
    peaks_index = library.indexes["peaks"]
    if len(peaks_index) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    res = peaks_index.query(clip_sets, min(k, len(peaks_index)))
    rows, tracks, offsets, _ = hit_arrays(library, "peaks", res)
    cid = window_rows(library, "combined", tracks, offsets)
    ok = cid >= 0
    rows, tracks, offsets, cid = rows[ok], tracks[ok], offsets[ok], cid[ok]
    stored, found = library.indexes["combined"].rows_found(cid)
    Q = prepare(np.asarray(clip_rows, np.float32)[rows], "cosine")
    cosine = np.einsum("ij,ij->i", Q, prepare(np.asarray(stored, np.float32), "cosine")).astype(np.float64)
    return rows[found], tracks[found], offsets[found], cosine[found]


def _union(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], *, exclude: Collection[int],
           n_rows: int) -> tuple[np.ndarray, ...]:
    """Hits (query row, track, offset, value) of two sources, each (row, window) once, without
    the excluded tracks."""
    rows, tracks, offsets, values = (np.concatenate(pair) for pair in zip(a, b))
    keep = (tracks >= 0) & ~np.isin(tracks, np.fromiter(exclude, np.int64, len(exclude)))
    _, first = np.unique(_offset_key(tracks, offsets) * n_rows + rows, return_index=True)
    once = np.zeros(len(rows), bool)
    once[first] = True
    keep &= once
    return rows[keep], tracks[keep], offsets[keep], values[keep]


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
    method = check_query(library, by, method)
    k = check_int("k", k, 1)
    if worst and by == "peaks":
        raise ParameterError("--worst is not defined for peak sets: Jaccard has no opposite direction")
    if method == "vote":
        return _vote(library, clip, k=k, worst=worst, exclude=exclude)
    name = by
    index = library.indexes[name]
    if len(index) == 0:
        return []
    data, q_offsets = _query_rows(library, name, clip)
    if len(q_offsets) == 0:
        raise ParameterError(f"{clip.path or 'the clip'}: too short to analyse")
    clip_sets = None
    if by == "combined":
        if clip.peaks is None or len(clip.peaks[0]) != len(q_offsets):
            raise ParameterError(f"{clip.path or 'the clip'}: the combined mode needs its peak sets")
        clip_sets = library.peak_sets(clip.peaks[0])
    if worst:
        data = -np.asarray(data)
    n_items = len(index)
    if n_items == 0:
        return []
    kk = min(n_items, max(50, 20 * k))
    exact = False
    while True:
        res = index.query(data, kk, exact=exact)
        rows, tracks, offsets, dist = hit_arrays(library, name, res)
        keep = (tracks >= 0) & ~np.isin(tracks, np.fromiter(exclude, np.int64, len(exclude)))
        rows, tracks, offsets, dist = rows[keep], tracks[keep], offsets[keep], dist[keep]
        if by == "peaks":
            sim = 1.0 - dist
        else:
            # cosine distance of the (maybe negated) query -> the clip's own cosine similarity
            sim = dist - 1.0 if worst else 1.0 - dist
        if by == "combined":
            if not worst:
                rows, tracks, offsets, sim = _union(
                    (rows, tracks, offsets, sim), peak_candidates(library, clip_sets, data, kk),
                    exclude=exclude, n_rows=len(q_offsets))
            sim = fused_scores(library, clip_sets, rows, tracks, offsets, sim)
        found, pos = best_per_track(tracks, sim, higher_is_better=not worst)
        if len(found) >= k or exact:
            break
        if kk >= n_items:
            # The buckets held fewer than k tracks: an empty bucket never means an empty answer.
            exact = True
        kk = min(n_items, kk * 4)
    return _results(library, found[:k], sim[pos[:k]], offsets[pos[:k]], q_offsets[rows[pos[:k]]])


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
    index: Index = library.indexes["chroma_frames"]
    frames, _q_times = _query_rows(library, "chroma_frames", clip)
    if len(frames) == 0 or len(index) == 0:
        return []
    data = -np.asarray(frames) if worst else np.asarray(frames)
    res = index.query(data, min(VOTES_PER_FRAME, len(index)))
    _rows, tracks, _offsets, _ = hit_arrays(library, "chroma_frames", res)
    keep = (tracks >= 0) & ~np.isin(tracks, np.fromiter(exclude, np.int64, len(exclude)))
    tracks = tracks[keep]
    if len(tracks) == 0:
        return []
    uniq, votes = np.unique(tracks, return_counts=True)
    # Frames per library track: the chroma index's own track rows, mapped like the hits.
    sub = index.tracks()
    lib_ids = library.resolve_tracks("chroma_frames", np.array([t.id for t in sub], np.int64))
    n_frames = dict(zip(lib_ids.tolist(), (t.n_items for t in sub)))
    frames_per_track = np.array([max(1, n_frames.get(t, 1)) for t in uniq.tolist()], np.float64)
    score = votes / frames_per_track
    order = np.argsort(-score, kind="stable")[:k]
    nan = np.full(len(order), np.nan)
    return _results(library, uniq[order], score[order], nan, nan)


def stored_clip(library: Library, track_id: int, *, by: str, method: str | None = None) -> Extracted:
    """A track already in the library as a query: its stored rows, no decoding."""
    method = check_query(library, by, method)
    track = library.track(track_id)
    if track is None:
        raise ParameterError(f"no track with id {track_id}")
    names = ["chroma_frames"] if method == "vote" else (
        list(COMBINED_PARTS) if by == "combined" else [by])
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    chroma_frames = peaks = None
    for name in names:
        index = library.indexes[name]
        sub = library.mode_track_ids(name).get(track.content_hash)
        ids = index.storage.ids_for_track(sub) if sub is not None else np.zeros(0, np.int64)
        _, offsets = index.storage.item_arrays(ids)
        order = np.argsort(offsets, kind="stable")
        ids, offsets = ids[order], offsets[order]
        data = index.rows(ids)  # only this track's rows
        if name == "peaks":
            peaks = (data, offsets)
        elif name == "chroma_frames":
            chroma_frames = (np.asarray(data), offsets)
        else:
            # Stored rows are already standardised (and normalised): undo it so the query path
            # can redo it.
            X = np.asarray(data)
            std = library.standardizer(name)
            if std is not None:
                X = std.invert(X)
            vectors[name] = (X.astype(np.float32), offsets)
    return Extracted(track.path, track.content_hash, track.duration_s or 0.0, vectors,
                     chroma_frames, peaks)
