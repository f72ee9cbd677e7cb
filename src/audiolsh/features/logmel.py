"""Per-second log-mel embeddings for k-NN search over music.

The log-mel spectrogram is computed once for the whole signal; each window of ``window_s``
seconds is summarised by the mean and the standard deviation of every mel band, so with
64 bands an embedding has 128 dimensions (the size of AudioSet's VGGish embeddings).
"""

from __future__ import annotations

import logging
import math

import librosa
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features.spectral import check_signal

logger = logging.getLogger(__name__)

__all__ = ["EMBEDDING_DIM", "logmel_embeddings"]

EMBEDDING_DIM = 128
"""Dimension of :func:`logmel_embeddings` with the default ``n_mels=64``."""

_AMIN = 1e-10  # power floor: -100 dB
_EPS = 1e-9


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")


def logmel_embeddings(
    y: np.ndarray,
    *,
    sr: int,
    n_mels: int = 64,
    n_fft: int = 2048,
    hop_length: int = 512,
    window_s: float = 1.0,
    hop_s: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a signal as one vector per window: mean and std of its log-mel spectrogram.

    Spectrogram frames are centred (frame ``j`` is centred at ``j * hop_length / sr`` s);
    window ``i`` covers ``[i * hop_s, i * hop_s + window_s)`` seconds and aggregates the
    frames centred inside it. Only whole windows are returned.

    Parameters
    ----------
    y : np.ndarray
        Mono signal, shape (n,), float.
    sr : int
        Sample rate in Hz.
    n_mels : int
        Number of mel bands; the embedding has ``2 * n_mels`` dimensions.
    n_fft : int
        FFT size in samples.
    hop_length : int
        Spectrogram hop in samples.
    window_s : float
        Length of an embedding window in seconds (at least one spectrogram hop).
    hop_s : float
        Step between embedding windows in seconds.

    Returns
    -------
    E : np.ndarray
        float32, shape (n_windows, 2 * n_mels): mean log-power (dB) of each band, then its
        standard deviation (dB), over the window.
    offsets_s : np.ndarray
        float64, shape (n_windows,): start time of each window in seconds.

    Raises
    ------
    ParameterError
        Bad parameters, a non-1-D or non-finite signal, or a signal shorter than one window.
    """
    _positive_int("sr", sr)
    _positive_int("n_mels", n_mels)
    _positive_int("n_fft", n_fft)
    _positive_int("hop_length", hop_length)
    if not (math.isfinite(window_s) and window_s * sr >= hop_length):
        raise ParameterError(
            f"window_s must be at least one hop ({hop_length / sr:.4f} s at sr={sr}), "
            f"got {window_s}"
        )
    if not (math.isfinite(hop_s) and hop_s > 0):
        raise ParameterError(f"hop_s must be > 0 seconds, got {hop_s}")
    y = check_signal(y, sr)
    duration = y.size / sr
    if duration + _EPS < window_s:
        raise ParameterError(
            f"signal of {duration:.3f} s is shorter than one embedding window ({window_s} s)"
        )

    S = librosa.feature.melspectrogram(
        y=y.astype(np.float32, copy=False),
        sr=sr,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        center=True,
        pad_mode="reflect" if y.size > 1 else "constant",
        power=2.0,
    )
    L = librosa.power_to_db(S, ref=1.0, amin=_AMIN, top_db=None).astype(np.float64)
    n_frames = L.shape[1]

    n_windows = math.floor((duration - window_s) / hop_s + _EPS) + 1
    offsets_s = np.arange(n_windows, dtype=np.float64) * hop_s
    frames_per_s = sr / hop_length
    # Frames centred in [start, end): first index >= start * fps, first index >= end * fps.
    first = np.ceil(offsets_s * frames_per_s - _EPS).astype(np.int64)
    stop = np.ceil((offsets_s + window_s) * frames_per_s - _EPS).astype(np.int64)
    first = np.clip(first, 0, n_frames - 1)
    stop = np.clip(stop, first + 1, n_frames)
    count = (stop - first).astype(np.float64)

    # Windowed sums via cumulative sums (centred per band to limit cancellation).
    centred = L - L.mean(axis=1, keepdims=True)
    zeros = np.zeros((n_mels, 1))
    c1 = np.concatenate([zeros, np.cumsum(centred, axis=1)], axis=1)
    c2 = np.concatenate([zeros, np.cumsum(centred**2, axis=1)], axis=1)
    s1 = c1[:, stop] - c1[:, first]
    s2 = c2[:, stop] - c2[:, first]
    mean_c = s1 / count
    var = np.maximum(s2 / count - mean_c**2, 0.0)
    mean = mean_c + L.mean(axis=1, keepdims=True)

    E = np.concatenate([mean.T, np.sqrt(var).T], axis=1).astype(np.float32)
    logger.debug(
        "logmel: %.2f s -> %d windows of %d frames (%d dims)",
        duration, n_windows, int(count.max()), E.shape[1],
    )  # fmt: skip
    return E, offsets_s
