"""Spectrogram frames of a sample stream, block by block, and per-frame rows kept in a window.

:class:`Framer` cuts a stream of samples into the frames ``librosa.stft`` would take from the
whole signal (centred with zero or reflect padding, or not centred), handing back for each
incoming block the samples that hold its complete new frames (the ``n_fft - hop_length``
samples frames share are kept between blocks).  :class:`Rows` holds the last rows of a
per-frame feature with their absolute frame index, so windowed statistics can be taken as the
frames arrive and the rest dropped.
"""

from __future__ import annotations

import numpy as np

from audiolsh.errors import ParameterError

__all__ = ["Framer", "Rows"]


class Framer:
    """Frames of a stream of samples, as ``librosa.stft(y, n_fft, hop_length, center, pad_mode)``
    of the whole ``y`` frames it.

    ``push(y)`` returns a segment whose non-centred frames (``librosa.stft(seg, center=False)``,
    or a strided view) are the next frames of the stream, or ``None`` if no frame is complete;
    ``finish()`` returns the last segment (the end padding) and must be called once.
    ``n_frames`` counts the frames handed out so far.
    """

    def __init__(self, n_fft: int, hop_length: int, *, center: bool = True,
                 pad_mode: str = "constant") -> None:
        if pad_mode not in ("constant", "reflect"):
            raise ParameterError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        self.n_fft, self.hop_length, self.center, self.pad_mode = n_fft, hop_length, center, pad_mode
        self.n_frames = 0
        self._n_in = 0
        self._started = not (center and pad_mode == "reflect")
        self._buf = np.zeros(n_fft // 2 if center and pad_mode == "constant" else 0, np.float32)

    def push(self, y: np.ndarray) -> np.ndarray | None:
        self._n_in += len(y)
        self._buf = np.concatenate([self._buf, np.asarray(y, np.float32)])
        if not self._started:
            if len(self._buf) < self.n_fft:  # reflect padding needs the first n_fft // 2 + 1 samples
                return None
            self._buf = np.concatenate([self._buf[1 : self.n_fft // 2 + 1][::-1], self._buf])
            self._started = True
        return self._take(final=False)

    def finish(self) -> np.ndarray | None:
        n_fft = self.n_fft
        if not self.center:
            if self._n_in < n_fft and self.n_frames == 0:  # a signal shorter than a frame is padded to one
                self._buf = np.pad(self._buf, (0, n_fft - len(self._buf)))
        elif self.pad_mode == "constant":
            self._buf = np.concatenate([self._buf, np.zeros(n_fft // 2, np.float32)])
        else:
            if not self._started:  # a short signal: reflect the whole of it, as np.pad does
                y = self._buf
                self._buf = np.pad(y, (n_fft // 2, n_fft // 2), mode="reflect")
                self._started = True
                return self._take(final=True)
            tail = self._buf[-(n_fft // 2 + 1) : -1][::-1]
            self._buf = np.concatenate([self._buf, tail])
        return self._take(final=True)

    def _take(self, *, final: bool) -> np.ndarray | None:
        n_fft, hop = self.n_fft, self.hop_length
        if len(self._buf) < n_fft:
            return None
        k = 1 + (len(self._buf) - n_fft) // hop
        seg = self._buf[: (k - 1) * hop + n_fft]
        self.n_frames += k
        self._buf = self._buf[k * hop :]
        if final:
            self._buf = self._buf[:0]
        return seg


class Rows:
    """The last rows of a per-frame feature, (n, dim) float32, with their absolute indices."""

    def __init__(self, dim: int, dtype: type = np.float32) -> None:
        self.start = 0
        self._data: np.ndarray = np.zeros((0, dim), dtype)

    @property
    def stop(self) -> int:
        return self.start + len(self._data)

    def append(self, R: np.ndarray) -> None:
        self._data = np.concatenate([self._data, np.asarray(R, self._data.dtype)])

    def get(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` (absolute); they must still be held."""
        if lo < self.start or hi > self.stop:
            raise IndexError(f"rows [{lo}, {hi}) asked, [{self.start}, {self.stop}) held")
        return self._data[lo - self.start : hi - self.start]

    def keep_from(self, lo: int) -> None:
        """Drop the rows before ``lo``."""
        cut = min(max(lo - self.start, 0), len(self._data))
        if cut:
            self._data = self._data[cut:].copy()
            self.start += cut
