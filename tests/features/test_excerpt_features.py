"""excerpt_features: every mode of a track from one spectrogram, window by window."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from audiolsh.audio import synth
from audiolsh.errors import ParameterError
from audiolsh.features import spectral_pattern as sp
from audiolsh.features.excerpts import (
    ALL_MODES,
    BLOCKS,
    MODES,
    NORMALISATION,
    excerpt_features,
    fit_standardizer,
    standardize,
)
from audiolsh.features.mfcc import mfcc_stats
from audiolsh.features.rhythm import rhythm_descriptor
from audiolsh.hashing import SetBatch

SR = 22050


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return synth.music(duration_s=32.0, sr=SR, seed=7)


def test_shapes_and_offsets(song: np.ndarray) -> None:
    f = excerpt_features(song, SR, window_s=10.0, hop_s=5.0, modes=ALL_MODES)
    assert set(f) == set(ALL_MODES) and set(NORMALISATION) == set(ALL_MODES)
    for mode in ("rhythm", "timbre", "beat_spectrum", "beat_spectrum_bands", "peaks"):
        np.testing.assert_allclose(f[mode].offsets_s, [0, 5, 10, 15, 20])
        assert len(f[mode]) == 5 and f[mode].window_s == 10.0
    assert f["rhythm"].X.shape == (5, 282)
    assert f["timbre"].X.shape == (5, 40 + sp.DIM)
    assert f["beat_spectrum"].X.shape == (5, 172)
    assert f["beat_spectrum_bands"].X.shape == (5, 128)
    assert isinstance(f["peaks"].X, SetBatch) and len(f["peaks"].X) == 5
    C = f["chroma"].X
    assert C.shape == (1 + len(song) // 4000, 12)
    np.testing.assert_allclose(np.diff(f["chroma"].offsets_s), 4000 / SR)
    for mode in ("rhythm", "timbre", "beat_spectrum", "beat_spectrum_bands", "chroma"):
        assert f[mode].X.dtype == np.float32 and np.isfinite(f[mode].X).all()


def test_windows_match_the_excerpt_on_its_own(song: np.ndarray) -> None:
    """The index slices windows from one spectrogram; a query clip is analysed alone."""
    f = excerpt_features(song, SR, hop_s=5.0)
    clip = song[10 * SR : 20 * SR]
    r = rhythm_descriptor(clip, SR)
    t = mfcc_stats(clip, SR)
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert cos(f["rhythm"].X[2], r) > 0.98
    np.testing.assert_allclose(f["timbre"].X[2, :40], t, rtol=0.05, atol=0.5)
    # the spectral pattern: blocks on the track's 5-frame grid and a floor from the track's peak
    pattern = sp.delta_spectral_pattern(clip, SR)
    sims = [cos(x, pattern) for x in f["timbre"].X[:, 40:]]
    assert int(np.argmax(sims)) == 2 and sims[2] > 0.995
    q = excerpt_features(clip, SR)
    assert len(q["rhythm"]) == 1
    inter = np.intersect1d(q["peaks"].X[0], f["peaks"].X[2]).size
    assert inter / len(q["peaks"].X[0]) > 0.8


def test_short_clip_gives_one_window_and_too_short_is_refused(song: np.ndarray) -> None:
    f = excerpt_features(song[: 4 * SR], SR, modes=MODES)
    assert len(f["rhythm"]) == 1 and f["rhythm"].window_s == pytest.approx(4.0)
    assert f["rhythm"].X.shape == (1, 282) and np.isfinite(f["rhythm"].X).all()
    with pytest.raises(ParameterError, match="shorter"):
        excerpt_features(song[: 2 * SR], SR)
    with pytest.raises(ParameterError, match="mode"):
        excerpt_features(song, SR, modes=["tempo"])


def test_other_sample_rates_are_resampled(song: np.ndarray) -> None:
    y44 = np.asarray(soxr.resample(song[: 10 * SR], SR, 44100), np.float32)
    a = excerpt_features(song[: 10 * SR], SR, modes=["timbre"])["timbre"].X[0]
    b = excerpt_features(y44, 44100, modes=["timbre"])["timbre"].X[0]
    c = excerpt_features(song[10 * SR : 20 * SR], SR, modes=["timbre"])["timbre"].X[0]
    assert np.linalg.norm(a - b) < 0.3 * np.linalg.norm(a - c)


def test_standardizer(rng: np.random.Generator) -> None:
    X = rng.random((100, 5)).astype(np.float32) * [1, 10, 100, 0, 1] + 3
    mean, std = fit_standardizer(X)
    Z = standardize(X, mean, std)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0), [1, 1, 1, 0, 1], atol=1e-4)
    _, std_c = fit_standardizer(X, scale=False)
    np.testing.assert_array_equal(std_c, 1.0)


def test_blocks_are_balanced_after_standardising(rng: np.random.Generator) -> None:
    """The timbre mode's 280 pattern values must not outweigh its 40 MFCC statistics."""
    blocks = BLOCKS["timbre"]
    X = rng.normal(size=(50, sum(blocks))).astype(np.float32) * 3 + 1
    mean, std = fit_standardizer(X)
    Z = standardize(X, mean, std, blocks)
    np.testing.assert_allclose(np.linalg.norm(Z[:, :40], axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(Z[:, 40:], axis=1), 1, rtol=1e-5)
    plain = standardize(X, mean, std)
    np.testing.assert_allclose(Z[:, :40] * np.linalg.norm(plain[:, :40], axis=1, keepdims=True),
                               plain[:, :40], rtol=1e-4, atol=1e-5)
    # stored rows, un-standardised, come back unchanged (a --track query re-prepares them)
    np.testing.assert_allclose(standardize(Z * std + mean, mean, std, blocks), Z, rtol=1e-4, atol=1e-5)
    with pytest.raises(ParameterError, match="blocks"):
        standardize(X, mean, std, (40, 10))


def test_three_minute_track_is_fast_enough() -> None:
    import time

    y = np.tile(synth.music(duration_s=30.0, sr=SR, seed=1), 6)
    excerpt_features(y[: 20 * SR], SR)
    t0 = time.perf_counter()
    excerpt_features(y, SR)
    assert time.perf_counter() - t0 < 5.0  # well under 1 s on an idle core; generous on a busy CI


def test_silence_gives_finite_features() -> None:
    f = excerpt_features(np.zeros(12 * SR, np.float32), SR, modes=ALL_MODES)
    for mode in ("rhythm", "timbre", "chroma", "beat_spectrum", "beat_spectrum_bands"):
        assert np.isfinite(f[mode].X).all(), mode
    assert len(f["peaks"].X.elements) == 0
