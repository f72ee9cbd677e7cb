"""Foote's beat spectrum and S2's band variant."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.audio import synth
from audiolsh.errors import ParameterError
from audiolsh.features.beat_spectrum import beat_spectra, beat_spectrum, beat_spectrum_bands
from audiolsh.features.spectral import HOP_LENGTH, log_power, mel_power

SR = 22050
FRAME_S = HOP_LENGTH / SR


def first_peak_s(B: np.ndarray) -> float:
    """Lag (s) of the first local maximum after lag 0 that reaches half the largest one."""
    inner = B[1:-1]
    is_peak = (inner > B[:-2]) & (inner >= B[2:])
    lags = np.flatnonzero(is_peak) + 1
    strong = lags[B[lags] >= 0.5 * B[1:].max()]
    return float(strong[0] * FRAME_S)


@pytest.mark.parametrize("form", ["diagonal", "autocorrelation"])
def test_click_track_at_120_bpm_peaks_at_half_a_second(form: str) -> None:
    y = synth.clicks(bpm=120, duration_s=10.0, sr=SR)
    B = beat_spectrum(y, SR, form=form)
    assert B.shape == (round(4.0 / FRAME_S) + 1,)
    assert B[0] == pytest.approx(1.0, abs=1e-5)
    assert first_peak_s(B) == pytest.approx(0.5, abs=1.5 * FRAME_S)
    # Off the beat (0.25 s, 0.75 s) the sound does not repeat; on it (0.5, 1.0 s) it does.
    at = lambda s: B[round(s / FRAME_S)]  # noqa: E731
    assert max(at(0.25), at(0.75)) < 0.3 < 0.6 < min(at(1.0), B[21:24].max())


def test_other_tempo_moves_the_peak() -> None:
    B = beat_spectrum(synth.clicks(bpm=90, duration_s=10.0, sr=SR), SR)
    assert first_peak_s(B) == pytest.approx(60 / 90, abs=1.5 * FRAME_S)


def test_diagonal_form_is_the_mean_of_each_diagonal_of_the_cosine_matrix(rng: np.random.Generator) -> None:
    L = rng.standard_normal((16, 40)).astype(np.float32) * 10 - 50
    got = beat_spectra(L[None], n_lags=12)[0]
    V = L - L.mean(axis=1, keepdims=True)
    V /= np.linalg.norm(V, axis=0, keepdims=True)
    S = V.T @ V
    want = [np.mean(np.diagonal(S, offset=lag)) for lag in range(12)]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_precomputed_spectrogram_gives_the_same_answer() -> None:
    y = synth.music(duration_s=6.0, sr=SR, seed=3)
    np.testing.assert_allclose(beat_spectrum(y, SR), beat_spectrum(S=mel_power(y, SR), sr=SR), atol=1e-6)


def test_band_variant_compares_bands_not_frames(rng: np.random.Generator) -> None:
    S = rng.random((12, 50)).astype(np.float32) + 0.01
    got = beat_spectrum_bands(S=S)
    M = log_power(S) - log_power(S).max()
    M = np.maximum(M, -80.0)
    V = M / np.linalg.norm(M, axis=1, keepdims=True)
    G = V @ V.T
    assert got.shape == (12,)
    np.testing.assert_allclose(got, [np.mean(np.diagonal(G, offset=d)) for d in range(12)], atol=1e-5)


def test_bad_input() -> None:
    with pytest.raises(ParameterError):
        beat_spectrum()
    with pytest.raises(ParameterError):
        beat_spectrum(np.zeros(SR, np.float32), SR, form="matrix")
    with pytest.raises(ParameterError):
        beat_spectrum(np.zeros((2, SR), np.float32), SR)
