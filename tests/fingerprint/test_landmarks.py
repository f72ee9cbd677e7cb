"""Landmark extraction and the hash table: determinism, invariances, exact lookups."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from audiolsh.audio.synth import music, tone
from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.features import landmarks as fl
from audiolsh.features.landmarks import FRAME_S, HASH_BITS, Landmarks, landmarks, pair_peaks, spectral_peaks
from audiolsh.search.fingerprint import HashTable, chance_log10, high_bits_for

SR = 16000


def test_landmarks_shapes_and_determinism() -> None:
    y = music(duration_s=8, sr=SR, seed=1)
    a, b = landmarks(y, SR), landmarks(y, SR)
    assert isinstance(a, Landmarks) and a.frame_s == FRAME_S
    assert a.hashes.dtype == np.uint32 and a.times.dtype == np.int32 and len(a) == len(a.times)
    assert np.all(a.hashes < (1 << HASH_BITS))
    assert 0 <= a.times.min() and a.times.max() * FRAME_S < 8
    assert 40 * 8 < len(a) < 200 * 8  # tens of hashes per second
    np.testing.assert_array_equal(a.hashes, b.hashes)
    c = pickle.loads(pickle.dumps(a))  # workers send results to the main process
    np.testing.assert_array_equal(c.times, a.times)


def test_gain_and_rate_invariance() -> None:
    y = music(duration_s=8, sr=SR, seed=2)
    base = landmarks(y, SR)
    quiet = landmarks(0.05 * y, SR)
    np.testing.assert_array_equal(base.hashes, quiet.hashes)
    # The same signal at another sample rate gives (nearly) the same landmarks.
    import soxr

    other = landmarks(np.asarray(soxr.resample(y, SR, 44100), np.float32), 44100)
    same = np.intersect1d(base.hashes.astype(np.int64) << 20 | base.times,
                          other.hashes.astype(np.int64) << 20 | other.times)
    assert len(same) > 0.8 * len(base)


def test_density_and_fanout_control_the_count() -> None:
    y = music(duration_s=10, sr=SR, seed=3)
    sparse, dense = spectral_peaks(y, SR, density=10), spectral_peaks(y, SR, density=30)
    assert len(sparse) < len(dense)
    assert len(pair_peaks(dense, fanout=2)) < len(pair_peaks(dense, fanout=6))
    with pytest.raises(ParameterError):
        landmarks(y, SR, density=0)
    with pytest.raises(ParameterError):
        landmarks(np.stack([y, y]), SR)


def test_peaks_sit_on_the_tones() -> None:
    """A sequence of 0.5-s tones: every peak lies on the tone playing at its time."""
    freqs = [440.0, 1250.0, 700.0, 2900.0, 1800.0, 350.0, 2300.0, 990.0]
    y = np.concatenate([tone(f, duration_s=0.5, sr=SR) for f in freqs])
    p = spectral_peaks(y, SR, density=20)
    centre_s = (p.times + 1) * FRAME_S  # frame j spans two hops from j * FRAME_S
    inside = (centre_s % 0.5 > 0.05) & (centre_s % 0.5 < 0.45)  # away from tone changes
    playing = np.asarray(freqs)[np.minimum((centre_s // 0.5).astype(int), len(freqs) - 1)]
    assert inside.sum() >= 8
    err_bins = np.abs(p.freqs[inside] - playing[inside] / (8000 / 512))
    assert np.max(err_bins) < 0.5


def test_hash_table_lookup_matches_brute_force(rng: np.random.Generator) -> None:
    for n in (0, 10, 5000):
        hashes = rng.integers(0, 1 << 12, size=n).astype(np.uint32)  # many collisions
        pos = rng.integers(0, 1 << 31, size=n).astype(np.uint32)
        table = HashTable.build(hashes, pos, hash_bits=HASH_BITS)
        np.testing.assert_array_equal(np.sort(table.hashes()), np.sort(hashes))
        q = np.concatenate([hashes[:50], rng.integers(0, 1 << 12, size=50).astype(np.uint32)])
        qidx, got = table.lookup(q)
        want = sorted((i, int(p)) for i, h in enumerate(q.tolist()) for p in pos[hashes == h].tolist())
        assert sorted(zip(qidx.tolist(), got.tolist())) == want
        again = HashTable.from_arrays(table.arrays(), hash_bits=HASH_BITS)
        assert again.high_bits == table.high_bits


@pytest.mark.parametrize(("n", "bytes_each"), [(40_000, 5.9), (300_000, 5.25), (2_200_000, 5.25)])
def test_hash_table_costs_little_more_than_its_entries(
    rng: np.random.Generator, n: int, bytes_each: float
) -> None:
    """Ten minutes (40k landmarks), an hour (300k), a dev corpus (2.2M): each entry costs its
    4-byte position, its low bits in one byte and, past an hour, at most a quarter of a byte of
    bucket offsets (half a byte before), while a bucket holds at most 32 entries on average."""
    hashes = rng.integers(0, 1 << HASH_BITS, size=n).astype(np.uint32)
    table = HashTable.build(hashes, np.arange(n, dtype=np.uint32), hash_bits=HASH_BITS)
    assert table.low.dtype == np.uint8
    assert n / (1 << table.high_bits) <= 32
    assert table.nbytes <= bytes_each * n + 4
    qidx, got = table.lookup(hashes[:100])
    assert all(hashes[p] == hashes[i] for i, p in zip(qidx.tolist(), got.tolist()))
    assert np.array_equal(np.unique(qidx), np.arange(100))


def test_a_table_keeps_no_low_bits_once_a_bucket_per_hash_costs_less_than_a_byte_an_entry(
        rng: np.random.Generator) -> None:
    """14-bit hashes: past about 4 entries per hash value, the 4-byte offsets of a bucket per
    hash value cost less than a byte of low bits per entry (and fewer buckets): the table keeps
    none.  At the fingerprint's 21 bits that is a segment of about 25 hours and more (8 million
    landmarks); below it the low bits stay."""
    bits = 14
    for n, low_bits in ((20_000, 4), (60_000, 0)):
        hashes = rng.integers(0, 1 << bits, size=n).astype(np.uint32)
        table = HashTable.build(hashes, np.arange(n, dtype=np.uint32), hash_bits=bits)
        assert table.low_bits == low_bits and n / (1 << table.high_bits) <= 32
        cheapest = min((4 << h) + n * (hb > 0) for h in range(bits + 1) if n / (1 << h) <= 32
                       for hb in [bits - h])
        assert table.nbytes == cheapest + 4 + 4 * n
    assert high_bits_for(4_860_000, HASH_BITS) == 18  # 15 hours: a byte of low bits
    assert high_bits_for(16_200_000, HASH_BITS) == HASH_BITS  # 50 hours: none


def test_a_table_with_a_bucket_per_hash_keeps_no_low_bits(rng: np.random.Generator) -> None:
    """12-bit hashes, 200k entries: a bucket per hash value, so the table keeps positions and
    offsets alone, answers as a brute force does, and still reads the zeros earlier versions
    stored."""
    n, bits = 200_000, 12
    hashes = rng.integers(0, 1 << bits, size=n).astype(np.uint32)
    pos = rng.integers(0, 1 << 31, size=n).astype(np.uint32)
    table = HashTable.build(hashes, pos, hash_bits=bits)
    assert table.low_bits == 0 and len(table.low) == 0
    assert table.nbytes == 4 * ((1 << bits) + 1) + 4 * n
    np.testing.assert_array_equal(np.sort(table.hashes()), np.sort(hashes))
    q = np.concatenate([hashes[:30], np.arange(30, dtype=np.uint32)])
    want = sorted((i, int(p)) for i, h in enumerate(q.tolist()) for p in pos[hashes == h].tolist())
    for t in (table, HashTable.from_arrays({**table.arrays(), "low": np.zeros(n, np.uint8)}, hash_bits=bits)):
        qidx, got = t.lookup(q)
        assert sorted(zip(qidx.tolist(), got.tolist())) == want
        counts = np.bincount([i for i, _ in want], minlength=len(q))
        np.testing.assert_array_equal(t.posting_counts(q), counts)
    with pytest.raises(IndexFormatError):
        HashTable.from_arrays({**table.arrays(), "low": np.zeros(n - 1, np.uint8)}, hash_bits=bits)


def test_chance_model_is_monotone_and_finite() -> None:
    lp = chance_log10(np.array([1, 3, 10, 100, 3000]), np.array([0.5, 0.5, 0.5, 0.5, 0.5]))
    assert np.all(np.diff(lp) < 0) and np.all(np.isfinite(lp))
    assert chance_log10(np.array([5]), np.array([0.1]), dispersion=3.0)[0] > chance_log10(
        np.array([5]), np.array([0.1])
    )[0]


def test_query_margin_adds_the_other_rounding_of_boundary_pairs() -> None:
    """Two peaks 0.45 bin / 0.45 frame from a rounding boundary: a shift of 0.1 flips the
    indexed hash, and only the query's boundary variants still contain it."""
    from audiolsh.features.landmarks import Peaks

    def peaks(t1: float, f2: float) -> Peaks:
        z = np.zeros(2, np.float32)
        return Peaks(np.array([10.0, t1], np.float32), np.array([50.0, f2], np.float32), z, 40)

    indexed = pair_peaks(peaks(20.45, 60.45), fanout=1)
    shifted = peaks(20.55, 60.55)
    plain = pair_peaks(shifted, fanout=1)
    varied = pair_peaks(shifted, fanout=1, margin=0.1)
    assert len(plain) == 1 and plain.hashes[0] != indexed.hashes[0]
    assert len(varied) == 4 and indexed.hashes[0] in varied.hashes  # (f2, dt) x (main, other)
    assert set(plain.hashes) <= set(varied.hashes) and np.all(varied.times == 10)
    assert len(pair_peaks(peaks(20.0, 60.0), fanout=1, margin=0.2)) == 1  # far from boundaries
    with pytest.raises(ParameterError):
        pair_peaks(shifted, fanout=1, margin=0.5)


def test_lookup_skips_common_hashes_and_dead_tracks(rng: np.random.Generator) -> None:
    hashes = np.concatenate([np.full(30, 7), rng.integers(100, 1 << 14, size=2000)]).astype(np.uint32)
    pos = rng.integers(0, 1000, size=len(hashes)).astype(np.uint32)
    table = HashTable.build(hashes, pos, hash_bits=HASH_BITS)
    starts, alive = np.array([0, 500], np.int64), np.array([True, False])
    q = np.concatenate([[7], hashes[30:80]]).astype(np.uint32)
    for cap in (0, 10):
        qidx, tix, frame = table.lookup_tracks(q, starts, alive, max_postings=cap)
        want = sorted(
            (i, int(p)) for i, h in enumerate(q.tolist()) for p in pos[hashes == h].tolist()
            if p < 500 and (cap == 0 or (hashes == h).sum() <= cap)
        )
        assert sorted(zip(qidx.tolist(), (starts[tix] + frame).tolist())) == want
        assert np.all(tix == 0)
        assert (0 in qidx.tolist()) == (cap == 0)  # hash 7 is stored 30 times



def _pairs_spelt_out(peaks: fl.Peaks, fanout: int, time_scale: float, freq_scale: float,
                     margin: float) -> list[tuple[int, int]]:
    """The pairing rule pair by pair, in the order ``pair_peaks`` gives: (hash, anchor frame)."""
    t = peaks.times.astype(np.float64) * time_scale
    f = peaks.freqs.astype(np.float64) * freq_scale
    fi = np.rint(f).astype(np.int64)

    def alt(x: float, xi: int) -> int:
        r = x - xi
        return xi + (1 if r > 0 else -1) if abs(r) > 0.5 - margin else xi

    def key(f1: int, dfq: int, dt: int) -> int:
        return (f1 << (fl.DF_BITS + fl.DT_BITS)) | ((dfq + (1 << (fl.DF_BITS - 1))) << fl.DT_BITS) | dt

    pairs = []
    for a in range(len(t)):
        later = [j for j in range(a + 1, min(a + 6 * fanout, len(t) - 1) + 1)
                 if 1 <= np.rint(t[j] - t[a]) <= fl.DT_MAX and abs(fi[j] - fi[a]) <= fl.DF_MAX]
        pairs += [(a, j) for j in later[:fanout]]
    out = [(key(min(max(int(fi[a]), 0), (1 << fl.F_BITS) - 1), int(fi[b] - fi[a]), int(np.rint(t[b] - t[a]))),
            int(np.rint(t[a]))) for a, b in pairs]
    for c in range(1, 8 if margin > 0 else 1):
        for a, b in pairs:
            d = t[b] - t[a]
            di = int(np.rint(d))
            f1 = alt(f[a], int(fi[a])) if c & 1 else int(fi[a])
            f2 = alt(f[b], int(fi[b])) if c & 2 else int(fi[b])
            dt = alt(d, di) if c & 4 else di
            moved = all(x != y for x, y, bit in ((f1, fi[a], 1), (f2, fi[b], 2), (dt, di, 4)) if c & bit)
            if moved and 1 <= dt <= fl.DT_MAX and abs(f2 - f1) <= fl.DF_MAX and 0 <= f1 < 1 << fl.F_BITS:
                out.append((key(f1, f2 - f1, dt), int(np.rint(t[a]))))
    return out


def test_pair_variants_is_the_pairing_rule_of_each_variant() -> None:
    """Every variant of a stage hashed in one compiled pass gives, variant by variant, the
    pairs (and their order) the rule spells out: plain, with boundary roundings, rescaled."""
    y = music(duration_s=4.0, sr=8000, seed=5)
    y = y + 0.2 * np.random.default_rng(5).standard_normal(len(y))
    peaks = spectral_peaks(y, 8000, density=36.0)
    scales = np.array([[1.0, 1.0], [1.05, 1 / 1.05], [0.92, 1.0], [1.0, 1 / 1.0595], [0.97, 1.03]])
    margins = np.array([0.2, 0.1, 0.1, 0.0, 0.3])
    hashes, times, group = fl.pair_variants(peaks, scales, fanout=12, margins=margins)
    want = [(v, *p) for v, (s, m) in enumerate(zip(scales, margins))
            for p in _pairs_spelt_out(peaks, 12, s[0], s[1], m)]
    assert list(zip(group.tolist(), hashes.tolist(), times.tolist())) == want
    assert np.bincount(group).min() > 100 and hashes.dtype == np.uint32 and times.dtype == np.int32
    one = pair_peaks(peaks, fanout=5, time_scale=1.02)  # ingest's call: one variant, no margin
    assert list(zip(one.hashes.tolist(), one.times.tolist())) == _pairs_spelt_out(peaks, 5, 1.02, 1.0, 0.0)
    with pytest.raises(ParameterError, match="margin"):
        fl.pair_variants(peaks, scales, margins=np.full(len(scales), 0.5))


def test_shifted_analyses_keep_the_first_and_place_the_others_on_its_grid() -> None:
    """The first analysis is :func:`spectral_peaks` itself; a shift of k / S hop is the analysis
    of the signal from that sample on, its times moved onto the unshifted frame grid."""
    y = music(duration_s=4.0, sr=8000, seed=7)
    one = spectral_peaks(y, 8000, density=36.0)
    first, half = fl.shifted_peaks(y, 8000, density=36.0, shifts=2)
    for a, b in ((first, one), (first, fl.shifted_peaks(y, 8000, density=36.0)[0])):
        assert np.array_equal(a.times, b.times) and np.array_equal(a.freqs, b.freqs)
    late = spectral_peaks(y[fl.HOP_LENGTH // 2:], 8000, density=36.0)
    assert np.allclose(half.times, late.times + 0.5) and np.array_equal(half.freqs, late.freqs)
    assert half.n_frames == first.n_frames
    with pytest.raises(ParameterError, match="shifts"):
        fl.shifted_peaks(y, 8000, shifts=0)


def test_the_union_of_shifted_analyses_holds_the_unshifted_query_once() -> None:
    """Pairing several analyses gives every landmark of the first, variant by variant, and no
    (hash, frame, variant) twice; one analysis is paired exactly as :func:`pair_variants` does."""
    y = music(duration_s=4.0, sr=8000, seed=8)
    y = y + 0.1 * np.random.default_rng(8).standard_normal(len(y))
    shifts = fl.shifted_peaks(y, 8000, density=36.0, shifts=4)
    scales = np.array([[1.0, 1.0], [1.05, 1 / 1.05]])
    margins = np.array([0.2, 0.1])
    plain = fl.pair_variants(shifts[0], scales, fanout=12, margins=margins)
    alone = fl.pair_shifts(shifts[:1], scales, fanout=12, margins=margins)
    assert all(np.array_equal(a, b) for a, b in zip(plain, alone))
    h, t, g = fl.pair_shifts(shifts, scales, fanout=12, margins=margins)
    union = set(zip(g.tolist(), h.tolist(), t.tolist()))
    assert len(union) == len(h) > 1.3 * len(plain[0])
    assert set(zip(plain[2].tolist(), plain[0].tolist(), plain[1].tolist())) <= union
    assert np.all(np.diff(g) >= 0)  # variant by variant
    # Silence: no landmark in any analysis, no error.
    quiet = fl.shifted_peaks(np.zeros(8000, np.float32), 8000, density=36.0, shifts=2)
    assert all(len(x) == 0 for x in fl.pair_shifts(quiet, scales, fanout=12, margins=margins))


@pytest.mark.parametrize("n_variants", [16, 40])
def test_the_union_keeps_each_landmarks_first_appearance_in_order(n_variants: int) -> None:
    """Exactly a plain first-seen de-duplication of the analyses' landmarks one after another,
    regrouped variant by variant (16 variants, as the near grid's batch has; 40, more than a
    packed sort key holds, sorted by three keys instead)."""
    y = music(duration_s=5.0, sr=8000, seed=9)
    y = y + 0.2 * np.random.default_rng(9).standard_normal(len(y))
    shifts = fl.shifted_peaks(y, 8000, density=36.0, shifts=3)
    f = np.linspace(0.96, 1.04, n_variants)
    scales = np.stack([f, 1 / f], axis=1)
    margins = np.full(n_variants, 0.1)
    parts = [fl.pair_variants(p, scales, fanout=12, margins=margins) for p in shifts]
    seen: dict[tuple[int, int, int], int] = {}
    for h, t, g in parts:
        for key in zip(g.tolist(), h.tolist(), t.tolist()):
            seen.setdefault(key, len(seen))
    want = sorted(seen, key=lambda k: (k[0], seen[k]))
    h, t, g = fl.pair_shifts(shifts, scales, fanout=12, margins=margins)
    assert list(zip(g.tolist(), h.tolist(), t.tolist())) == want
    assert len(want) < sum(len(p[0]) for p in parts)  # the analyses share landmarks


def test_a_time_step_spread_adds_each_pair_a_frame_longer_and_shorter() -> None:
    """With ``dt_spread`` 1 a pair whose later peak a room delays by a frame still hashes as
    indexed: the query holds every landmark with its time step one frame either way."""
    from audiolsh.features.landmarks import Peaks

    z = np.zeros(2, np.float32)
    indexed = pair_peaks(Peaks(np.array([10.0, 20.0], np.float32), np.array([50.0, 60.0], np.float32), z, 40),
                         fanout=1)
    late = Peaks(np.array([10.0, 21.0], np.float32), np.array([50.0, 60.0], np.float32), z, 40)
    scales, margins = np.array([[1.0, 1.0]]), np.array([0.0])
    plain = fl.pair_shifts([late], scales, fanout=1, margins=margins)
    spread = fl.pair_shifts([late], scales, fanout=1, margins=margins, dt_spread=1)
    assert indexed.hashes[0] not in plain[0] and indexed.hashes[0] in spread[0]
    assert len(spread[0]) == 3 and set(plain[0]) <= set(spread[0]) and np.all(spread[1] == 10)
    assert sorted(int(h) & ((1 << fl.DT_BITS) - 1) for h in spread[0]) == [10, 11, 12]


def _noise_of(y: np.ndarray) -> float:
    return fl.noise_level(fl.shifted_peaks(y, SR, levels=True)[0])


def test_noise_level_tells_a_noisy_clip_from_a_clean_one() -> None:
    from audiolsh.audio.synth import pink_noise, white_noise

    song = music(duration_s=5.0, sr=SR, seed=3)
    chord = sum(tone(f, duration_s=5.0, sr=SR) for f in (220.0, 330.0, 440.0)).astype(np.float32)
    pink = pink_noise(duration_s=5.0, sr=SR, seed=1)[: len(song)]
    pink *= np.sqrt(np.mean(song**2) / np.mean(pink**2))  # 0 dB
    levels = {"white": _noise_of(white_noise(duration_s=5.0, sr=SR, seed=2)), "chord": _noise_of(chord),
              "song": _noise_of(song), "song + pink 0 dB": _noise_of((song + pink).astype(np.float32))}
    assert levels["white"] > 0.4 and levels["chord"] < 0.01
    assert levels["chord"] < levels["song"] < levels["song + pink 0 dB"] < levels["white"], levels
    # Silence before the music (here most of the clip) is left out: it reads as flat as white noise.
    quiet_head = np.concatenate([np.zeros(7 * SR, np.float32), song])
    assert _noise_of(quiet_head) < 10 * levels["song"] < levels["song + pink 0 dB"]
    # Only a query's analysis keeps the frames' levels (an index's does not pay for them).
    assert fl.shifted_peaks(song, SR)[0].frames is None and fl.noise_level(fl.spectral_peaks(song, SR)) == 0.0


def test_a_streamed_recording_and_its_windows_have_the_noise_level_of_the_whole() -> None:
    from audiolsh.features.stream_peaks import Fingerprint

    y = music(duration_s=12.0, sr=SR, seed=8)
    whole = fl.shifted_peaks(y, SR, density=36.0, levels=True)[0]
    stream = Fingerprint(SR, density=36.0, levels=True)
    for i in range(0, len(y), 7000):  # blocks that split frames
        stream.push(y[i:i + 7000])
    streamed = stream.peaks()
    assert whole.frames is not None and streamed.frames is not None
    np.testing.assert_allclose(streamed.frames, whole.frames, rtol=1e-4, atol=1e-4)
    part = whole.window(100, 150)
    assert part.frames is not None and len(part.frames) == 150 and part.n_frames == 150
    np.testing.assert_array_equal(part.frames, whole.frames[100:250])
    assert np.all((part.times >= 0) & (part.times < 150))
    assert fl.noise_level(part) == pytest.approx(fl.noise_level(fl.shifted_peaks(
        y[100 * fl.HOP_LENGTH * SR // fl.FP_SR:], SR, levels=True)[0].window(0, 150)), rel=0.05)
