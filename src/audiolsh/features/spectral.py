"""The spectral front end the similarity features share: signal checks, mel power, dB.

One mel spectrogram at these settings serves the beat spectrum, the rhythm descriptor and
the MFCCs, so an excerpt is transformed once.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import librosa
import numpy as np

from audiolsh.errors import ParameterError

__all__ = [
    "AMIN", "FEATURE_SR", "HOP_LENGTH", "N_FFT", "N_MELS", "check_signal", "log_power", "mel_basis",
    "mel_input", "mel_power", "power_input", "power_stft",
]

FEATURE_SR = 22050
"""Sample rate (Hz) the similarity features are defined at; other rates are resampled."""
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
AMIN = 1e-10  # power floor of the log: -100 dB


def check_signal(y: np.ndarray, sr: int, *, min_duration_s: float = 0.0) -> np.ndarray:
    """Validate a mono floating-point signal; return it as float32.

    Raises ParameterError for a non-1-D, non-float, non-finite or too short signal, or a bad sr.
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer (Hz), got {sr!r}")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ParameterError(f"y must be a mono 1-D signal, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"y must be a floating-point signal, got dtype {y.dtype}")
    if y.size / sr < min_duration_s:
        raise ParameterError(
            f"signal of {y.size / sr:.3f} s is shorter than the {min_duration_s:g} s this feature needs"
        )
    if not np.all(np.isfinite(y)):
        raise ParameterError("y contains NaN or infinite samples")
    return y.astype(np.float32, copy=False)


def mel_power(
    y: np.ndarray, sr: int, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, n_mels: int = N_MELS
) -> np.ndarray:
    """Mel power spectrogram, shape (n_mels, n_frames), float32; frame j centred at j*hop/sr s."""
    y = check_signal(y, sr)
    return librosa.feature.melspectrogram(  # type: ignore[no-any-return]
        y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0,
        pad_mode="constant",
    ).astype(np.float32)


@lru_cache(maxsize=64)
def mel_basis(sr: float, n_fft: int, n_mels: int, fmax: float | None = None, fmin: float = 0.0) -> np.ndarray:
    """librosa's mel filter bank (n_mels, 1 + n_fft // 2), float32, built once per setting:
    the indexer applies it to the power spectrogram of every track.  ``sr`` may be fractional
    (bands read off a signal whose frequencies are scaled; ``audiolsh.features.envelope.mel_bank``
    is tested against it); a band that lies past Nyquist is left empty, without librosa's warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected")
        fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return fb.astype(np.float32)  # type: ignore[no-any-return]


def log_power(S: np.ndarray) -> np.ndarray:
    """Power to dB (no reference, no clipping): 10 log10(max(S, 1e-10)), float32."""
    return (10.0 * np.log10(np.maximum(S, AMIN))).astype(np.float32)


def power_stft(y: np.ndarray, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """|STFT|^2, (1 + n_fft // 2, 1 + len(y) // hop_length) float32; centred frames, zero padding."""
    D = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, pad_mode="constant")
    return (D.real**2 + D.imag**2).astype(np.float32)  # type: ignore[no-any-return]


def mel_input(
    y: np.ndarray | None, sr: int, S: np.ndarray | None, *, n_fft: int, hop_length: int, n_mels: int,
    min_frames: int = 0,
) -> np.ndarray:
    """The mel power spectrogram an extractor works on: ``S`` as given, else computed from ``y``;
    raises unless it is 2-D with at least ``min_frames`` frames."""
    if S is None:
        if y is None:
            raise ParameterError("give a signal y or a mel spectrogram S")
        S = mel_power(y, sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    S = np.asarray(S)
    if S.ndim != 2 or S.shape[1] < min_frames:
        need = f"n_frames >= {min_frames}" if min_frames > 1 else "n_frames"
        raise ParameterError(f"S must be a (n_mels, {need}) spectrogram, got shape {S.shape}")
    return S


def power_input(
    y: np.ndarray | None, sr: int, S: np.ndarray | None, *, n_fft: int, hop_length: int
) -> np.ndarray:
    """The linear power spectrogram an extractor works on: ``S`` as given, else the STFT of ``y``."""
    if S is None:
        if y is None:
            raise ParameterError("give a signal y or a power spectrogram S")
        S = power_stft(check_signal(y, sr), n_fft=n_fft, hop_length=hop_length)
    S = np.asarray(S)
    if S.ndim != 2:
        raise ParameterError(f"S must be a (n_bins, n_frames) spectrogram, got shape {S.shape}")
    return S
