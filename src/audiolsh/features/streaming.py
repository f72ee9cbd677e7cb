"""Every mode's features of a track from a stream of sample blocks, in bounded memory.

:class:`TrackAnalyser` takes a track's samples at 22,050 Hz block by block (``push``) and
returns at the end (``finish``) what :func:`audiolsh.library.extract.analyse` returns for the
whole signal, within float tolerance.  Each spectrogram is computed on the frames each block
completes (:class:`~audiolsh.features.framing.Framer` keeps the overlap); frame-local features
(log-mel, onsets, MFCCs, spectral-pattern blocks, chroma) are computed on those frames;
windowed statistics are taken as soon as a window's frames are in, from a buffer of the last
window's frames (:class:`~audiolsh.features.framing.Rows`); the last windows, whose layout
depends on the track's length, are settled in ``finish``.  Features that need a statistic of
the whole track (the fingerprint's level floor, the peak sets' median level) are in
:mod:`.stream_peaks`.  What is kept grows only with the output (window vectors, chroma frames,
peaks), never with the samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import librosa
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features import chroma as ch
from audiolsh.features import mfcc, rhythm, spectral
from audiolsh.features import spectral_pattern as sp
from audiolsh.features.excerpts import MIN_CLIP_S, window_layout
from audiolsh.features.framing import Framer, Rows

__all__ = ["TrackAnalyser", "Windowed"]

_EMB_N_MELS = 64
_EMB_AMIN = 1e-10
_EPS = 1e-9


def _stft_power(seg: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT|^2 (1 + n_fft // 2, n_frames) float32 of a segment's non-centred frames."""
    D = librosa.stft(seg, n_fft=n_fft, hop_length=hop_length, center=False)
    return (D.real**2 + D.imag**2).astype(np.float32)  # type: ignore[no-any-return]


class Windowed:
    """Windows over a stream of per-frame rows, each reduced as soon as its rows are in.

    ``ranges(i)`` gives window ``i``'s provisional row range ``[lo, hi)`` (before the track's
    end is known); ``reduce(rows)`` its vector.  ``finish(lo, hi)`` takes the final ranges:
    windows reduced on the way over the same range stand, the others (the last ones, clipped
    to the track's end) are reduced from the rows still held (the last ``keep`` rows).
    """

    def __init__(self, dim: int, ranges: Callable[[int], tuple[int, int]],
                 reduce: Callable[[np.ndarray], np.ndarray], keep: int) -> None:
        self.rows = Rows(dim)
        self._ranges, self._reduce, self._keep = ranges, reduce, keep
        self._done: list[tuple[int, int, np.ndarray]] = []

    def push(self, R: np.ndarray) -> None:
        self.rows.append(R)
        while True:
            lo, hi = self._ranges(len(self._done))
            if hi > self.rows.stop:
                break
            self._done.append((lo, hi, self._reduce(self.rows.get(lo, hi))))
        self.rows.keep_from(min(lo, self.rows.stop - self._keep))

    def finish(self, lo: np.ndarray, hi: np.ndarray, dim_out: int) -> np.ndarray:
        out = np.zeros((len(lo), dim_out), np.float32)
        for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            if i < len(self._done) and self._done[i][:2] == (a, b):
                out[i] = self._done[i][2]
            else:
                out[i] = self._reduce(self.rows.get(a, b))
        return out


def _mean_std(R: np.ndarray) -> np.ndarray:
    """Mean then standard deviation of each column of (n, d) rows, float64 accumulation."""
    X = np.asarray(R, np.float64)
    m = X.mean(axis=0)
    return np.concatenate([m, np.sqrt(np.maximum(((X - m) ** 2).mean(axis=0), 0.0))])


class _Embedding:
    """Per-second log-mel statistics (:func:`audiolsh.features.logmel_embeddings` defaults)."""

    n_fft, hop_length, window_s, hop_s = 2048, 512, 1.0, 1.0

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.framer = Framer(self.n_fft, self.hop_length, center=True, pad_mode="reflect")
        self.fps = sr / self.hop_length
        self.win = Windowed(_EMB_N_MELS, self._range, _mean_std, keep=math.ceil(self.window_s * self.fps) + 2)

    def _range(self, i: int) -> tuple[int, int]:
        off = i * self.hop_s
        return (math.ceil(off * self.fps - _EPS), math.ceil((off + self.window_s) * self.fps - _EPS))

    def feed(self, seg: np.ndarray | None) -> None:
        if seg is None:
            return
        S = librosa.feature.melspectrogram(S=_stft_power(seg, self.n_fft, self.hop_length), sr=self.sr,
                                           n_fft=self.n_fft, n_mels=_EMB_N_MELS)
        L = librosa.power_to_db(S, ref=1.0, amin=_EMB_AMIN, top_db=None)
        self.win.push(np.asarray(L, np.float32).T)

    def finish(self, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
        self.feed(self.framer.finish())
        n_frames = self.framer.n_frames
        if duration_s + _EPS < self.window_s:
            raise ParameterError(f"signal of {duration_s:.3f} s is shorter than one embedding window "
                                 f"({self.window_s} s)")
        n_windows = math.floor((duration_s - self.window_s) / self.hop_s + _EPS) + 1
        offsets = np.arange(n_windows, dtype=np.float64) * self.hop_s
        first = np.ceil(offsets * self.fps - _EPS).astype(np.int64)
        stop = np.ceil((offsets + self.window_s) * self.fps - _EPS).astype(np.int64)
        first = np.clip(first, 0, n_frames - 1)
        stop = np.clip(stop, first + 1, n_frames)
        return self.win.finish(first, stop, 2 * _EMB_N_MELS), offsets


class _Chroma:
    """S1's chroma frames (:func:`audiolsh.features.chroma.chroma_frames`)."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.framer = Framer(ch.CHROMA_N_FFT, ch.CHROMA_HOP, center=True)
        self.frames: list[np.ndarray] = []

    def feed(self, seg: np.ndarray | None) -> None:
        if seg is not None:
            P = _stft_power(seg, ch.CHROMA_N_FFT, ch.CHROMA_HOP)
            self.frames.append(ch.chroma_from_power(P, self.sr))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        self.feed(self.framer.finish())
        C = np.concatenate(self.frames) if self.frames else np.zeros((0, 12), np.float32)
        frame_s = ch.CHROMA_HOP / self.sr
        return C, np.arange(len(C)) * frame_s


class _Excerpts:
    """Rhythm and timbre vectors of 10-s windows every 5 s, from the 2048/512 power spectrogram
    (as :func:`audiolsh.features.excerpts.excerpt_features` computes them)."""

    def __init__(self, sr: int, *, modes: Sequence[str], window_s: float, hop_s: float) -> None:
        self.sr, self.modes, self.window_s, self.hop_s = sr, tuple(modes), window_s, hop_s
        self.fps = sr / spectral.HOP_LENGTH
        self.n_w = max(2, round(window_s * self.fps))
        self.mel = spectral.mel_basis(sr, spectral.N_FFT, spectral.N_MELS)
        self._last_L: np.ndarray | None = None  # the frame before a block: onsets are differences
        self._last_B = np.zeros((sp.N_BANDS, 0), np.float32)  # band frames of unfinished blocks
        self._n_blocks = 0
        keep = self.n_w + 2
        self.windows: dict[str, Windowed] = {}
        if "rhythm" in modes:
            self.windows["rhythm"] = Windowed(rhythm.N_BANDS, self._range, self._rhythm, keep=keep)
        if "timbre" in modes:
            self.windows["mfcc"] = Windowed(mfcc.N_MFCC, self._range, self._mfcc, keep=keep)
            self.windows["pattern"] = Windowed(sp.DIM, self._block_range, _mean_rows,
                                               keep=keep // sp.BLOCK_HOP + 2)

    def _range(self, i: int) -> tuple[int, int]:
        first = int(np.round(np.float64(i) * self.hop_s * self.fps))
        return first, first + self.n_w

    def _block_range(self, i: int) -> tuple[int, int]:
        first, stop = self._range(i)
        lo = -(-first // sp.BLOCK_HOP)
        return lo, max((stop - sp.DELTA - sp.BLOCK) // sp.BLOCK_HOP + 1, lo + 1)

    def _rhythm(self, R: np.ndarray) -> np.ndarray:
        return rhythm.rhythm_descriptors(np.ascontiguousarray(R.T)[None], frame_s=1.0 / self.fps)[0]

    @staticmethod
    def _mfcc(R: np.ndarray) -> np.ndarray:
        return _mean_std(R)

    def feed(self, P: np.ndarray) -> None:
        """Power spectrogram frames (1 + N_FFT // 2, n) in order."""
        if P.shape[1] == 0:
            return
        L = spectral.log_power(self.mel @ P)
        if "rhythm" in self.windows:
            prev = L[:, :1] if self._last_L is None else self._last_L
            on = rhythm.onset_bands(np.concatenate([prev, L], axis=1))[:, 1:]
            self.windows["rhythm"].push(on.T)
        self._last_L = L[:, -1:]
        if "mfcc" in self.windows:
            self.windows["mfcc"].push(mfcc.mfcc_frames(L).T)
            B = np.concatenate([self._last_B, sp.band_power(P, self.sr)], axis=1)
            n = 0 if B.shape[1] < sp.MIN_FRAMES else (B.shape[1] - sp.MIN_FRAMES) // sp.BLOCK_HOP + 1
            if n:
                used = (n - 1) * sp.BLOCK_HOP + sp.MIN_FRAMES
                self.windows["pattern"].push(sp.block_profiles(B[:, :used]))
            self._n_blocks += n
            self._last_B = B[:, n * sp.BLOCK_HOP :]

    def finish(self, duration_s: float, n_frames: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        offsets, first, stop, _ = window_layout(duration_s, self.window_s, self.hop_s, self.fps, n_frames)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if "rhythm" in self.windows:
            n_out = rhythm.N_BANDS * (rhythm.log_lag_filters(
                round(rhythm.MAX_LAG_S * self.fps) + 1, 1.0 / self.fps).shape[0] + 1)
            out["rhythm"] = (self.windows["rhythm"].finish(first, stop, n_out), offsets)
        if "mfcc" in self.windows:
            if self._n_blocks == 0:
                raise ParameterError(f"need >= {sp.MIN_FRAMES} frames for the spectral pattern")
            nb = self._n_blocks
            lo = np.minimum(-(-first // sp.BLOCK_HOP), nb - 1)
            hi = np.clip((stop - sp.DELTA - sp.BLOCK) // sp.BLOCK_HOP + 1, lo + 1, nb)
            X = np.concatenate([self.windows["mfcc"].finish(first, stop, 2 * mfcc.N_MFCC),
                                self.windows["pattern"].finish(lo, hi, sp.DIM)], axis=1)
            out["timbre"] = (X, offsets)
        return out


def _mean_rows(R: np.ndarray) -> np.ndarray:
    return np.asarray(R, np.float64).mean(axis=0)


class TrackAnalyser:
    """Features of every mode in ``modes`` from a track's samples at ``sr`` Hz, fed in blocks.

    ``push(y)`` for each block in order, then ``finish()``: the vectors (mode -> (X, offsets_s)),
    the chroma frames (frames, times_s) and, from :mod:`.stream_peaks`, the landmarks and the
    peak sets, as :func:`audiolsh.library.extract.analyse` gives them for the whole signal.
    """

    def __init__(self, sr: int, *, modes: Sequence[str], window_s: float, hop_s: float) -> None:
        from audiolsh.features import stream_peaks

        if sr != spectral.FEATURE_SR:
            raise ParameterError(f"the streaming analysis runs at {spectral.FEATURE_SR} Hz, got sr={sr}")
        if not (math.isfinite(window_s) and window_s >= MIN_CLIP_S):
            raise ParameterError(f"window_s must be >= {MIN_CLIP_S} s, got {window_s}")
        if not (math.isfinite(hop_s) and hop_s > 0):
            raise ParameterError(f"hop_s must be > 0 seconds, got {hop_s}")
        self.sr, self.modes, self.window_s, self.hop_s = sr, tuple(modes), window_s, hop_s
        self.n_samples = 0
        self.embedding = _Embedding(sr) if "embedding" in modes else None
        self.chroma = _Chroma(sr) if "chroma" in modes else None
        self.excerpts = (_Excerpts(sr, modes=modes, window_s=window_s, hop_s=hop_s)
                         if {"rhythm", "timbre"} & set(modes) else None)
        self.peaks = stream_peaks.PeakSets(sr) if "peaks" in modes else None
        self.fingerprint = stream_peaks.Fingerprint(sr) if "fingerprint" in modes else None
        self.framer = (Framer(spectral.N_FFT, spectral.HOP_LENGTH, center=True)
                       if self.excerpts is not None or self.peaks is not None else None)

    def push(self, y: np.ndarray) -> None:
        y = np.asarray(y, np.float32)
        self.n_samples += y.size
        if self.embedding is not None:
            self.embedding.feed(self.embedding.framer.push(y))
        if self.chroma is not None:
            self.chroma.feed(self.chroma.framer.push(y))
        if self.framer is not None:
            self._feed(self.framer.push(y))
        if self.fingerprint is not None:
            self.fingerprint.push(y)

    def _feed(self, seg: np.ndarray | None) -> None:
        if seg is None:
            return
        P = _stft_power(seg, spectral.N_FFT, spectral.HOP_LENGTH)
        if self.excerpts is not None:
            self.excerpts.feed(P)
        if self.peaks is not None:
            self.peaks.feed(P)

    def finish(self) -> dict[str, object]:
        """{"vectors": {mode: (X, offsets_s)}, "chroma_frames": (frames, times) or None,
        "peaks": (SetBatch, offsets_s) or None, "landmarks": Landmarks or None}."""
        duration_s = self.n_samples / self.sr
        if duration_s < MIN_CLIP_S and ({"rhythm", "timbre", "chroma", "peaks"} & set(self.modes)):
            raise ParameterError(f"signal of {duration_s:.3f} s is shorter than the {MIN_CLIP_S:g} s "
                                 "this feature needs")
        vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        out: dict[str, object] = {"vectors": vectors, "chroma_frames": None, "peaks": None, "landmarks": None}
        if self.embedding is not None:
            vectors["embedding"] = self.embedding.finish(duration_s)
        if self.fingerprint is not None:
            out["landmarks"] = self.fingerprint.finish()
        if self.framer is not None:
            self._feed(self.framer.finish())
            n_frames = self.framer.n_frames
            offsets, first, stop, _ = window_layout(duration_s, self.window_s, self.hop_s,
                                                    self.sr / spectral.HOP_LENGTH, n_frames)
            if self.peaks is not None:
                out["peaks"] = (self.peaks.finish(first, stop), offsets)
            if self.excerpts is not None:
                vectors.update(self.excerpts.finish(duration_s, n_frames))
        if self.chroma is not None:
            out["chroma_frames"] = self.chroma.finish()
        return out
