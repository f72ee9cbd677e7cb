"""Synthetic test signals: exact lengths, known frequencies, known tempo, seeded determinism."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import librosa
import numpy as np
import pytest

from audiolsh.audio.synth import chirp, clicks, music, pink_noise, tone, white_noise
from audiolsh.errors import ParameterError
from audiolsh.features import logmel_embeddings

SR = 22050

GENERATORS: list[tuple[str, Callable[..., np.ndarray], dict[str, Any]]] = [
    ("tone", lambda **kw: tone(440.0, **kw), {}),
    ("chirp", lambda **kw: chirp(100.0, 3000.0, **kw), {}),
    ("clicks", lambda **kw: clicks(bpm=120.0, **kw), {}),
    ("white_noise", white_noise, {"seed": 1}),
    ("pink_noise", pink_noise, {"seed": 1}),
    ("music", music, {"seed": 1}),
]


def _peak_freq(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.fft.rfftfreq(y.size, 1.0 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize(("name", "gen", "extra"), GENERATORS, ids=[g[0] for g in GENERATORS])
@pytest.mark.parametrize(("duration_s", "sr"), [(1.0, 22050), (0.5, 8000), (2.3, 44100)])
def test_dtype_length_and_peak(
    name: str, gen: Callable[..., np.ndarray], extra: dict[str, Any], duration_s: float, sr: int
) -> None:
    y = gen(duration_s=duration_s, sr=sr, **extra)
    assert y.dtype == np.float32
    assert y.shape == (round(duration_s * sr),)
    assert np.all(np.isfinite(y))
    assert 0.1 < float(np.max(np.abs(y))) <= 1.0


@pytest.mark.parametrize(("name", "gen", "extra"), GENERATORS, ids=[g[0] for g in GENERATORS])
def test_deterministic(name: str, gen: Callable[..., np.ndarray], extra: dict[str, Any]) -> None:
    a = gen(duration_s=1.0, sr=SR, **extra)
    b = gen(duration_s=1.0, sr=SR, **extra)
    np.testing.assert_array_equal(a, b)


def test_tone_is_a_sine_at_the_frequency() -> None:
    y = tone(440.0, duration_s=1.0, sr=SR, amplitude=0.25)
    t = np.arange(SR) / SR
    np.testing.assert_allclose(y, 0.25 * np.sin(2 * np.pi * 440.0 * t), atol=1e-6)
    assert abs(_peak_freq(y, SR) - 440.0) <= 1.0
    assert abs(_peak_freq(tone(1234.0, duration_s=2.0, sr=SR), SR) - 1234.0) <= 0.5


@pytest.mark.parametrize("linear", [False, True])
def test_chirp_sweeps_from_f0_to_f1(linear: bool) -> None:
    y = chirp(200.0, 3200.0, duration_s=4.0, sr=SR, linear=linear)
    seg = int(0.1 * SR)
    assert abs(_peak_freq(y[:seg], SR) - 200.0) < 60
    assert abs(_peak_freq(y[-seg:], SR) - 3200.0) < 150
    mid = _peak_freq(y[2 * SR - seg // 2 : 2 * SR + seg // 2], SR)
    # Halfway: the arithmetic mean for a linear sweep, the geometric mean for an exponential one.
    expected = (200.0 + 3200.0) / 2 if linear else np.sqrt(200.0 * 3200.0)
    assert abs(mid - expected) < 0.1 * expected


@pytest.mark.parametrize("bpm", [60.0, 120.0, 137.0])
def test_clicks_are_at_the_tempo(bpm: float) -> None:
    duration_s = 5.0
    y = clicks(bpm=bpm, duration_s=duration_s, sr=SR)
    active = np.abs(y) > 0
    onsets = np.flatnonzero(active & ~np.concatenate([[False], active[:-1]]))
    expected = np.round(np.arange(0.0, duration_s, 60.0 / bpm) * SR)
    assert onsets.size == expected.size
    # The first sample of each click is sin(0) = 0, so activity starts one sample later.
    np.testing.assert_allclose(onsets, expected + 1, atol=1)
    between = y[onsets[0] + int(0.05 * SR) : onsets[1] - 1]
    assert np.all(between == 0)


def test_noises_depend_on_the_seed() -> None:
    for gen in (white_noise, pink_noise):
        a = gen(duration_s=1.0, sr=SR, seed=1)
        b = gen(duration_s=1.0, sr=SR, seed=2)
        assert abs(float(np.corrcoef(a, b)[0, 1])) < 0.1


def _band_power(y: np.ndarray, sr: int, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1.0 / sr)
    return float(power[(freqs >= lo) & (freqs < hi)].sum())


def test_white_noise_is_flat() -> None:
    y = white_noise(duration_s=4.0, sr=SR, seed=0)
    assert abs(float(np.mean(y))) < 0.01
    # Equal bandwidths carry equal power.
    ratio = _band_power(y, SR, 500, 1500) / _band_power(y, SR, 8000, 9000)
    assert 0.8 < ratio < 1.25


def test_pink_noise_has_equal_power_per_octave() -> None:
    y = pink_noise(duration_s=4.0, sr=SR, seed=0)
    assert abs(float(np.mean(y))) < 0.01
    octaves = [_band_power(y, SR, f, 2 * f) for f in (125, 250, 500, 1000, 2000, 4000)]
    assert max(octaves) / min(octaves) < 1.5
    # ... whereas equal bandwidths do not: -3 dB per octave.
    assert _band_power(y, SR, 500, 1500) / _band_power(y, SR, 8000, 9000) > 5


def test_music_same_seed_identical_different_seeds_different() -> None:
    a = music(duration_s=4.0, sr=SR, seed=7)
    np.testing.assert_array_equal(a, music(duration_s=4.0, sr=SR, seed=7))
    b = music(duration_s=4.0, sr=SR, seed=8)
    assert abs(float(np.corrcoef(a, b)[0, 1])) < 0.3


def test_music_is_music_like() -> None:
    y = music(duration_s=8.0, sr=SR, seed=5)
    # Bass and treble both present.
    assert _band_power(y, SR, 40, 250) > 0.01 * _band_power(y, SR, 0, SR / 2)
    assert _band_power(y, SR, 1000, 8000) > 0.01 * _band_power(y, SR, 0, SR / 2)
    # Notes and drums: many onsets (at least 80 bpm), where a steady tone has about none.
    assert librosa.onset.onset_detect(y=y, sr=SR).size >= 16
    assert librosa.onset.onset_detect(y=tone(440.0, duration_s=8.0, sr=SR), sr=SR).size < 4
    # Not just one spectrum: consecutive seconds differ.
    E, _ = logmel_embeddings(y, sr=SR)
    assert np.linalg.norm(np.diff(E, axis=0), axis=1).min() > 1.0


def test_music_songs_are_told_apart_by_nearest_neighbour() -> None:
    """1-s windows of 8 songs: a window's nearest neighbour is mostly from its own song."""
    seeds = range(8)
    embeddings, labels = [], []
    for seed in seeds:
        E, _ = logmel_embeddings(music(duration_s=8.0, sr=SR, seed=seed), sr=SR)
        embeddings.append(E)
        labels += [seed] * len(E)
    X = np.concatenate(embeddings).astype(np.float64)
    lab = np.array(labels)
    d = np.linalg.norm(X[:, None, :] - X[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    accuracy = float(np.mean(lab[np.argmin(d, axis=1)] == lab))
    assert accuracy > 0.7  # chance is 1/8


@pytest.mark.parametrize(
    "call",
    [
        lambda: tone(440.0, duration_s=0.0, sr=SR),
        lambda: tone(440.0, duration_s=1.0, sr=0),
        lambda: tone(440.0, duration_s=1.0, sr=cast(Any, 22050.0)),
        lambda: tone(SR / 2, duration_s=1.0, sr=SR),
        lambda: tone(-5.0, duration_s=1.0, sr=SR),
        lambda: tone(440.0, duration_s=1.0, sr=SR, amplitude=1.5),
        lambda: tone(440.0, duration_s=1e-6, sr=SR),
        lambda: chirp(100.0, 20000.0, duration_s=1.0, sr=SR),
        lambda: clicks(bpm=0.0, duration_s=1.0, sr=SR),
        lambda: white_noise(duration_s=-1.0, sr=SR, seed=0),
        lambda: pink_noise(duration_s=1.0, sr=SR, seed=0, amplitude=0.0),
        lambda: music(duration_s=float("nan"), sr=SR, seed=0),
    ],
)
def test_bad_parameters(call: Callable[[], np.ndarray]) -> None:
    with pytest.raises(ParameterError):
        call()
