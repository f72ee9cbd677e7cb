"""The tempo-robust rhythm descriptor."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from audiolsh.audio import synth
from audiolsh.features.beat_spectrum import beat_spectrum
from audiolsh.features.rhythm import log_lag_filters, onset_bands, rhythm_descriptor

SR = 22050


def cos_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def songs() -> dict[int, np.ndarray]:
    return {seed: synth.music(duration_s=12.0, sr=SR, seed=seed) for seed in range(6)}


def test_tempo_scaled_copy_stays_near(songs: dict[int, np.ndarray]) -> None:
    y = songs[0][: 10 * SR]
    ref = rhythm_descriptor(y, SR)
    for rate in (0.95, 1.05):
        scaled = librosa.effects.time_stretch(songs[0], rate=rate)[: 10 * SR]
        d_scaled = cos_dist(ref, rhythm_descriptor(scaled, SR))
        d_others = [cos_dist(ref, rhythm_descriptor(songs[s][: 10 * SR], SR)) for s in range(1, 6)]
        assert d_scaled < 0.8 * min(d_others), (rate, d_scaled, d_others)


def test_tempo_robust_where_the_beat_spectrum_is_not() -> None:
    """Click tracks 5 % apart: near in the rhythm descriptor, far apart in the beat spectrum."""
    a, b, c = (synth.clicks(bpm=bpm, duration_s=10.0, sr=SR) for bpm in (120, 126, 80))
    ra, rb, rc = (rhythm_descriptor(x, SR) for x in (a, b, c))
    assert cos_dist(ra, rb) < 0.4 * cos_dist(ra, rc)
    ba, bb, bc = (beat_spectrum(x, SR)[1:] for x in (a, b, c))
    assert cos_dist(ba, bb) > cos_dist(ba, bc)  # 126 bpm looks farther from 120 than 80 does


def test_shape_and_onsets() -> None:
    y = synth.clicks(bpm=120, duration_s=10.0, sr=SR)
    r = rhythm_descriptor(y, SR)
    assert r.shape == (282,) and r.dtype == np.float32 and np.isfinite(r).all()
    # Onsets: a rise at every click, nothing in between.
    L = 10 * np.log10(np.maximum(librosa.feature.melspectrogram(y=y, sr=SR, pad_mode="constant"), 1e-10))
    onsets = onset_bands(L)
    assert onsets.shape == (6, L.shape[1])
    env = onsets.sum(axis=0)
    frames = np.flatnonzero(env > 0.5 * env.max())
    assert np.allclose(np.diff(frames[np.r_[True, np.diff(frames) > 3]]) * 512 / SR, 0.5, atol=0.05)


def test_log_lag_filters_are_weighted_means() -> None:
    W = log_lag_filters(173, 512 / SR)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, rtol=1e-5)
    centres = (W * np.arange(173)).sum(axis=1) * 512 / SR
    assert np.all(np.diff(centres) >= 0)
    ratio = centres[24:44][1:] / centres[24:44][:-1]  # past 0.6 s the hops resolve 1/8 octave
    np.testing.assert_allclose(ratio, 2 ** (1 / 8), rtol=0.03)
