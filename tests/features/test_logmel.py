"""Per-second log-mel embeddings: shapes, offsets, exact aggregation, and useful distances."""

from __future__ import annotations

from typing import Any

import librosa
import numpy as np
import pytest

from audiolsh.audio.synth import music, pink_noise, tone, white_noise
from audiolsh.errors import ParameterError
from audiolsh.features import EMBEDDING_DIM, logmel_embeddings

SR = 22050


def _reference(
    y: np.ndarray, sr: int, *, n_mels: int, window_s: float, hop_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Slow, obvious version: loop over windows of frames centred in [start, start + window)."""
    S = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=n_mels, pad_mode="reflect"
    )
    L = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None).astype(np.float64)
    centres = np.arange(L.shape[1]) * 512 / sr
    rows, offsets = [], []
    start = 0.0
    while start + window_s <= y.size / sr + 1e-9:
        inside = (centres >= start - 1e-9) & (centres < start + window_s - 1e-9)
        frames = L[:, inside]
        rows.append(np.concatenate([frames.mean(axis=1), frames.std(axis=1)]))
        offsets.append(start)
        start = len(offsets) * hop_s
    return np.array(rows), np.array(offsets)


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return music(duration_s=10.0, sr=SR, seed=11)


def test_default_shape_dtype_and_offsets(song: np.ndarray) -> None:
    E, offsets = logmel_embeddings(song, sr=SR)
    assert EMBEDDING_DIM == 128
    assert E.shape == (10, EMBEDDING_DIM)
    assert E.dtype == np.float32
    assert offsets.dtype == np.float64
    np.testing.assert_array_equal(offsets, np.arange(10.0))
    assert np.all(np.isfinite(E))
    assert np.all(E[:, 64:] >= 0)  # standard deviations


@pytest.mark.parametrize(
    ("duration_s", "window_s", "hop_s", "n_windows"),
    [(10.0, 1.0, 1.0, 10), (10.0, 1.0, 0.5, 19), (2.5, 1.0, 1.0, 2), (1.0, 1.0, 1.0, 1),
     (10.0, 2.0, 1.0, 9), (3.0, 0.5, 0.25, 11)],
)  # fmt: skip
def test_window_count_and_offsets(
    song: np.ndarray, duration_s: float, window_s: float, hop_s: float, n_windows: int
) -> None:
    y = song[: round(duration_s * SR)]
    E, offsets = logmel_embeddings(y, sr=SR, window_s=window_s, hop_s=hop_s)
    assert E.shape == (n_windows, 128)
    np.testing.assert_allclose(offsets, np.arange(n_windows) * hop_s)
    assert offsets[-1] + window_s <= duration_s + 1e-9


def test_n_mels_sets_dimension(song: np.ndarray) -> None:
    E, _ = logmel_embeddings(song, sr=SR, n_mels=40)
    assert E.shape == (10, 80)


@pytest.mark.parametrize(("sr", "window_s", "hop_s"), [(22050, 1.0, 1.0), (16000, 1.0, 0.5),
                                                       (44100, 0.75, 0.3)])  # fmt: skip
def test_matches_per_window_loop(sr: int, window_s: float, hop_s: float) -> None:
    y = music(duration_s=5.0, sr=sr, seed=2)
    E, offsets = logmel_embeddings(y, sr=sr, n_mels=32, window_s=window_s, hop_s=hop_s)
    ref, ref_offsets = _reference(y, sr, n_mels=32, window_s=window_s, hop_s=hop_s)
    np.testing.assert_allclose(offsets, ref_offsets)
    np.testing.assert_allclose(E, ref, atol=1e-3)


def test_deterministic(song: np.ndarray) -> None:
    a, oa = logmel_embeddings(song, sr=SR)
    b, ob = logmel_embeddings(song.copy(), sr=SR)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(oa, ob)


def test_tone_and_noise_far_apart_two_tone_excerpts_near() -> None:
    t = tone(440.0, duration_s=6.0, sr=SR)
    noise = white_noise(duration_s=3.0, sr=SR, seed=0)
    e_tone, _ = logmel_embeddings(t[: 3 * SR], sr=SR)
    e_tone2, _ = logmel_embeddings(t[round(2.37 * SR) : round(5.37 * SR)], sr=SR)  # other phase
    e_noise, _ = logmel_embeddings(noise, sr=SR)
    near = np.linalg.norm(e_tone[1] - e_tone2[1])
    far = np.linalg.norm(e_tone[1] - e_noise[1])
    assert far > 100.0
    assert near < 0.05 * far
    # Two different noises of the same colour are near too, another colour is not.
    e_white2, _ = logmel_embeddings(white_noise(duration_s=3.0, sr=SR, seed=1), sr=SR)
    e_pink, _ = logmel_embeddings(pink_noise(duration_s=3.0, sr=SR, seed=0), sr=SR)
    assert np.linalg.norm(e_noise[1] - e_white2[1]) < 0.2 * np.linalg.norm(e_noise[1] - e_pink[1])


def test_excerpt_windows_find_their_place_in_the_song(song: np.ndarray) -> None:
    """k-NN sanity: each window of an excerpt starting at 3 s is nearest to the aligned window."""
    full, _ = logmel_embeddings(song, sr=SR)
    part, offsets = logmel_embeddings(song[3 * SR : 8 * SR], sr=SR)
    d = np.linalg.norm(part[:, None, :] - full[None, :, :], axis=2)
    np.testing.assert_array_equal(np.argmin(d, axis=1), np.arange(3, 8))
    np.testing.assert_array_equal(offsets + 3.0, np.arange(3.0, 8.0))


def test_louder_signal_shifts_the_mean_only() -> None:
    # Broadband, so that no band of the quiet version reaches the -100 dB floor.
    y = pink_noise(duration_s=3.0, sr=SR, seed=3)
    E, _ = logmel_embeddings(y, sr=SR)
    E_quiet, _ = logmel_embeddings(y * 0.1, sr=SR)  # -20 dB
    np.testing.assert_allclose(E[:, :64] - E_quiet[:, :64], 20.0, atol=0.05)
    np.testing.assert_allclose(E[:, 64:], E_quiet[:, 64:], atol=0.05)


def test_digital_silence_is_finite() -> None:
    E, _ = logmel_embeddings(np.zeros(2 * SR, dtype=np.float32), sr=SR)
    assert np.all(np.isfinite(E))
    np.testing.assert_allclose(E[:, :64], -100.0)


def test_shorter_than_one_window_names_the_duration() -> None:
    with pytest.raises(ParameterError, match=r"0\.500 s"):
        logmel_embeddings(tone(440.0, duration_s=0.5, sr=SR), sr=SR)
    with pytest.raises(ParameterError, match=r"1\.500 s"):
        logmel_embeddings(tone(440.0, duration_s=1.5, sr=SR), sr=SR, window_s=2.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sr": 0},
        {"sr": 22050.0},
        {"n_mels": 0},
        {"n_fft": -1},
        {"hop_length": 0},
        {"window_s": 0.0},
        {"window_s": 0.01},  # shorter than one spectrogram hop
        {"hop_s": 0.0},
        {"hop_s": float("inf")},
    ],
)
def test_bad_parameters(kwargs: dict[str, Any]) -> None:
    y = tone(440.0, duration_s=2.0, sr=SR)
    args: dict[str, Any] = {"sr": SR, **kwargs}
    with pytest.raises(ParameterError):
        logmel_embeddings(y, **args)


def test_bad_signals() -> None:
    y = tone(440.0, duration_s=2.0, sr=SR)
    with pytest.raises(ParameterError, match="1-D"):
        logmel_embeddings(np.stack([y, y]), sr=SR)
    with pytest.raises(ParameterError, match="floating"):
        logmel_embeddings((y * 32767).astype(np.int16), sr=SR)
    bad = y.copy()
    bad[10] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        logmel_embeddings(bad, sr=SR)
