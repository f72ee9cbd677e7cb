"""Texture: the delta spectral pattern, a block-level feature after Seyerlehner et al. (2010).

MFCC means and stds say which colour a passage has on average; they do not say how the sound
moves: whether a band swells slowly (pads, strings) or jumps at every note (plucks, drums), and
how often. The delta spectral pattern keeps that. On a 40-band log-mel spectrogram up to 8 kHz
(above it a low-bitrate codec removes the sound; values more than 60 dB below the loudest of
each block are floored, so a passage is described alike within its track and alone), the
positive change of each band over 3 frames (70 ms) is taken; the changes are cut into blocks
of 25 frames (0.58 s) every 5 frames, each band's 25 values in a block are sorted, and the
window's pattern is the mean over its blocks of 7 order statistics per band (the median,
every second one above it, the largest): 280 values. Sorting drops when in the block a change
happened, so the pattern describes the distribution of the changes per register, which stays
put across the sections of a piece.

The :mod:`.excerpts` timbre mode is the MFCC statistics followed by this pattern, the two
blocks standardised and balanced (see ``excerpts.BLOCKS``).
"""

from __future__ import annotations

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features.spectral import FEATURE_SR, HOP_LENGTH, N_FFT, log_power, mel_basis, power_input

__all__ = [
    "BLOCK", "BLOCK_HOP", "DELTA", "DIM", "FMAX_HZ", "N_BANDS", "ORDER", "TOP_DB", "band_power",
    "block_profiles", "delta_spectral_pattern", "window_patterns",
]

N_BANDS = 40
DELTA = 3
BLOCK = 25
BLOCK_HOP = 5
# 12, 14, ..., 24 of the 25 sorted values: the lower half is nearly always "no change", and
# standardising its tiny spread would turn codec noise into large differences.
ORDER = tuple(range(BLOCK // 2, BLOCK, 2))
DIM = N_BANDS * len(ORDER)
TOP_DB = 60.0
FMAX_HZ = 8000.0
MIN_FRAMES = DELTA + BLOCK
_CHUNK_BLOCKS = 2048  # blocks per step: about 10 MB of temporaries at a time


def band_power(P: np.ndarray, sr: int = FEATURE_SR) -> np.ndarray:
    """Mel power (N_BANDS, n_frames) up to FMAX_HZ of a power spectrogram (1 + n_fft // 2, n_frames)."""
    n_fft = 2 * (P.shape[0] - 1)
    return np.asarray(mel_basis(sr, n_fft, N_BANDS, FMAX_HZ) @ P, np.float32)


def block_profiles(B: np.ndarray) -> np.ndarray:
    """Sorted-change profiles of every block of a band power spectrogram.

    Parameters
    ----------
    B : np.ndarray
        (N_BANDS, n_frames) mel power, n_frames >= DELTA + BLOCK.

    Returns
    -------
    np.ndarray
        (n_blocks, DIM) float32; block ``b`` covers the changes at frames ``[b * BLOCK_HOP,
        b * BLOCK_HOP + BLOCK)`` (the change at frame ``j`` is ``L[j + DELTA] - L[j]``, with
        ``L`` in dB floored at TOP_DB below the block's own loudest value, so that a passage
        gives the same profile whether it is analysed within its track or on its own).
    """
    if B.ndim != 2 or B.shape[1] < MIN_FRAMES:
        raise ParameterError(f"need a (bands, >= {MIN_FRAMES} frames) spectrogram, got shape {B.shape}")
    L = log_power(B)
    # (bands, n_blocks, DELTA + BLOCK) frames of each block
    view = np.lib.stride_tricks.sliding_window_view(L, MIN_FRAMES, axis=1)[:, ::BLOCK_HOP]
    n_blocks = view.shape[1]
    out = np.empty((n_blocks, DIM), np.float32)
    for a in range(0, n_blocks, _CHUNK_BLOCKS):  # bounded memory for long files
        V = view[:, a : a + _CHUNK_BLOCKS]
        V = np.maximum(V, V.max(axis=(0, 2), keepdims=True) - TOP_DB)
        D = np.sort(np.maximum(V[:, :, DELTA:] - V[:, :, :-DELTA], 0.0), axis=2)[:, :, list(ORDER)]
        out[a : a + _CHUNK_BLOCKS] = D.transpose(1, 0, 2).reshape(D.shape[1], -1)
    return out


def window_patterns(profiles: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Mean profile of the blocks inside each frame range ``[first, stop)`` (at least one block).

    Returns (n_windows, DIM) float32.
    """
    n_blocks = len(profiles)
    first = np.asarray(first, np.int64)
    stop = np.asarray(stop, np.int64)
    lo = np.minimum(-(-first // BLOCK_HOP), n_blocks - 1)
    hi = np.clip((stop - DELTA - BLOCK) // BLOCK_HOP + 1, lo + 1, n_blocks)
    csum = np.concatenate([np.zeros((1, profiles.shape[1])), np.cumsum(profiles, axis=0, dtype=np.float64)])
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None]).astype(np.float32)


def delta_spectral_pattern(
    y: np.ndarray | None = None,
    sr: int = FEATURE_SR,
    *,
    S: np.ndarray | None = None,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """The (DIM,) float32 pattern of a whole signal ``y`` at ``sr`` Hz (an excerpt or a track),
    or of its linear power spectrogram ``S`` (1 + n_fft // 2, n_frames) when given."""
    P = power_input(y, sr, S, n_fft=n_fft, hop_length=hop_length)
    prof = block_profiles(band_power(P, sr))
    return window_patterns(prof, np.array([0]), np.array([P.shape[1]]))[0]
