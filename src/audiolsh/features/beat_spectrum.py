"""Foote's beat spectrum (Foote, Cooper & Nam 2002), and S2's mel-band variant as a baseline.

The beat spectrum measures how much the sound repeats itself after a lag: log-mel frames are
compared with each other by cosine similarity (the self-similarity matrix), and the beat
spectrum at lag ``l`` is the mean of the matrix's ``l``-th diagonal, i.e. the mean similarity
of frames ``l`` hops apart. A click track at 120 bpm has its peaks at 0.5 s, 1 s, ...

The diagonal means are computed without building the matrix: with unit frames ``v_i``,
``sum_i v_i . v_{i+l}`` is the sum over mel bands of each band's autocorrelation, taken with
one real FFT per window. A 10-s excerpt takes well under a millisecond after the spectrogram.

S2 (a course paper) computed its "beat spectrum" from a similarity matrix of mel *bands*
rather than frames, which describes the spectral envelope, not rhythm.
:func:`beat_spectrum_bands` keeps that variant, under its own name, as an evaluation baseline.
"""

from __future__ import annotations

import logging
import math

import librosa
import numpy as np
import scipy.fft

from audiolsh.errors import ParameterError
from audiolsh.features.spectral import (
    FEATURE_SR,
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    log_power,
    mel_input,
)

logger = logging.getLogger(__name__)

__all__ = ["beat_spectra", "beat_spectrum", "beat_spectrum_bands", "n_lags_for"]

def n_lags_for(max_lag_s: float, *, sr: int = FEATURE_SR, hop_length: int = HOP_LENGTH) -> int:
    """Number of lags 0 .. max_lag_s at one spectrogram hop each."""
    if not (math.isfinite(max_lag_s) and max_lag_s > 0):
        raise ParameterError(f"max_lag_s must be > 0 seconds, got {max_lag_s}")
    return round(max_lag_s * sr / hop_length) + 1


def beat_spectra(L: np.ndarray, *, n_lags: int, center: bool = True) -> np.ndarray:
    """Beat spectra of a batch of log-mel windows: mean of each self-similarity diagonal.

    Parameters
    ----------
    L : np.ndarray
        (n_windows, n_mels, n_frames) log-mel (dB) windows.
    n_lags : int
        Lags 0 .. n_lags - 1 (in hops) to return.
    center : bool
        Subtract each window's mean frame before the cosine, so frames are compared by how
        they deviate from the window's average sound (plain cosine of dB frames is close to 1
        everywhere and shows little structure).

    Returns
    -------
    np.ndarray
        (n_windows, n_lags) float32; lag 0 is 1 (0 for silent windows); lags the window is
        too short for are 0.
    """
    V = np.asarray(L, dtype=np.float32)
    if center:
        V = V - V.mean(axis=2, keepdims=True)
    norms = np.sqrt(np.einsum("wmt,wmt->wt", V, V))
    V = (V / np.where(norms > 1e-6, norms, np.inf)[:, None, :]).astype(np.float32)
    n_w = V.shape[2]
    n_fft = scipy.fft.next_fast_len(n_w + n_lags, real=True)
    F = scipy.fft.rfft(V, n=n_fft, axis=2, workers=1)
    power = (F.real**2 + F.imag**2).sum(axis=1)  # sum of every band's autocorrelation
    ac = scipy.fft.irfft(power, n=n_fft, axis=1)[:, :n_lags]
    counts = n_w - np.arange(n_lags)
    B = np.where(counts > 0, ac / np.maximum(counts, 1), 0.0)
    return B.astype(np.float32)


def _beat_spectrum_autocorrelation(L: np.ndarray, *, n_lags: int, center: bool) -> np.ndarray:
    """Foote's autocorrelation form: B(l) = mean over (i, j) of S(i, j) S(i+l, j+l)."""
    V = np.asarray(L, dtype=np.float64)
    if center:
        V = V - V.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(V, axis=0)
    V = V / np.where(norms > 1e-6, norms, np.inf)[None, :]
    S = V.T @ V  # (n, n) cosine self-similarity
    n = S.shape[0]
    size = scipy.fft.next_fast_len(n + n_lags, real=True)
    F = scipy.fft.rfft2(S, s=(size, size))
    R = scipy.fft.irfft2(F.conj() * F, s=(size, size))  # R[k, l] = sum S(i,j) S(i+k, j+l)
    lags = np.arange(n_lags)
    counts = np.maximum(n - lags, 0) ** 2
    B = np.where(counts > 0, R[lags, lags] / np.maximum(counts, 1), 0.0)
    return (B / B[0] if B[0] > 0 else B).astype(np.float32)


def beat_spectrum(
    y: np.ndarray | None = None,
    sr: int = FEATURE_SR,
    *,
    S: np.ndarray | None = None,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    n_mels: int = N_MELS,
    max_lag_s: float = 4.0,
    form: str = "diagonal",
    center: bool = True,
) -> np.ndarray:
    """Foote's beat spectrum of one excerpt.

    Parameters
    ----------
    y : np.ndarray or None
        Mono signal; ignored when ``S`` is given.
    sr : int
        Sample rate of ``y`` (and of the analysis behind ``S``) in Hz.
    S : np.ndarray or None
        Precomputed mel power spectrogram, (n_mels, n_frames).
    n_fft, hop_length, n_mels : int
        Spectrogram parameters when computing from ``y``; ``hop_length`` also sets the lag step.
    max_lag_s : float
        Longest lag in seconds (Foote used about 4 s).
    form : {"diagonal", "autocorrelation"}
        "diagonal": mean of each diagonal of the self-similarity matrix (fast, default);
        "autocorrelation": Foote's more robust 2-D autocorrelation of the matrix along its
        diagonal, normalised to 1 at lag 0 (builds the matrix: slower).
    center : bool
        Centre the frames on the excerpt's mean frame before the cosine.

    Returns
    -------
    np.ndarray
        (n_lags,) float32, lag ``l`` at ``l * hop_length / sr`` s, ``n_lags = round(max_lag_s *
        sr / hop_length) + 1``.
    """
    if form not in ("diagonal", "autocorrelation"):
        raise ParameterError(f"form must be 'diagonal' or 'autocorrelation', got {form!r}")
    S = mel_input(y, sr, S, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, min_frames=2)
    n_lags = n_lags_for(max_lag_s, sr=sr, hop_length=hop_length)
    L = log_power(S)
    if form == "autocorrelation":
        return _beat_spectrum_autocorrelation(L, n_lags=n_lags, center=center)
    return beat_spectra(L[None], n_lags=n_lags, center=center)[0]


# --------------------------------------------------------------------------- S2's variant


def _diagonal_sums(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For an (n, n) matrix flattened: the diagonal (j - i >= 0) of each entry, and counts."""
    i, j = np.triu_indices(n)
    return (i * n + j), (j - i)


def beat_spectra_bands(M: np.ndarray) -> np.ndarray:
    """S2's "beat spectrum" of a batch of windows: mean diagonals of a band-by-band cosine matrix.

    Parameters
    ----------
    M : np.ndarray
        (n_windows, n_mels, n_frames) mel spectrogram windows in dB.

    Returns
    -------
    np.ndarray
        (n_windows, n_mels) float32: entry ``l`` is the mean cosine similarity between the
        time courses of mel bands ``l`` bands apart (a spectral, not a rhythmic, descriptor).
    """
    V = np.asarray(M, dtype=np.float32)
    norms = np.linalg.norm(V, axis=2, keepdims=True)
    V = (V / np.where(norms > 1e-6, norms, np.inf)).astype(np.float32)
    G = V @ V.transpose(0, 2, 1)  # (w, m, m)
    n = G.shape[1]
    flat, diag = _diagonal_sums(n)
    H = np.zeros((flat.size, n), dtype=np.float32)
    H[np.arange(flat.size), diag] = 1.0
    sums = G.reshape(len(G), n * n)[:, flat] @ H
    return (sums / (n - np.arange(n))).astype(np.float32)


def beat_spectrum_bands(
    y: np.ndarray | None = None,
    sr: int = FEATURE_SR,
    *,
    S: np.ndarray | None = None,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    n_mels: int = N_MELS,
) -> np.ndarray:
    """S2's published variant: the similarity matrix compares mel *bands*, not frames.

    Kept only as a named baseline for the excerpt evaluation: it is the mean of each diagonal
    of the (n_mels, n_mels) cosine matrix between the bands' dB time courses, so it describes
    how correlated neighbouring bands are (the spectral envelope), not when the sound repeats.

    Returns
    -------
    np.ndarray
        (n_mels,) float32.
    """
    S = mel_input(y, sr, S, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    return beat_spectra_bands(s2_db(S)[None])[0]


def s2_db(S: np.ndarray) -> np.ndarray:
    """dB relative to the peak, floored at -80 dB (librosa's ``power_to_db(S, ref=np.max)``)."""
    return librosa.power_to_db(S, ref=np.max).astype(np.float32)  # type: ignore[no-any-return]
