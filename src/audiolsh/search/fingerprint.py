"""Landmark lookup and offset voting: the inverted index of hashes and its significance test.

``HashTable`` is a CSR over the high bits of each hash: ``indptr[h >> low_bits]`` opens the
run of entries whose hashes share those bits; the entries are sorted by hash and keep only the
``low_bits`` remaining bits (one byte) and a ``uint32`` position on the segment's timeline
(tracks laid end to end).  About 5 bytes per landmark plus 4 bytes per high-bit bucket.
Lookups run in one compiled pass that also maps positions to tracks, drops removed tracks and
skips query hashes stored more than ``max_postings`` times (common, low-information hashes).

``vote`` turns lookups into (track, offset) votes: a true match makes many hashes agree on one
time offset between query and track, chance collisions spread over all offsets.  The best
(track, offset) of each of the best few tracks is scored against a Poisson model of chance
coincidences (see ``chance``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numba
import numpy as np
from scipy import special

from audiolsh.errors import IndexFormatError

__all__ = ["HashTable", "Votes", "chance_log10", "dense_diagonals", "high_bits_for", "load_kernels", "vote"]

TARGET_BUCKET = 32
"""Most entries per high-bit bucket aimed at when choosing ``high_bits`` (a bucket holds half to
all of it).  The bucket offsets cost 4 bytes a bucket (an eighth to a quarter of a byte an
entry here, twice that at 16) and a lookup scans its bucket's low bits (a quarter more time
to count a query's postings than at 16, two thirds more at 64)."""
OFFSET_BIAS = 1 << 31


def high_bits_for(n: int, hash_bits: int) -> int:
    """Bits of the CSR index of a table of ``n`` entries: the fewest bytes (4 per bucket offset,
    1 or 2 per entry's low bits, none with a bucket per hash value) with at most
    ``TARGET_BUCKET`` entries per bucket on average."""
    lowest = min(hash_bits, max(4, hash_bits - 16))
    if n > TARGET_BUCKET:
        lowest = min(hash_bits, max(lowest, math.ceil(math.log2(n / TARGET_BUCKET))))

    def size(high_bits: int) -> int:
        low_bits = hash_bits - high_bits
        return (4 << high_bits) + n * (0 if not low_bits else 1 if low_bits <= 8 else 2)

    return min(range(lowest, hash_bits + 1), key=size)


@dataclass(frozen=True)
class HashTable:
    """Sorted hashes in CSR form with a uint32 payload (position) per entry.

    indptr : uint32 (2**high_bits + 1,)
    low : uint8 or uint16 (n,), the low ``hash_bits - high_bits`` bits of each hash; empty when
        there are none (a table of about 25 hours and more has a bucket per hash value)
    pos : uint32 (n,)
    """

    indptr: np.ndarray
    low: np.ndarray
    pos: np.ndarray
    hash_bits: int
    high_bits: int

    @property
    def low_bits(self) -> int:
        return self.hash_bits - self.high_bits

    def __len__(self) -> int:
        return len(self.pos)

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.low.nbytes + self.pos.nbytes)

    @classmethod
    def build(cls, hashes: np.ndarray, pos: np.ndarray, *, hash_bits: int) -> HashTable:
        """Index ``hashes`` (uint32 < 2**hash_bits) with payload ``pos`` (uint32), same length."""
        high_bits = high_bits_for(len(hashes), hash_bits)
        low_bits = hash_bits - high_bits
        order = np.argsort(hashes, kind="stable")
        h = hashes[order].astype(np.uint32)
        counts = np.bincount(h >> low_bits, minlength=1 << high_bits)
        indptr = np.zeros((1 << high_bits) + 1, np.uint32)
        np.cumsum(counts, out=indptr[1:])
        low_dtype = np.uint8 if low_bits <= 8 else np.uint16
        low = (h & ((1 << low_bits) - 1)).astype(low_dtype) if low_bits else np.zeros(0, np.uint8)
        return cls(indptr, low, np.ascontiguousarray(pos[order], dtype=np.uint32), hash_bits, high_bits)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"indptr": self.indptr, "low": self.low, "pos": self.pos}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, hash_bits: int) -> HashTable:
        indptr, low, pos = arrays["indptr"], arrays["low"], arrays["pos"]
        high_bits = round(math.log2(len(indptr) - 1))
        # No low bits: an empty array (earlier versions stored a zero an entry).
        low_ok = len(low) == len(pos) or (high_bits == hash_bits and not len(low))
        if (1 << high_bits) + 1 != len(indptr) or not low_ok or int(indptr[-1]) != len(pos):
            raise IndexFormatError("fingerprint segment: inconsistent hash table arrays")
        return cls(indptr, low, pos, hash_bits, high_bits)

    def hashes(self) -> np.ndarray:
        """The full hash of every entry, uint32 (n,) (for compaction)."""
        high = np.repeat(
            np.arange(1 << self.high_bits, dtype=np.uint32), np.diff(self.indptr).astype(np.int64)
        )
        return (high << np.uint32(self.low_bits)) | self.low_of(0, len(self))

    def low_of(self, e0: int, e1: int) -> np.ndarray:
        """The low bits of entries [e0, e1), uint32."""
        if not len(self.low):
            return np.zeros(e1 - e0, np.uint32)
        return self.low[e0:e1].astype(np.uint32)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every entry equal to a query hash: (query index int64 (m,), position uint32 (m,))."""
        one = np.zeros(1, np.int64)
        qidx, _, pos = self.lookup_tracks(hashes, one, np.ones(1, bool))
        return qidx, pos.astype(np.uint32)

    def lookup_tracks(
        self, hashes: np.ndarray, starts: np.ndarray, alive: np.ndarray, *, max_postings: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entries equal to a query hash that belong to live tracks.

        starts : int64 (n_tracks,) first position of each track (sorted); alive : bool (n_tracks,)
        max_postings : skip a query hash stored more than this many times (0: no limit); such
            common hashes bring mostly chance matches and cost most of the voting time
        Returns (query index, track row, frame within the track), int64 (m,) each.
        """
        q = np.ascontiguousarray(hashes, dtype=np.uint32)
        return _lookup(self.indptr, self.low, self.pos, q, np.uint32(self.low_bits),
                       np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(alive, np.bool_),
                       np.int64(max_postings if max_postings > 0 else 1 << 62))

    def posting_counts(self, hashes: np.ndarray) -> np.ndarray:
        """How many entries each query hash has, int64 (n,) (reads the CSR, not the postings)."""
        q = np.ascontiguousarray(hashes, dtype=np.uint32)
        return _counts(self.indptr, self.low, q, np.uint32(self.low_bits))

    def lookup_rows(
        self, hashes: np.ndarray, starts: np.ndarray, frames: np.ndarray, rows: np.ndarray, *,
        max_postings: int = 0, sorted_postings: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`lookup_tracks`, for the tracks ``rows`` (int64, sorted) alone: entries at
        positions ``[starts[r], starts[r] + frames[r])``.  With ``sorted_postings`` (each hash's
        entries in position order) every (hash, track) is a binary search, so the cost does
        not grow with how common a hash is in the rest of the collection."""
        q = np.ascontiguousarray(hashes, dtype=np.uint32)
        return _lookup_rows(self.indptr, self.low, self.pos, q, np.uint32(self.low_bits),
                            np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(frames, np.int64),
                            np.ascontiguousarray(rows, np.int64),
                            np.int64(max_postings if max_postings > 0 else 1 << 62), sorted_postings)


@numba.njit(cache=True, nogil=True)
def _run(indptr, low, h, low_bits):  # type: ignore[no-untyped-def]
    """[e0, e1): the entries equal to hash ``h`` (sorted by hash, so one contiguous run)."""
    hi = h >> low_bits
    a, b = np.int64(indptr[hi]), np.int64(indptr[hi + 1])
    if low_bits == 0:
        return a, b
    lo = h & np.uint32((1 << low_bits) - 1)
    e0 = a
    while e0 < b and np.uint32(low[e0]) < lo:
        e0 += 1
    e1 = e0
    while e1 < b and np.uint32(low[e1]) == lo:
        e1 += 1
    return e0, e1


@numba.njit(cache=True, nogil=True)
def _runs(indptr, low, q, low_bits, max_postings):  # type: ignore[no-untyped-def]
    """Each query hash's [e0, e1), empty where it has more than ``max_postings`` entries."""
    e0s = np.empty(len(q), np.int64)
    e1s = np.empty(len(q), np.int64)
    for i in range(len(q)):
        e0, e1 = _run(indptr, low, q[i], low_bits)
        e0s[i], e1s[i] = e0, (e0 if e1 - e0 > max_postings else e1)
    return e0s, e1s


@numba.njit(cache=True, nogil=True)
def _counts(indptr, low, q, low_bits):  # type: ignore[no-untyped-def]
    out = np.empty(len(q), np.int64)
    for i in range(len(q)):
        e0, e1 = _run(indptr, low, q[i], low_bits)
        out[i] = e1 - e0
    return out


@numba.njit(cache=True, nogil=True)
def _lower_bound(pos, lo, hi, p0, guess):  # type: ignore[no-untyped-def]
    """The first entry of the sorted run ``pos[lo:hi]`` at or after ``p0`` (``hi``: none),
    searched outwards from ``guess`` in doubling steps, then by bisection."""
    g = min(max(guess, lo), hi - 1)
    step = 16
    if np.int64(pos[g]) < p0:  # the answer lies in [lo, hi] throughout
        lo = g + 1
        while lo + step < hi and np.int64(pos[lo + step - 1]) < p0:
            lo += step
            step *= 2
        hi = min(hi, lo + step)
    else:
        hi = g
        while hi - step > lo and np.int64(pos[hi - step]) >= p0:
            hi -= step
            step *= 2
        lo = max(lo, hi - step)
    while lo < hi:
        m = (lo + hi) >> 1
        if np.int64(pos[m]) < p0:
            lo = m + 1
        else:
            hi = m
    return lo


@numba.njit(cache=True, nogil=True)
def _lookup_rows(indptr, low, pos, q, low_bits, starts, frames, rows, max_postings,
                 sorted_postings):  # type: ignore[no-untyped-def]
    n_q, n_r = len(q), len(rows)
    e0s, e1s = _runs(indptr, low, q, low_bits, max_postings)
    # First entry of each (hash, row) at or after the row's start.  A hash's postings spread
    # fairly evenly over the timeline, so a guess in proportion to the position lands within
    # a cache line or two of it (a bisection takes half a dozen misses in a large index).
    span = max(np.int64(1), starts[-1] + frames[-1])
    first = np.empty(n_q * n_r, np.int64)
    for i in range(n_q):
        e0, e1 = e0s[i], e1s[i]
        for k in range(n_r):
            p0 = starts[rows[k]]
            first[i * n_r + k] = _lower_bound(pos, e0, e1, p0, e0 + (e1 - e0) * p0 // span) \
                if sorted_postings and e1 > e0 else e0
    cap = 1024
    qidx = np.empty(cap, np.int64)
    tix = np.empty(cap, np.int64)
    frame = np.empty(cap, np.int64)
    n = 0
    for i in range(n_q):
        e1 = e1s[i]
        for k in range(n_r):
            r = rows[k]
            p0 = starts[r]
            p1 = p0 + frames[r]
            e = first[i * n_r + k]
            while e < e1:
                p = np.int64(pos[e])
                e += 1
                if p >= p1:
                    if sorted_postings:
                        break
                    continue
                if p < p0:
                    continue
                if n == cap:
                    cap *= 2
                    qidx = np.resize(qidx, cap)
                    tix = np.resize(tix, cap)
                    frame = np.resize(frame, cap)
                qidx[n] = i
                tix[n] = r
                frame[n] = p - p0
                n += 1
    return qidx[:n], tix[:n], frame[:n]


@numba.njit(cache=True, nogil=True)
def _lookup(indptr, low, pos, q, low_bits, starts, alive, max_postings):  # type: ignore[no-untyped-def]
    n_q = len(q)
    e0s, e1s = _runs(indptr, low, q, low_bits, max_postings)
    total = (e1s - e0s).sum()
    qidx = np.empty(total, np.int64)
    tix = np.empty(total, np.int64)
    frame = np.empty(total, np.int64)
    n = 0
    n_tracks = len(starts)
    for i in range(n_q):
        for e in range(e0s[i], e1s[i]):
            p = np.int64(pos[e])
            # Binary search: last track starting at or before p.
            a, b = 0, n_tracks
            while b - a > 1:
                m = (a + b) >> 1
                if starts[m] <= p:
                    a = m
                else:
                    b = m
            if not alive[a]:
                continue
            qidx[n] = i
            tix[n] = a
            frame[n] = p - starts[a]
            n += 1
    return qidx[:n], tix[:n], frame[:n]


@dataclass(frozen=True)
class Votes:
    """The best-supported (group, track, offset) of one query.

    group : index of the query variant (speed/tempo grid point) it came from
    count : distinct hash values agreeing on the offset (within the tolerance)
    log10_p : log10 of the chance probability of that count for that track (not yet corrected
        for the number of offsets and variants searched)
    q_first, q_last : first and last query frame among the agreeing landmarks
    drift : slope of the offset along the query (0 when query and track run at one rate)
    lam : expected chance count at that offset for that track
    """

    group: int
    track_id: int
    offset: int
    count: int
    log10_p: float
    q_first: int
    q_last: int
    drift: float = 0.0
    lam: float = 0.0


def chance_log10(count: np.ndarray, lam: np.ndarray, *, dispersion: float = 1.0) -> np.ndarray:
    """log10 P(X >= count) for X ~ Poisson(lam), made heavier-tailed by ``dispersion`` >= 1.

    The quasi-Poisson scaling (count / d, lam / d) accounts for chance hits that come in clumps
    (repeated notes, loops), which plain Poisson would call far too unlikely.
    """
    k = np.atleast_1d(np.asarray(count, np.float64)) / dispersion
    m = np.maximum(np.atleast_1d(np.asarray(lam, np.float64)) / dispersion, 1e-12)
    p = special.gammainc(np.maximum(k, 1e-9), m)  # P(X >= k) for integer k
    out = np.log10(np.maximum(p, 1e-300))
    # Far in the tail gammainc underflows: use the log of the leading Poisson term instead.
    tail = p < 1e-280
    if tail.any():
        kt, mt = np.broadcast_to(k, p.shape)[tail], np.broadcast_to(m, p.shape)[tail]
        out[tail] = (kt * np.log(mt) - mt - special.gammaln(kt + 1)) / np.log(10)
    return out


DIAGONAL_BIAS = 1 << 32
GROUP_SHIFT = 34


def dense_diagonals(
    table: HashTable, hashes: np.ndarray, q_times: np.ndarray, q_group: np.ndarray, *,
    tolerance: int, max_postings: int = 0, n: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n`` densest (group, diagonal) of every entry of ``hashes``: (group, diagonal,
    entries within +- ``tolerance`` of it), int64 each, densest first.  A diagonal is a
    position on the segment's timeline minus the query time, so a clip's true start gathers
    its matches on one diagonal; no entry is mapped to its track (only the densest are)."""
    q_group = np.ascontiguousarray(q_group, np.int64)
    keys = _diagonals(table.indptr, table.low, table.pos, np.ascontiguousarray(hashes, np.uint32),
                      np.uint32(table.low_bits), np.ascontiguousarray(q_times, np.int64), q_group,
                      np.int64(max_postings if max_postings > 0 else 1 << 62),
                      np.int64(q_group.max() + 1 if len(q_group) else 0))
    if not len(keys):
        z = np.zeros(0, np.int64)
        return z, z, z
    counts = _window_counts(keys, np.int64(tolerance))
    top = np.argsort(-counts, kind="stable")[:n] if len(counts) <= n else \
        np.argpartition(-counts, n)[:n]
    top = top[np.argsort(-counts[top], kind="stable")]
    k = keys[top]
    return k >> GROUP_SHIFT, (k & ((1 << GROUP_SHIFT) - 1)) - DIAGONAL_BIAS, counts[top]


@numba.njit(cache=True, nogil=True)
def _diagonals(indptr, low, pos, q, low_bits, q_times, q_group, max_postings, n_groups):  # type: ignore[no-untyped-def]
    """The keys (group << GROUP_SHIFT | biased diagonal) of every entry of ``q``, sorted.

    Written group by group and each group radix-sorted alone: its keys span a few hundred
    million values at most, so three passes over a cache-sized slice (a comparison sort of
    all stages' keys at once was a third of a narrowed query's time)."""
    order = np.argsort(q)  # hash order: the postings are read front to back
    start = np.zeros(n_groups + 1, np.int64)
    for i in order:
        e0, e1 = _run(indptr, low, q[i], low_bits)
        if e1 - e0 <= max_postings:
            start[q_group[i] + 1] += e1 - e0
    start = np.cumsum(start)
    keys = np.empty(start[-1], np.int64)
    fill = start[:-1].copy()
    for i in order:
        e0, e1 = _run(indptr, low, q[i], low_bits)
        if e1 - e0 > max_postings:
            continue
        g = q_group[i]
        base = (g << GROUP_SHIFT) + DIAGONAL_BIAS - q_times[i]
        n = fill[g]
        for e in range(e0, e1):
            keys[n] = base + np.int64(pos[e])
            n += 1
        fill[g] = n
    buf = np.empty(keys.size, np.int64)
    for g in range(n_groups):
        _radix_sort(keys[start[g]:start[g + 1]], buf[: start[g + 1] - start[g]])
    return keys


RADIX_BITS = 11


@numba.njit(cache=True, nogil=True)
def _radix_sort(keys, buf):  # type: ignore[no-untyped-def]
    """Sort int64 ``keys`` in place (LSD radix on their offset from the least; ``buf`` as long)."""
    n = len(keys)
    if n < 2:
        return
    lo = keys.min()
    span = keys.max() - lo
    mask = (1 << RADIX_BITS) - 1
    src, dst = keys, buf
    shift = 0
    passes = 0
    count = np.empty(mask + 2, np.int64)
    while passes == 0 or (span >> shift) > 0:
        count[:] = 0
        for i in range(n):
            count[((src[i] - lo) >> shift & mask) + 1] += 1
        for d in range(mask + 1):
            count[d + 1] += count[d]
        for i in range(n):
            d = (src[i] - lo) >> shift & mask
            dst[count[d]] = src[i]
            count[d] += 1
        src, dst = dst, src
        shift += RADIX_BITS
        passes += 1
    if passes % 2:
        keys[:] = buf


def load_kernels() -> None:
    """Load the kernels whose argument types no table sets (from numba's cache), which a
    warm-up lookup that finds no entry would leave to the first query that finds some."""
    _window_counts(np.zeros(1, np.int64), np.int64(1))


@numba.njit(cache=True, nogil=True)
def _window_counts(keys, tolerance):  # type: ignore[no-untyped-def]
    """For sorted ``keys``: how many keys lie within +- tolerance of each."""
    out = np.empty(len(keys), np.int64)
    a = 0
    b = 0
    for i in range(len(keys)):
        while keys[a] < keys[i] - tolerance:
            a += 1
        while b < len(keys) and keys[b] <= keys[i] + tolerance:
            b += 1
        out[i] = b - a
    return out


def vote(
    qidx: np.ndarray,
    q_times: np.ndarray,
    q_group: np.ndarray,
    q_hashes: np.ndarray,
    track_ids: np.ndarray,
    track_times: np.ndarray,
    *,
    track_frames: tuple[np.ndarray, np.ndarray],
    q_frames: int,
    tolerance: int,
    dispersion: float,
    n_top: int = 32,
    drift_window: int = 24,
    n_tracks: int = 1,
) -> list[Votes]:
    """Offset histogram over all matches: the most significant (group, track, offset) of each of
    the best ``n_tracks`` distinct tracks, most significant first (empty: no match at all).

    qidx : int64 (m,) query landmark of each match; q_times / q_group / q_hashes index it
    track_ids, track_times : int64 (m,) the matched track and its anchor frame
    track_frames : (sorted track ids, their lengths in frames), for the chance model
    tolerance : offsets within +- this many frames of each other count together
    drift_window : matches within +- this many frames of the best offset estimate its drift
    """
    if len(qidx) == 0:
        return []
    offset = track_times - q_times[qidx].astype(np.int64)
    group = q_group[qidx].astype(np.int64)
    key = (group << 58) | (track_ids << 32) | (offset + OFFSET_BIAS)
    order = np.argsort(key)
    ks = key[order]
    edges = np.flatnonzero(np.diff(ks)) + 1
    first = np.concatenate([[0], edges])
    uniq = ks[first]
    counts = np.diff(np.append(first, len(ks)))
    cum = np.concatenate([[0], np.cumsum(counts)])
    # Matches within +-tolerance of each distinct key: as keys are distinct and sorted, those
    # keys sit at most ``tolerance`` places away (keys of one group/track are contiguous).
    n_u = len(uniq)
    idx = np.arange(n_u)
    lo, hi = idx.copy(), idx + 1
    for d in range(1, tolerance + 1):
        left = np.maximum(idx - d, 0)
        lo = np.where((idx >= d) & (uniq - uniq[left] <= tolerance), left, lo)
        right = np.minimum(idx + d, n_u - 1)
        hi = np.where((idx + d < n_u) & (uniq[right] - uniq <= tolerance), right + 1, hi)
    smooth = cum[hi] - cum[lo]
    # Chance rate per (group, track): its matches spread over every offset it could take.
    gt = uniq >> 32
    new_gt = np.concatenate([[True], gt[1:] != gt[:-1]])
    gt_start = np.flatnonzero(new_gt)
    gt_index = np.cumsum(new_gt) - 1
    gt_count = np.diff(np.append(cum[gt_start], len(ks)))
    n_at = gt_count[gt_index]
    tids = (uniq >> 32) & ((1 << 26) - 1)
    ids_sorted, frames_sorted = track_frames
    length = frames_sorted[np.searchsorted(ids_sorted, tids)].astype(np.float64) + q_frames
    lam = n_at * (2 * tolerance + 1) / length
    # Rank by the raw smoothed count's chance, then recount the best few exactly.
    cand = np.flatnonzero(smooth >= 2)
    if len(cand) == 0:
        cand = np.arange(len(uniq))
    if len(cand) > 4 * n_top:
        cand = cand[np.argpartition(-smooth[cand], 4 * n_top)[: 4 * n_top]]
    logp = chance_log10(smooth[cand], lam[cand], dispersion=dispersion)
    best: dict[int, tuple[Votes, int, int]] = {}  # track -> its best votes, their key, their rank
    for r, i in enumerate(cand[np.argsort(logp)[:n_top]].tolist()):
        a = int(cum[lo[i]])
        b = int(cum[hi[i]])
        sel = order[a:b]
        # Count distinct hash values: a pattern that repeats (a loop, a held note) in both
        # query and track is one piece of evidence, not one per repetition.
        n = len(np.unique(q_hashes[qidx[sel]]))
        lp = float(chance_log10(np.array([n]), np.array([lam[i]]), dispersion=dispersion)[0])
        t = int(tids[i])
        if t not in best or lp < best[t][0].log10_p:
            qt = q_times[qidx[sel]]
            best[t] = (Votes(int(uniq[i] >> 58), t, int(np.median(offset[sel])), n, lp,
                             int(qt.min()), int(qt.max()), lam=float(lam[i])), i, r)
    # Ties go to the earlier rank, as when only the best was kept.
    top = sorted(best.values(), key=lambda vir: (vir[0].log10_p, vir[2]))[:n_tracks]
    return [replace(v, drift=_drift(int(uniq[i]), ks, order, offset, q_times[qidx], drift_window))
            for v, i, _ in top]


def _drift(k: int, ks: np.ndarray, order: np.ndarray, offset: np.ndarray, qt_all: np.ndarray,
           drift_window: int) -> float:
    """Drift of the offset along the query (a residual speed/tempo factor) around key ``k``:
    the median offsets of the early and the late matches within a wide window compared."""
    a = int(np.searchsorted(ks, k - drift_window, side="left"))
    b = int(np.searchsorted(ks, k + drift_window, side="right"))
    wide = order[a:b]
    qt = qt_all[wide].astype(np.float64)
    mid = np.median(qt)
    early, late = qt <= mid, qt > mid
    drift = 0.0
    if early.sum() >= 3 and late.sum() >= 3:
        span = float(np.median(qt[late]) - np.median(qt[early]))
        if span > 0:
            drift = float(np.median(offset[wide][late]) - np.median(offset[wide][early])) / span
    return drift
