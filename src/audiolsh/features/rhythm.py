"""A tempo-robust rhythm descriptor: multi-band onset autocorrelation on a log-lag axis.

Why this and not the beat spectrum
----------------------------------
The beat spectrum compares whole spectral frames, so sustained harmony dominates it and it
changes whenever the chords do; its linear lag axis also moves every peak by a different
number of bins when the tempo changes, so two performances 5 % apart look unrelated.

This descriptor keeps only what rhythm is made of, *when notes start*, and keeps it per
register (a kick drum and a hi-hat pattern are different rhythms even at one tempo):

1. Onset strength per band: the log-mel spectrogram is split into ``n_bands`` groups of mel
   bands; in each, the half-wave rectified frame-to-frame rise in dB (spectral flux).
2. Per window and band, the autocorrelation of the mean-removed onset envelope, normalised to
   1 at lag 0, for lags up to ``max_lag_s`` (4 s, two bars at 120 bpm).
3. The lag axis is resampled to log-lag by a bank of triangular filters, ``bins_per_octave``
   per octave from ``min_lag_s``. A tempo change by a factor ``a`` is then a shift of
   ``log2(a)`` octaves (5 % is 0.07 octaves, under one bin at 8 bins per octave), and the
   triangles, wider at long lags, average away what the shift leaves, so a tempo-scaled copy
   stays near. Periodicity at any tempo still shows as peaks at the same relative positions.
4. Each band's onset energy (the log of its mean onset strength, relative to the window's
   mean over bands) is appended: how strongly each register carries the rhythm.

The result is one vector per window, ``n_bands * (n_log_lags + 1)`` values; the index
standardises it with the collection's mean and std and compares by cosine.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
import scipy.fft

from audiolsh.errors import ParameterError
from audiolsh.features.spectral import FEATURE_SR, HOP_LENGTH, N_FFT, N_MELS, log_power, mel_input

logger = logging.getLogger(__name__)

__all__ = ["N_BANDS", "log_lag_filters", "onset_bands", "rhythm_descriptor", "rhythm_descriptors"]

N_BANDS = 6
MIN_LAG_S = 0.08
MAX_LAG_S = 4.0
BINS_PER_OCTAVE = 8


def onset_bands(L: np.ndarray, *, n_bands: int = N_BANDS) -> np.ndarray:
    """Onset strength of ``n_bands`` groups of mel bands.

    Parameters
    ----------
    L : np.ndarray
        (..., n_mels, n_frames) log-mel spectrogram in dB.

    Returns
    -------
    np.ndarray
        (..., n_bands, n_frames) float32: mean over each group's mel bands of the half-wave
        rectified rise in dB since the previous frame (0 for the first frame).
    """
    L = np.asarray(L, dtype=np.float32)
    n_mels = L.shape[-2]
    if not 1 <= n_bands <= n_mels:
        raise ParameterError(f"n_bands must be in [1, {n_mels}], got {n_bands}")
    flux = np.maximum(np.diff(L, axis=-1, prepend=L[..., :1]), 0.0)
    edges = np.linspace(0, n_mels, n_bands + 1).round().astype(np.int64)
    sums = np.add.reduceat(flux, edges[:-1], axis=-2)
    return (sums / np.diff(edges)[:, None]).astype(np.float32)


@lru_cache(maxsize=16)
def log_lag_filters(
    n_lags: int, frame_s: float, *, min_lag_s: float = MIN_LAG_S, bins_per_octave: int = BINS_PER_OCTAVE
) -> np.ndarray:
    """Triangular filters from linear lags (0 .. n_lags-1 hops) to a log-lag axis.

    Centres at ``min_lag_s * 2 ** (k / bins_per_octave)`` up to the longest lag; each triangle
    reaches its neighbours' centres and is normalised to unit sum (a weighted mean of lags).

    Returns
    -------
    np.ndarray
        (n_log_lags, n_lags) float32, read-only (cached).
    """
    max_lag_s = (n_lags - 1) * frame_s
    if not (0 < min_lag_s < max_lag_s):
        raise ParameterError(f"min_lag_s must be in (0, {max_lag_s:g}) s, got {min_lag_s}")
    n_log = math.floor(bins_per_octave * math.log2(max_lag_s / min_lag_s)) + 1
    centres = np.log2(min_lag_s) + np.arange(-1, n_log + 1) / bins_per_octave  # with the outer edges
    lags = np.log2(np.maximum(np.arange(n_lags) * frame_s, 1e-9))
    lo, mid, hi = centres[:-2, None], centres[1:-1, None], centres[2:, None]
    W = np.maximum(0.0, np.minimum((lags - lo) / (mid - lo), (hi - lags) / (hi - mid)))
    # Short lags fall between two hops: give each filter at least its nearest lag.
    nearest = np.clip(np.round(2.0 ** centres[1:-1] / frame_s).astype(np.int64), 0, n_lags - 1)
    W[np.arange(n_log), nearest] += 1e-3
    W /= W.sum(axis=1, keepdims=True)
    W = W.astype(np.float32)
    W.setflags(write=False)
    return W


def rhythm_descriptors(
    onsets: np.ndarray,
    *,
    frame_s: float,
    max_lag_s: float = MAX_LAG_S,
    min_lag_s: float = MIN_LAG_S,
    bins_per_octave: int = BINS_PER_OCTAVE,
) -> np.ndarray:
    """Rhythm descriptors of a batch of onset-band windows.

    Parameters
    ----------
    onsets : np.ndarray
        (n_windows, n_bands, n_frames) onset strength windows (:func:`onset_bands`).
    frame_s : float
        Seconds per frame (``hop_length / sr``).

    Returns
    -------
    np.ndarray
        (n_windows, n_bands * (n_log_lags + 1)) float32: per band the log-lag autocorrelation,
        then the bands' relative log onset energies.
    """
    E = np.asarray(onsets, dtype=np.float32)
    n_win, _, n_w = E.shape
    n_lags = round(max_lag_s / frame_s) + 1
    W = log_lag_filters(n_lags, frame_s, min_lag_s=min_lag_s, bins_per_octave=bins_per_octave)
    energy = np.log(E.mean(axis=2) + 1e-3)
    energy -= energy.mean(axis=1, keepdims=True)
    X = E - E.mean(axis=2, keepdims=True)
    n_fft = scipy.fft.next_fast_len(n_w + n_lags, real=True)
    F = scipy.fft.rfft(X, n=n_fft, axis=2, workers=1)
    ac = scipy.fft.irfft(F.real**2 + F.imag**2, n=n_fft, axis=2)[:, :, :n_lags]
    counts = (n_w - np.arange(n_lags)).astype(np.float32)
    ac = np.where(counts > 0, ac / np.maximum(counts, 1.0), 0.0)  # unbiased: mean product per lag
    zero = ac[:, :, :1]
    ac = ac / np.where(zero > 1e-12, zero, np.inf)
    R = ac.astype(np.float32) @ W.T  # (n_win, n_bands, n_log)
    return np.concatenate([R.reshape(n_win, -1), energy], axis=1).astype(np.float32)


def rhythm_descriptor(
    y: np.ndarray | None = None,
    sr: int = FEATURE_SR,
    *,
    S: np.ndarray | None = None,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    n_mels: int = N_MELS,
    n_bands: int = N_BANDS,
    max_lag_s: float = MAX_LAG_S,
    min_lag_s: float = MIN_LAG_S,
    bins_per_octave: int = BINS_PER_OCTAVE,
) -> np.ndarray:
    """Tempo-robust rhythm descriptor of one excerpt (see the module docstring).

    Parameters
    ----------
    y : np.ndarray or None
        Mono signal; ignored when ``S`` is given.
    sr : int
        Sample rate in Hz.
    S : np.ndarray or None
        Precomputed mel power spectrogram (n_mels, n_frames) at ``hop_length``.
    n_bands : int
        Onset bands (groups of mel bands).
    max_lag_s, min_lag_s : float
        Lag range of the log-lag axis in seconds.
    bins_per_octave : int
        Log-lag resolution.

    Returns
    -------
    np.ndarray
        (n_bands * (n_log_lags + 1),) float32; 282 values with the defaults (46 log lags).
    """
    S = mel_input(y, sr, S, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, min_frames=2)
    E = onset_bands(log_power(S), n_bands=n_bands)
    return rhythm_descriptors(
        E[None], frame_s=hop_length / sr, max_lag_s=max_lag_s, min_lag_s=min_lag_s,
        bins_per_octave=bins_per_octave,
    )[0]
