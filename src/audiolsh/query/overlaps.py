"""Overlaps: pairs of tracks that share material (a duplicate, a re-release, a reused loop, a
medley), found by joining the library's landmark hashes with themselves.

Two tracks that share a passage share many landmark hashes whose times differ by one constant,
the passage's offset in the second track minus its offset in the first; chance collisions spread
over every difference.  So:

1. ``join_hashes``: for every hash value held by more than one track, every pair of its entries
   from two different tracks ``a < b`` becomes a vote ``(a, b, time_a, time_b, hash)``.  Skew
   is capped: a hash with more than ``max_per_hash`` entries (silence, drones, a common
   interval) joins a seeded sample of that many, ranked by a hash of each entry (track, time,
   hash value, seed), so the sample does not depend on how the entries are ordered or
   partitioned.  One hash value gives at most ``max_per_hash**2 / 2`` votes, all of them at
   most ``n_landmarks * max_per_hash / 2``.
2. ``find_overlaps``: votes are keyed by (a, b, time difference) and counted within +-
   ``tolerance`` frames; each peak of at least ``min_hashes`` votes (the best difference of a
   cluster of neighbouring ones) is cut along track a into stretches (``_stretches``: gaps,
   bridges and thin edges).  A stretch is an overlap when its distinct agreeing hash values
   (a pattern repeated in both tracks counts once) are unlikely by chance under the fingerprint
   index's model (``chance_log10``, quasi-Poisson with the index's calibrated
   ``dispersion``): the chance rate is the pair's votes spread evenly over its (time a,
   time b) plane, taken over the stretch's window of differences and its span of track a, and
   the probability is multiplied (Bonferroni) by the number of (pair, difference window) cells
   of the library and of places a stretch that long fits in the two tracks' overlap.  The
   confidence ``1 - p`` must reach ``threshold`` (the index's, 0.999 by default, as for
   identify) and the stretch last ``min_frames``.  A track's own repeats align a shared
   passage a second way: a weaker stretch of the same pair over half of a stronger one's in
   both tracks, or in one of them with less than ``ECHO_SHARE`` of its hashes, is such an echo
   and is dropped.

A stretch's edges are where its hashes start and stop agreeing: some tenths of a second inside
a splice (peaks near it depend on the audio on both sides), earlier when the two tracks happen
to hold the same chord just before it.

Both steps are pure functions of arrays: ``join_hashes`` needs only the entries of its own hash
values (a partition by hash), ``find_overlaps`` the votes of its own pairs of tracks (a
partition by pair), their totals over every partition (``PairTotals`` add up with ``merge``)
and the length of every track.  ``OverlapSearch`` holds what every partition of a library's
search needs and runs the steps on a partition's landmarks: ``join`` (hash values to votes),
``count`` (the first pass: votes per pair and per (pair, difference bin) in a fixed table of
counters, which add up over partitions), ``dense`` (the second pass: only the votes of cells
that can reach ``min_hashes``, so the chance votes are never all held at once) and ``find``
(one partition of pairs; ``OverlapArrays.concat`` puts the partitions' overlaps in the order
one call over every pair gives).  ``library_overlaps`` runs them over a library's hash values
in chunks; ``audiolsh.spark.overlaps`` in Spark tasks, partitioned by hash value and then by
pair of tracks, with the same answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features.landmarks import DT_BITS, FRAME_S
from audiolsh.library import Library
from audiolsh.search.fingerprint import chance_log10

log = logging.getLogger(__name__)

__all__ = ["HashPairs", "Overlap", "OverlapArrays", "OverlapSearch", "PairTotals", "find_overlaps",
           "join_hashes", "library_overlaps", "overlaps_of"]

MAX_PER_HASH = 32
"""Entries of one hash value joined at most (a seeded sample beyond)."""
MIN_HASHES = 8
"""Distinct agreeing hashes an overlap needs at least."""
MAX_GAP_S = 2.0
"""A run of agreeing hashes ends after this long without one."""
EDGE_GAP_S = 0.5
"""Thin bursts of agreeing hashes at a stretch's ends, this far from the rest, are not part of it."""
BRIDGE_S = 8.0
"""Runs of one alignment at most this far apart, each of ``MIN_HASHES`` votes or more, are one
stretch (a quieter or reworked part between them)."""
MIN_SECONDS = 3.0
"""Shortest shared stretch reported by default."""
ECHO_SHARE = 0.5
"""A weaker run over a stronger one's stretch with less than this share of its hashes is an echo."""
WHOLE = 0.9
"""A stretch covering this share of a track's duration covers the whole track."""
CHUNK_LANDMARKS = 1 << 19
"""``library_overlaps`` joins about this many landmarks at a time."""
DIFF_BITS = 24
DIFF_BIAS = 1 << (DIFF_BITS - 1)
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class HashPairs:
    """Votes of a self-join: landmarks of two different tracks that share a hash value.

    tracks : int64 (n_tracks,), sorted track ids; ``a`` and ``b`` index it, ``a < b``
    a, b : int32 (m,)
    time_a, time_b : int32 (m,), anchor frames (``FRAME_S`` each) in track a and track b
    hashes : uint32 (m,)
    """

    tracks: np.ndarray
    a: np.ndarray
    b: np.ndarray
    time_a: np.ndarray
    time_b: np.ndarray
    hashes: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    def take(self, keep: np.ndarray) -> HashPairs:
        return HashPairs(self.tracks, self.a[keep], self.b[keep], self.time_a[keep], self.time_b[keep],
                         self.hashes[keep])

    @classmethod
    def concat(cls, parts: Iterable[HashPairs], tracks: np.ndarray) -> HashPairs:
        """Votes of several joins over the same ``tracks``."""
        parts = list(parts)
        if not parts:
            z32 = np.zeros(0, np.int32)
            return cls(tracks, z32, z32, z32, z32, np.zeros(0, np.uint32))
        for p in parts:
            if not np.array_equal(p.tracks, tracks):
                raise ParameterError("votes of different track sets cannot be joined")
        return cls(tracks, *(np.concatenate([getattr(p, f) for p in parts])
                             for f in ("a", "b", "time_a", "time_b", "hashes")))

    def pair_codes(self) -> np.ndarray:
        """int64 (m,): ``a * n_tracks + b``."""
        return self.a.astype(np.int64) * len(self.tracks) + self.b

    def diffs(self) -> np.ndarray:
        """int64 (m,): time_b - time_a, frames."""
        return self.time_b.astype(np.int64) - self.time_a


@dataclass(frozen=True)
class PairTotals:
    """Votes per pair of tracks (the chance rate of each pair); totals of partitions add up.

    codes : int64 (p,), sorted pair codes ``a * n_tracks + b`` over ``tracks``; counts : int64 (p,)
    """

    tracks: np.ndarray
    codes: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, pairs: HashPairs) -> PairTotals:
        codes, counts = np.unique(pairs.pair_codes(), return_counts=True)
        return cls(pairs.tracks, codes, counts.astype(np.int64))

    def merge(self, other: PairTotals) -> PairTotals:
        if not np.array_equal(self.tracks, other.tracks):
            raise ParameterError("totals of different track sets cannot be merged")
        codes, inverse = np.unique(np.concatenate([self.codes, other.codes]), return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=np.concatenate([self.counts, other.counts]),
                             minlength=len(codes))
        return PairTotals(self.tracks, codes, counts.astype(np.int64))

    @classmethod
    def empty(cls, tracks: np.ndarray) -> PairTotals:
        return cls(tracks, np.zeros(0, np.int64), np.zeros(0, np.int64))

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Votes of each pair code (0 for a pair without any)."""
        return _lookup(self.codes, self.counts, codes, 0)


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray, missing: int) -> np.ndarray:
    """The value of each query in sorted ``keys`` (``missing`` where it is not one)."""
    if not len(keys):
        return np.full(len(queries), missing, np.int64)
    pos = np.clip(np.searchsorted(keys, queries), 0, len(keys) - 1)
    return np.where(keys[pos] == queries, values[pos], missing)


@dataclass(frozen=True)
class OverlapArrays:
    """Overlaps found, most significant first: track a's stretch ``[start_a, start_a + length)``
    plays in track b from ``start_b`` (frames of ``FRAME_S``; start_b may be fractional).

    track_a, track_b : int64 (k,) track ids, track_a < track_b
    start_a, length : int64 (k,); start_b : float64 (k,)
    score : int64 (k,), distinct agreeing hashes
    log10_p : float64 (k,), corrected log10 chance probability
    """

    track_a: np.ndarray
    track_b: np.ndarray
    start_a: np.ndarray
    start_b: np.ndarray
    length: np.ndarray
    score: np.ndarray
    log10_p: np.ndarray

    def __len__(self) -> int:
        return len(self.track_a)

    @classmethod
    def concat(cls, parts: Iterable[OverlapArrays]) -> OverlapArrays:
        """The overlaps of several ``find_overlaps`` calls over disjoint sets of pairs of tracks,
        in the order one call over all of them gives: by significance, then pair, then each
        part's own order (its runs of one pair)."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return _no_overlaps()
        cols = {f: np.concatenate([getattr(p, f) for p in parts]) for f in _OVERLAP_FIELDS}
        place = np.concatenate([np.arange(len(p)) for p in parts])
        order = np.lexsort((place, cols["track_b"], cols["track_a"], cols["log10_p"]))
        return cls(**{f: v[order] for f, v in cols.items()})


_OVERLAP_FIELDS = ("track_a", "track_b", "start_a", "start_b", "length", "score", "log10_p")


def _no_overlaps() -> OverlapArrays:
    return OverlapArrays(*(np.zeros(0, np.int64),) * 3, np.zeros(0), np.zeros(0, np.int64),
                         np.zeros(0, np.int64), np.zeros(0))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: uint64 -> well-spread uint64."""
    z = x.astype(np.uint64) + _MIX
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def join_hashes(track_ids: np.ndarray, times: np.ndarray, hashes: np.ndarray, *,
                tracks: np.ndarray | None = None, max_per_hash: int = MAX_PER_HASH,
                seed: int = 0) -> HashPairs:
    """Pair the entries of every hash value across tracks (see the module docstring, step 1).

    track_ids, times, hashes : (n,) each landmark's track, anchor frame and hash, any order
    tracks : sorted track ids the votes index (default: those in ``track_ids``); pass the
        library's to join partitions separately
    max_per_hash : entries of one hash value kept at most (>= 2), a seeded sample beyond
    """
    _check_max_per_hash(max_per_hash)
    track_ids = np.asarray(track_ids, np.int64)
    times = np.asarray(times, np.int64)
    hashes = np.asarray(hashes, np.uint32)
    if not (len(track_ids) == len(times) == len(hashes)):
        raise ParameterError("track_ids, times and hashes must have one length")
    tracks = np.unique(track_ids) if tracks is None else np.asarray(tracks, np.int64)
    tix = np.searchsorted(tracks, track_ids)
    if len(track_ids) and (tix.max() >= len(tracks) or not np.array_equal(tracks[tix], track_ids)):
        raise ParameterError("track_ids holds ids missing from tracks")
    # A pseudo-random rank of each entry among those of its hash value: a function of the
    # entry alone, so the sample is the same however the entries are ordered or partitioned.
    salt = _mix64(np.array([seed], np.uint64))[0]
    noise = _mix64((track_ids.astype(np.uint64) << np.uint64(32)) ^ (times.astype(np.uint64) << np.uint64(8))
                   ^ (hashes.astype(np.uint64) << np.uint64(40)) ^ salt)
    order = np.lexsort((noise, hashes))
    h = hashes[order]
    new = np.ones(len(h), bool)
    new[1:] = h[1:] != h[:-1]
    first = np.flatnonzero(new)
    rank = np.arange(len(h)) - np.repeat(first, np.diff(np.append(first, len(h))))
    order = order[rank < max_per_hash]
    h = h[rank < max_per_hash]
    new = np.ones(len(h), bool)
    new[1:] = h[1:] != h[:-1]
    bounds = np.append(np.flatnonzero(new), len(h)).astype(np.int64)
    a, b, ta, tb, hv = _join(bounds, tix[order].astype(np.int32), times[order].astype(np.int32), h)
    return HashPairs(tracks, a, b, ta, tb, hv)


def _check_max_per_hash(max_per_hash: int) -> None:
    if not (isinstance(max_per_hash, int) and max_per_hash >= 2):
        raise ParameterError(f"max_per_hash must be an integer >= 2, got {max_per_hash!r}")


@numba.njit(cache=True, nogil=True)
def _join(bounds, tix, times, hashes):  # type: ignore[no-untyped-def]
    total = 0
    for g in range(len(bounds) - 1):
        for i in range(bounds[g], bounds[g + 1]):
            for j in range(i + 1, bounds[g + 1]):
                total += tix[i] != tix[j]
    a = np.empty(total, np.int32)
    b = np.empty(total, np.int32)
    ta = np.empty(total, np.int32)
    tb = np.empty(total, np.int32)
    hv = np.empty(total, np.uint32)
    n = 0
    for g in range(len(bounds) - 1):
        for i in range(bounds[g], bounds[g + 1]):
            for j in range(i + 1, bounds[g + 1]):
                if tix[i] == tix[j]:
                    continue
                lo, hi = (i, j) if tix[i] < tix[j] else (j, i)
                a[n] = tix[lo]
                b[n] = tix[hi]
                ta[n] = times[lo]
                tb[n] = times[hi]
                hv[n] = hashes[i]
                n += 1
    return a, b, ta, tb, hv


def _n_cells(frames: np.ndarray, width: int) -> float:
    """(pair of tracks, time difference window) cells searched: the Bonferroni factor."""
    n = len(frames)
    return max(float(n - 1) * float(np.sum(frames)) / width, 1.0)


def find_overlaps(
    pairs: HashPairs, totals: PairTotals, *, track_frames: tuple[np.ndarray, np.ndarray],
    tolerance: int = 2, dispersion: float = 3.5, threshold: float = 0.999,
    min_frames: int = round(MIN_SECONDS / FRAME_S), min_hashes: int = MIN_HASHES,
    max_gap: int = round(MAX_GAP_S / FRAME_S), bridge: int = round(BRIDGE_S / FRAME_S),
    edge_gap: int = round(EDGE_GAP_S / FRAME_S),
) -> OverlapArrays:
    """Overlaps in the votes of a self-join (see the module docstring, step 2).

    totals : every vote per pair of tracks, before any pruning (the chance rates)
    track_frames : (sorted ids, lengths in frames) of every track searched, for the correction
    tolerance : time differences within +- this many frames agree
    min_frames, max_gap : shortest stretch reported; longest gap inside one, frames
    bridge : runs of one alignment at most this many frames apart (each of ``min_hashes``
        votes or more) are one stretch
    edge_gap : thin bursts of votes at a stretch's ends, this many frames from the rest, go
    """
    ids, frames = (np.asarray(x, np.int64) for x in track_frames)
    if len(frames) and int(frames.max()) >= DIFF_BIAS:
        raise ParameterError(f"tracks longer than {DIFF_BIAS} frames are not supported")
    if len(pairs.tracks) and not np.isin(pairs.tracks, ids).all():
        raise ParameterError("track_frames lacks tracks the votes name")
    width = 2 * tolerance + 1
    empty = _no_overlaps()
    if not len(pairs):
        return empty
    length = frames[np.searchsorted(ids, pairs.tracks)]  # per index of pairs.tracks
    key = (pairs.pair_codes() << DIFF_BITS) | (pairs.diffs() + DIFF_BIAS)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    uniq = np.unique(ks)
    # Votes within +-tolerance of each distinct key (the same pair: tolerance << DIFF_BIAS).
    smooth = (np.searchsorted(ks, uniq + tolerance, side="right")
              - np.searchsorted(ks, uniq - tolerance, side="left"))
    cand = np.flatnonzero(smooth >= min_hashes)
    if not len(cand):
        return empty
    # One peak per cluster of candidate keys (consecutive keys closer than the window).
    ck, cs = uniq[cand], smooth[cand]
    cluster = np.cumsum(np.concatenate([[True], np.diff(ck) > tolerance]))
    best = np.lexsort((-cs, cluster))
    firsts = np.concatenate([[True], cluster[best][1:] != cluster[best][:-1]])
    centre = ck[best[firsts]]
    # Every vote in each peak's window, ordered by time in track a, split into runs at gaps.
    lo = np.searchsorted(ks, centre - tolerance, side="left")
    hi = np.searchsorted(ks, centre + tolerance, side="right")
    sizes = hi - lo
    peak = np.repeat(np.arange(len(centre)), sizes)
    sel = order[np.arange(int(sizes.sum())) + np.repeat(lo - (np.cumsum(sizes) - sizes), sizes)]
    ta = pairs.time_a[sel].astype(np.int64)
    by_time = np.lexsort((ta, peak))
    sel, peak, ta = sel[by_time], peak[by_time], ta[by_time]
    keep, run = _stretches(peak, ta, max_gap=max_gap, bridge=bridge, edge_gap=edge_gap,
                           min_votes=min_hashes)
    sel, ta = sel[keep], ta[keep]
    if not len(sel):
        return empty
    new_run = np.ones(len(sel), bool)
    new_run[1:] = run[1:] != run[:-1]
    starts = np.flatnonzero(new_run)
    n_votes = np.diff(np.append(starts, len(sel)))
    first_a = ta[starts]
    last_a = np.maximum.reduceat(ta, starts)
    end_a = np.maximum.reduceat(ta + (pairs.hashes[sel] & ((1 << DT_BITS) - 1)), starts) + 1
    diff = np.add.reduceat(pairs.diffs()[sel].astype(np.float64), starts) / n_votes
    # Distinct hash values per run: a pattern repeated in both tracks is one piece of evidence.
    by_hash = np.lexsort((pairs.hashes[sel], run))
    hs, rs = pairs.hashes[sel][by_hash], run[by_hash]
    distinct = np.ones(len(hs), bool)
    distinct[1:] = (hs[1:] != hs[:-1]) | (rs[1:] != rs[:-1])
    score = np.bincount(rs[distinct], minlength=len(starts))
    # Chance: the pair's votes spread uniformly over the (time a, time b) plane.
    a_ix, b_ix = pairs.a[sel[starts]], pairs.b[sel[starts]]
    fa, fb = length[a_ix].astype(np.float64), length[b_ix].astype(np.float64)
    n_ab = totals.lookup(pairs.pair_codes()[sel[starts]]).astype(np.float64)
    region = (last_a - first_a + 1).astype(np.float64)
    lam = n_ab * width * region / np.maximum(fa * fb, 1.0)
    d = np.rint(diff)
    overlap = np.maximum(np.minimum(fa, fb - d) - np.maximum(0.0, -d), 1.0)
    log_p = (chance_log10(score, lam, dispersion=dispersion) + math.log10(_n_cells(frames, width))
             + np.log10(np.maximum(overlap / region, 1.0)))
    span = end_a - first_a
    alpha = math.log10(max(1.0 - threshold, 1e-300))
    ok = np.flatnonzero((log_p <= alpha) & (span >= min_frames) & (score >= min_hashes))
    ok = ok[np.argsort(log_p[ok], kind="stable")]
    keep = _distinct_stretches(a_ix[ok], b_ix[ok], first_a[ok], end_a[ok], diff[ok], score[ok])
    ok = ok[keep]
    return OverlapArrays(
        pairs.tracks[a_ix[ok]], pairs.tracks[b_ix[ok]], first_a[ok], first_a[ok] + diff[ok],
        span[ok], score[ok].astype(np.int64), log_p[ok],
    )


def _bursts(group: np.ndarray, t: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Split votes sorted by (group, time) where the group changes or time jumps by more than
    ``gap``: (burst number of each vote, size of each burst)."""
    new = np.ones(len(t), bool)
    new[1:] = (group[1:] != group[:-1]) | (t[1:] - t[:-1] > gap)
    first = np.flatnonzero(new)
    return np.cumsum(new) - 1, np.diff(np.append(first, len(t)))


def _stretches(peak: np.ndarray, ta: np.ndarray, *, max_gap: int, bridge: int, edge_gap: int,
               min_votes: int) -> tuple[np.ndarray, np.ndarray]:
    """The votes (sorted by peak, then time in track a) that make stretches, and the stretch of
    each: (positions, stretch numbers, non-decreasing).

    Runs split at gaps of more than ``max_gap``; runs of fewer than ``min_votes`` go (they
    cannot count); runs of one peak at most ``bridge`` apart join (a quieter or reworked part in
    between); a stretch with a burst (split at ``edge_gap``) of ``min_votes`` or more loses the
    thinner bursts before its first and after its last such burst (a chord both tracks happen to
    hold next to the shared passage)."""
    runs, size = _bursts(peak, ta, max_gap)
    pos = np.flatnonzero((size >= min_votes)[runs])
    p, t = peak[pos], ta[pos]
    stretch, s_size = _bursts(p, t, max(bridge, max_gap))
    burst, b_size = _bursts(stretch, t, edge_gap)
    strong = (b_size >= min_votes)[burst]
    at = np.arange(len(t))
    first = np.cumsum(s_size) - s_size
    lo = np.repeat(np.minimum.reduceat(np.where(strong, at, len(t)), first), s_size) if len(t) else at
    hi = np.repeat(np.maximum.reduceat(np.where(strong, at, -1), first), s_size) if len(t) else at
    inner = (hi < 0) | ((at >= lo) & (at <= hi))
    return pos[inner], stretch[inner]


def _distinct_stretches(a: np.ndarray, b: np.ndarray, start: np.ndarray, end: np.ndarray,
                        diff: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Positions of runs (most significant first) to keep, dropping echoes: a run of the same
    pair that covers half of a stronger run's stretch in both tracks, or in one of them with
    less than ``ECHO_SHARE`` of its hashes (a track's own repeats align it a second way)."""
    kept: dict[tuple[int, int], list[tuple[float, float, float, float, float]]] = {}
    out = []
    for i in range(len(a)):  # one step per significant run, not per vote
        s, e = float(start[i]), float(end[i])
        sb, eb = s + float(diff[i]), e + float(diff[i])
        mine = kept.setdefault((int(a[i]), int(b[i])), [])
        echo = False
        for s0, e0, sb0, eb0, score0 in mine:
            half = 0.5 * min(e - s, e0 - s0)
            in_a = min(e, e0) - max(s, s0) >= half
            in_b = min(eb, eb0) - max(sb, sb0) >= half
            if (in_a and in_b) or ((in_a or in_b) and score[i] < ECHO_SHARE * score0):
                echo = True
                break
        if not echo:
            mine.append((s, e, sb, eb, float(score[i])))
            out.append(i)
    return np.asarray(out, np.int64)


def overlaps_of(
    track_ids: np.ndarray, times: np.ndarray, hashes: np.ndarray, *,
    track_frames: tuple[np.ndarray, np.ndarray], max_per_hash: int = MAX_PER_HASH, seed: int = 0,
    tolerance: int = 2, dispersion: float = 3.5, threshold: float = 0.999,
    min_frames: int = round(MIN_SECONDS / FRAME_S), min_hashes: int = MIN_HASHES,
    max_gap: int = round(MAX_GAP_S / FRAME_S), bridge: int = round(BRIDGE_S / FRAME_S),
    edge_gap: int = round(EDGE_GAP_S / FRAME_S),
) -> OverlapArrays:
    """Overlaps among landmarks given as arrays (n,) each: ``join_hashes`` then ``find_overlaps``."""
    pairs = join_hashes(track_ids, times, hashes, max_per_hash=max_per_hash, seed=seed)
    return find_overlaps(pairs, PairTotals.of(pairs), track_frames=track_frames, tolerance=tolerance,
                         dispersion=dispersion, threshold=threshold, min_frames=min_frames,
                         min_hashes=min_hashes, max_gap=max_gap, bridge=bridge,
                         edge_gap=edge_gap)


# --- a library ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    """Track a's stretch from ``offset_a_s`` plays in track b from ``offset_b_s`` for
    ``length_s`` seconds.

    kind : "duplicate" (the stretch covers nearly all of both), "a-in-b" (nearly all of a is
        in b), "b-in-a", or "passage"
    score : distinct agreeing hashes; confidence : 1 - corrected chance probability
    """

    track_a: int
    path_a: str
    duration_a_s: float
    offset_a_s: float
    track_b: int
    path_b: str
    duration_b_s: float
    offset_b_s: float
    length_s: float
    score: int
    confidence: float

    @property
    def kind(self) -> str:
        whole_a = self.length_s >= WHOLE * self.duration_a_s
        whole_b = self.length_s >= WHOLE * self.duration_b_s
        if whole_a and whole_b:
            return "duplicate"
        return "a-in-b" if whole_a else "b-in-a" if whole_b else "passage"


@dataclass(frozen=True, eq=False)
class OverlapSearch:
    """One overlaps search of a library, as each partition of it needs it (small and picklable:
    Spark tasks get it), and the steps a partition runs (see the module docstring).

    tracks, frames : int64 (n,), the complete tracks' library ids (sorted), lengths in frames
    mode_ids, lib_ids : int64 (m,), the fingerprint index's track ids (sorted) and the library
        ids they are, when the search began
    n_landmarks : live landmarks then (the size of the table of vote counters)
    tolerance, dispersion : the fingerprint index's; threshold, min_frames : what an overlap needs
    """

    tracks: np.ndarray
    frames: np.ndarray
    mode_ids: np.ndarray
    lib_ids: np.ndarray
    n_landmarks: int
    tolerance: int
    dispersion: float
    threshold: float
    min_frames: int
    max_per_hash: int = MAX_PER_HASH
    seed: int = 0

    @classmethod
    def of(cls, library: Library, *, min_seconds: float = MIN_SECONDS, threshold: float | None = None,
           max_per_hash: int = MAX_PER_HASH, seed: int = 0) -> OverlapSearch:
        """The search of ``library``'s fingerprints (parameters as ``library_overlaps``)."""
        if not (math.isfinite(min_seconds) and min_seconds >= 0):
            raise ParameterError(f"--min-seconds must be a number >= 0, got {min_seconds!r}")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ParameterError(f"threshold must be in [0, 1], got {threshold!r}")
        _check_max_per_hash(max_per_hash)
        library.mode("fingerprint")
        fp = library.fingerprint
        assert fp is not None
        p = fp.params
        fp_ids, fp_frames = fp.track_frames()
        mode_ids, lib_ids = library.track_map("fingerprint")
        resolved = _lookup(mode_ids, lib_ids, fp_ids, -1)
        complete = resolved >= 0
        by_lib = np.argsort(resolved[complete])
        return cls(
            resolved[complete][by_lib], fp_frames[complete][by_lib], mode_ids, lib_ids,
            int(sum(t.n_items for t in fp.tracks())), p.tolerance, p.dispersion,
            p.threshold if threshold is None else threshold, math.ceil(min_seconds / FRAME_S),
            max_per_hash, seed,
        )

    @property
    def width(self) -> int:
        """Time differences per counted cell: those that agree."""
        return 2 * self.tolerance + 1

    def counters(self) -> np.ndarray:
        """A table of vote counters (uint16, zero), as big as the search's landmarks need."""
        return np.zeros(int(np.clip(1 << (4 * self.n_landmarks).bit_length(), 1 << 16, 1 << 26)), np.uint16)

    def join(self, mode_track_ids: np.ndarray, times: np.ndarray, hashes: np.ndarray) -> HashPairs:
        """The votes of a partition of landmarks (as ``landmark_chunks`` gives them: the
        fingerprint index's track ids), among the search's tracks."""
        lib = _lookup(self.mode_ids, self.lib_ids, np.asarray(mode_track_ids, np.int64), -1)
        live = np.isin(lib, self.tracks)  # complete tracks, as they were when the search began
        return join_hashes(lib[live], np.asarray(times)[live], np.asarray(hashes)[live], tracks=self.tracks,
                           max_per_hash=self.max_per_hash, seed=self.seed)

    def count(self, part: HashPairs, counters: np.ndarray) -> PairTotals:
        """The first pass: add the votes to their (pair, difference bin) counters; their totals."""
        _count_cells(counters, part.a, part.b, part.time_a, part.time_b, len(self.tracks), self.width,
                     _shift(counters))
        return PairTotals.of(part)

    @staticmethod
    def add_counts(counters: np.ndarray, slots: np.ndarray, counts: np.ndarray) -> None:
        """Add another table's counters, given as its nonzero ``slots`` (distinct) and their
        ``counts``, saturating as counting does: tables of partitions add up to one table."""
        counters[slots] = np.minimum(counters[slots].astype(np.int64) + counts, np.iinfo(counters.dtype).max)

    def dense(self, part: HashPairs, counters: np.ndarray) -> HashPairs:
        """The second pass: the votes that may lie in a window of ``MIN_HASHES`` agreeing ones
        (``counters`` holding every partition's counts)."""
        return part.take(_dense(counters, part.a, part.b, part.time_a, part.time_b, len(self.tracks),
                                self.width, _shift(counters), MIN_HASHES))

    def find(self, pairs: HashPairs, totals: PairTotals) -> OverlapArrays:
        """The overlaps among the votes of a set of pairs of tracks (all their dense votes)."""
        return find_overlaps(pairs, totals, track_frames=(self.tracks, self.frames), tolerance=self.tolerance,
                             dispersion=self.dispersion, threshold=self.threshold,
                             min_frames=self.min_frames, min_hashes=MIN_HASHES)

    @staticmethod
    def overlaps(found: OverlapArrays, library: Library) -> list[Overlap]:
        """The overlaps found, with the tracks' paths and durations (tracks removed since go)."""
        by_id = {t.id: t for t in library.tracks()}
        out = []
        for i in range(len(found)):
            ta, tb = by_id.get(int(found.track_a[i])), by_id.get(int(found.track_b[i]))
            if ta is None or tb is None:  # removed meanwhile
                continue
            out.append(Overlap(
                ta.id, ta.path, float(ta.duration_s or 0.0), float(found.start_a[i]) * FRAME_S,
                tb.id, tb.path, float(tb.duration_s or 0.0), float(found.start_b[i]) * FRAME_S,
                float(found.length[i]) * FRAME_S, int(found.score[i]),
                float(np.clip(1.0 - 10.0 ** min(float(found.log10_p[i]), 0.0), 0.0, 1.0)),
            ))
        return out


def _shift(counters: np.ndarray) -> int:
    """Bits a cell's hash drops to name its counter."""
    return 64 - (len(counters).bit_length() - 1)


def library_overlaps(
    library: Library, *, min_seconds: float = MIN_SECONDS, threshold: float | None = None,
    max_per_hash: int = MAX_PER_HASH, seed: int = 0, chunk_landmarks: int = CHUNK_LANDMARKS,
    progress: Callable[[int, int], None] | None = None,
) -> list[Overlap]:
    """Every pair of the library's tracks that share a stretch of at least ``min_seconds``,
    most significant first.

    threshold : confidence an overlap needs (default: the fingerprint index's, as identify)
    chunk_landmarks : landmarks joined at a time (memory, not the answer)
    progress : called with (steps done, steps) after each chunk of each pass
    """
    if not (isinstance(chunk_landmarks, int) and chunk_landmarks >= 1):
        raise ParameterError(f"chunk_landmarks must be a positive integer, got {chunk_landmarks!r}")
    search = OverlapSearch.of(library, min_seconds=min_seconds, threshold=threshold,
                              max_per_hash=max_per_hash, seed=seed)
    fp = library.fingerprint
    assert fp is not None
    n_chunks = max(1, math.ceil(search.n_landmarks / chunk_landmarks))
    counters = search.counters()
    totals = PairTotals.empty(search.tracks)

    def chunks(first_step: int) -> Iterable[HashPairs]:
        for step, landmarks in enumerate(fp.landmark_chunks(n_chunks), first_step):
            yield search.join(*landmarks)
            if progress:
                progress(step, 2 * n_chunks)

    # Two passes over the join, so that only votes that may count are ever held together: the
    # first counts votes per (pair, difference bin) and per pair, the second keeps the votes
    # of dense cells.
    n_votes = 0
    for part in chunks(1):
        totals = totals.merge(search.count(part, counters))
        n_votes += len(part)
    kept = [search.dense(part, counters) for part in chunks(n_chunks + 1)]
    log.info("%s: %d landmarks, %d votes between tracks, %d in dense cells", library.path,
             search.n_landmarks, n_votes, sum(len(k) for k in kept))
    pairs = HashPairs.concat(kept, search.tracks)
    del kept
    return search.overlaps(search.find(pairs, totals), library)


@numba.njit(cache=True, nogil=True)
def _slot(cell, shift):  # type: ignore[no-untyped-def]
    """splitmix64 of a cell number, its top bits: the cell's counter."""
    z = np.uint64(cell) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.int64((z ^ (z >> np.uint64(31))) >> np.uint64(shift))


@numba.njit(cache=True, nogil=True)
def _cell(a, b, ta, tb, n_tracks, width):  # type: ignore[no-untyped-def]
    """A vote's (pair, time difference bin of ``width`` frames) cell number."""
    pair = np.int64(a) * np.int64(n_tracks) + np.int64(b)
    return (pair << DIFF_BITS) | ((np.int64(tb) - np.int64(ta) + DIFF_BIAS) // width)


@numba.njit(cache=True, nogil=True)
def _count_cells(counters, a, b, ta, tb, n_tracks, width, shift):  # type: ignore[no-untyped-def]
    """Add the votes to their cells' counters (uint16, saturating; collisions only add)."""
    for i in range(len(a)):
        s = _slot(_cell(a[i], b[i], ta[i], tb[i], n_tracks, width), shift)
        if counters[s] < 65535:
            counters[s] += 1


@numba.njit(cache=True, nogil=True)
def _dense(counters, a, b, ta, tb, n_tracks, width, shift, min_votes):  # type: ignore[no-untyped-def]
    """Votes that may lie in a window of ``width`` differences holding ``min_votes`` votes: such
    a window lies in two neighbouring bins, whose counters hold at least as many."""
    out = np.empty(len(a), np.bool_)
    for i in range(len(a)):
        c = _cell(a[i], b[i], ta[i], tb[i], n_tracks, width)
        here = np.int64(counters[_slot(c, shift)])
        side = max(np.int64(counters[_slot(c - 1, shift)]), np.int64(counters[_slot(c + 1, shift)]))
        out[i] = here + side >= min_votes
    return out
