"""Spectral-peak sets for MinHash."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.features.peaks import Peaks, find_peaks, peak_elements, peak_set, window_sets

SR = 22050


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b).size
    return inter / (a.size + b.size - inter)


def through_mp3(y: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="MP3")
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0][: len(y)]


def test_same_passage_through_mp3_keeps_its_peak_pairs() -> None:
    songs = [synth.music(duration_s=8.0, sr=SR, seed=s) for s in range(4)]
    ref = peak_set(songs[0], SR)
    assert ref.dtype == np.uint64 and np.all(np.diff(ref.astype(np.float64)) > 0) and ref.size > 100
    j_mp3 = jaccard(ref, peak_set(through_mp3(songs[0]), SR))
    j_others = [jaccard(ref, peak_set(y, SR)) for y in songs[1:]]
    assert j_mp3 > 0.3 and j_mp3 > 3 * max(j_others), (j_mp3, j_others)


def test_a_tone_has_one_peak_frequency() -> None:
    y = synth.tone(1000.0, duration_s=3.0, sr=SR)
    bins = peak_set(y, SR, kind="bins")
    assert bins.tolist() == [round(1000.0 * 2048 / SR)]


def test_peaks_are_local_maxima_limited_per_second(rng: np.random.Generator) -> None:
    P = rng.random((200, 430)).astype(np.float32)
    pk = find_peaks(P, frame_s=512 / SR, peaks_per_s=10, min_db=-100.0)
    per_second = np.bincount((pk.frames * 512 / SR).astype(int))
    assert per_second.max() <= 10
    L = 10 * np.log10(P)
    for f, b in zip(pk.frames[:20], pk.bins[:20]):
        assert L[b, f] == L[max(0, b - 6) : b + 7, max(0, f - 6) : f + 7].max()


def test_window_sets_match_a_direct_grouping(rng: np.random.Generator) -> None:
    frames = np.sort(rng.integers(0, 1000, 500))
    elements = rng.integers(0, 50, 500).astype(np.uint64)
    first = np.arange(0, 800, 100)
    stop = first + 200
    batch = window_sets(elements, frames, first, stop)
    for i in range(len(first)):
        want = np.unique(elements[(frames >= first[i]) & (frames < stop[i])])
        np.testing.assert_array_equal(batch[i], want)


def test_pairs_need_two_peaks() -> None:
    empty = Peaks(np.array([5]), np.array([10]), np.array([0.0], np.float32))
    assert peak_elements(empty, frame_s=0.02)[0].size == 0


def test_common_elements_are_those_of_many_windows_of_enough_tracks() -> None:
    from audiolsh.features.peaks import common_elements, drop_elements
    from audiolsh.hashing import SetBatch

    rng = np.random.default_rng(0)
    rows = [np.union1d(rng.choice(np.arange(100, 10_000), 40, replace=False), [7] if i % 2 else [])
            for i in range(40)]
    rows = [np.union1d(r, [5]) if i < 3 else r for i, r in enumerate(rows)]  # 5: in 3 of 40 windows
    sets = SetBatch(np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64),
                    np.concatenate(rows).astype(np.uint64))
    labels = np.arange(40) // 2  # 20 tracks
    common = common_elements(sets, labels)
    assert 7 in common and 5 not in common  # 7 is in half the windows, 5 in 7.5 %
    assert len(common_elements(sets, np.arange(40) // 8)) == 0  # 5 tracks: one track's motif could pass
    kept = drop_elements(sets, common)
    assert len(kept) == len(sets)
    for i in range(len(sets)):
        np.testing.assert_array_equal(kept[i], np.setdiff1d(sets[i], common))
    assert drop_elements(sets, np.zeros(0, np.uint64)) is sets


def test_one_long_tracks_motif_is_not_common() -> None:
    from audiolsh.features.peaks import common_elements
    from audiolsh.hashing import SetBatch

    rng = np.random.default_rng(1)
    labels = np.concatenate([np.repeat(np.arange(31), 4), np.full(60, 31)])  # track 31: 60 windows
    rows = [rng.choice(np.arange(100, 100_000), 30, replace=False) for _ in labels]
    rows = [np.union1d(r, [42]) if lab == 31 and i % 2 else np.sort(r)
            for i, (r, lab) in enumerate(zip(rows, labels))]
    rows = [np.union1d(r, [7]) if i % 5 == 0 else r for i, r in enumerate(rows)]  # 7: across tracks
    sets = SetBatch(np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64),
                    np.concatenate(rows).astype(np.uint64))
    common = common_elements(sets, labels)
    assert 7 in common and 42 not in common  # 42: in 16 % of the windows, all of one track


def test_no_common_elements_when_nothing_is_shared() -> None:
    from audiolsh.features.peaks import common_elements
    from audiolsh.hashing import SetBatch

    sets = SetBatch(np.arange(0, 41, 2, dtype=np.int64), np.arange(40, dtype=np.uint64))
    assert len(common_elements(sets, np.arange(20))) == 0
