"""Decode an audio file as a stream of mono float32 blocks, in bounded memory.

:func:`load` returns the whole signal; :func:`stream_blocks` yields it block by block at the
requested rate (resampled with a streaming soxr resampler, which gives the same samples as
resampling the whole signal at once), so that memory does not grow with the file's length,
channel count or sample rate.  The checks :func:`load` makes on the whole signal (samples
decoded, finite, not silent, not too short, not too long) are made on the way: the too-long
check stops decoding one frame past ``max_duration_s``; the others raise :class:`AudioError`
after the last block, before the caller finishes its analysis.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from audiolsh.audio import decode
from audiolsh.audio.decoder_noise import captured, check_errors, tool_errors
from audiolsh.errors import AudioError

__all__ = ["SignalStats", "excerpt_blocks", "stream_blocks"]

_FFMPEG_READ_FRAMES = 1 << 18


class SignalStats:
    """What :func:`stream_blocks` has seen: samples (at the output rate) and absolute peak."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.n_samples = 0
        self.peak = 0.0

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sr


def stream_blocks(
    path: str | os.PathLike[str],
    *,
    sr: int,
    min_duration_s: float = 0.0,
    max_duration_s: float | None = None,
    stats: SignalStats | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a whole file at ``sr`` Hz, clipped to [-1, 1].

    Concatenated, the blocks equal ``load(path, sr=sr, ...)``'s signal; ``stats`` (if given)
    is filled on the way.  Raises :class:`AudioError` as :func:`load` does: at once for a file
    that cannot be opened, while decoding for a corrupt or too long one, and after the last
    block for one that holds no samples, is silent or is too short.
    """
    decode._check_params(sr, 0.0, None, min_duration_s, max_duration_s)
    p = Path(path)
    head = decode._check_file(p)
    seen = stats if stats is not None else SignalStats(sr)
    try:
        native = _libsndfile_blocks(p, mpeg=decode._maybe_mpeg(head, p), max_duration_s=max_duration_s)
        file_sr = next(native)
    except decode._NotLibsndfile as exc:
        native = _ffmpeg_blocks(p, sr=sr, max_duration_s=max_duration_s, sndfile_reason=exc.reason)
        file_sr = next(native)
    resampler = None if file_sr == sr else soxr.ResampleStream(file_sr, sr, 1, dtype="float32", quality="HQ")
    n_native = 0
    for y in native:
        if not np.all(np.isfinite(y)):
            raise AudioError(p, "corrupt audio data: decoded samples contain NaN or infinity")
        n_native += y.size
        if resampler is not None:
            y = resampler.resample_chunk(y)
        if y.size:
            yield _checked(y, seen)
    if n_native == 0:
        raise AudioError(p, "no audio samples could be decoded")
    if resampler is not None:
        y = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if y.size:
            yield _checked(y, seen)
    if seen.peak < decode.SILENCE_PEAK:
        level = "-inf" if seen.peak == 0 else f"{20 * math.log10(seen.peak):.1f}"
        raise AudioError(p, f"silent: peak level {level} dBFS is below -80 dBFS")
    if seen.duration_s < min_duration_s:
        raise decode.too_short(p, seen.duration_s, min_duration_s)


def excerpt_blocks(blocks: Iterator[np.ndarray], *, sr: int, offset_s: float = 0.0,
                   duration_s: float | None = None) -> Iterator[np.ndarray]:
    """The samples of ``blocks`` (at ``sr`` Hz) from ``offset_s`` for ``duration_s`` seconds
    (to the end for None).  The rest of the stream is still drained, so that its checks run."""
    start = round(offset_s * sr)
    stop = None if duration_s is None else start + round(duration_s * sr)
    at = 0
    for y in blocks:
        a, b = max(start - at, 0), len(y) if stop is None else min(max(stop - at, 0), len(y))
        at += len(y)
        if a < b:
            yield y[a:b]


def _checked(y: np.ndarray, seen: SignalStats) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    np.clip(y, -1.0, 1.0, out=y)
    seen.n_samples += y.size
    seen.peak = max(seen.peak, float(np.max(np.abs(y))))
    return y


def _libsndfile_blocks(p: Path, *, mpeg: bool, max_duration_s: float | None) -> Iterator[Any]:
    """The native rate, then mono blocks at it; raises ``_NotLibsndfile`` on the first ``next``."""
    with captured() if mpeg else nullcontext() as noise:
        try:
            snd = decode.open_sndfile(p)
        except RuntimeError as exc:  # soundfile.LibsndfileError is a RuntimeError
            raise decode._NotLibsndfile(decode._sndfile_reason(exc, p, mpeg=mpeg)) from None
        n = 0
        with snd:
            yield int(snd.samplerate)
            for y in decode._soundfile_blocks(p, snd, offset_s=0.0, duration_s=None,
                                              max_duration_s=max_duration_s):
                n += y.size
                yield y
    if noise is not None:
        check_errors(p, noise.errors(), n, decoder="libmpg123")


def _ffmpeg_blocks(p: Path, *, sr: int, max_duration_s: float | None, sndfile_reason: str) -> Iterator[Any]:
    """The output rate, then mono blocks decoded by ``ffmpeg`` at ``sr`` (read from its pipe)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(p, f"unsupported format (libsndfile: {sndfile_reason}); ffmpeg is not on PATH, "
                            "install it to decode this format")
    probe = decode._ffprobe(p, sndfile_reason)
    channels = probe.channels if probe is not None else 1
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", os.fspath(p)]
    if max_duration_s is not None:
        cmd += ["-t", f"{max_duration_s + 1.0 / sr:.6f}"]
    cmd += ["-map", "0:a:0", "-vn", "-ac", str(channels), "-ar", str(sr)]
    cmd += ["-f", "f32le", "-acodec", "pcm_f32le", "-"]
    yield sr
    deadline = time.monotonic() + decode._FFMPEG_TIMEOUT_S
    frame_bytes = 4 * channels
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        except OSError as exc:
            raise AudioError(p, f"cannot run ffmpeg: {decode._brief(exc)}") from exc
        got = 0
        try:
            assert proc.stdout is not None
            rest = b""
            while chunk := proc.stdout.read(_FFMPEG_READ_FRAMES * frame_bytes):
                if time.monotonic() > deadline:
                    raise AudioError(p, f"ffmpeg took more than {decode._FFMPEG_TIMEOUT_S:.0f} s")
                raw = rest + chunk
                usable = len(raw) - len(raw) % frame_bytes
                rest = raw[usable:]
                data = np.frombuffer(raw[:usable], dtype="<f4").reshape(-1, channels)
                got += len(data)
                if max_duration_s is not None and got > round(max_duration_s * sr):
                    raise decode._too_long(p, max_duration_s, 0.0, None)
                yield data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0].copy()
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read()
    if returncode != 0:
        raise AudioError(p, f"not audio, corrupt or unsupported format (libsndfile: {sndfile_reason}; "
                            f"ffmpeg: {decode._tool_reason(stderr, p)})")
    native_sr = probe.sr if probe is not None else sr
    check_errors(p, tool_errors(stderr), round(got * native_sr / sr), decoder="ffmpeg")
