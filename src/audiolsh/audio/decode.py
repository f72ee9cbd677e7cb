"""Decode audio files to mono float32, with clear errors for files that cannot be used.

libsndfile (through :mod:`soundfile`) is tried first; it seeks, so an excerpt does not decode
the whole file. Formats it cannot open (AAC/M4A, WMA, MP3 on an old libsndfile, ...) are
decoded by the ``ffmpeg`` command-line tool, with ``ffprobe`` for the header.

Only regular files are opened (a FIFO or a device is refused at once).  A header's length is a
hint: a file is decoded in blocks for what it holds, up to ``max_duration_s``.  Decoding errors
are counted (libmpg123's lines on stderr are captured, ffmpeg's read from its stderr) and a
stream that is mostly undecodable is refused with the decoder's reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiolsh.audio.decoder_noise import captured, check_errors, tool_errors
from audiolsh.errors import AudioError, ParameterError
from audiolsh.files import open_regular, regular_problem

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "SILENCE_PEAK",
    "AudioInfo",
    "content_hash",
    "find_audio",
    "info",
    "load",
]

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma"}
)
"""Lower-case file extensions (with the dot) that :func:`find_audio` keeps when walking folders."""

SILENCE_PEAK = 1e-4
"""A decoded signal whose absolute peak is below this (-80 dBFS) is refused as silent."""

#: Why a file of 0 bytes is refused.
EMPTY_FILE = "empty file (0 bytes)"

#: Names libsndfile hands to libmpg123 whatever they hold (1.2 does so for ".mp3" it cannot
#: otherwise identify: random bytes make libmpg123 print its resync notes on stderr).
_MPEG_SUFFIXES = frozenset({".mp3", ".mp2", ".mp1", ".mpga"})
#: libsndfile's message when libmpg123 finds no stream in a file it was given: about pipes, wrong.
_SNDFILE_MISLEADING = "File does not exist or is not a regular file"

_HASH_CHUNK = 1 << 20
#: Frames per libsndfile read: memory is the mono output plus one block, whatever the header says.
_BLOCK_FRAMES = 1 << 18
_FFMPEG_TIMEOUT_S = 600.0
_MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class AudioInfo:
    """Header information of an audio file.

    Attributes
    ----------
    path : Path
        The file.
    sr : int
        Native sample rate in Hz.
    channels : int
        Number of channels.
    duration_s : float
        Duration in seconds (``nan`` if the container does not tell).
    format : str
        Container format as the decoder names it: libsndfile's major format (``"WAV"``,
        ``"FLAC"``, ``"OGG"``, ``"MP3"``, ...) or ffprobe's format name (``"mov,mp4,m4a,..."``).
    """

    path: Path
    sr: int
    channels: int
    duration_s: float
    format: str


# --------------------------------------------------------------------------- helpers


def _brief(reason: object) -> str:
    """One line, at most ``_MAX_REASON_CHARS`` characters, of a decoder's error message."""
    text = " ".join(str(reason).split())
    if len(text) > _MAX_REASON_CHARS:
        text = text[: _MAX_REASON_CHARS - 3] + "..."
    return text or "no reason given"


def _sndfile_reason(exc: Exception, path: Path, *, mpeg: bool = False) -> str:
    """libsndfile's message without the ``Error opening '<path>':`` prefix (it repeats the path)
    or its closing period.  Its "does not exist or is not a regular file (possibly a pipe?)",
    said of a regular file (checked before), means that no decoder found a stream in it."""
    text = str(exc)
    for prefix in (f"Error opening {os.fsencode(path)!r}:", f"Error opening {os.fspath(path)!r}:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if _SNDFILE_MISLEADING in text:
        text = "no MPEG audio frame found" if mpeg else "no audio stream found"
    return _brief(text).rstrip(".")


def _tool_reason(stderr: bytes, path: Path) -> str:
    """First lines of ffmpeg/ffprobe's stderr, without the ``[codec @ 0x...]`` and ``<path>: ``
    prefixes they repeat."""
    lines = [line.replace(f"{os.fspath(path)}: ", "") for line in tool_errors(stderr)]
    return _brief(" ".join(lines)).rstrip(".")


def _check_file(path: Path) -> bytes:
    """Raise :class:`AudioError` unless ``path`` is an existing, non-empty regular file (never a
    FIFO, device or socket, which would block or never end); returns its first bytes."""
    with open_regular(path, AudioError, what="an audio file") as fh:
        head = fh.read(4)
    if not head:
        raise AudioError(path, EMPTY_FILE)
    return head


def _maybe_mpeg(head: bytes, path: Path) -> bool:
    """An MP3's name, an ID3 tag or an MPEG frame sync: libsndfile may hand it to libmpg123,
    which writes its notes and errors on descriptor 2 (captured around it)."""
    return (path.suffix.lower() in _MPEG_SUFFIXES or head[:3] == b"ID3"
            or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0))


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def _check_params(
    sr: int | None,
    offset_s: float,
    duration_s: float | None,
    min_duration_s: float,
    max_duration_s: float | None,
) -> None:
    if sr is not None and (isinstance(sr, bool) or not isinstance(sr, (int, np.integer))):
        raise ParameterError(f"sr must be a positive integer or None, got {sr!r}")
    if sr is not None and sr <= 0:
        raise ParameterError(f"sr must be > 0 Hz, got {sr}")
    if not math.isfinite(offset_s) or offset_s < 0:
        raise ParameterError(f"the offset (--offset) must be a finite number of seconds >= 0,"
                             f" got {offset_s}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ParameterError(f"the duration (--duration) must be a finite number of seconds > 0,"
                             f" got {duration_s}")
    if not math.isfinite(min_duration_s) or min_duration_s < 0:
        raise ParameterError(f"the shortest length accepted must be a finite number of seconds >= 0,"
                             f" got {min_duration_s}")
    if max_duration_s is not None and not (max_duration_s > 0):
        raise ParameterError(f"the longest length accepted (--max-duration) must be > 0 seconds,"
                             f" got {max_duration_s}")
    if max_duration_s is not None and min_duration_s > max_duration_s:
        raise ParameterError(
            f"the shortest length accepted ({min_duration_s} s) is greater than the longest"
            f" ({max_duration_s} s)"
        )


def _too_long(path: Path, max_duration_s: float, offset_s: float, duration_s: float | None) -> AudioError:
    what = "audio" if offset_s == 0 and duration_s is None else "requested excerpt"
    return AudioError(path, f"{what} is too long: more than {_fmt_s(max_duration_s)}, the longest accepted")


def too_short(path: Path, got_s: float, min_duration_s: float) -> AudioError:
    return AudioError(path, f"too short: {_fmt_s(got_s)} of audio, at least {_fmt_s(min_duration_s)} needed")


# --------------------------------------------------------------------------- soundfile


def _load_soundfile(
    path: Path,
    f: sf.SoundFile,
    *,
    offset_s: float,
    duration_s: float | None,
    max_duration_s: float | None,
    sr: int | None = None,
) -> tuple[np.ndarray, int]:
    """Read the requested excerpt from an open :class:`soundfile.SoundFile` in blocks, downmixed,
    and resampled to ``sr`` block by block (None: the native rate): memory holds the excerpt at
    the output rate, not at a 192-kHz native one."""
    blocks: Iterator[np.ndarray] = _soundfile_blocks(path, f, offset_s=offset_s, duration_s=duration_s,
                                                     max_duration_s=max_duration_s)
    out_sr = int(f.samplerate)
    if sr is not None and sr != out_sr:
        blocks = _resampled(blocks, out_sr, sr)
        out_sr = int(sr)
    parts = [b for b in blocks if b.size]
    y = parts[0] if len(parts) == 1 else np.concatenate([np.zeros(0, np.float32), *parts])
    return np.ascontiguousarray(y, dtype=np.float32), out_sr


def _resampled(blocks: Iterator[np.ndarray], from_sr: int, to_sr: int) -> Iterator[np.ndarray]:
    """``blocks`` resampled with a streaming soxr resampler (the samples of resampling the
    whole signal at once)."""
    rs = soxr.ResampleStream(from_sr, to_sr, 1, dtype="float32", quality="HQ")
    seen = False
    for b in blocks:
        seen = seen or b.size > 0
        yield rs.resample_chunk(np.ascontiguousarray(b, np.float32))
    if seen:
        yield rs.resample_chunk(np.zeros(0, np.float32), last=True)


def _soundfile_blocks(
    path: Path,
    f: sf.SoundFile,
    *,
    offset_s: float,
    duration_s: float | None,
    max_duration_s: float | None,
) -> Iterator[np.ndarray]:
    """The requested excerpt of an open :class:`soundfile.SoundFile`, as mono float32 blocks.

    The header's frame count is not trusted: blocks are read until the stream ends, the excerpt
    is complete or one frame more than ``max_duration_s`` is decoded (then it is too long).
    """
    native_sr = int(f.samplerate)
    start = round(offset_s * native_sr)
    wanted = None if duration_s is None else max(1, round(duration_s * native_sr))
    cap = None if max_duration_s is None else math.floor(max_duration_s * native_sr) + 1
    todo = cap if wanted is None else (wanted if cap is None else min(wanted, cap))
    # 16-bit PCM read as int16 and downmixed in integers is several times faster than
    # letting libsndfile convert every sample to float first.
    as_int16 = f.subtype == "PCM_16"
    dtype = "int16" if as_int16 else "float32"
    scale = np.float32((1.0 / 32768 if as_int16 else 1.0) / f.channels)
    got = 0
    try:
        if start > 0:
            _skip(path, f, start, offset_s)
        while todo is None or got < todo:
            n = _BLOCK_FRAMES if todo is None else min(_BLOCK_FRAMES, todo - got)
            data = f.read(frames=n, dtype=dtype, always_2d=True)
            if len(data):
                got += len(data)
                yield _downmix(data, scale)
            if len(data) < n:
                break
    except AudioError:
        raise
    except RuntimeError as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(path, f"corrupt audio data: {_brief(exc)}") from exc
    if offset_s > 0 and got == 0:
        raise AudioError(path, f"offset {_fmt_s(offset_s)} is at or beyond the end of the audio")
    if cap is not None and got >= cap and (wanted is None or cap < wanted):
        assert max_duration_s is not None
        raise _too_long(path, max_duration_s, offset_s, duration_s)


def _skip(path: Path, f: sf.SoundFile, start: int, offset_s: float) -> None:
    """Move to frame ``start``: a seek, or reading and dropping blocks where it cannot seek."""
    if f.seekable():
        try:
            f.seek(start)
        except (RuntimeError, ValueError):
            raise AudioError(
                path, f"offset {_fmt_s(offset_s)} is at or beyond the end of the audio") from None
        return
    left = start
    while left > 0:
        n = len(f.read(frames=min(_BLOCK_FRAMES, left), dtype="float32", always_2d=True))
        if n == 0:
            break
        left -= n


def _downmix(data: np.ndarray, scale: np.float32) -> np.ndarray:
    """Mono float32 of a (frames, channels) block, by averaging the channels."""
    # Column by column: numpy reduces a short last axis (2 channels) an order of magnitude slower.
    y = data[:, 0].astype(np.float32)
    for ch in range(1, data.shape[1]):
        y += data[:, ch]
    y *= scale
    return y


# --------------------------------------------------------------------------- ffmpeg


def _ffprobe(path: Path, sndfile_reason: str) -> AudioInfo | None:
    """Header of the first audio stream through ``ffprobe``; ``None`` if ffprobe is absent.

    Raises :class:`AudioError` (quoting ``sndfile_reason``, why libsndfile refused the file)
    if ffprobe runs but cannot read the file or finds no audio stream in it.
    """
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [
        exe, "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=sample_rate,channels,duration:format=format_name,duration",
        "-of", "json", os.fspath(path),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("ffprobe failed on %s: %s", path, exc)
        return None
    if proc.returncode != 0:
        raise AudioError(
            path,
            f"not audio or unreadable: libsndfile: {sndfile_reason}; "
            f"ffprobe: {_tool_reason(proc.stderr, path)}",
        )
    try:
        meta = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError as exc:
        logger.debug("ffprobe printed invalid JSON for %s: %s", path, exc)
        return None
    streams = meta.get("streams") or []
    if not streams:
        raise AudioError(
            path, f"not audio or unreadable: libsndfile: {sndfile_reason}; ffprobe: no audio stream"
        )
    stream, fmt = streams[0], meta.get("format") or {}

    def _num(value: object) -> float:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return math.nan

    duration = _num(stream.get("duration"))
    if not math.isfinite(duration):
        duration = _num(fmt.get("duration"))
    sr = _num(stream.get("sample_rate"))
    channels = _num(stream.get("channels"))
    if not (math.isfinite(sr) and sr > 0 and math.isfinite(channels) and channels > 0):
        raise AudioError(
            path,
            f"not audio or unreadable: libsndfile: {sndfile_reason}; ffprobe: no valid audio stream"
            f" (sample rate {stream.get('sample_rate')}, channels {stream.get('channels')})",
        )
    return AudioInfo(
        path=path,
        sr=int(sr),
        channels=int(channels),
        duration_s=duration,
        format=str(fmt.get("format_name", "unknown")),
    )


def _load_ffmpeg(
    path: Path,
    *,
    sr: int | None,
    offset_s: float,
    duration_s: float | None,
    max_duration_s: float | None,
    sndfile_reason: str,
) -> tuple[np.ndarray, int]:
    """Decode with the ``ffmpeg`` executable to mono float32 at ``sr`` (native if ``None``)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(
            path,
            f"unsupported format (libsndfile: {sndfile_reason}); ffmpeg is not on PATH, "
            "install it to decode this format",
        )
    probe = _ffprobe(path, sndfile_reason)  # its duration is a hint: not checked here
    out_sr = sr if sr is not None else (probe.sr if probe is not None else None)
    if out_sr is None:
        raise AudioError(
            path,
            "cannot tell the native sample rate: ffprobe is not on PATH; pass an explicit sr",
        )
    # Downmix by averaging the channels ourselves: ffmpeg's own "-ac 1" sums with a +3 dB gain.
    channels = probe.channels if probe is not None else 1

    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if offset_s > 0:
        cmd += ["-ss", f"{offset_s:.6f}"]
    cmd += ["-i", os.fspath(path)]
    # Never decode much more than the limit, whatever the header says the length is.
    limit_s = None if max_duration_s is None else max_duration_s + 1.0 / out_sr
    if duration_s is not None or limit_s is not None:
        cmd += ["-t", f"{min(s for s in (duration_s, limit_s) if s is not None):.6f}"]
    cmd += ["-map", "0:a:0", "-vn", "-ac", str(channels), "-ar", str(out_sr)]
    cmd += ["-f", "f32le", "-acodec", "pcm_f32le", "-"]
    logger.debug("decoding %s with ffmpeg: %s", path, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(path, f"ffmpeg took more than {_FFMPEG_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise AudioError(path, f"cannot run ffmpeg: {_brief(exc)}") from exc
    if proc.returncode != 0:
        reason = _tool_reason(proc.stderr, path)
        raise AudioError(
            path,
            f"not audio or unreadable: libsndfile: {sndfile_reason}; ffmpeg: {reason}",
        )
    raw = proc.stdout
    usable = len(raw) - len(raw) % (4 * channels)
    data = np.frombuffer(raw[:usable], dtype="<f4").reshape(-1, channels)
    native_sr = probe.sr if probe is not None else out_sr
    check_errors(path, tool_errors(proc.stderr), round(data.shape[0] * native_sr / out_sr), decoder="ffmpeg")
    if offset_s > 0 and data.shape[0] == 0:
        raise AudioError(path, f"offset {_fmt_s(offset_s)} is at or beyond the end of the audio")
    if max_duration_s is not None and data.shape[0] > round(max_duration_s * out_sr):
        raise _too_long(path, max_duration_s, offset_s, duration_s)
    # frombuffer is read-only: copy so that callers (and the clipping in load) may write.
    y = data.mean(axis=1, dtype=np.float32) if channels > 1 else data[:, 0].copy()
    return y, int(out_sr)


# --------------------------------------------------------------------------- public API


def load(
    path: str | os.PathLike[str],
    *,
    sr: int | None = 22050,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    min_duration_s: float = 0.0,
    max_duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio file (or an excerpt of it) to mono float32.

    Parameters
    ----------
    path : str or PathLike
        Audio file. libsndfile formats (WAV, FLAC, Ogg Vorbis/Opus, AIFF, MP3 on
        libsndfile >= 1.1) are read directly; anything else goes through ``ffmpeg``.
    sr : int or None
        Target sample rate in Hz (resampled with soxr 'HQ'); ``None`` keeps the native rate.
    offset_s : float
        Start of the excerpt in seconds from the beginning of the file.
    duration_s : float or None
        Length of the excerpt in seconds; ``None`` reads to the end.
    min_duration_s : float
        Refuse a decoded signal shorter than this many seconds.
    max_duration_s : float or None
        Refuse a signal longer than this many seconds. What is decoded is measured, not what
        the header claims (a header's length is a hint): decoding stops one frame past it.

    Returns
    -------
    y : np.ndarray
        Mono float32 samples in [-1, 1], shape (n,).
    sr : int
        Sample rate of ``y`` in Hz.

    Raises
    ------
    AudioError
        Missing, empty, corrupt, unsupported or non-audio file; not a regular file (a FIFO, a
        device, a socket, a symbolic link loop); mostly undecodable (more decoding errors than
        half its frames); no samples decoded; silent (peak below -80 dBFS); too short or too
        long; offset past the end.
    ParameterError
        ``sr <= 0``, negative ``offset_s``, ``duration_s <= 0`` and the like.
    """
    _check_params(sr, offset_s, duration_s, min_duration_s, max_duration_s)
    p = Path(path)
    head = _check_file(p)

    try:
        y, file_sr = _load_libsndfile(
            p, mpeg=_maybe_mpeg(head, p), offset_s=offset_s, duration_s=duration_s,
            max_duration_s=max_duration_s, sr=sr,
        )
    except _NotLibsndfile as exc:
        logger.debug("libsndfile cannot open %s (%s); trying ffmpeg", p, exc.reason)
        y, file_sr = _load_ffmpeg(
            p,
            sr=sr,
            offset_s=offset_s,
            duration_s=duration_s,
            max_duration_s=max_duration_s,
            sndfile_reason=exc.reason,
        )

    if y.size == 0:
        raise AudioError(p, "no audio samples could be decoded")
    if not np.all(np.isfinite(y)):
        raise AudioError(p, "corrupt audio data: decoded samples contain NaN or infinity")
    if sr is not None and file_sr != sr:
        logger.debug("resampling %s from %d Hz to %d Hz", p, file_sr, sr)
        y = np.asarray(soxr.resample(y, file_sr, sr, quality="HQ"), dtype=np.float32)
        file_sr = int(sr)
    np.clip(y, -1.0, 1.0, out=y)

    got_s = y.size / file_sr
    peak = float(np.max(np.abs(y)))
    if peak < SILENCE_PEAK:
        level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.1f}"
        raise AudioError(p, f"silent: peak level {level} dBFS is below -80 dBFS")
    if got_s < min_duration_s:
        raise too_short(p, got_s, min_duration_s)
    return y, int(file_sr)


UNKNOWN_LENGTH = 1 << 62
"""Frames at or above this in a header mean a length libsndfile does not know."""


def open_sndfile(p: Path) -> sf.SoundFile:
    """``p`` opened by libsndfile; raises ``_NotLibsndfile`` for a FLAC stream whose header does not
    say its length (``ffmpeg ... -f flac -`` writes one to a pipe): libsndfile stops part-way
    through such a stream with a seek error, ffmpeg decodes it whole."""
    snd = sf.SoundFile(os.fsencode(p))
    if snd.format == "FLAC" and snd.frames >= UNKNOWN_LENGTH:
        snd.close()
        raise _NotLibsndfile("a FLAC stream whose header does not say its length")
    return snd


class _NotLibsndfile(Exception):
    """libsndfile cannot open the file (``reason``): ffmpeg may."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _load_libsndfile(
    p: Path, *, mpeg: bool, offset_s: float, duration_s: float | None, max_duration_s: float | None,
    sr: int | None = None,
) -> tuple[np.ndarray, int]:
    """Decode with libsndfile, resampled to ``sr`` as it streams (None: the native rate).  An
    MPEG stream is decoded with descriptor 2 captured: libmpg123's error lines are counted,
    never shown."""
    with captured() if mpeg else nullcontext() as noise:
        try:
            snd = open_sndfile(p)
        except RuntimeError as exc:  # soundfile.LibsndfileError is a RuntimeError
            refused: RuntimeError | None = exc
        else:
            refused = None
            with snd:
                native_sr = int(snd.samplerate)
                y, file_sr = _load_soundfile(
                    p, snd, offset_s=offset_s, duration_s=duration_s, max_duration_s=max_duration_s, sr=sr
                )
    if refused is not None:  # raised once descriptor 2 is back: the decoder's notes stay unseen
        if noise is not None and noise.lines:
            logger.debug("%s: libmpg123 said: %s", p, " | ".join(noise.lines[:5]))
        raise _NotLibsndfile(_sndfile_reason(refused, p, mpeg=mpeg))
    if noise is not None:
        check_errors(p, noise.errors(), round(y.size * native_sr / file_sr), decoder="libmpg123")
    return y, file_sr


def info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read the header of an audio file without decoding it.

    Parameters
    ----------
    path : str or PathLike
        Audio file.

    Returns
    -------
    AudioInfo
        Native sample rate (Hz), channel count, duration (s) and container format.

    Raises
    ------
    AudioError
        Missing, empty, non-audio or unsupported file (unsupported by libsndfile and ffprobe
        absent or failing).
    """
    p = Path(path)
    head = _check_file(p)
    mpeg = _maybe_mpeg(head, p)
    try:
        with captured() if mpeg else nullcontext(), sf.SoundFile(os.fsencode(p)) as f:
            return AudioInfo(
                path=p,
                sr=int(f.samplerate),
                channels=int(f.channels),
                duration_s=(f.frames / f.samplerate) if 0 < f.frames < UNKNOWN_LENGTH else math.nan,
                format=str(f.format),
            )
    except RuntimeError as exc:  # soundfile.LibsndfileError is a RuntimeError
        reason = _sndfile_reason(exc, p, mpeg=mpeg)
    probe = _ffprobe(p, reason)
    if probe is None:
        raise AudioError(
            p,
            f"unsupported format (libsndfile: {reason}); ffprobe is not on PATH to try it",
        )
    return probe


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-1 of the file's bytes, as 40 hex digits (read in 1 MiB chunks).

    Parameters
    ----------
    path : str or PathLike
        Any file.

    Raises
    ------
    AudioError
        The file is missing, cannot be read or is not a regular file (a FIFO or a device would
        never end: refused before anything is read).
    """
    p = Path(path)
    h = hashlib.sha1()
    with open_regular(p, AudioError) as fh:
        try:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
        except OSError as exc:
            raise AudioError(p, f"cannot read file: {_brief(exc.strerror or exc)}") from None
    return h.hexdigest()


def find_audio(
    paths: Iterable[str | os.PathLike[str]],
    *,
    on_skip: Callable[[Path, str], None] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> list[Path]:
    """Expand files and folders into a sorted, deduplicated list of audio files.

    Parameters
    ----------
    paths : iterable of str or PathLike
        Files are kept as given, whatever their extension (and whatever they are: reading
        them refuses what is not a regular file). Folders are walked recursively, keeping
        files whose lower-cased extension is in :data:`AUDIO_EXTENSIONS`; hidden files and
        folders (name starting with ``.``, e.g. macOS ``._song.mp3``) are skipped.
    on_skip : callable, optional
        ``on_skip(path, problem)`` for an entry of a walked folder with an audio extension that
        is not a regular file (a FIFO, a device, a socket, a broken link, a link loop).
    on_error : callable, optional
        ``on_error(folder, problem)`` for a folder that cannot be listed (no permission); the
        walk goes on with the others.  Without it that raises AudioError.

    Returns
    -------
    list of Path
        Sorted by path string; a file reached twice (same resolved path) appears once.

    Raises
    ------
    AudioError
        A given path does not exist; a folder cannot be listed (without ``on_error``).
    """
    def unlisted(exc: OSError) -> None:
        folder = Path(exc.filename if exc.filename is not None else p)
        problem = f"cannot read this folder: {exc.strerror or exc}"
        if on_error is None:
            raise AudioError(folder, problem)
        on_error(folder, problem)

    found: dict[Path, Path] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, names in _walk_audio(p, unlisted):
                for name in names:
                    fp = Path(root) / name
                    problem = regular_problem(fp)
                    if problem is None:
                        found.setdefault(_identity(fp), fp)
                    elif on_skip is not None:
                        on_skip(fp, problem)
        elif os.path.lexists(p):
            found.setdefault(_identity(p), p)
        else:
            raise AudioError(p, "no such file or directory")
    return sorted(found.values(), key=str)


def _walk_audio(folder: str | os.PathLike[str], onerror: Callable[[OSError], None]
                ) -> Iterator[tuple[str, list[str]]]:
    """(folder, its file names with an audio extension) of ``folder`` and its subfolders, hidden
    ones left out, in sorted order."""
    for root, dirs, files in os.walk(folder, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield root, [n for n in files if not n.startswith(".") and Path(n).suffix.lower() in AUDIO_EXTENSIONS]


def has_audio(folder: str | os.PathLike[str]) -> bool:
    """Whether walking ``folder`` as :func:`find_audio` does finds a file with an audio extension
    (it stops at the first), or a folder it cannot read (then only the walk can tell)."""
    unread: list[OSError] = []
    return any(names for _, names in _walk_audio(folder, unread.append)) or bool(unread)


def _identity(path: Path) -> Path:
    """The resolved path (two names of one file are one), or the absolute one if it cannot be
    resolved (a link loop: refused when it is read)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))
