"""Landmark fingerprints: spectrogram peaks paired into (anchor freq, freq step, time step) hashes.

The signal is resampled to ``FP_SR`` (8 kHz: telephone band and low-rate codecs keep it) and
its magnitude spectrogram taken with ``N_FFT``/``HOP_LENGTH``.  Peaks are local maxima of the
log spectrogram in a (time x frequency) neighbourhood, ranked by their prominence over a local
mean (so stationary colouring such as EQ, a codec or a telephone band moves few of them) and
thinned to ``density`` peaks per second.  Peak positions are refined to a fraction of a frame
and of a bin; that lets the query side rescale them for a clip played faster (``speed``) or
time-stretched (``tempo``) before they are quantised into hashes.

Each anchor peak is paired with the first ``fanout`` peaks after it (in time) that lie within
``DT_MAX`` frames and ``DF_MAX`` bins; the hash packs the anchor frequency, the frequency step
and the time step into ``HASH_BITS`` bits.  Only peak positions, never magnitudes, go into a
hash, so gain does not matter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.fft
import soxr
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from audiolsh.errors import ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "DENSITY",
    "FANOUT",
    "FP_SR",
    "FRAME_S",
    "HASH_BITS",
    "HOP_LENGTH",
    "N_FFT",
    "QUERY_DENSITY",
    "QUERY_FANOUT",
    "Landmarks",
    "Peaks",
    "landmarks",
    "pair_peaks",
    "spectral_peaks",
]

FP_SR = 8000
"""Analysis sample rate in Hz."""
N_FFT = 512
HOP_LENGTH = 256
FRAME_S = HOP_LENGTH / FP_SR
"""Seconds per spectrogram frame (32 ms)."""

F_LO, F_HI = 10, 232
"""Bins searched for peaks: 156 Hz to 3.6 kHz (15.6 Hz per bin)."""
PEAK_DT, PEAK_DF = 3, 8
"""A peak is the maximum of its (2 PEAK_DT + 1) frames x (2 PEAK_DF + 1) bins neighbourhood."""
MEAN_DT, MEAN_DF = 31, 31
"""Prominence = log magnitude minus its mean over this many frames x bins."""
BLOCK = 16
"""Density is enforced per block of this many frames (0.5 s)."""

DT_MAX = 48
"""Largest time step of a pair, in frames (1.5 s)."""
DF_MAX = 40
"""Largest frequency step of a pair, in bins (625 Hz)."""
F_BITS, DF_BITS, DT_BITS = 8, 7, 6
HASH_BITS = F_BITS + DF_BITS + DT_BITS
"""Bits used in a hash: anchor bin, frequency step + 64, time step."""

DENSITY = 18.0
"""Default peaks per second for indexed tracks."""
FANOUT = 5
"""Default pairs per anchor peak for indexed tracks."""
QUERY_DENSITY = 36.0
"""Default peaks per second for queries: denser than the index so noise costs fewer matches."""
QUERY_FANOUT = 12
"""Default pairs per anchor for queries (more peaks lie between an indexed pair)."""

_WINDOW = np.hanning(N_FFT + 2)[1:-1].astype(np.float32)


@dataclass(frozen=True)
class Peaks:
    """Spectral peaks of one signal, sorted by time.

    times : float32 (n,), frame index with sub-frame refinement (frame j starts at j * FRAME_S s)
    freqs : float32 (n,), FFT bin with sub-bin refinement (bin k is k * FP_SR / N_FFT Hz)
    strength : float32 (n,), prominence in natural-log magnitude units
    n_frames : int, frames in the signal
    """

    times: np.ndarray
    freqs: np.ndarray
    strength: np.ndarray
    n_frames: int

    def __len__(self) -> int:
        return len(self.times)

    def select(self, mask: np.ndarray) -> Peaks:
        return Peaks(self.times[mask], self.freqs[mask], self.strength[mask], self.n_frames)


@dataclass(frozen=True)
class Landmarks:
    """Hashes of peak pairs and the frame of each anchor.

    hashes : uint32 (n,), ``HASH_BITS`` bits used
    times : int32 (n,), frame of the anchor peak (``times * frame_s`` seconds)
    frame_s : seconds per frame
    """

    hashes: np.ndarray
    times: np.ndarray
    frame_s: float = FRAME_S

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def duration_s(self) -> float:
        return float(self.times.max() + 1) * self.frame_s if len(self.times) else 0.0


def _resample(y: np.ndarray, sr: float) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ParameterError(f"y must be mono, shape (n,), got shape {y.shape}")
    if not np.isfinite(sr) or sr <= 0:
        raise ParameterError(f"sr must be positive, got {sr!r}")
    y = y.astype(np.float32, copy=False)
    if sr != FP_SR:
        y = np.asarray(soxr.resample(y, sr, FP_SR, quality="HQ"), dtype=np.float32)
    return y


def log_spectrogram(y: np.ndarray) -> np.ndarray:
    """Natural-log magnitude, shape (n_frames, N_FFT // 2 + 1), of ``y`` at ``FP_SR``."""
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    frames = sliding_window_view(y, N_FFT)[::HOP_LENGTH]
    S = np.abs(scipy.fft.rfft(frames * _WINDOW, axis=1))
    floor = max(float(S.max()) * 1e-5, 1e-9)
    return np.log(S + floor).astype(np.float32)


def spectral_peaks(y: np.ndarray, sr: float, *, density: float = DENSITY) -> Peaks:
    """The most prominent spectral peaks of ``y`` (mono, any ``sr``), ``density`` per second.

    ``sr`` may be fractional: passing ``sr / speed`` undoes a clip played ``speed`` times faster.
    """
    if not density > 0:
        raise ParameterError(f"density must be positive (peaks per second), got {density!r}")
    L = log_spectrogram(_resample(y, sr))[:, F_LO - 1:F_HI + 1]
    n_frames = L.shape[0]
    local_max = ndimage.maximum_filter(L, size=(2 * PEAK_DT + 1, 2 * PEAK_DF + 1), mode="nearest")
    prominence = L - ndimage.uniform_filter(L, size=(MEAN_DT, MEAN_DF), mode="nearest")
    is_peak = (L == local_max) & (prominence > 0)
    is_peak[:, [0, -1]] = False  # edge bins only pad the neighbourhood
    t, f = np.nonzero(is_peak)
    s = prominence[t, f]
    # Keep the k most prominent of each block of frames.
    k = max(1, round(density * BLOCK * FRAME_S))
    block = t // BLOCK
    order = np.lexsort((-s, block))
    block_sorted = block[order]
    first = np.searchsorted(block_sorted, block_sorted, side="left")
    keep = order[(np.arange(len(order)) - first) < k]
    keep.sort()  # back to time order (nonzero gives row-major: time, then frequency)
    t, f, s = t[keep], f[keep], s[keep]
    # Parabolic refinement in frequency and time of the log magnitude.
    c = L[t, f]
    df = _vertex(L[t, f - 1], c, L[t, f + 1])
    tm, tp = np.maximum(t - 1, 0), np.minimum(t + 1, n_frames - 1)
    dt = _vertex(L[tm, f], c, L[tp, f])
    return Peaks(
        (t + dt).astype(np.float32),
        (f + F_LO - 1 + df).astype(np.float32),
        s.astype(np.float32),
        n_frames,
    )


def _vertex(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Offset in (-0.5, 0.5) of the vertex of the parabola through (-1, a), (0, b), (1, c)."""
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
    return np.clip(d, -0.5, 0.5)


def pair_peaks(
    peaks: Peaks, *, fanout: int = FANOUT, time_scale: float = 1.0, freq_scale: float = 1.0,
    max_candidates: int | None = None,
) -> Landmarks:
    """Pair each peak with the first ``fanout`` later peaks inside the target zone.

    Positions are mapped first: time x ``time_scale``, frequency x ``freq_scale`` (a clip
    played ``s`` times faster is undone by time_scale=s, freq_scale=1/s; one stretched by
    ``t`` with pitch kept by time_scale=t).
    """
    if fanout < 1:
        raise ParameterError(f"fanout must be >= 1, got {fanout!r}")
    n = len(peaks)
    if n < 2:
        return Landmarks(np.zeros(0, np.uint32), np.zeros(0, np.int32))
    t = peaks.times.astype(np.float64) * time_scale
    f = peaks.freqs.astype(np.float64) * freq_scale
    ti = np.rint(t).astype(np.int64)
    fi = np.rint(f).astype(np.int64)
    m = max_candidates or 6 * fanout
    j = np.arange(n)[:, None] + np.arange(1, m + 1)[None, :]
    inside = j < n
    j = np.minimum(j, n - 1)
    dt = np.rint(t[j] - t[:, None]).astype(np.int64)
    dfq = fi[j] - fi[:, None]
    ok = inside & (dt >= 1) & (dt <= DT_MAX) & (np.abs(dfq) <= DF_MAX)
    ok &= np.cumsum(ok, axis=1) <= fanout
    rows, cols = np.nonzero(ok)
    f1 = np.clip(fi[rows], 0, (1 << F_BITS) - 1)
    hashes = (
        (f1 << (DF_BITS + DT_BITS))
        | ((dfq[rows, cols] + (1 << (DF_BITS - 1))) << DT_BITS)
        | dt[rows, cols]
    ).astype(np.uint32)
    return Landmarks(hashes, ti[rows].astype(np.int32))


def landmarks(
    y: np.ndarray, sr: float, *, density: float = DENSITY, fanout: int = FANOUT,
    hop_scale: float = 1.0,
) -> Landmarks:
    """Landmark hashes of a mono signal ``y`` at sample rate ``sr`` (any rate; resampled).

    ``hop_scale`` rescales time (a clip time-stretched by ``t`` is undone by hop_scale=t),
    keeping frequency.  Pure function of its inputs: safe to run in worker processes.
    """
    return pair_peaks(spectral_peaks(y, sr, density=density), fanout=fanout, time_scale=hop_scale)
