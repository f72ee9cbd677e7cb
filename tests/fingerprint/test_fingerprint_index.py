"""FingerprintIndex: identification under distortions, no-match, speed/tempo, segments, lifecycle."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest
import scipy.signal
import soxr

from audiolsh.audio.synth import chirp, music, pink_noise, tone, white_noise
from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.evaluation.distortions import babble
from audiolsh.features.landmarks import (
    FP_SR,
    HASH_BITS,
    HOP_LENGTH,
    QUERY_DENSITY,
    QUERY_FANOUT,
    Landmarks,
    landmarks,
    pair_peaks,
    spectral_peaks,
)
from audiolsh.index import Index
from audiolsh.index import confidence as calibrated
from audiolsh.index.fingerprint import (
    BACKGROUND_TILES,
    FP_FORMAT_VERSION,
    RUNNER_UP_SHARE,
    FingerprintIndex,
    Match,
    _background,
    _on_edge,
)

SR = 16000
SONG_S = 40.0
SEEDS = (11, 12, 13, 14)


def tones_and_chirps(seed: int, duration_s: float) -> np.ndarray:
    """A seeded 'melody' of 0.125-s tones and chirps, two at a time: unambiguous, never repeats."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(int(duration_s / 0.125)):
        step = np.zeros(int(0.125 * SR), np.float32)
        for _ in range(2):
            f0, f1 = rng.uniform(200, 3400, size=2)
            step += (tone(f0, duration_s=0.125, sr=SR) if rng.random() < 0.5
                     else chirp(f0, f1, duration_s=0.125, sr=SR))
        parts.append(step)
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def songs() -> dict[str, np.ndarray]:
    out = {f"song{s}.wav": music(duration_s=SONG_S, sr=SR, seed=s) for s in SEEDS}
    out["pattern.wav"] = tones_and_chirps(5, SONG_S)
    out["pattern2.wav"] = tones_and_chirps(6, SONG_S)
    return out


@pytest.fixture(scope="module")
def index(songs: dict[str, np.ndarray]) -> FingerprintIndex:
    idx = FingerprintIndex.create(None)
    with idx.session() as s:
        for i, (path, y) in enumerate(songs.items()):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR, landmarks=landmarks(y, SR))
    return idx


def one_track_index(songs: dict[str, np.ndarray], path: str, **params: object) -> FingerprintIndex:
    idx = FingerprintIndex.create(None, **params)
    with idx.session() as s:
        s.add_track(path, content_hash="h", duration_s=SONG_S, landmarks=landmarks(songs[path], SR))
    return idx


def cut(y: np.ndarray, start_s: float, duration_s: float, sr: int = SR) -> np.ndarray:
    return y[int(start_s * sr): int((start_s + duration_s) * sr)]


def snr_noise(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    scale = np.sqrt(np.mean(y**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (y + scale * noise).astype(np.float32)


@pytest.mark.parametrize("path", ["pattern.wav", "song12.wav", "song14.wav"])
def test_found_at_the_right_offset_after_noise_gain_and_resampling(
    index: FingerprintIndex, songs: dict[str, np.ndarray], path: str
) -> None:
    clip = cut(songs[path], 17.3, 5.0)
    clip = snr_noise(clip, white_noise(duration_s=5.0, sr=SR, seed=1), 10.0) * 0.2
    clip = np.asarray(soxr.resample(clip, SR, 44100), np.float32)
    m = index.identify(clip, 44100, search_speed=False)
    assert isinstance(m, Match)
    assert m.path == path
    assert abs(m.offset_s - 17.3) < 0.1
    assert 0.99 <= m.confidence <= 1.0 and m.score >= 10 and m.n_query_hashes > 0
    assert m.speed == 1.0 and m.tempo == 1.0
    assert set(m.to_dict()) >= {"path", "track_id", "offset_s", "score", "confidence", "speed", "tempo"}


@pytest.mark.parametrize("length_s", [10.0, 5.0])
def test_pink_noise_at_0_db(index: FingerprintIndex, songs: dict[str, np.ndarray], length_s: float) -> None:
    clip = cut(songs["song13.wav"], 8.0, length_s)
    clip = snr_noise(clip, pink_noise(duration_s=length_s, sr=SR, seed=2), 0.0)
    m = index.identify(clip, SR)
    assert m is not None and m.path == "song13.wav" and abs(m.offset_s - 8.0) < 0.1


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_unindexed_music_gives_no_match(index: FingerprintIndex, seed: int) -> None:
    y = music(duration_s=10.0, sr=SR, seed=seed)
    assert index.identify(y, SR) is None
    # ... while its confidence is still reported when asked for every answer.
    m = index.identify(y, SR, min_confidence=0.0)
    assert m is None or (m.confidence < index.default_min_confidence and not m.matched)


def test_short_clip_is_searched_and_weak_evidence_is_an_honest_no_match(
    index: FingerprintIndex, songs: dict[str, np.ndarray]
) -> None:
    verdict = index.assess(cut(songs["pattern.wav"], 11.0, 1.5), SR)
    assert verdict.n_query_hashes > 0
    if verdict.match is not None:  # named: the right track, where the clip starts
        assert verdict.match.path == "pattern.wav" and abs(verdict.match.offset_s - 11.0) < 0.1
        assert verdict.reason is None and verdict.match.matched
    else:
        assert verdict.reason and ("too few landmarks" in verdict.reason or "below" in verdict.reason)
    # Too few hashes for a confident match: the reason counts them against what is needed.
    sparse = index.assess(tone(440.0, duration_s=1.0, sr=SR), SR)
    assert sparse.match is None
    needed = index.calibration.hashes_needed
    assert sparse.reason == (f"too few landmarks: {sparse.n_query_hashes} hashes, about {needed} needed"
                             " for a confident match")


def test_min_confidence_zero_shows_the_weak_best_candidate(index: FingerprintIndex) -> None:
    noise = pink_noise(duration_s=5.0, sr=SR, seed=7)
    verdict = index.assess(noise, SR, min_confidence=0.0)
    assert verdict.best is not None and verdict.match is verdict.best and verdict.reason is None
    assert 0.0 <= verdict.best.confidence < index.default_min_confidence and not verdict.best.matched
    strict = index.assess(noise, SR)  # the default threshold: no match, and why
    assert strict.match is None and strict.best == verdict.best
    assert strict.reason is not None and f"{verdict.best.confidence:.3f}" in strict.reason


def test_a_clip_whose_audio_is_in_two_tracks_names_the_other_too(songs: dict[str, np.ndarray]) -> None:
    # A remaster: the same passage 12 s into a longer track, quieter and with a new intro.
    original = songs["song12.wav"]
    remaster = np.concatenate([music(duration_s=12.0, sr=SR, seed=120), 0.7 * original]).astype(np.float32)
    idx = FingerprintIndex.create(None)
    with idx.session() as s:
        for i, (path, y) in enumerate([("song11.wav", songs["song11.wav"]), ("song12.wav", original),
                                       ("remaster.wav", remaster), ("pattern.wav", songs["pattern.wav"])]):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR, landmarks=landmarks(y, SR))
    clip = snr_noise(cut(original, 20.0, 5.0), white_noise(duration_s=5.0, sr=SR, seed=3), 10.0)
    m = idx.identify(clip, SR)
    assert m is not None and m.path in ("song12.wav", "remaster.wav")
    where = {"song12.wav": 20.0, "remaster.wav": 32.0}
    assert abs(m.offset_s - where[m.path]) < 0.1
    assert [a.path for a in m.also] == [p for p in where if p != m.path]
    other = m.also[0]
    assert abs(other.offset_s - where[other.path]) < 0.1 and other.matched and other.also == ()
    assert other.confidence >= idx.default_min_confidence
    assert m.to_dict()["also"] == [other.to_dict()]
    # Audio in one track only names no other, however low the threshold asked for.
    alone = idx.assess(cut(songs["song11.wav"], 9.0, 5.0), SR, min_confidence=0.0)
    assert alone.match is not None and alone.match.path == "song11.wav" and alone.match.also == ()


def test_the_confidence_weighs_the_clips_noise_level(
        index: FingerprintIndex, songs: dict[str, np.ndarray]) -> None:
    clip = cut(songs["song13.wav"], 10.0, 5.0)
    noisy = snr_noise(clip, pink_noise(duration_s=5.0, sr=SR, seed=9), 3.0)
    a, b = index.identify(clip, SR, min_confidence=0.0), index.identify(noisy, SR, min_confidence=0.0)
    assert a is not None and b is not None and a.path == b.path == "song13.wav"
    assert 0.0 <= a.noise < b.noise <= 1.0
    cal = index.calibration
    for m in (a, b):  # the model sees the clip's noise level with the rest
        assert m.envelope_z is not None
        assert m.confidence == cal.confidence(m.log10_p, m.score, m.n_query_hashes, m.clip_s, m.noise,
                                              m.envelope_z)
    quiet = cal.confidence(b.log10_p, b.score, b.n_query_hashes, b.clip_s, a.noise, b.envelope_z)
    assert quiet < b.confidence


def bass_line(seed: int, duration_s: float) -> np.ndarray:
    """A seeded bass line: 0.25-s notes between 45 and 140 Hz, nothing above."""
    rng = np.random.default_rng(seed)
    notes = [tone(f, duration_s=0.25, sr=SR) for f in rng.uniform(45.0, 140.0, size=int(duration_s / 0.25))]
    return np.concatenate(notes).astype(np.float32)


def test_a_bass_line_is_named_under_talkers_that_fill_the_band_above_it(songs: dict[str, np.ndarray]) -> None:
    """The voices of a loud room cover 150 Hz-3 kHz; music whose energy is in the bass is still
    named there, from the peaks below the voices."""
    tracks = {"bass.wav": bass_line(21, SONG_S), **{p: songs[p] for p in ("song11.wav", "pattern.wav")}}
    idx = FingerprintIndex.create(None)
    with idx.session() as s:
        for i, (path, y) in enumerate(tracks.items()):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR, landmarks=landmarks(y, SR))
    clip = cut(tracks["bass.wav"], 12.0, 10.0)
    talk = babble(clip.size, SR, seed=3)
    talk = scipy.signal.sosfilt(scipy.signal.butter(4, 160.0, btype="highpass", fs=SR, output="sos"), talk)
    # The talkers replace the clip's energy envelope above the bass, so the confidence leans on
    # the landmarks alone, which the envelope's calibration trusts less: the clip is the best
    # candidate, on strong landmark evidence, below the default threshold.
    m = idx.assess(snr_noise(clip, talk, 0.0), SR, min_confidence=0.0).best
    assert m is not None and m.path == "bass.wav" and abs(m.offset_s - 12.0) < 0.1
    assert m.log10_p < -10.0 and m.score >= 40


def copies_index(passage: np.ndarray) -> FingerprintIndex:
    """``passage`` twice in a row (a loop) and once, quieter and a little noisy, in a remaster:
    the loop's repeat makes chance agreement likelier there, so the search's chance
    probability puts the remaster first; the loop agrees on more hashes and is the surer."""
    hiss = white_noise(duration_s=12.0, sr=SR, seed=2)[: len(passage)]
    hiss *= np.sqrt(np.mean(passage**2) / np.mean(hiss**2)) * 10 ** (-25 / 20)
    intro = music(duration_s=30.0, sr=SR, seed=98)
    tracks = {f"o{k}.wav": music(duration_s=SONG_S, sr=SR, seed=k) for k in (11, 13)}
    tracks |= {"loop.wav": np.concatenate([passage, passage]),
               "remaster.wav": np.concatenate([intro, 0.7 * (passage + hiss)])}
    idx = FingerprintIndex.create(None)
    with idx.session() as s:
        for i, (path, y) in enumerate(tracks.items()):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR,
                        landmarks=landmarks(y.astype(np.float32), SR))
    return idx


def test_the_exact_copy_is_named_before_a_remaster_the_search_put_first() -> None:
    passage = music(duration_s=12.0, sr=SR, seed=12)
    idx = copies_index(passage)
    m = idx.identify(cut(passage, 1.0, 10.0), SR)
    assert m is not None and m.path == "loop.wav"
    assert min(abs(m.offset_s - 1.0), abs(m.offset_s - 13.0)) < 0.1  # either time round
    assert [a.path for a in m.also] == ["remaster.wav"] and abs(m.also[0].offset_s - 31.0) < 0.1
    # The remaster is the more significant by chance alone, the loop the surer answer.
    assert m.also[0].log10_p < m.log10_p and m.score > m.also[0].score
    assert m.also[0].confidence >= idx.default_min_confidence and m.confidence >= idx.default_min_confidence
    # Ranked by the landmarks' evidence (the envelope's z is lower in the loop, whose repeat
    # agrees at a second alignment).
    alone = calibrated.load(calibrated.WITHOUT_ENVELOPE)
    assert (alone.confidence(m.log10_p, m.score, m.n_query_hashes, m.clip_s, m.noise)
            > alone.confidence(m.also[0].log10_p, m.also[0].score, m.also[0].n_query_hashes, m.also[0].clip_s,
                               m.also[0].noise))


def test_segments_name_the_exact_copy_as_a_clip_would() -> None:
    passage = music(duration_s=12.0, sr=SR, seed=12)
    idx = copies_index(passage)
    segments = idx.identify_segments(cut(passage, 1.0, 11.0), SR, window_s=10.0, hop_s=1.0)
    assert [s.match.path for s in segments] == ["loop.wav"] and segments[0].match.also == ()
    assert segments[0].start_s < 0.5 and segments[0].end_s > 9.5
    assert min(abs(segments[0].match.offset_s - 1.0), abs(segments[0].match.offset_s - 13.0)) < 0.2


@pytest.mark.parametrize("seed", [104, 105])
def test_unindexed_music_sped_up_or_shifted_gives_no_match(index: FingerprintIndex, seed: int) -> None:
    # What the wide grids try most: a clip that could be any of them.
    y = music(duration_s=5.0, sr=SR, seed=seed)
    assert index.identify(np.asarray(soxr.resample(y, SR * 1.06, SR), np.float32), SR) is None
    assert index.identify(librosa.effects.pitch_shift(y, sr=SR, n_steps=-1), SR) is None


def test_noise_and_silence_give_no_match(index: FingerprintIndex) -> None:
    assert index.identify(pink_noise(duration_s=5.0, sr=SR, seed=3), SR) is None
    assert index.identify(np.zeros(SR * 3, np.float32), SR) is None


def test_speed_variant_found_with_its_factor(index: FingerprintIndex, songs: dict[str, np.ndarray]) -> None:
    clip = cut(songs["song11.wav"], 10.0, 10.5)
    faster = np.asarray(soxr.resample(clip, SR * 1.03, SR), np.float32)  # plays 3 % faster, pitch up
    m = index.identify(faster, SR)
    assert m is not None and m.path == "song11.wav"
    assert m.speed == pytest.approx(1.03, abs=0.011) and m.tempo == 1.0
    assert abs(m.offset_s - 10.0) < 0.2
    plain = index.identify(faster, SR, search_speed=False, threshold=0.0)
    assert plain is None or plain.score < m.score  # the grid is what finds it


def test_tempo_variant_found_with_its_factor(index: FingerprintIndex, songs: dict[str, np.ndarray]) -> None:
    clip = cut(songs["song12.wav"], 12.0, 10.5)
    stretched = librosa.effects.time_stretch(clip, rate=1.04)  # 4 % faster, pitch kept
    m = index.identify(stretched, SR)
    assert m is not None and m.path == "song12.wav"
    assert m.tempo == pytest.approx(1.04, abs=0.021) and m.speed == 1.0
    assert abs(m.offset_s - 12.0) < 0.3


@pytest.mark.parametrize("percent", [5.0, -5.0])
def test_five_percent_speed_change_of_a_5_s_clip(
    index: FingerprintIndex, songs: dict[str, np.ndarray], percent: float
) -> None:
    clip = cut(songs["song13.wav"], 20.0, 5.0)
    factor = 1 + percent / 100
    changed = np.asarray(soxr.resample(clip, SR * factor, SR), np.float32)  # pitch and tempo together
    m = index.identify(changed, SR)
    assert m is not None and m.path == "song13.wav"
    assert m.speed == pytest.approx(factor, abs=0.011) and m.tempo == 1.0 and m.pitch == 1.0
    assert abs(m.offset_s - 20.0) < 0.2
    # The near stage of the grid (within near_change) alone has at best a weak candidate at its
    # grid point (the bass's peaks move less than a bin and keep a few pairs) ...
    grid = {"speed_grid": [0.99, 1.01, 0.98, 1.02, 0.97, 1.03], "tempo_grid": [], "pitch_grid": []}
    near = one_track_index(songs, "song13.wav", verify_margin=0.0, **grid)
    assert near.params.near_change < abs(percent) / 100
    alone = near.identify(changed, SR, min_confidence=0.0)
    # ... which the recount at its speed refined by its drift makes strong.
    refined = one_track_index(songs, "song13.wav", **grid).identify(changed, SR)
    assert refined is not None and abs(refined.offset_s - 20.0) < 0.2
    assert abs(refined.speed - factor) < abs(1.03 ** np.sign(percent) - factor)
    assert alone is None or (alone.speed == pytest.approx(1 + 0.03 * np.sign(percent))
                             and alone.score < refined.score / 2)


@pytest.mark.parametrize(("kind", "factor"), [("speed", 1.05), ("tempo", 1.08)])
def test_a_10_s_clip_past_the_near_grid_is_named_at_its_own_factor(
    index: FingerprintIndex, songs: dict[str, np.ndarray], kind: str, factor: float
) -> None:
    # At 10 s the near stage's last grid point (4 %) agrees conclusively with part of the clip
    # for a change beyond it; the search must go on to the grid point that fits the whole clip.
    clip = cut(songs["song12.wav"], 12.0, 10.0)
    if kind == "speed":
        changed = np.asarray(soxr.resample(clip, SR * factor, SR), np.float32)
    else:
        changed = librosa.effects.time_stretch(clip, rate=factor)
    near = max(f for f in getattr(index.params, f"{kind}_grid") if f - 1 <= index.params.near_change + 1e-9)
    assert near < factor
    m = index.identify(changed, SR)
    assert m is not None and m.path == "song12.wav" and abs(m.offset_s - 12.0) < 0.1
    assert getattr(m, kind) == pytest.approx(factor, abs=0.011)
    at_near = one_track_index(songs, "song12.wav", **{f"{kind}_grid": [near]}, verify_margin=0.0)
    weaker = at_near.identify(changed, SR, min_confidence=0.0)
    assert weaker is None or weaker.score < m.score / 2


def test_a_grid_point_is_on_the_edge_while_the_next_one_its_way_is_unsearched() -> None:
    idx = FingerprintIndex.create(None)
    variants = idx._variants(True)
    stages = [batch for batch, _ in idx._stages(variants)]
    first_two = set(stages[0]) | set(stages[1])
    everything = first_two | set(stages[2])
    assert _on_edge((0.96, 1.0, 1.0), variants, first_two)  # 0.95 lies in the wide stage
    assert _on_edge((1.0, 1.04, 1.0), variants, first_two) and _on_edge((1.0, 1.0, 1.04), variants, first_two)
    assert not _on_edge((0.97, 1.0, 1.0), variants, first_two)  # 0.96 was searched with it
    assert not _on_edge((1.0, 1.0, 1.02), variants, first_two)
    assert not _on_edge((0.96, 1.0, 1.0), variants, everything)
    assert not _on_edge((1.08, 1.0, 1.0), variants, everything)  # nothing beyond the grid
    assert not _on_edge((1.0, 1.0, 1.0), variants, set(stages[0]))
    near_only = FingerprintIndex.create(None, speed_grid=[0.98, 1.02], tempo_grid=[], pitch_grid=[])
    v = near_only._variants(True)
    assert not _on_edge((0.98, 1.0, 1.0), v, set(range(len(v))))


def test_a_speed_between_grid_points_keeps_its_hashes(
    index: FingerprintIndex, songs: dict[str, np.ndarray]
) -> None:
    # -7.5 % lies half a step between 0.92 and 0.93: peaks land near rounding boundaries, and
    # the grid's boundary hashes (grid_margin) keep pairs that one rounding would lose.
    clip = cut(songs["song11.wav"], 14.0, 4.0)
    slower = np.asarray(soxr.resample(clip, SR * 0.925, SR), np.float32)[: 3 * SR]
    plain = one_track_index(songs, "song11.wav", grid_margin=0.0, verify_margin=0.0)
    m, m0 = index.identify(slower, SR), plain.identify(slower, SR, threshold=0.0)
    assert m is not None and m.path == "song11.wav" and abs(m.offset_s - 14.0) < 0.2
    assert m0 is not None and m.score > m0.score


@pytest.mark.parametrize("steps", [1, -1])
def test_pitch_shift_by_a_semitone_tempo_kept(
    index: FingerprintIndex, songs: dict[str, np.ndarray], steps: int
) -> None:
    clip = cut(songs["song14.wav"], 9.0, 5.0)
    shifted = librosa.effects.pitch_shift(clip, sr=SR, n_steps=steps)
    m = index.identify(shifted, SR)
    assert m is not None and m.path == "song14.wav"
    assert m.pitch == pytest.approx(2 ** (steps / 12), abs=0.011) and m.speed == 1.0 and m.tempo == 1.0
    assert abs(m.offset_s - 9.0) < 0.2
    assert m.to_dict()["pitch"] == m.pitch


def test_an_inconclusive_candidate_is_recounted_at_its_own_transform(songs: dict[str, np.ndarray]) -> None:
    # A semitone down in pink noise: the pitch grid's variant finds the track with few hashes;
    # re-hashed with the wider verify_margin and counted against that track alone, the clip
    # keeps pairs the grid's rounding lost, and its corrected chance probability drops.
    clip = librosa.effects.pitch_shift(cut(songs["song14.wav"], 9.0, 3.0), sr=SR, n_steps=-1)
    clip = snr_noise(clip, pink_noise(duration_s=3.0, sr=SR, seed=3), 5.0)
    checked, plain = (one_track_index(songs, "song14.wav", verify_margin=m, retry_shifts=0)  # one search
                      for m in (0.3, 0.0))
    m, m0 = (ix.assess(clip, SR, min_confidence=0.0).best for ix in (checked, plain))
    assert m is not None and m0 is not None and m.pitch == m0.pitch == pytest.approx(2 ** (-1 / 12), abs=1e-4)
    assert m.score >= m0.score + 8 and m.log10_p < m0.log10_p - 1.0
    assert abs(m.offset_s - 9.0) < 0.1 and m.confidence > m0.confidence
    # A clip of another track gains nothing it would be matched by.
    other = cut(songs["song13.wav"], 10.0, 3.0)
    n, n0 = (ix.assess(other, SR, min_confidence=0.0).best for ix in (checked, plain))
    assert n is not None and n0 is not None and n.score == n0.score and not n.matched


@contextmanager
def params_set(index: FingerprintIndex, **params: object) -> Iterator[FingerprintIndex]:
    """``index`` with some query-time parameters changed for the block (a shared fixture)."""
    saved = {k: getattr(index.params, k) for k in params}
    for k, v in params.items():
        setattr(index.params, k, v)
    try:
        yield index
    finally:
        for k, v in saved.items():
            setattr(index.params, k, v)


def test_the_runner_up_recounted_at_its_transform_can_win(
    index: FingerprintIndex, songs: dict[str, np.ndarray]
) -> None:
    # A second of one track in noise, then three of another a semitone up in 0 dB pink noise:
    # the search ranks the first best (its unscaled hashes), whose recount stays weak; the
    # runner-up recounted at its pitch grid point with the wider margin is far more significant.
    clip = np.concatenate([
        snr_noise(cut(songs["song11.wav"], 20.0, 1.0), pink_noise(duration_s=1.0, sr=SR, seed=4), 5.0),
        snr_noise(librosa.effects.pitch_shift(cut(songs["pattern.wav"], 9.0, 3.0), sr=SR, n_steps=1.0),
                  pink_noise(duration_s=3.0, sr=SR, seed=3), 0.0),
    ])
    def searched(verify_tracks: int) -> tuple[str, float, tuple[float, float, float], int]:
        """The search's own answer (before the most confident of the tracks that match is
        taken, which the envelope's evidence alone would turn to the pattern)."""
        with params_set(index, verify_tracks=verify_tracks, retry_shifts=0):
            v, log_p, transform, _ = index._retried(index._query_peaks(clip, SR), None, search_speed=True)
        assert v is not None
        track = index.storage.track(v.track_id)
        assert track is not None
        return track.path, log_p, transform, v.offset

    one, few = searched(1), searched(3)
    assert one[0] == "song11.wav"
    assert few[0] == "pattern.wav"
    assert few[2][2] == pytest.approx(2 ** (1 / 12), abs=1e-4)
    assert abs(few[3] * HOP_LENGTH / FP_SR - 8.0) < 0.1 and few[1] < one[1] - 1.0
    m = index.assess(clip, SR, min_confidence=0.0).best
    assert m is not None and m.path == "pattern.wav" and m.pitch == pytest.approx(2 ** (1 / 12), abs=1e-4)


def test_background_counts_distinct_hashes_per_tile_beyond_the_candidates_window() -> None:
    # tolerance 2: tiles of 5 alignments from 6 frames out, BACKGROUND_TILES each side
    d = np.array([0, 2, -5, 6, 6, 6, 10, -6, -80, 80, 81, -81, -200], np.int64)
    h = np.array([1, 1, 1, 7, 7, 8, 7, 7, 9, 9, 9, 9, 9], np.int64)
    # counted: tile +0 {7, 8}, tile +0 again 7 (the same hash: once), tile -0 {7}, tile -14 {9},
    # tile +14 {9}; 81 and beyond, and the candidate's own window (|d| <= 5), are not
    assert _background(d, h, 2) == pytest.approx(5 / (2 * BACKGROUND_TILES))
    assert _background(d[:3], h[:3], 2) == 0.0


def hub_index(background: bool, weight: float) -> tuple[FingerprintIndex, np.ndarray, int]:
    """An index of one long track holding 14 of a clip's pairs at one alignment (and, with
    ``background``, 10 of them again at 16 alignments around it, as a held chord agrees at
    many), the rest random hashes; with the clip and the alignment."""
    clip = music(duration_s=3.0, sr=SR, seed=121)
    q = pair_peaks(spectral_peaks(clip, SR, density=QUERY_DENSITY), fanout=QUERY_FANOUT)
    rng = np.random.default_rng(5)
    _, first = np.unique(q.hashes, return_index=True)
    pick = rng.choice(first, size=14, replace=False)
    at = 6000
    shifts = [s * k for k in (10, 17, 23, 31, 44, 52, 63, 75) for s in (1, -1)] if background else []
    hashes = [q.hashes[pick], np.tile(q.hashes[pick[:10]], len(shifts))]
    times = [at + q.times[pick], *(at + q.times[pick[:10]] + s for s in shifts)]
    n_frames = 20_000  # 10 min of unrelated landmarks, 90 a second
    hashes.append(rng.integers(0, 2**HASH_BITS, size=n_frames * 3, dtype=np.uint32))
    times.append(rng.integers(0, n_frames, size=n_frames * 3))
    order = np.argsort(np.concatenate(times), kind="stable")
    lm = Landmarks(np.concatenate(hashes)[order].astype(np.uint32),
                   np.concatenate(times)[order].astype(np.int32))
    index = FingerprintIndex.create(None, background_weight=weight, retry_shifts=0)
    with index.session() as s:
        s.add_track("hub.wav", content_hash="h", duration_s=n_frames * HOP_LENGTH / FP_SR, landmarks=lm)
    return index, clip, at


def test_a_candidate_is_judged_against_its_tracks_agreement_around_its_alignment() -> None:
    # The same 14 agreeing pairs: in a track that also holds them at the alignments around
    # (a held chord, a repeated figure) they say little about this alignment, so the recount
    # judges them against that background; where the track has no such background (only the
    # clip's own repeated hashes at other alignments) the answer stays nearly as it was.
    answers = {}
    for background in (True, False):
        for weight in (0.25, 0.0):
            index, clip, at = hub_index(background, weight)
            m = index.assess(clip, SR, min_confidence=0.0).best
            assert m is not None and m.path == "hub.wav"
            assert m.offset_s == pytest.approx(at * HOP_LENGTH / FP_SR, abs=0.07)
            answers[background, weight] = m
    # without the weight both searches end inconclusive (above early_stop), so both are recounted
    assert all(-6.0 < answers[b, 0.0].log10_p < -1.0 for b in (True, False))
    hub, hub0 = answers[True, 0.25], answers[True, 0.0]
    plain, plain0 = answers[False, 0.25], answers[False, 0.0]
    assert hub.score == hub0.score >= 14
    assert hub.log10_p > hub0.log10_p + 2.0 and hub.confidence < hub0.confidence
    assert plain0.log10_p <= plain.log10_p < plain0.log10_p + 0.5


@pytest.mark.parametrize("seed", [104, 105, 106])
def test_recounting_the_best_few_names_no_unindexed_clip(index: FingerprintIndex, seed: int) -> None:
    # Unindexed music a semitone down in noise: every search is inconclusive, so the best three
    # tracks are recounted; none gains enough to pay for the tries.
    y = librosa.effects.pitch_shift(music(duration_s=3.0, sr=SR, seed=seed), sr=SR, n_steps=-1)
    y = snr_noise(y, pink_noise(duration_s=3.0, sr=SR, seed=seed), 5.0)
    with params_set(index, verify_tracks=3):
        few = index.assess(y, SR, min_confidence=0.0).best
    assert few is not None and not few.matched and few.confidence < index.default_min_confidence


def test_recounting_the_best_few_pays_for_them(index: FingerprintIndex, songs: dict[str, np.ndarray]) -> None:
    # A semitone down in pink noise: the search is inconclusive, the right track's recount wins
    # either way; recounting the best three, it keeps all but the runners-up's share of the
    # budget (a weighted union bound), the runners-up pay the rest.
    clip = librosa.effects.pitch_shift(cut(songs["song14.wav"], 9.0, 3.0), sr=SR, n_steps=-1)
    clip = snr_noise(clip, pink_noise(duration_s=3.0, sr=SR, seed=3), 5.0)
    with params_set(index, verify_tracks=1):
        one = index.assess(clip, SR, min_confidence=0.0).best
    with params_set(index, verify_tracks=3):
        few = index.assess(clip, SR, min_confidence=0.0).best
    assert one is not None and few is not None and one.path == few.path == "song14.wav"
    assert (few.score, few.offset_s, few.pitch) == (one.score, one.offset_s, one.pitch)
    assert few.log10_p == pytest.approx(one.log10_p - math.log10(1 - RUNNER_UP_SHARE), abs=1e-9)
    assert few.confidence < one.confidence


def test_a_pitch_shift_between_grid_points_is_recounted_at_its_neighbours(
    songs: dict[str, np.ndarray],
) -> None:
    # 4.7 % up lies between the grid's 4 % and a semitone (5.95 %): at 4 % the candidate keeps
    # few hashes; recounted at 4 % x 1.01 too it keeps most, and pays for the extra tries.
    steps = 12 * math.log2(1.047)
    clip = librosa.effects.pitch_shift(cut(songs["song14.wav"], 9.0, 3.0), sr=SR, n_steps=steps)
    clip = snr_noise(clip, pink_noise(duration_s=3.0, sr=SR, seed=3), 5.0)
    plain, sub = (one_track_index(songs, "song14.wav", verify_pitch=f) for f in ([], [0.99, 1.01]))
    m0, m = (ix.assess(clip, SR, min_confidence=0.0).best for ix in (plain, sub))
    assert m0 is not None and m is not None and m0.pitch == pytest.approx(1.04)
    assert m.pitch == pytest.approx(1.04 * 1.01) and m.score >= m0.score + 15
    assert m.log10_p < m0.log10_p - 3.0 and abs(m.offset_s - 9.0) < 0.1


@pytest.mark.parametrize("shifts", [2, 4])
def test_a_clip_cut_off_the_frame_grid_finds_more_hashes_with_sub_hop_shifts(
    index: FingerprintIndex, songs: dict[str, np.ndarray], shifts: int
) -> None:
    # A clip starting a quarter of a hop (8 ms) off the frame grid its track was indexed on:
    # analysed from sub-hop shifts too, one analysis lines up with the index's frames and more
    # of its pairs agree; the extra query hashes raise the chance rate, which the union pays.
    quarter = HOP_LENGTH * SR // FP_SR // 4  # a quarter hop, in samples at SR
    clip = cut(songs["song12.wav"], 9.0, 3.0)[quarter:]
    assert index.params.query_shifts == 1
    m1 = index.assess(clip, SR, min_confidence=0.0)
    with params_set(index, query_shifts=shifts):
        ms = index.assess(clip, SR, min_confidence=0.0)
    a, b = m1.best, ms.best
    assert a is not None and b is not None and a.path == b.path == "song12.wav"
    assert abs(b.offset_s - a.offset_s) < 0.05 and abs(a.offset_s - 9.0) < 0.1
    assert b.score >= a.score * 1.25 and ms.n_query_hashes > 1.5 * m1.n_query_hashes
    # Unindexed music stays a no match.
    with params_set(index, query_shifts=shifts):
        n = index.assess(music(duration_s=3.0, sr=SR, seed=107), SR, min_confidence=0.0).best
    assert n is None or not n.matched


def off_grid_clip(songs: dict[str, np.ndarray], snr_db: float | None) -> np.ndarray:
    """3 s of song12 from 9 s, a quarter of a hop (8 ms) off the frame grid it was indexed
    on, in pink noise at ``snr_db`` (None: none)."""
    quarter = HOP_LENGTH * SR // FP_SR // 4  # a quarter hop, in samples at SR
    clip = cut(songs["song12.wav"], 9.0, 3.0)[quarter:]
    if snr_db is None:
        return clip
    return snr_noise(clip, pink_noise(duration_s=3.0, sr=SR, seed=3)[: len(clip)], snr_db)


@contextmanager
def searches_counted(index: FingerprintIndex) -> Iterator[list[int]]:
    """``index`` whose searches (one per pass over the variants) are counted in the list yielded."""
    calls: list[int] = []
    search = index._search

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return search(*args, **kwargs)  # type: ignore[arg-type]

    index._search = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del index._search


def test_an_inconclusive_clip_off_the_frame_grid_gains_from_a_shifted_second_pass(
    index: FingerprintIndex, songs: dict[str, np.ndarray]
) -> None:
    # In -3 dB pink noise the one-analysis search stays above early_stop; the second pass from
    # two sub-hop analyses lines one of them up with the index's frames: more agreeing hashes,
    # a more significant answer, which pays the factor of the second look.
    clip = off_grid_clip(songs, -3.0)
    assert index.params.retry_shifts == 2  # the default
    with params_set(index, retry_shifts=0):
        base = index.assess(clip, SR, min_confidence=0.0)
    with params_set(index, query_shifts=2):
        two = index.assess(clip, SR, min_confidence=0.0)
    with searches_counted(index) as calls:
        again = index.assess(clip, SR, min_confidence=0.0)
    a, b, m = base.best, two.best, again.best
    assert a is not None and b is not None and m is not None and len(calls) == 2
    assert a.log10_p > math.log10(index.params.early_stop)  # inconclusive: the retry is taken
    assert m.path == "song12.wav" and abs(m.offset_s - 9.0) < 0.05
    assert m.score >= 1.25 * a.score and m.log10_p < a.log10_p - 2.0
    assert m.log10_p == pytest.approx(b.log10_p + math.log10(2), abs=1e-9)
    assert again.n_query_hashes == two.n_query_hashes  # the kept pass's features
    assert m.confidence > a.confidence
    # No retry from as many analyses as the first pass had.
    with params_set(index, query_shifts=2, retry_shifts=2), searches_counted(index) as calls:
        assert index.assess(clip, SR, min_confidence=0.0) == two and len(calls) == 1


def test_a_conclusive_clip_is_searched_once_and_answers_as_without_the_retry(
    index: FingerprintIndex, songs: dict[str, np.ndarray]
) -> None:
    clip = off_grid_clip(songs, None)
    with params_set(index, retry_shifts=0):
        base = index.assess(clip, SR, min_confidence=0.0)
    with searches_counted(index) as calls:
        again = index.assess(clip, SR, min_confidence=0.0)
    assert len(calls) == 1 and again == base
    assert base.best is not None and base.best.log10_p < math.log10(index.params.early_stop)


@pytest.mark.parametrize("seed", [107, 109])
def test_a_retry_pays_for_its_second_look(
    index: FingerprintIndex, songs: dict[str, np.ndarray], seed: int
) -> None:
    # Unindexed music: the answer kept is the more significant of the two passes, made a
    # factor 2 less significant, so a negative gains only when the second pass's own chance
    # agreement is more than twice as unlikely; off, the answer of one search.
    clip = music(duration_s=3.0, sr=SR, seed=seed)
    peaks = index._query_peaks(clip, SR)
    with params_set(index, retry_shifts=0):
        plain = index.assess(clip, SR, min_confidence=0.0)
    assert plain.best is not None and plain.best.log10_p == index._search(peaks, search_speed=True)[1]
    with params_set(index, query_shifts=2):
        two = index.assess(clip, SR, min_confidence=0.0).best
    again = index.assess(clip, SR, min_confidence=0.0).best
    assert two is not None and again is not None and not again.matched
    kept = min(plain.best, two, key=lambda m: m.log10_p)
    assert (again.path, again.offset_s, again.score) == (kept.path, kept.offset_s, kept.score)
    assert again.log10_p == pytest.approx(kept.log10_p + math.log10(2), abs=1e-9)
    assert again.log10_p > plain.best.log10_p or two.log10_p < plain.best.log10_p - math.log10(2)


def test_far_variants_pay_for_their_tries(index: FingerprintIndex) -> None:
    # A union bound over the stages: shares of the false-match budget sum to one, the
    # unscaled query keeps the share it had with the near grid alone.
    stages = index._stages(index._variants(True))
    assert sorted(g for s, _ in stages for g in s) == list(range(len(index._variants(True))))
    assert sum(len(s) / f for s, f in stages) == pytest.approx(1.0)
    n_near = len(stages[1][0])
    assert stages[0] == ([0], n_near + 1)
    assert max(abs(x - 1) for g in stages[1][0] for x in index._variants(True)[g]) <= 0.04 + 1e-9
    assert index._stages(index._variants(False)) == [([0], 1.0)]


def test_ingest_postings_per_second_not_raised(songs: dict[str, np.ndarray]) -> None:
    # Counts of the default index landmarks of two seeded tracks (3403 and 3413 for 40 s; before
    # the band reached the bass, 3413 and 3405): query-side changes must not add to what ingest stores.
    assert len(landmarks(songs["song11.wav"], SR)) <= 3403
    assert len(landmarks(songs["song12.wav"], SR)) <= 3413


@pytest.mark.parametrize("shifts", [dict(retry_shifts=0), dict(query_shifts=2), dict(retry_shifts=2)])
def test_identify_segments_of_a_concatenation(
    index: FingerprintIndex, songs: dict[str, np.ndarray], shifts: dict[str, int]
) -> None:
    # With sub-hop shifts (or a retry from them) every analysis is windowed alike: the same segments.
    a, b = cut(songs["song11.wav"], 5.0, 20.0), cut(songs["pattern2.wav"], 0.0, 20.0)
    with params_set(index, **shifts):
        segs = index.identify_segments(np.concatenate([a, b]), SR, window_s=6.0, hop_s=3.0)
    assert [s.match.path for s in segs] == ["song11.wav", "pattern2.wav"]
    first, second = segs
    assert first.start_s < 1.0 and abs(first.end_s - 20.0) < 1.5
    assert abs(second.start_s - 20.0) < 1.5 and second.end_s > 38.5
    assert abs(first.match.offset_s - (5.0 + first.start_s)) < 0.2
    assert abs(second.match.offset_s - (second.start_s - 20.0)) < 0.2


def test_add_remove_compact(songs: dict[str, np.ndarray]) -> None:
    idx = FingerprintIndex.create(None, max_segments=3)
    ids = {path: idx.add(path, y, SR) for path, y in songs.items()}  # 5 commits -> compaction
    assert len(idx) == 6 and idx.info()["n_segments"] <= 3
    assert idx.info()["n_hashes"] == sum(t.n_items for t in idx.tracks())
    clip = cut(songs["song13.wav"], 20.0, 5.0)
    m = idx.identify(clip, SR)
    assert m is not None and m.track_id == ids["song13.wav"]
    idx.remove_track(ids["song13.wav"])
    assert len(idx) == 5 and "h" not in idx
    gone = idx.identify(clip, SR, threshold=0.0)
    assert gone is None or gone.track_id != ids["song13.wav"]
    with pytest.raises(ParameterError):
        idx.remove_track(ids["song13.wav"])
    idx.compact(full=True)
    info = idx.info()
    assert info["n_dead_hashes"] == 0 and info["n_segments"] == 1 and info["n_tracks"] == 5
    m = idx.identify(cut(songs["pattern.wav"], 3.0, 5.0), SR)
    assert m is not None and m.track_id == ids["pattern.wav"] and abs(m.offset_s - 3.0) < 0.1
    # Re-adding the removed content is allowed; adding it twice is not.
    new_id = idx.add("again.wav", songs["song13.wav"], SR, content_hash="again")
    assert new_id not in ids.values()
    with pytest.raises(ParameterError):
        idx.add("twice.wav", songs["song13.wav"], SR, content_hash="again")
    m = idx.identify(clip, SR)
    assert m is not None and m.track_id == new_id


def test_session_is_atomic(songs: dict[str, np.ndarray]) -> None:
    idx = FingerprintIndex.create(None)
    lm = landmarks(songs["song11.wav"], SR)
    with pytest.raises(RuntimeError), idx.session() as s:
        s.add_track("a.wav", content_hash="a", duration_s=SONG_S, landmarks=lm)
        raise RuntimeError("interrupted")
    assert len(idx) == 0 and idx.info()["n_segments"] == 0
    with pytest.raises(ParameterError), idx.session() as s:
        s.add_track("a.wav", content_hash="a", duration_s=SONG_S, landmarks=lm)
        s.add_track("b.wav", content_hash="a", duration_s=SONG_S, landmarks=lm)
    assert len(idx) == 0


def test_persistence_and_format(
    tmp_path: Path, songs: dict[str, np.ndarray], stored_config: Callable[..., Any],
) -> None:
    where = tmp_path / "fp"
    clips = [cut(songs["song12.wav"], 9.0, 5.0), cut(songs["pattern.wav"], 30.0, 3.0)]
    with FingerprintIndex.create(where) as idx:
        for path, y in songs.items():
            idx.add(path, y, SR)
        before = [idx.identify(c, SR) for c in clips]
        info = idx.info()
    assert (where / "manifest.json").exists()
    with FingerprintIndex.open(where, readonly=True) as idx:
        assert [idx.identify(c, SR) for c in clips] == before
        assert idx.info()["index_bytes"] == info["index_bytes"] and "song12" in before[0].path
        assert len(idx) == 6 and idx.track_by_hash(idx.tracks()[0].content_hash) is not None
        with pytest.raises(IndexFormatError):
            idx.add("x.wav", songs["song11.wav"], SR)
    with FingerprintIndex.open_or_create(where) as idx:
        assert len(idx) == 6
    with pytest.raises(IndexFormatError):
        FingerprintIndex.create(where)
    # A newer format version is refused with a clear message.
    with stored_config(where) as config:
        assert config["format_version"] == FP_FORMAT_VERSION and config["fp_sr"] == FP_SR
        config["format_version"] = FP_FORMAT_VERSION + 1
    with pytest.raises(IndexFormatError, match="newer"):
        FingerprintIndex.open(where)


def test_other_index_kinds_are_refused(tmp_path: Path) -> None:
    Index.create(tmp_path / "vectors").close()
    with pytest.raises(IndexFormatError, match="not a fingerprint index"):
        FingerprintIndex.open(tmp_path / "vectors")
    with pytest.raises(ParameterError):
        FingerprintIndex.create(None, fanout=0)
    with pytest.raises(ParameterError):
        FingerprintIndex.create(None, no_such_knob=1)
    for bad in (dict(verify_tracks=0), dict(verify_pitch=[1.0]), dict(verify_pitch=[1.2])):
        with pytest.raises(ParameterError, match="verify_"):
            FingerprintIndex.create(None, **bad)
    for shifts in (0, 9, 1.5):
        with pytest.raises(ParameterError, match="query_shifts"):
            FingerprintIndex.create(None, query_shifts=shifts)
    for retry in (-1, 9, 1.5):
        with pytest.raises(ParameterError, match="retry_shifts"):
            FingerprintIndex.create(None, retry_shifts=retry)


def test_empty_index_answers_nothing() -> None:
    idx = FingerprintIndex.create(None)
    assert idx.identify(music(duration_s=3.0, sr=SR, seed=1), SR) is None
    assert idx.identify_segments(music(duration_s=3.0, sr=SR, seed=1), SR) == []
    assert len(idx) == 0 and idx.info()["n_hashes"] == 0


def test_format_version_is_pinned_and_old_indexes_are_refused(
    tmp_path: Path, stored_config: Callable[..., Any],
) -> None:
    """Version 5 (no low hash bits where a bucket holds one hash value); a version-2 index must
    be rebuilt, with a clear error (a version-3 one opens: tests/fingerprint/test_envelope_index.py)."""
    assert FP_FORMAT_VERSION == 5
    where = tmp_path / "old"
    FingerprintIndex.create(where).close()
    with stored_config(where) as config:
        config["format_version"] = 2
    with pytest.raises(IndexFormatError, match=r"too old.*index the music again"):
        FingerprintIndex.open(where)


@pytest.mark.parametrize("custom", [False, True])
def test_an_index_made_before_the_pitch_grid_searches_the_wide_grids(
    tmp_path: Path, custom: bool, stored_config: Callable[..., Any],
) -> None:
    where = tmp_path / "old"
    FingerprintIndex.create(where).close()
    with stored_config(where) as config:
        for name in ("pitch_grid", "near_change"):
            del config["params"][name]
        config["params"]["speed_grid"] = [0.99, 1.01] if custom else [0.99, 1.01, 0.98, 1.02, 0.97, 1.03]
        config["params"]["tempo_grid"] = [0.98, 1.02, 0.96, 1.04]
    with FingerprintIndex.open(where) as idx:
        new = FingerprintIndex.create(None).params
        assert idx.params.pitch_grid == new.pitch_grid and idx.params.tempo_grid == new.tempo_grid
        # A grid chosen by hand is kept.
        assert idx.params.speed_grid == ([0.99, 1.01] if custom else new.speed_grid)


@pytest.mark.parametrize(("stored", "narrows_from", "stage_one"), [
    (400_000, 100_000, 50_000),  # the default of its day: today's
    (800, 800, 100),  # set by hand: kept, with the first stage it gave
    (0, 0, 50_000),  # never narrows
])
def test_an_index_made_before_the_first_stage_setting_keeps_its_answers(
    tmp_path: Path, stored_config: Callable[..., Any], stored: int, narrows_from: int, stage_one: int,
) -> None:
    """Indexes stored ``max_matches`` alone, its eighth the narrowed search's first stage."""
    where = tmp_path / "old"
    FingerprintIndex.create(where).close()
    with stored_config(where) as config:
        del config["params"]["stage_one_matches"]
        config["params"]["max_matches"] = stored
    with FingerprintIndex.open(where) as idx:
        assert (idx.params.max_matches, idx.params.stage_one_matches) == (narrows_from, stage_one)
    new = FingerprintIndex.create(None).params
    assert (new.max_matches, new.stage_one_matches) == (100_000, 50_000)


def test_landmark_chunks_hold_every_live_landmark_once(songs: dict[str, np.ndarray]) -> None:
    """Across segments and in any number of hash ranges (each hash value in one range only),
    the chunks hold each live track's landmarks exactly, and none of a removed track."""
    idx = FingerprintIndex.create(None)
    marks = {}
    for i, (path, y) in enumerate(songs.items()):
        marks[path] = landmarks(y, SR)
        with idx.session() as s:  # one segment per track
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR, landmarks=marks[path])
    gone = next(t for t in idx.tracks() if t.path == "pattern.wav")
    idx.remove_track(gone.id)
    by_id = {t.id: t.path for t in idx.tracks()}
    want = sorted((by_id[tid], int(t), int(h)) for tid in by_id
                  for t, h in zip(marks[by_id[tid]].times, marks[by_id[tid]].hashes))
    for n_chunks in (1, 3, 7):
        chunks = list(idx.landmark_chunks(n_chunks))
        assert len(chunks) == n_chunks
        got = sorted((by_id[int(tid)], int(t), int(h))
                     for tids, times, hashes in chunks for tid, t, h in zip(tids, times, hashes))
        assert got == want
        ranges = [set(hashes.tolist()) for _, _, hashes in chunks]
        assert sum(len(r) for r in ranges) == len(set().union(*ranges))
        for c, chunk in enumerate(chunks):  # a task reads its chunk alone
            assert all(np.array_equal(x, y) for x, y in zip(idx.landmark_chunk(c, n_chunks), chunk))
    ids, frames = idx.track_frames()
    assert sorted(ids.tolist()) == sorted(by_id) and (frames > 0).all()
    with pytest.raises(ParameterError, match="n_chunks"):
        next(idx.landmark_chunks(0))
    with pytest.raises(ParameterError, match="chunk"):
        idx.landmark_chunk(3, 3)
