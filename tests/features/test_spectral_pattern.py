"""Texture: the delta spectral pattern (sorted positive band changes, block by block)."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.audio import synth
from audiolsh.errors import ParameterError
from audiolsh.evaluation.distortions import mp3
from audiolsh.features import spectral_pattern as sp
from audiolsh.features.excerpts import fit_standardizer
from audiolsh.features.spectral import log_power, mel_basis, power_stft

SR = 22050


def band_of(freq_hz: float) -> int:
    basis = mel_basis(SR, 2048, sp.N_BANDS, sp.FMAX_HZ)
    return int(np.argmax(basis[:, round(freq_hz * 2048 / SR)]))


def pattern(y: np.ndarray) -> np.ndarray:
    return sp.delta_spectral_pattern(y, SR).reshape(sp.N_BANDS, len(sp.ORDER))


def test_profiles_are_sorted_positive_changes_of_each_block() -> None:
    rng = np.random.default_rng(0)
    B = rng.uniform(1e-3, 1.0, (sp.N_BANDS, 200)).astype(np.float32)
    B[:, 60:120] *= 1e-9  # 90 dB quieter: blocks wholly inside are floored at their own peak
    prof = sp.block_profiles(B)
    assert prof.shape == ((200 - sp.DELTA - sp.BLOCK) // sp.BLOCK_HOP + 1, sp.DIM)
    for b, band in ((2, 11), (14, 3), (8, 30)):
        L = log_power(B[:, b * sp.BLOCK_HOP : b * sp.BLOCK_HOP + sp.BLOCK + sp.DELTA])
        L = np.maximum(L, L.max() - sp.TOP_DB)
        rises = np.sort(np.maximum(L[:, sp.DELTA :] - L[:, : -sp.DELTA], 0)[band])
        np.testing.assert_allclose(prof[b].reshape(sp.N_BANDS, -1)[band], rises[list(sp.ORDER)], rtol=1e-5)
    # the quiet stretch keeps its own detail instead of flattening under the loud part's floor
    assert prof[14].max() > 5.0
    with pytest.raises(ParameterError, match="frames"):
        sp.block_profiles(B[:, : sp.DELTA + sp.BLOCK - 1])


def test_a_quiet_passage_has_the_same_pattern_in_its_track_and_alone() -> None:
    """The library slices windows out of a whole track; a query clip is analysed on its own."""
    song = synth.music(duration_s=30.0, sr=SR, seed=4)
    track = np.concatenate([song[: 10 * SR] * 0.003, song[10 * SR :]]).astype(np.float32)  # -50 dB
    prof = sp.block_profiles(sp.band_power(power_stft(track)))
    n = power_stft(track[: 10 * SR]).shape[1]
    inside = sp.window_patterns(prof, np.array([0]), np.array([n]))[0]
    alone = sp.delta_spectral_pattern(track[: 10 * SR], SR)
    np.testing.assert_allclose(inside, alone, rtol=1e-3, atol=0.05)


def test_window_patterns_average_the_blocks_inside_each_window() -> None:
    rng = np.random.default_rng(1)
    prof = rng.normal(size=(60, sp.DIM)).astype(np.float32)
    first, stop = np.array([0, 12, 100]), np.array([100, 90, 130])
    W = sp.window_patterns(prof, first, stop)
    # blocks starting at or after `first` whose 25 changes (+3 frames of delta) end by `stop`
    np.testing.assert_allclose(W[0], prof[0:15].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(W[1], prof[3:13].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(W[2], prof[20:21].mean(axis=0), rtol=1e-5, atol=1e-6)  # one block at least


def test_notes_show_in_their_band_and_a_steady_tone_does_not() -> None:
    hiss = synth.white_noise(duration_s=6.0, sr=SR, seed=0, amplitude=0.01)
    tone = synth.tone(1000.0, duration_s=6.0, sr=SR) + hiss
    clicks = synth.clicks(bpm=120, duration_s=6.0, sr=SR, click_freq_hz=1000.0, click_s=0.1)
    k = band_of(1000.0)
    p_tone, p_clicks = pattern(tone.astype(np.float32)), pattern(clicks)
    assert p_clicks[k, -1] > 10.0  # the largest change per block: the attack, tens of dB
    assert p_tone[k, -1] < 0.2 * p_clicks[k, -1]
    assert p_clicks[band_of(8000.0), -1] < 0.5 * p_clicks[k, -1]


def test_denser_notes_raise_the_lower_order_statistics() -> None:
    slow = pattern(synth.clicks(bpm=60, duration_s=8.0, sr=SR, click_s=0.1))
    fast = pattern(synth.clicks(bpm=300, duration_s=8.0, sr=SR, click_s=0.1))
    k = band_of(1000.0)
    # at most one attack per 0.58-s block at 60 bpm, about three at 300 bpm: the third largest
    # change of a block is an attack only when the notes are dense
    assert fast[k, -3] > 3 * slow[k, -3] + 1.0


def test_same_passage_through_mp3_stays_near() -> None:
    songs = [synth.music(duration_s=8.0, sr=SR, seed=s) for s in range(5)]
    X = np.stack([sp.delta_spectral_pattern(y, SR) for y in songs])
    mean, std = fit_standardizer(X)
    z = lambda v: (v - mean) / std  # noqa: E731
    ref = z(X[0])
    nearest_other = min(np.linalg.norm(ref - z(x)) for x in X[1:])
    d = {kbps: np.linalg.norm(ref - z(sp.delta_spectral_pattern(mp3(songs[0], SR, bitrate_kbps=kbps), SR)))
         for kbps in (32, 128)}
    assert d[128] < 0.5 * nearest_other
    assert d[32] < nearest_other  # the 8-kHz limit keeps the codec's low-pass out of the pattern


def test_a_given_power_spectrogram_gives_the_same_pattern() -> None:
    y = synth.music(duration_s=5.0, sr=SR, seed=3)
    np.testing.assert_allclose(sp.delta_spectral_pattern(y, SR), sp.delta_spectral_pattern(S=power_stft(y)),
                               rtol=1e-5, atol=1e-5)
