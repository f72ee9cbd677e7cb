"""Landmark fingerprints: spectrogram peaks paired into (anchor freq, freq step, time step) hashes.

The signal is resampled to ``FP_SR`` (8 kHz: telephone band and low-rate codecs keep it) and
its magnitude spectrogram taken with ``N_FFT``/``HOP_LENGTH``. Peaks are local maxima of the
log spectrogram, averaged over ``SMOOTH_FRAMES`` frames so that sustained partials beat the
frame-to-frame fluctuations of noise, in a (time x frequency) neighbourhood, ranked by their
prominence over a local mean (so stationary colouring such as EQ, a codec or a telephone band
moves few of them) and thinned to ``density`` peaks per second. Peak positions are refined to a
fraction of a frame and of a bin; that lets the query side rescale them for a clip played
faster (``speed``) or time-stretched (``tempo``) before they are quantised into hashes.

Each anchor peak is paired with the first ``fanout`` peaks after it (in time) that lie within
``DT_MAX`` frames and ``DF_MAX`` bins; the hash packs the anchor frequency, the frequency step
and the time step into ``HASH_BITS`` bits.  Only peak positions, never magnitudes, go into a
hash, so gain does not matter.  Queries may add, for a pair near a rounding boundary, the
hash of the other rounding (``margin``), so noise that nudges a peak does not lose the pair.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numba
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
    "QUERY_MARGIN",
    "SMOOTH_FRAMES",
    "Landmarks",
    "Peaks",
    "landmarks",
    "pair_peaks",
    "pair_shifts",
    "shifted_peaks",
    "spectral_peaks",
]

FP_SR = 8000
"""Analysis sample rate in Hz."""
N_FFT = 512
HOP_LENGTH = 256
FRAME_S = HOP_LENGTH / FP_SR
"""Seconds per spectrogram frame (32 ms)."""

F_LO, F_HI = 3, 232
"""Bins searched for peaks: 47 Hz to 3.6 kHz (15.6 Hz per bin).  The bass is kept: in a loud room
the talkers' voices fill the mid band, and for much music the bass is most of the energy."""
PEAK_DT, PEAK_DF = 3, 8
"""A peak is the maximum of its (2 PEAK_DT + 1) frames x (2 PEAK_DF + 1) bins neighbourhood."""
MEAN_DT, MEAN_DF = 31, 31
"""Prominence = log magnitude minus its mean over this many frames x bins."""
SMOOTH_FRAMES = 3
"""Frames the log spectrogram is averaged over (in time) before peaks are picked."""
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
QUERY_MARGIN = 0.2
"""Queries also emit the hash of a quantity (bin, time step) this close to a rounding boundary
rounded the other way (in bins or frames)."""

_WINDOW = np.hanning(N_FFT + 2)[1:-1].astype(np.float32)


@dataclass(frozen=True)
class Peaks:
    """Spectral peaks of one signal, sorted by time.

    times : float32 (n,), frame index with sub-frame refinement (frame j starts at j * FRAME_S s)
    freqs : float32 (n,), FFT bin with sub-bin refinement (bin k is k * FP_SR / N_FFT Hz)
    strength : float32 (n,), prominence in natural-log magnitude units
    n_frames : int, frames in the signal
    frames : float32 (n_frames, 2) or None, each frame's :func:`frame_levels` (how noise-like
        and how loud), from which :func:`noise_level` tells how noisy the signal is
    spectrum : float32 (n_frames, N_FFT // 2 + 1) or None, the magnitude frames themselves (a
        query keeps them to compare its energy envelope, :mod:`audiolsh.features.envelope`)
    """

    times: np.ndarray
    freqs: np.ndarray
    strength: np.ndarray
    n_frames: int
    frames: np.ndarray | None = None
    spectrum: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.times)

    def select(self, mask: np.ndarray) -> Peaks:
        return Peaks(self.times[mask], self.freqs[mask], self.strength[mask], self.n_frames, self.frames,
                     self.spectrum)

    def window(self, start: int, n_frames: int) -> Peaks:
        """The peaks of frames [start, start + n_frames), their times from the window's start."""
        keep = (self.times >= start) & (self.times < start + n_frames)
        frames = None if self.frames is None else self.frames[start:start + n_frames]
        spectrum = None if self.spectrum is None else self.spectrum[start:start + n_frames]
        return Peaks(self.times[keep] - start, self.freqs[keep], self.strength[keep], n_frames, frames,
                     spectrum)


QUIET_DB = 40.0
"""Frames more than this below a signal's loudest are left out of its noise level (silence,
fades)."""


def frame_levels(S: np.ndarray) -> np.ndarray:
    """float32 (n_frames, 2) of magnitude frames ``S`` (n_frames, bins ``BAND``): each frame's log
    spectral flatness (log of the geometric over the arithmetic mean of the power; 0: white
    noise, very negative: a few partials) and log mean power."""
    P = S.astype(np.float64) ** 2 + 1e-20
    mean = P.mean(axis=1)
    return np.stack([np.log(P).mean(axis=1) - np.log(mean), np.log(mean)], axis=1).astype(np.float32)


def noise_level(peaks: Peaks) -> float:
    """How noise-like a signal is: the median spectral flatness of its frames within ``QUIET_DB``
    of the loudest (0: a few clear partials, 1: white noise); 0 when not known.  The
    calibration weighs evidence by it: in a noisy clip fewer hashes survive, and the few that
    agree by chance with another track's harmonics are fewer still."""
    f = peaks.frames
    if f is None or not len(f):
        return 0.0
    loud = f[:, 1] >= f[:, 1].max() - QUIET_DB / 10 * np.log(10)
    return float(np.exp(np.median(f[loud, 0])))


@dataclass(frozen=True)
class Landmarks:
    """Hashes of peak pairs and the frame of each anchor.

    hashes : uint32 (n,), ``HASH_BITS`` bits used
    times : int32 (n,), frame of the anchor peak (``times * frame_s`` seconds)
    frame_s : seconds per frame
    envelope : uint8 (n_blocks,) or None, the signal's energy envelope
        (:func:`audiolsh.features.envelope.track_envelope`), which an index keeps beside the hashes
    """

    hashes: np.ndarray
    times: np.ndarray
    frame_s: float = FRAME_S
    envelope: np.ndarray | None = None

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


def magnitude_frames(y: np.ndarray) -> np.ndarray:
    """|rfft| of the Hann-windowed frames of ``y`` at ``FP_SR``, (n_frames, N_FFT // 2 + 1) float32
    (frames are not centred; a signal shorter than a frame is zero-padded to one)."""
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    frames = sliding_window_view(y, N_FFT)[::HOP_LENGTH]
    return np.abs(scipy.fft.rfft(frames * _WINDOW, axis=1))  # type: ignore[no-any-return]


def level_floor(peak: float) -> float:
    """What is added to the magnitude before the log: -100 dB below the signal's largest ``peak``."""
    return max(float(peak) * 1e-5, 1e-9)


def spectral_peaks(y: np.ndarray, sr: float, *, density: float = DENSITY) -> Peaks:
    """The most prominent spectral peaks of ``y`` (mono, any ``sr``), ``density`` per second.

    ``sr`` may be fractional: passing ``sr / speed`` undoes a clip played ``speed`` times faster.
    """
    return shifted_peaks(y, sr, density=density)[0]


def shifted_peaks(
    y: np.ndarray, sr: float, *, density: float = DENSITY, shifts: int = 1, levels: bool = False,
    spectrum: bool = False,
) -> list[Peaks]:
    """:func:`spectral_peaks` of ``y`` analysed from ``shifts`` start offsets, ``k / shifts`` of
    a hop apart (k = 0 .. shifts - 1), each's times on the unshifted analysis's frame grid
    (``levels``: with the frames' :func:`frame_levels`, as a query needs them; ``spectrum``: the first
    with its magnitude frames, to compare its energy envelope).

    A clip starts anywhere within a hop of the frame grid its track was indexed on; one of the
    shifted analyses is within ``1 / (2 shifts)`` of a hop of it, so the peaks that straddle
    frames pick out as they did in the track.  Every entry has the first's ``n_frames``.
    """
    if not density > 0:
        raise ParameterError(f"density must be positive (peaks per second), got {density!r}")
    if not (isinstance(shifts, int) and shifts >= 1):
        raise ParameterError(f"shifts must be a positive integer, got {shifts!r}")
    y = _resample(y, sr)
    out: list[Peaks] = []
    for k in range(shifts):
        start = round(k * HOP_LENGTH / shifts)
        S = magnitude_frames(y[start:])
        L = np.log(S[:, BAND] + level_floor(S.max())).astype(np.float32)
        times, freqs, strength = band_peaks(L, density=density, core=(0, L.shape[0]))
        n_frames = out[0].n_frames if out else L.shape[0]
        frames = None  # the clip's, from its first analysis (the shifts see the same frames)
        if levels:
            frames = out[0].frames if out else frame_levels(S[:, BAND])
        kept = S.astype(np.float32, copy=False) if spectrum and not out else None
        out.append(Peaks(times + np.float32(start / HOP_LENGTH), freqs, strength, n_frames, frames, kept))
    return out


BAND = slice(F_LO - 1, F_HI + 1)
"""The bins :func:`band_peaks` takes: those searched and one on each side."""
CONTEXT_FRAMES = SMOOTH_FRAMES // 2 + MEAN_DT // 2
"""Frames on each side of a run of frames that :func:`band_peaks` needs to pick its peaks as it
would in the whole signal (the smoothing, then the prominence's mean, the widest filter)."""


def band_peaks(
    L: np.ndarray, *, density: float, core: tuple[int, int], t0: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks (times, freqs, strength) of the frames ``core = (lo, hi)`` of a log-magnitude band
    ``L`` (n_frames, bins ``BAND``): frame times are indices into ``L``.  A run of frames of a
    longer signal, whose frame ``t0`` is ``L``'s first, gives the same peaks as the whole when
    ``L`` holds ``CONTEXT_FRAMES`` more on each side (or the signal's edge) and ``t0 + lo`` is a
    multiple of ``BLOCK``."""
    n_frames = L.shape[0]
    # Persistence: average the log magnitude over a few frames, so peaks of sustained partials
    # win over the frame-to-frame fluctuations of noise.
    L = ndimage.uniform_filter1d(L, size=SMOOTH_FRAMES, axis=0, mode="nearest")
    prominence = L - ndimage.uniform_filter(L, size=(MEAN_DT, MEAN_DF), mode="nearest")
    is_peak = _local_max(L, PEAK_DT, PEAK_DF) & (prominence > 0)
    is_peak[:, [0, -1]] = False  # edge bins only pad the neighbourhood
    lo, hi = core
    t, f = np.nonzero(is_peak[lo:hi])
    t += lo
    s = prominence[t, f]
    # Keep the k most prominent of each block of frames.
    k = max(1, round(density * BLOCK * FRAME_S))
    block = (t - lo) // BLOCK
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
    return (t + t0 + dt).astype(np.float32), (f + F_LO - 1 + df).astype(np.float32), s.astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _local_max(L, dt, df):  # type: ignore[no-untyped-def]
    """bool (n_frames, n_bins): L[t, f] is the maximum of its (2 dt + 1) x (2 df + 1) window
    (clipped at the edges); same as ``L == maximum_filter(L, mode="nearest")``, but most
    cells are rejected after a few comparisons."""
    n_t, n_f = L.shape
    out = np.zeros((n_t, n_f), np.bool_)
    for t in range(n_t):
        t0, t1 = max(t - dt, 0), min(t + dt + 1, n_t)
        for f in range(n_f):
            v = L[t, f]
            f0, f1 = max(f - df, 0), min(f + df + 1, n_f)
            ok = True
            # Nearest neighbours first: they reject most cells.
            for tt in range(max(t - 1, 0), min(t + 2, n_t)):
                for ff in range(max(f - 1, 0), min(f + 2, n_f)):
                    if L[tt, ff] > v:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                continue
            for tt in range(t0, t1):
                for ff in range(f0, f1):
                    if L[tt, ff] > v:
                        ok = False
                        break
                if not ok:
                    break
            out[t, f] = ok
    return out


def _vertex(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Offset in (-0.5, 0.5) of the vertex of the parabola through (-1, a), (0, b), (1, c)."""
    den = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
    return np.clip(d, -0.5, 0.5)


def pair_peaks(
    peaks: Peaks, *, fanout: int = FANOUT, time_scale: float = 1.0, freq_scale: float = 1.0,
    max_candidates: int | None = None, margin: float = 0.0,
) -> Landmarks:
    """Pair each peak with the first ``fanout`` later peaks inside the target zone.

    Positions are mapped first: time x ``time_scale``, frequency x ``freq_scale`` (a clip
    played ``s`` times faster is undone by time_scale=s, freq_scale=1/s; one stretched by
    ``t`` with pitch kept by time_scale=t).  With ``margin`` > 0 (queries), a pair whose anchor
    bin, target bin or time step lies within ``margin`` of a rounding boundary also gives the
    hashes of the other rounding, so a small shift by noise does not lose the pair.
    """
    if not 0 <= margin < 0.5:
        raise ParameterError(f"margin must be in [0, 0.5), got {margin!r}")
    hashes, times, _ = pair_variants(peaks, np.array([[time_scale, freq_scale]]), fanout=fanout,
                                     margins=np.array([margin]), max_candidates=max_candidates)
    return Landmarks(hashes, times)


def landmarks(
    y: np.ndarray, sr: float, *, density: float = DENSITY, fanout: int = FANOUT,
    hop_scale: float = 1.0,
) -> Landmarks:
    """Landmark hashes of a mono signal ``y`` at sample rate ``sr`` (any rate; resampled).

    ``hop_scale`` rescales time (a clip time-stretched by ``t`` is undone by hop_scale=t),
    keeping frequency.  Unscaled, the landmarks carry the signal's energy envelope.  Pure
    function of its inputs: safe to run in worker processes.
    """
    from audiolsh.features.envelope import band_power, track_envelope  # it needs this module's constants

    peaks = shifted_peaks(y, sr, density=density, spectrum=hop_scale == 1.0)[0]
    lm = pair_peaks(replace(peaks, spectrum=None), fanout=fanout, time_scale=hop_scale)
    if peaks.spectrum is None:
        return lm
    return replace(lm, envelope=track_envelope(band_power(peaks.spectrum)))


def pair_variants(
    peaks: Peaks, scales: np.ndarray, *, fanout: int = FANOUT, margins: np.ndarray | None = None,
    max_candidates: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_peaks` of many mappings of the same peaks in one compiled pass.

    scales : float64 (v, 2), (time_scale, freq_scale) of each variant; margins : (v,) (0: none)
    Returns (hashes uint32, anchor frames int32, variant int64), variant by variant, each in
    the order :func:`pair_peaks` gives.
    """
    if fanout < 1:
        raise ParameterError(f"fanout must be >= 1, got {fanout!r}")
    scales = np.ascontiguousarray(scales, np.float64).reshape(-1, 2)
    margins = np.zeros(len(scales)) if margins is None else np.ascontiguousarray(margins, np.float64)
    if len(margins) != len(scales) or not np.all((margins >= 0) & (margins < 0.5)):
        raise ParameterError(f"margin must be in [0, 0.5), got {margins!r}")
    return _pair_kernel(peaks.times.astype(np.float64), peaks.freqs.astype(np.float64), scales, margins,
                        np.int64(fanout), np.int64(max_candidates or 6 * fanout))


def pair_shifts(
    shifts: list[Peaks], scales: np.ndarray, *, fanout: int = FANOUT, margins: np.ndarray | None = None,
    dt_spread: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_variants` of each analysis of :func:`shifted_peaks`, as one query: the union
    of their (hash, anchor frame, variant), each once, variant by variant (the first analysis's
    landmarks first within a variant, in its order).  ``dt_spread`` > 0 adds every landmark
    with its time step moved by up to that many frames each way (reverb delays one peak of a
    pair).  One analysis, no spread: :func:`pair_variants` as is."""
    parts = [pair_variants(p, scales, fanout=fanout, margins=margins) for p in shifts]
    if dt_spread > 0:
        h0, t0, g0 = parts[0] if len(parts) == 1 else (np.concatenate(x) for x in zip(*parts))
        dt = (h0 & np.uint32((1 << DT_BITS) - 1)).astype(np.int64)
        for d in (d for k in range(1, dt_spread + 1) for d in (k, -k)):
            ok = (dt + d >= 1) & (dt + d <= DT_MAX)
            parts.append(((h0[ok].astype(np.int64) + d).astype(np.uint32), t0[ok], g0[ok]))
    if len(parts) == 1:
        return parts[0]
    h, t, g = (np.concatenate(x) for x in zip(*parts))
    if not len(h):  # silence: no landmark in any analysis
        return h, t, g
    # The same peak pair seen by two analyses gives the same landmark: one piece of evidence.
    lowest = int(t.min())  # a shifted analysis starts half a frame early: frame -1
    if int(g.max()) < 1 << 5 and int(t.max()) - lowest < 1 << 26:
        # (variant, hash, frame) packed in one int64: one stable sort, not a three-key lexsort
        packed = (g.astype(np.int64) << 58) | (h.astype(np.int64) << 26) | (t.astype(np.int64) - lowest)
        order = np.argsort(packed, kind="stable")
        ks = packed[order]
        first = np.concatenate([[True], ks[1:] != ks[:-1]])
    else:
        order = np.lexsort((t, h, g))
        key = np.stack([g[order], h[order].astype(np.int64), t[order].astype(np.int64)])
        first = np.concatenate([[True], np.any(key[:, 1:] != key[:, :-1], axis=0)])
    keep = np.sort(order[first])
    keep = keep[np.argsort(g[keep], kind="stable")]
    return h[keep], t[keep], g[keep]


@numba.njit(cache=True, nogil=True)
def _alt(x, xi, margin):  # type: ignore[no-untyped-def]
    """``xi`` rounded the other way when ``x`` lies within ``margin`` of a rounding boundary."""
    r = x - xi
    if abs(r) > 0.5 - margin:
        return xi + 1 if r > 0 else xi - 1
    return xi


@numba.njit(cache=True, nogil=True)
def _pair_kernel(times, freqs, scales, margins, fanout, m):  # type: ignore[no-untyped-def]
    n, n_var = len(times), len(scales)
    cap = n * fanout * (8 if margins.max() > 0 else 1) * n_var if n >= 2 else 0
    out_h = np.empty(cap, np.uint32)
    out_t = np.empty(cap, np.int32)
    out_g = np.empty(cap, np.int64)
    pa = np.empty(n * fanout, np.int64)  # a variant's pairs: anchor, target
    pb = np.empty(n * fanout, np.int64)
    t = np.empty(n)
    f = np.empty(n)
    fi = np.empty(n, np.int64)
    fa = np.empty(n, np.int64)
    top = (1 << F_BITS) - 1
    k = 0
    for v in range(n_var if n >= 2 else 0):
        margin = margins[v]
        for i in range(n):
            t[i] = times[i] * scales[v, 0]
            f[i] = freqs[i] * scales[v, 1]
            fi[i] = np.int64(np.rint(f[i]))
            fa[i] = _alt(f[i], fi[i], margin)
        n_pairs = 0
        for a in range(n):
            found = 0
            for j in range(a + 1, min(a + m, n - 1) + 1):
                dt = np.int64(np.rint(t[j] - t[a]))
                dfq = fi[j] - fi[a]
                if 1 <= dt <= DT_MAX and abs(dfq) <= DF_MAX:
                    pa[n_pairs] = a
                    pb[n_pairs] = j
                    n_pairs += 1
                    found += 1
                    if found == fanout:
                        break
        for c in range(8 if margin > 0 else 1):
            u1, u2, u3 = c & 1, (c >> 1) & 1, (c >> 2) & 1
            for p in range(n_pairs):
                a, b = pa[p], pb[p]
                d = t[b] - t[a]
                di = np.int64(np.rint(d))
                f1 = fa[a] if u1 else fi[a]
                f2 = fa[b] if u2 else fi[b]
                dt = _alt(d, di, margin) if u3 else di
                dfq = f2 - fi[a] if c == 0 else f2 - f1
                if c == 0:
                    f1 = min(max(f1, 0), top)
                else:
                    if (u1 and fa[a] == fi[a]) or (u2 and fa[b] == fi[b]) or (u3 and dt == di):
                        continue
                    if not (1 <= dt <= DT_MAX and abs(dfq) <= DF_MAX and 0 <= f1 <= top):
                        continue
                out_h[k] = np.uint32(
                    (f1 << (DF_BITS + DT_BITS)) | ((dfq + (1 << (DF_BITS - 1))) << DT_BITS) | dt)
                out_t[k] = np.int32(np.rint(t[a]))
                out_g[k] = v
                k += 1
    return out_h[:k], out_t[:k], out_g[:k]
