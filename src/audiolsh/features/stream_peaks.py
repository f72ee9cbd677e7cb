"""The two features that need a statistic of the whole track, streamed through a spill file.

The fingerprint's log magnitude is floored 100 dB below the track's loudest bin, and the peak
sets keep the local maxima 10 dB above the track's median level: neither is known before the
last block.  So the frames each feature needs (the fingerprint's band, 224 bins at 31 frames/s;
the peak sets' dB spectrogram up to 5 kHz, 465 bins at 43 frames/s) are written as float32 to
an anonymous temporary file while the track streams, with what the statistic needs (the
loudest bin; a histogram of the dB values' top 16 bits, from which one more pass picks the
exact median), and read back in runs of frames, with the context each filter needs on both
sides, to pick the peaks exactly as the whole-track code does.  Memory holds a run of frames
and the peaks; the disk holds about 28 kB (fingerprint) and 80 kB (peak sets) per second of
audio until the track is done.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

import numpy as np
import soxr

from audiolsh.features import envelope as env
from audiolsh.features import landmarks as lm
from audiolsh.features import peaks as pk
from audiolsh.features import spectral
from audiolsh.features.framing import Framer
from audiolsh.hashing.minhash import SetBatch

__all__ = ["Fingerprint", "PeakSets"]

_RUN_FRAMES = 4096  # frames read back at a time (a multiple of the fingerprint's BLOCK)
_KEY_SHIFT = 16


class _Spill:
    """Rows of float32 frames written to an anonymous temporary file and read back in runs."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.n_rows = 0
        self._file: BinaryIO = tempfile.TemporaryFile()

    def write(self, R: np.ndarray) -> None:
        R = np.ascontiguousarray(R, np.float32)
        self._file.write(R.tobytes())
        self.n_rows += len(R)

    def read(self, lo: int, hi: int) -> np.ndarray:
        self._file.seek(lo * self.width * 4)
        return np.frombuffer(self._file.read((hi - lo) * self.width * 4), np.float32).reshape(-1, self.width)

    def runs(self, context: int) -> Iterator[tuple[int, np.ndarray, int, int]]:
        """(first row held, rows, core lo, core hi) of runs of ``_RUN_FRAMES`` rows, with up to
        ``context`` rows on each side; core indices are relative to the rows held."""
        for lo in range(0, self.n_rows, _RUN_FRAMES):
            hi = min(lo + _RUN_FRAMES, self.n_rows)
            a, b = max(lo - context, 0), min(hi + context, self.n_rows)
            yield a, self.read(a, b), lo - a, hi - a

    def close(self) -> None:
        self._file.close()


class Fingerprint:
    """Landmark hashes (:func:`audiolsh.features.landmarks.landmarks`) of a stream at ``sr`` Hz,
    with the track's energy envelope (a query's stream, ``levels``, keeps its frame levels
    instead)."""

    def __init__(self, sr: int, *, density: float = lm.DENSITY, levels: bool = False) -> None:
        self.resampler = (None if sr == lm.FP_SR
                          else soxr.ResampleStream(sr, lm.FP_SR, 1, dtype="float32", quality="HQ"))
        self.framer = Framer(lm.N_FFT, lm.HOP_LENGTH, center=False)
        self.spill = _Spill(lm.BAND.stop - lm.BAND.start)
        self.peak = 0.0
        self.density = density
        self.levels: list[np.ndarray] | None = [] if levels else None  # a query's noise level
        self.bands: list[np.ndarray] | None = None if levels else []  # a track's envelope (8 floats a frame)

    def push(self, y: np.ndarray, *, last: bool = False) -> None:
        if self.resampler is not None:
            y = self.resampler.resample_chunk(y, last=last)
        self._feed(self.framer.push(np.asarray(y, np.float32)))

    def _feed(self, seg: np.ndarray | None) -> None:
        if seg is None:
            return
        S = lm.magnitude_frames(seg)
        self.peak = max(self.peak, float(S.max()))
        self.spill.write(S[:, lm.BAND])
        if self.levels is not None:
            self.levels.append(lm.frame_levels(S[:, lm.BAND]))
        if self.bands is not None:
            self.bands.append(env.band_power(S))

    def peaks(self) -> lm.Peaks:
        """The stream's spectral peaks, as :func:`~audiolsh.features.landmarks.spectral_peaks`
        picks them from the whole signal."""
        self.push(np.zeros(0, np.float32), last=True)
        self._feed(self.framer.finish())
        floor = lm.level_floor(self.peak)
        parts = []
        try:
            for a, S, lo, hi in self.spill.runs(lm.CONTEXT_FRAMES):
                L = np.log(S + floor).astype(np.float32)
                parts.append(lm.band_peaks(L, density=self.density, core=(lo, hi), t0=a))
        finally:
            self.spill.close()
        times, freqs, strength = (np.concatenate([p[i] for p in parts]) for i in range(3))
        frames = None if self.levels is None else (
            np.concatenate(self.levels) if self.levels else np.zeros((0, 2), np.float32))
        return lm.Peaks(times, freqs, strength, self.spill.n_rows, frames)

    def finish(self) -> lm.Landmarks:
        marks = lm.pair_peaks(self.peaks(), fanout=lm.FANOUT)
        if self.bands is None:
            return marks
        power = np.concatenate(self.bands) if self.bands else np.zeros((0, env.N_BANDS), np.float32)
        return replace(marks, envelope=env.track_envelope(power))


def _keys(L: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values (no NaN)."""
    u = np.ascontiguousarray(L, np.float32).view(np.uint32)
    return np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))


class PeakSets:
    """Peak-pair sets of the excerpt windows (the ``peaks`` mode of
    :func:`audiolsh.features.excerpts.excerpt_features`), from power frames fed in order."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.frame_s = spectral.HOP_LENGTH / sr
        self.max_bin = int(pk.FMAX_HZ * spectral.N_FFT / sr) + 1
        self.spill = _Spill(self.max_bin)
        self.hist = np.zeros(1 << (32 - _KEY_SHIFT), np.int64)

    def feed(self, P: np.ndarray) -> None:
        """Power frames (1 + N_FFT // 2, n)."""
        L = spectral.log_power(P[: self.max_bin]).T
        self.hist += np.bincount((_keys(L) >> _KEY_SHIFT).ravel(), minlength=len(self.hist))
        self.spill.write(L)

    def _median(self) -> float:
        """``np.median`` of every dB value written, exactly: the histogram finds the top 16 bits
        of the middle value(s), one pass over the spill collects the values sharing them."""
        n = int(self.hist.sum())
        ranks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
        cum = np.cumsum(self.hist)
        bins = [int(np.searchsorted(cum, r, side="right")) for r in ranks]
        below = {b: int(cum[b] - self.hist[b]) for b in bins}
        found: list[np.ndarray] = []
        for lo in range(0, self.spill.n_rows, _RUN_FRAMES):
            L = self.spill.read(lo, min(lo + _RUN_FRAMES, self.spill.n_rows)).ravel()
            k = _keys(L) >> _KEY_SHIFT
            found.append(L[np.isin(k, bins)])
        values = np.sort(np.concatenate(found))
        keys = _keys(values) >> _KEY_SHIFT
        middle = []
        for r, b in zip(ranks, bins):
            in_bin = values[keys == b]
            middle.append(in_bin[r - below[b]])
        return float(np.mean(np.array(middle, np.float32)))

    def finish(self, first: np.ndarray, stop: np.ndarray) -> SetBatch:
        try:
            floor = self._median() + pk.MIN_DB
            bins, frames, db = [], [], []
            for a, L, lo, hi in self.spill.runs(pk.TIME_RADIUS):
                b, f = pk.local_peaks(L.T, floor)
                core = (f >= lo) & (f < hi)
                b, f = b[core], f[core]
                bins.append(b)
                frames.append(f + a)
                db.append(L[f, b])
        finally:
            self.spill.close()
        b, f, d = (np.concatenate(x) for x in (bins, frames, db))
        order = np.lexsort((f, b))  # bin-major, as np.nonzero gives them for the whole track
        peaks = pk.strongest(b[order], f[order], d[order], frame_s=self.frame_s)
        elements, at = pk.peak_elements(peaks, frame_s=self.frame_s)
        return pk.window_sets(elements, at, first, stop)
