"""What lets the fingerprint index grow: the narrowed two-stage search, lookups restricted to
some tracks, posting counts, and per-track hash counts stored with each segment."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiolsh.audio.synth import music, pink_noise
from audiolsh.evaluation.distortions import pitch_shift, speed, tempo
from audiolsh.features.landmarks import HASH_BITS, landmarks, pair_peaks
from audiolsh.index.fingerprint import FingerprintIndex, _rarest
from audiolsh.search.fingerprint import DIAGONAL_BIAS, GROUP_SHIFT, HashTable, dense_diagonals

SR = 16000
SONG_S = 30.0


@pytest.fixture(scope="module")
def songs() -> dict[str, np.ndarray]:
    return {f"song{s}.wav": music(duration_s=SONG_S, sr=SR, seed=s) for s in range(21, 29)}


def _add_all(idx: FingerprintIndex, songs: dict[str, np.ndarray]) -> FingerprintIndex:
    with idx.session() as s:
        for i, (path, y) in enumerate(songs.items()):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR, landmarks=landmarks(y, SR))
    return idx


def _clips(songs: dict[str, np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = []
    for i, y in enumerate(songs.values()):
        start = int(rng.uniform(0, SONG_S - 6) * SR)
        clip = y[start: start + 5 * SR]
        if i % 2:  # half of them noisy
            noise = pink_noise(duration_s=5.0, sr=SR, seed=i)
            clip = clip + noise * np.sqrt(np.mean(clip**2) / np.mean(noise**2))
        out.append(clip.astype(np.float32))
    return out


def test_narrowed_search_gives_the_full_answer(songs: dict[str, np.ndarray],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    idx = _add_all(FingerprintIndex.create(None, max_matches=0), songs)
    positives = _clips(songs)
    negatives = [music(duration_s=5.0, sr=SR, seed=s) for s in (91, 92, 93)]
    full = [idx.identify(c, SR, threshold=0.0) for c in positives + negatives]
    narrowed_calls: list[int] = []
    narrowed = FingerprintIndex._match_narrowed

    def spy(self: FingerprintIndex, *args: Any) -> Any:
        narrowed_calls.append(1)
        return narrowed(self, *args)

    monkeypatch.setattr(FingerprintIndex, "_match_narrowed", spy)
    idx.params.max_matches = 800  # fewer than any clip's lookups gather
    idx.params.stage_one_matches = 100
    again = [idx.identify(c, SR, threshold=0.0) for c in positives + negatives]
    assert len(narrowed_calls) >= len(positives) + len(negatives)
    # Every indexed track is among its clip's candidates: the very same answer.
    assert again[: len(positives)] == full[: len(positives)]
    assert [m.path for m in full[: len(positives)] if m] == list(songs)
    # Narrowing only drops candidates: never a more confident answer than the full search.
    for f, a in zip(full[len(positives):], again[len(positives):]):
        assert a is None or (f is not None and a.log10_p >= f.log10_p)


def test_the_first_stage_gathers_its_own_budget(songs: dict[str, np.ndarray],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The narrowed search's candidates come from ``stage_one_matches`` postings per variant
    batch (the rarest hashes first), whatever ``max_matches`` (when to narrow) is."""
    import audiolsh.index.fingerprint as fp

    idx = _add_all(FingerprintIndex.create(None, max_matches=800), songs)
    clips = _clips(songs)[:4]
    gathered: list[tuple[int, int]] = []  # (hashes, postings) of each variant batch

    def spy(table: HashTable, hashes: np.ndarray, q_times: np.ndarray, q_group: np.ndarray,
            **kw: Any) -> Any:
        counts = table.posting_counts(hashes)
        counts = np.where(counts <= kw["max_postings"], counts, 0)
        for g in np.unique(q_group):
            mine = q_group == g
            gathered.append((int(mine.sum()), int(counts[mine].sum())))
        return dense_diagonals(table, hashes, q_times, q_group, **kw)

    monkeypatch.setattr(fp, "dense_diagonals", spy)
    totals = {}
    for budget in (60, 600):
        gathered.clear()
        idx.params.stage_one_matches = budget
        answers = [idx.identify(c, SR) for c in clips]
        assert [m.path for m in answers if m] == list(songs)[:4]
        assert gathered and all(n == 1 or p <= budget for n, p in gathered)
        totals[budget] = sum(p for _, p in gathered)
    assert totals[600] > 2 * totals[60]


@pytest.mark.parametrize("sorted_postings", [True, False])
def test_lookup_rows_is_lookup_tracks_restricted(rng: np.random.Generator, sorted_postings: bool) -> None:
    hashes = rng.integers(0, 300, size=5000).astype(np.uint32)
    pos = rng.integers(0, 4000, size=len(hashes)).astype(np.uint32)
    if sorted_postings:
        order = np.argsort(pos, kind="stable")
        hashes, pos = hashes[order], pos[order]
    table = HashTable.build(hashes, pos, hash_bits=HASH_BITS)
    starts = np.array([0, 1000, 1500, 3000], np.int64)
    frames = np.diff(np.append(starts, 4000))
    q = rng.integers(0, 320, size=200).astype(np.uint32)
    assert np.array_equal(table.posting_counts(q), np.bincount(hashes, minlength=320)[q])
    for cap in (0, 20):
        rows = np.array([1, 3], np.int64)
        alive = np.isin(np.arange(4), rows)
        want = table.lookup_tracks(q, starts, alive, max_postings=cap)
        got = table.lookup_rows(q, starts, frames, rows, max_postings=cap, sorted_postings=sorted_postings)
        as_set = [sorted(zip(*(a.tolist() for a in x))) for x in (want, got)]
        assert as_set[0] == as_set[1] and len(as_set[0]) > 0


def test_segments_without_stored_hash_counts_still_open(tmp_path: Path, songs: dict[str, np.ndarray]) -> None:
    """Segments written before per-track hash counts (and position-sorted postings) were stored
    open with the same counts and answers; their lookups scan instead of bisecting."""
    where = tmp_path / "fp"
    clips = _clips(songs)[:3]
    with _add_all(FingerprintIndex.create(where), songs) as idx:
        before = [idx.identify(c, SR) for c in clips]
        n_hashes = idx.n_hashes()
    for f in where.glob("segments/*/track_hashes.npy"):
        f.unlink()
    db = sqlite3.connect(where / "catalogue.sqlite")
    for seg_id, config in db.execute("SELECT id, config FROM segments").fetchall():
        old = {k: v for k, v in json.loads(config).items() if k != "sorted_postings"}
        db.execute("UPDATE segments SET config = ? WHERE id = ?", (json.dumps(old), seg_id))
    db.commit()
    db.close()
    with FingerprintIndex.open(where, readonly=True) as idx:
        assert idx.n_hashes() == n_hashes
        assert not any(s.sorted_postings for s in idx._segments)
        assert [idx.identify(c, SR) for c in clips] == before
        idx.params.max_matches = 800
        assert [idx.identify(c, SR) for c in clips] == before


@pytest.mark.parametrize(("hours", "found"), [(1.0, 0), (16.0, 60)])
def test_posting_cap_grows_with_the_segment(hours: float, found: int) -> None:
    """A hash stored 60 times is common in an hour of music (over ``max_postings`` = 48, not
    looked up) and ordinary in 16 hours (the cap doubles past ``POSTINGS_REF_HOURS`` = 8)."""
    from audiolsh.features.landmarks import Landmarks

    h = np.uint32(12345)
    lm = Landmarks(np.full(60, h, np.uint32), (np.arange(60) * 100).astype(np.int32))
    idx = FingerprintIndex.create(None, max_matches=0)
    with idx.session() as s:
        s.add_track("long.wav", content_hash="h", duration_s=hours * 3600, landmarks=lm)
    q = np.array([h], np.uint32)
    qidx, _, frames = idx._match_hashes(q, np.zeros(1, np.int64), np.zeros(1, np.int64))
    assert len(qidx) == found and (found == 0 or sorted(frames.tolist()) == lm.times.tolist())


def _diagonals_by_sorting(table: HashTable, hashes: np.ndarray, q_times: np.ndarray, q_group: np.ndarray, *,
                          tolerance: int, max_postings: int = 0, n: int = 256) -> tuple[np.ndarray, ...]:
    """``dense_diagonals`` with every key found by a plain lookup and a comparison sort."""
    qidx, pos = table.lookup(hashes)
    if max_postings:
        qidx, pos = (x[table.posting_counts(hashes)[qidx] <= max_postings] for x in (qidx, pos))
    keys = np.sort((q_group[qidx].astype(np.int64) << GROUP_SHIFT) + DIAGONAL_BIAS
                   - q_times[qidx].astype(np.int64) + pos.astype(np.int64))
    counts = np.searchsorted(keys, keys + tolerance, side="right") - np.searchsorted(keys, keys - tolerance)
    top = np.argsort(-counts, kind="stable")[:n] if len(counts) <= n else np.argpartition(-counts, n)[:n]
    top = top[np.argsort(-counts[top], kind="stable")]
    return keys[top] >> GROUP_SHIFT, (keys[top] & ((1 << GROUP_SHIFT) - 1)) - DIAGONAL_BIAS, counts[top]


@pytest.mark.parametrize("span", [5_000, 3_000_000_000])  # one radix pass, and several
def test_dense_diagonals_are_those_of_a_plain_sort(rng: np.random.Generator, span: int) -> None:
    hashes = rng.integers(0, 400, size=30_000).astype(np.uint32)
    pos = rng.integers(0, span, size=len(hashes)).astype(np.uint32)
    table = HashTable.build(hashes, pos, hash_bits=HASH_BITS)
    q = rng.integers(0, 420, size=900).astype(np.uint32)
    q_times = rng.integers(0, 800, size=len(q)).astype(np.int32)
    q_group = np.sort(rng.integers(0, 20, size=len(q)))
    for n, cap in ((100_000, 0), (256, 90)):  # every diagonal (no ties cut), and the usual top
        got = dense_diagonals(table, q, q_times, q_group, tolerance=2, max_postings=cap, n=n)
        want = _diagonals_by_sorting(table, q, q_times, q_group, tolerance=2, max_postings=cap, n=n)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)) and len(got[0]) > 200


@pytest.mark.parametrize("skew", [0.0, 0.9])
def test_lookup_rows_from_a_guess_on_long_skewed_postings(rng: np.random.Generator, skew: float) -> None:
    """Long runs whose positions crowd into one stretch (the proportional guess lands far off)."""
    n = 60_000
    hashes = rng.integers(0, 12, size=n).astype(np.uint32)
    crowded = rng.random(n) < skew
    pos = np.where(crowded, rng.integers(0, 2_000, n), rng.integers(0, 1_000_000, n)).astype(np.uint32)
    order = np.argsort(pos, kind="stable")
    table = HashTable.build(hashes[order], pos[order], hash_bits=HASH_BITS)
    starts = np.arange(0, 1_000_000, 1_000, dtype=np.int64)
    frames = np.full(len(starts), 1_000, np.int64)
    q = np.arange(14, dtype=np.uint32)
    rows = np.array([0, 1, 2, 500, 998, 999], np.int64)
    got = table.lookup_rows(q, starts, frames, rows, sorted_postings=True)
    want = table.lookup_tracks(q, starts, np.isin(np.arange(len(starts)), rows))
    assert all(np.array_equal(a, b) for a, b in zip(got, want)) and len(got[0]) > 100


def test_rarest_hashes_of_each_group(rng: np.random.Generator) -> None:
    total = rng.integers(0, 40, size=3000)
    q_group = np.repeat(np.arange(6), [0, 900, 600, 1, 999, 500])[rng.permutation(3000)]
    want = []
    for g in range(7):  # group by group: rarest first, while they fit the budget, at least one
        mine = np.flatnonzero((q_group == g) & (total > 0))
        mine = mine[np.argsort(total[mine], kind="stable")]
        want.append(mine[: max(1, int(np.searchsorted(np.cumsum(total[mine]), 2000, side="right")))])
    assert np.array_equal(_rarest(total, q_group, 2000), np.sort(np.concatenate(want)))


def test_the_grids_answer_as_the_plain_lookups_would(songs: dict[str, np.ndarray],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A narrowed search through the speed, tempo and pitch stages gives the very same best
    candidate (track, offset, score, factors, confidence) with the compiled lookups as with
    plain ones: a comparison sort of the diagonals, bisection-free track lookups, one
    ``pair_peaks`` per variant and a group-by-group choice of rare hashes."""
    import audiolsh.index.fingerprint as fp

    idx = _add_all(FingerprintIndex.create(None, max_matches=800, retry_shifts=0), songs)  # one analysis
    names = list(songs)
    clip = {name: songs[name][int(7.3 * SR): int(12.3 * SR)] for name in names[:3]}
    clips = [speed(clip[names[0]], SR, percent=5), tempo(clip[names[1]], SR, percent=-6),
             pitch_shift(clip[names[2]], SR, semitones=1)]
    clips += [music(duration_s=5.0, sr=SR, seed=s) for s in (91, 92)]
    fast = [idx.assess(c, SR, min_confidence=0).best for c in clips]
    assert [m.path if m else None for m in fast[:3]] == names[:3]
    assert [(m.speed, m.tempo) for m in fast[:2]] == [(1.05, 1.0), (1.0, 0.94)]  # the grids answered
    assert fast[2].speed * fast[2].pitch > 1.05

    def pair_each(peaks: Any, scales: np.ndarray, *, fanout: int,
                  margins: np.ndarray) -> tuple[np.ndarray, ...]:
        lms = [pair_peaks(peaks, fanout=fanout, time_scale=s[0], freq_scale=s[1], margin=m)
               for s, m in zip(scales, margins)]
        return (np.concatenate([lm.hashes for lm in lms]), np.concatenate([lm.times for lm in lms]),
                np.repeat(np.arange(len(lms)), [len(lm) for lm in lms]))

    def rows_by_track(self: HashTable, hashes: np.ndarray, starts: np.ndarray, frames: np.ndarray,
                      rows: np.ndarray, **kw: Any) -> tuple[np.ndarray, ...]:
        return self.lookup_tracks(hashes, starts, np.isin(np.arange(len(starts)), rows),
                                  max_postings=kw["max_postings"])

    def rarest_by_group(total: np.ndarray, q_group: np.ndarray, budget: int) -> np.ndarray:
        out = []
        for g in np.unique(q_group).tolist():
            mine = np.flatnonzero((q_group == g) & (total > 0))
            mine = mine[np.argsort(total[mine], kind="stable")]
            out.append(mine[: max(1, int(np.searchsorted(np.cumsum(total[mine]), budget, side="right")))])
        return np.sort(np.concatenate(out))

    def shifts_each(shifts: Any, scales: np.ndarray, *, fanout: int, margins: np.ndarray,
                    dt_spread: int = 0) -> tuple[np.ndarray, ...]:
        assert len(shifts) == 1 and dt_spread == 0  # one analysis (no retry), no spread
        return pair_each(shifts[0], scales, fanout=fanout, margins=margins)

    monkeypatch.setattr(fp, "pair_shifts", shifts_each)
    monkeypatch.setattr(fp, "dense_diagonals", _diagonals_by_sorting)
    monkeypatch.setattr(fp, "_rarest", rarest_by_group)
    monkeypatch.setattr(HashTable, "lookup_rows", rows_by_track)
    assert [idx.assess(c, SR, min_confidence=0).best for c in clips] == fast
