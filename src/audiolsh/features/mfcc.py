"""Timbre (S3): statistics of MFCCs over an excerpt or a whole track.

MFCCs (the DCT of the log-mel spectrum) describe the spectral envelope of each frame: which
instruments and how bright. An excerpt (or a track) is summarised by the mean and the
standard deviation of each of the first ``n_mfcc`` coefficients, 2 x ``n_mfcc`` values. S3
used the mean alone; the spread separates a steady pad from a plucked instrument of the same
average colour. The coefficients have very different scales (c0 is loudness in dB), so the
index standardises each dimension with the collection's mean and std before cosine.
"""

from __future__ import annotations

import logging

import librosa
import numpy as np

from audiolsh.features.spectral import FEATURE_SR, HOP_LENGTH, N_FFT, N_MELS, log_power, mel_input

logger = logging.getLogger(__name__)

__all__ = ["N_MFCC", "mfcc_frames", "mfcc_stats", "window_stats"]

N_MFCC = 20
TOP_DB = 60.0
"""Bands more than this far below the frame's loudest are floored: a codec's low-pass (MP3 cuts
the top octave) then changes the coefficients little, where the raw -100 dB floor would swing
them. Per frame, so that a window gives the same coefficients within its track and alone."""


def mfcc_frames(L: np.ndarray, *, n_mfcc: int = N_MFCC, top_db: float = TOP_DB) -> np.ndarray:
    """MFCCs of a log-mel (dB) spectrogram (n_mels, n_frames) -> (n_mfcc, n_frames) float32."""
    L = np.asarray(L)
    L = np.maximum(L, L.max(axis=0, keepdims=True, initial=-np.inf) - top_db)
    return librosa.feature.mfcc(S=L, n_mfcc=n_mfcc).astype(np.float32)  # type: ignore[no-any-return]


def window_stats(C: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Mean and std of the coefficients over frame ranges ``[first, stop)``.

    Parameters
    ----------
    C : np.ndarray
        (n_mfcc, n_frames) MFCCs of a whole track.
    first, stop : np.ndarray
        (n_windows,) frame ranges, ``stop > first``.

    Returns
    -------
    np.ndarray
        (n_windows, 2 * n_mfcc) float32: the means of the coefficients, then their stds.
    """
    F = np.asarray(C, dtype=np.float64)
    centre = F.mean(axis=1, keepdims=True)  # cumulative sums around the mean: less cancellation
    Fc = F - centre
    zeros = np.zeros((F.shape[0], 1))
    c1 = np.concatenate([zeros, np.cumsum(Fc, axis=1)], axis=1)
    c2 = np.concatenate([zeros, np.cumsum(Fc * Fc, axis=1)], axis=1)
    count = (stop - first).astype(np.float64)
    m = (c1[:, stop] - c1[:, first]) / count
    var = np.maximum((c2[:, stop] - c2[:, first]) / count - m * m, 0.0)
    return np.concatenate([(m + centre).T, np.sqrt(var).T], axis=1).astype(np.float32)


def mfcc_stats(
    y: np.ndarray | None = None,
    sr: int = FEATURE_SR,
    *,
    S: np.ndarray | None = None,
    n_mfcc: int = N_MFCC,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    n_mels: int = N_MELS,
) -> np.ndarray:
    """Timbre of a whole signal (an excerpt or a track): MFCC means and stds.

    Parameters
    ----------
    y : np.ndarray or None
        Mono signal; ignored when ``S`` is given.
    sr : int
        Sample rate in Hz.
    S : np.ndarray or None
        Precomputed mel power spectrogram (n_mels, n_frames).
    n_mfcc : int
        Coefficients kept (c0 included).

    Returns
    -------
    np.ndarray
        (2 * n_mfcc,) float32 (40 values with the defaults), see :func:`window_stats`.
    """
    S = mel_input(y, sr, S, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, min_frames=1)
    C = mfcc_frames(log_power(S), n_mfcc=n_mfcc)
    return window_stats(C, np.array([0]), np.array([C.shape[1]]))[0]
