"""What sounds like this: tracks ranked by rhythm, timbre, chroma, peaks or combined.

Best-passage scoring.  A clip is cut into the library's excerpt windows (passages); every
passage queries the mode's index, and the tracks of the passages found are the candidates.  For
each candidate every passage of the clip is compared with every passage of the track
(``library.passages``: a cosine, a Jaccard or the fused score); the track's raw score is the
best of those pairs, and its ``query_offset_s`` and ``offset_s`` say which passage of the clip
matched which passage of the track.  ``worst`` asks for the least similar tracks of the whole
collection: the candidates are the nearest neighbours of the negated passages (those of lowest
cosine, for combined of lowest combined-row cosine), and a track's raw score is its *worst*
pair.  ``score`` is the raw score's percentile among passage pairs of different tracks of the
collection (``library.scale``), in [0, 1] and comparable across modes; ``raw_score`` keeps the
raw value.

A track is in one list only: the least similar leave out the k most similar tracks (of the same
query, mode and k), so when k is large relative to the library the least-similar list is the
shorter one.  ``combined`` takes its candidates from the combined index
(rhythm and timbre) and from the peaks index, for passages only their peak pairs place near.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import check_int
from audiolsh.library import Extracted, Library, Mode
from audiolsh.library.passages import Passages, cross_raw, query_passages, stored_passages, track_passages
from audiolsh.library.scale import (
    VOTE,
    VOTE_WORST,
    VOTES_PER_FRAME,
    ScoreScale,
    vote_frames,
    vote_lift,
    vote_shares,
)
from audiolsh.query.hits import Hits, as_ids, offset_key, search, track_windows, window_items
from audiolsh.query.identify import VOTE_BIN_S, Identification, identify
from audiolsh.search.brute import jaccard_rows, prepare

log = logging.getLogger(__name__)

BY = ("rhythm", "timbre", "chroma", "combined", "peaks")
METHODS = {"rhythm": ("vector",), "timbre": ("vector",), "combined": ("vector",),
           "chroma": ("vector", "vote"), "peaks": ("minhash",)}


@dataclass(frozen=True)
class SimilarTrack:
    track_id: int
    path: str
    score: float
    rank: int
    offset_s: float | None
    query_offset_s: float | None = None
    #: the best (worst) passage pair's own value: cosine, Jaccard, fused z-sum or vote share
    raw_score: float | None = None

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


def own_track(library: Library, y: np.ndarray, sr: int) -> Identification | None:
    """The library track a clip is cut from, as the fingerprint identifies it (None: the library
    has no fingerprint mode, or the clip is not in it).  ``similar`` reports it as the clip's
    match and leaves it out of the lists unless asked to include it."""
    if "fingerprint" not in library.modes:
        return None
    return identify(library, y, sr)


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
            worst: bool = False, method: str | None = None, exclude: Collection[int] = (),
            most: Collection[int] | None = None) -> list[SimilarTrack]:
    """The k tracks most (or, with ``worst``, least) similar to a clip, best first.

    ``worst`` leaves out the k most similar tracks: ``most`` when the caller has them (the
    tracks of its most-similar list of the same query), else they are found here."""
    mode = check_query(library, by, method)
    k = check_int("k", k, 1)
    if worst and mode.query == "sets":
        raise ParameterError("--worst is not defined for peak sets: Jaccard has no opposite direction")
    if worst:
        if most is None:
            most = [r.track_id for r in similar(library, clip, by=by, k=k, method=method, exclude=exclude)]
        exclude = {*exclude, *most}
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
    query = query_passages(mode, data, clip_sets)
    scale = library.score_scale()
    search_data = -np.asarray(data) if worst else data
    kk = min(n_items, max(50, 20 * k))
    exact = False
    judged = np.zeros(0, np.int64)
    kept: list[Extremes] = []
    while True:
        found = _candidates(library, mode, search_data, clip_sets, kk, exact=exact, worst=worst,
                            exclude=exclude, n_rows=len(q_offsets))
        new = found[~np.isin(found, judged)]
        chunk = max(2 * k + 10, 1)
        for start in range(0, len(new), chunk):  # a few chunks: the extremes are exact per track
            kept.append(_extremes(library, mode, query, q_offsets, new[start: start + chunk], scale))
            judged = np.concatenate([judged, new[start: start + chunk]])
            if sum(len(e) for e in kept) >= k:
                break
        if sum(len(e) for e in kept) >= k or exact:
            break
        if kk >= n_items:
            # The buckets held fewer than k tracks: an empty bucket never means an empty answer.
            exact = True
        kk = min(n_items, kk * 4)
    return _ranked(library, Extremes.concat(kept), k=k, worst=worst)


def _candidates(library: Library, mode: Mode, data: Any, clip_sets: Any, kk: int, *, exact: bool,
                worst: bool, exclude: Collection[int], n_rows: int) -> np.ndarray:
    """Candidate tracks of the (maybe negated) query rows, in the order of their best hit."""
    hits = search(library, mode.name, data, kk, exact=exact).known(exclude)
    if mode.query == "sets":
        sim = 1.0 - hits.distances
    else:
        # cosine distance of the (maybe negated) query -> the clip's own cosine similarity
        sim = hits.distances - 1.0 if worst else 1.0 - hits.distances
    if mode.query == "fused":
        if not worst:
            hits = _union(Hits(hits.rows, hits.tracks, hits.offsets, sim),
                          peak_candidates(library, clip_sets, data, kk), exclude=exclude, n_rows=n_rows)
            sim = hits.distances
        sim = fused_scores(library, clip_sets, hits, sim)
    return best_per_track(hits.tracks, sim, higher_is_better=not worst)[0]


@dataclass(frozen=True)
class Extremes:
    """Per track: its best and worst passage pair with the clip (raw value, clip passage,
    track passage) and both on the score scale."""

    tracks: np.ndarray
    best: np.ndarray
    best_at: tuple[np.ndarray, np.ndarray]
    worst: np.ndarray
    worst_at: tuple[np.ndarray, np.ndarray]
    best_score: np.ndarray
    worst_score: np.ndarray

    def __len__(self) -> int:
        return len(self.tracks)

    def take(self, keep: Any) -> Extremes:
        return Extremes(self.tracks[keep], self.best[keep], (self.best_at[0][keep], self.best_at[1][keep]),
                        self.worst[keep], (self.worst_at[0][keep], self.worst_at[1][keep]),
                        self.best_score[keep], self.worst_score[keep])

    @classmethod
    def concat(cls, parts: Sequence[Extremes]) -> Extremes:
        def cat(get: Callable[[Extremes], np.ndarray]) -> np.ndarray:
            return np.concatenate([get(p) for p in parts]) if parts else np.zeros(0)

        return cls(cat(lambda p: p.tracks).astype(np.int64), cat(lambda p: p.best),
                   (cat(lambda p: p.best_at[0]), cat(lambda p: p.best_at[1])), cat(lambda p: p.worst),
                   (cat(lambda p: p.worst_at[0]), cat(lambda p: p.worst_at[1])),
                   cat(lambda p: p.best_score), cat(lambda p: p.worst_score))


def _extremes(library: Library, mode: Mode, query: Passages, q_offsets: np.ndarray,
              tracks: np.ndarray, scale: ScoreScale) -> Extremes:
    """Every passage of the clip against every passage of the tracks: each track's best and
    worst pair (tracks the mode no longer holds are dropped)."""
    ids, item_tracks, offsets = track_passages(library, mode.name, tracks)
    keep = item_tracks >= 0
    ids, item_tracks, offsets = ids[keep], item_tracks[keep], offsets[keep]
    raw = cross_raw(library, mode, query, stored_passages(library, mode, ids, item_tracks, offsets))
    if not raw.size:
        empty = np.zeros(0)
        return Extremes(np.zeros(0, np.int64), empty, (empty, empty), empty, (empty, empty), empty, empty)
    top, low = raw.argmax(axis=0), raw.argmin(axis=0)  # per track passage: the clip's best, worst
    cols = np.arange(raw.shape[1])
    hi, lo = raw[top, cols], raw[low, cols]
    found, best = best_per_track(item_tracks, hi)
    order = np.argsort(found)
    found, best = found[order], best[order]
    _, worst = best_per_track(item_tracks, lo, higher_is_better=False)
    worst = worst[np.argsort(item_tracks[worst])]
    q_off = np.asarray(q_offsets, np.float64)
    return Extremes(found, hi[best], (q_off[top[best]], offsets[best]), lo[worst],
                    (q_off[low[worst]], offsets[worst]), scale.score(mode.name, hi[best]),
                    scale.score(mode.name, lo[worst]))


def _ranked(library: Library, ext: Extremes, *, k: int, worst: bool) -> list[SimilarTrack]:
    """The k tracks of the best (least similar: lowest) raw scores, with their passages."""
    raw = ext.worst if worst else ext.best
    order = np.lexsort((ext.tracks, raw if worst else -raw))[:k]
    q_at, at = ext.worst_at if worst else ext.best_at
    scores = ext.worst_score if worst else ext.best_score
    return _results(library, ext.tracks[order], scores[order], raw[order], at[order], q_at[order])


def _results(library: Library, tracks: np.ndarray, scores: np.ndarray, raw: np.ndarray,
             offsets: np.ndarray, q_offsets: np.ndarray) -> list[SimilarTrack]:
    out = []
    for rank, (t, s, r, o, q) in enumerate(zip(tracks.tolist(), scores.tolist(), raw.tolist(),
                                               offsets.tolist(), q_offsets.tolist())):
        track = library.track(int(t))
        out.append(SimilarTrack(int(t), track.path if track else "?", round(float(s), 6), rank + 1,
                                None if np.isnan(o) else round(float(o), 3),
                                None if np.isnan(q) else round(float(q), 3), round(float(r), 6)))
    return out


def _vote(library: Library, clip: Extracted, *, k: int, worst: bool,
          exclude: Collection[int]) -> list[SimilarTrack]:
    """S1: every query chroma frame votes for the tracks of its nearest frames; a track's raw
    score is its votes per frame it holds, its score the percentile of that over chance (lift)
    among unrelated tracks (``library.scale``).  The least similar count the votes of the
    negated frames (a higher raw score is less similar: the score is one minus the percentile).
    Its passages are the alignment most votes agree on (the clip's first frame voting for it and
    where that falls in the track, to ``VOTE_BIN_S``)."""
    mode = library.mode("chroma_frames")
    frames, q_times = mode.rows_of(library.state(), clip)
    known, n_frames, n_total = vote_frames(library)
    if len(frames) == 0 or n_total == 0 or not len(known):
        return []
    data = -np.asarray(frames) if worst else np.asarray(frames)
    hits = search(library, mode.name, data, min(VOTES_PER_FRAME, n_total)).known(exclude)
    hits = hits.take(np.isin(hits.tracks, known))
    shares = vote_shares(hits.tracks, known, n_frames)
    lift = vote_lift(shares, len(frames), n_total)
    scale = library.score_scale()
    score = 1.0 - scale.score(VOTE_WORST, lift) if worst else scale.score(VOTE, lift)
    voted = np.flatnonzero(shares > 0)
    order = voted[np.argsort(-shares[voted], kind="stable")][:k]
    q_at, at = _vote_alignment(hits, np.asarray(q_times, np.float64), known[order])
    return _results(library, known[order], score[order], shares[order], at, q_at)


def _vote_alignment(hits: Hits, q_times: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per track (each with hits): the alignment of clip and track most votes agree on, as the
    clip's first frame voting for it and that frame's place in the track (s)."""
    q = q_times[hits.rows]
    bins = np.round((hits.offsets - q) / VOTE_BIN_S).astype(np.int64)
    pairs, inverse, votes = np.unique(np.stack([hits.tracks, bins], axis=1), axis=0, return_inverse=True,
                                      return_counts=True)
    first = np.full(len(pairs), np.inf)
    np.minimum.at(first, inverse.ravel(), q)
    found, pos = best_per_track(pairs[:, 0], votes.astype(np.float64))
    pos = pos[np.argsort(found)][np.searchsorted(np.sort(found), tracks)]
    return first[pos], first[pos] + pairs[pos, 1] * VOTE_BIN_S


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
