"""Waveform alignment: how well an excerpt correlates with a track's audio near a given offset.

Both sides are resampled to :data:`VERIFY_SR`, band-passed to :data:`BAND_HZ` (where a waveform
match carries), and compared by normalised cross-correlation at the best lag within a window of
the offset. The evaluation checks reused passages with it; identification checks a weak
candidate against the track's own file with it (:mod:`audiolsh.index.verification`).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import scipy.signal
import soxr

from audiolsh.audio.decode import load

__all__ = ["BAND_HZ", "MAX_LAG_S", "VERIFY_SR", "aligned_ncc", "band", "correlate_with_track"]

VERIFY_SR = 8000
"""Sample rate of the check (Hz): the band that matters for a waveform match."""
BAND_HZ = (150.0, 3500.0)
MAX_LAG_S = 0.5
MARGIN_S = 0.1
"""Decoded on each side of an excerpt, so that the band-pass filter's edges fall outside it."""


@lru_cache(maxsize=4)
def _band_filter(sr: int) -> np.ndarray:
    return np.asarray(scipy.signal.butter(4, BAND_HZ, btype="bandpass", fs=sr, output="sos"))


def band(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` band-passed to :data:`BAND_HZ` (zero phase), float64."""
    return np.asarray(scipy.signal.sosfiltfilt(_band_filter(sr), np.asarray(y, dtype=np.float64)))


def aligned_ncc(x: np.ndarray, ref: np.ndarray, *, start: int, max_lag: int) -> float:
    """Best normalised cross-correlation of ``x`` with ``ref[s : s + len(x)]`` over
    ``s`` in ``[start - max_lag, start + max_lag]`` (the part of it inside ``ref``); 0.0 when
    no full window fits or either side is silent. Vectorised: one FFT correlation and a running sum
    of the reference's energy."""
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    n = x.size
    lo, hi = max(0, start - max_lag), min(ref.size - n, start + max_lag)
    if n == 0 or hi < lo:
        return 0.0
    seg = ref[lo : hi + n]
    num = scipy.signal.correlate(seg, x, mode="valid", method="fft")
    energy = np.concatenate([[0.0], np.cumsum(seg**2)])
    win = energy[n:] - energy[:-n]
    norm_x = math.sqrt(float(np.dot(x, x)))
    ok = win > 1e-12 * n
    if norm_x == 0.0 or not ok.any():
        return 0.0
    return float(np.max(num[ok] / (norm_x * np.sqrt(win[ok]))))


def correlate_with_track(y: np.ndarray, sr: float, track: str | os.PathLike[str], offset_s: float, *,
                         max_lag_s: float = MAX_LAG_S) -> float:
    """:func:`aligned_ncc` of the clip ``y`` (mono at ``sr``, its first sample at ``offset_s`` of
    the track, same speed) with ``track``'s audio, decoded around that offset only.

    Raises AudioError when the track's file cannot be decoded there."""
    x = band(soxr.resample(np.asarray(y, np.float32), float(sr), VERIFY_SR), VERIFY_SR)
    clip_s = x.size / VERIFY_SR
    ref_start = max(0.0, offset_s - max_lag_s - MARGIN_S)
    ref, _ = load(track, sr=VERIFY_SR, offset_s=ref_start, duration_s=clip_s + 2 * (max_lag_s + MARGIN_S))
    m = round(MARGIN_S * VERIFY_SR)  # the clip's own filter edges left out
    inner = x[m : x.size - m] if x.size > 4 * m else x
    start = round((offset_s - ref_start) * VERIFY_SR) + (m if inner is not x else 0)
    return aligned_ncc(inner, band(ref, VERIFY_SR), start=start, max_lag=round(max_lag_s * VERIFY_SR))
