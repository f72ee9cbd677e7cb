"""Chroma frames (S1): the energy of the 12 pitch classes, frame by frame.

S1 hashes every chroma frame (``n_fft=4096``, ``hop_length=4000`` at 22,050 Hz: one frame
per 0.18 s) and lets each query frame vote for the tracks it collides with. Chroma follows
harmony and melody and ignores timbre; transposing the music rotates it. Each frame is
scaled to a maximum of 1 (librosa's default), so it is non-negative and all frames share a
dominant direction: the index centres the frames on the collection's mean chroma before
cosine hashing, or every hyperplane puts nearly all frames on one side.
"""

from __future__ import annotations

import logging

import librosa
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features.spectral import FEATURE_SR, power_input

logger = logging.getLogger(__name__)

__all__ = ["CHROMA_HOP", "CHROMA_N_FFT", "chroma_frames", "chroma_from_power"]

CHROMA_N_FFT = 4096
CHROMA_HOP = 4000


def chroma_from_power(P: np.ndarray, sr: int, *, n_fft: int = CHROMA_N_FFT) -> np.ndarray:
    """Chroma of a power spectrogram (1 + n_fft // 2, n_frames) -> (n_frames, 12) float32."""
    C = librosa.feature.chroma_stft(S=np.asarray(P), sr=sr, n_fft=n_fft, tuning=0.0)
    return np.ascontiguousarray(C.T, dtype=np.float32)


def chroma_frames(
    y: np.ndarray | None = None,
    sr: int = FEATURE_SR,
    *,
    S: np.ndarray | None = None,
    n_fft: int = CHROMA_N_FFT,
    hop_length: int = CHROMA_HOP,
) -> np.ndarray:
    """12-d chroma per frame, as S1 computes it.

    Parameters
    ----------
    y : np.ndarray or None
        Mono signal; ignored when ``S`` is given.
    sr : int
        Sample rate in Hz.
    S : np.ndarray or None
        Precomputed power spectrogram (1 + n_fft // 2, n_frames).
    n_fft, hop_length : int
        STFT size and hop in samples (S1: 4096 and 4000). Frame ``j`` is centred at
        ``j * hop_length / sr`` s.

    Returns
    -------
    np.ndarray
        (n_frames, 12) float32, C first; each frame's maximum is 1 (silent frames are 0).
        Tuning is fixed at A440 so that every excerpt of a collection uses the same bins.
    """
    S = power_input(y, sr, S, n_fft=n_fft, hop_length=hop_length)
    if S.shape[0] != 1 + n_fft // 2:
        raise ParameterError(
            f"S must be a ({1 + n_fft // 2}, n_frames) power spectrogram for n_fft={n_fft}, "
            f"got shape {S.shape}"
        )
    return chroma_from_power(S, sr, n_fft=n_fft)
