"""The spectral front end the similarity features share: signal checks, mel power, dB.

One mel spectrogram at these settings serves the beat spectrum, the rhythm descriptor and
the MFCCs, so an excerpt is transformed once.
"""

from __future__ import annotations

import librosa
import numpy as np

from audiolsh.errors import ParameterError

__all__ = ["AMIN", "FEATURE_SR", "HOP_LENGTH", "N_FFT", "N_MELS", "check_signal", "log_power", "mel_power"]

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


def log_power(S: np.ndarray) -> np.ndarray:
    """Power to dB (no reference, no clipping): 10 log10(max(S, 1e-10)), float32."""
    return (10.0 * np.log10(np.maximum(S, AMIN))).astype(np.float32)
