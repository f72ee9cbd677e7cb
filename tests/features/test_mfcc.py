"""Timbre: MFCC statistics."""

from __future__ import annotations

import io

import librosa
import numpy as np
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.features.mfcc import mfcc_frames, mfcc_stats, window_stats
from audiolsh.features.spectral import log_power, mel_power

SR = 22050


def through_mp3(y: np.ndarray, sr: int) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="MP3")
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return out[: len(y)]


def test_stats_are_mean_and_std_of_the_coefficients() -> None:
    y = synth.music(duration_s=5.0, sr=SR, seed=1)
    C = mfcc_frames(log_power(mel_power(y, SR)))
    assert C.shape[0] == 20
    got = mfcc_stats(y, SR)
    assert got.shape == (40,)
    np.testing.assert_allclose(got[:20], C.mean(axis=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got[20:], C.std(axis=1), rtol=1e-4, atol=1e-3)
    W = window_stats(C, np.array([0, 50]), np.array([100, 150]))
    np.testing.assert_allclose(W[1, :20], C[:, 50:150].mean(axis=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(W[1, 20:], C[:, 50:150].std(axis=1), rtol=1e-4, atol=1e-3)


def test_same_passage_through_mp3_stays_near() -> None:
    songs = [synth.music(duration_s=8.0, sr=SR, seed=s) for s in range(5)]
    X = np.stack([mfcc_stats(y, SR) for y in songs])
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    z = lambda v: (v - mean) / std  # noqa: E731
    ref = z(X[0])
    d_mp3 = np.linalg.norm(ref - z(mfcc_stats(through_mp3(songs[0], SR), SR)))
    d_others = [np.linalg.norm(ref - z(x)) for x in X[1:]]
    assert d_mp3 < 0.5 * min(d_others)


def test_brighter_sound_raises_the_first_coefficients_spread() -> None:
    dark = synth.tone(200.0, duration_s=3.0, sr=SR)
    bright = synth.white_noise(duration_s=3.0, sr=SR, seed=0)
    # c1 (spectral tilt) is large for a low tone and small for flat noise.
    assert mfcc_stats(dark, SR)[1] > mfcc_stats(bright, SR)[1]
    assert librosa.feature.mfcc(y=dark, sr=SR).shape[0] == 20


def test_a_quiet_passage_has_the_same_stats_in_its_track_and_alone() -> None:
    """The floor is per frame: a window sliced from a loud track matches the clip analysed alone."""
    song = synth.music(duration_s=20.0, sr=SR, seed=4)
    track = np.concatenate([song[: 10 * SR] * 0.003, song[10 * SR :]]).astype(np.float32)  # -50 dB
    C = mfcc_frames(log_power(mel_power(track, SR)))
    alone = mfcc_frames(log_power(mel_power(track[: 10 * SR], SR)))
    # frames away from the clip's edges, where the STFT sees the track's next notes or padding
    first, stop = np.array([4]), np.array([alone.shape[1] - 4])
    np.testing.assert_allclose(window_stats(C, first, stop), window_stats(alone, first, stop),
                               rtol=1e-3, atol=0.05)
