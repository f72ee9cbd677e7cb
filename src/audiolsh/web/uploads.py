"""Uploads: spooled to a private temporary file with a generated name, decoded from there.

The upload's own name is used for display only, never as a path, and its MIME type and
extension are ignored: the content is accepted only if it decodes to usable audio.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from audiolsh.audio import load
from audiolsh.audio.decoder_noise import captured
from audiolsh.errors import AudioError
from audiolsh.library import SAMPLE_RATE
from audiolsh.web.errors import BadUpload, UploadTooLarge

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
#: Decoded float32 bytes allowed before downmixing (libsndfile decodes every channel at the
#: native rate): refuses headers that would inflate a small upload into gigabytes.
MAX_DECODED_BYTES = 512 * 1024 * 1024
MAX_NAME_CHARS = 120
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def display_name(filename: str | None) -> str:
    """The upload's name as shown back to the user: last path part, no control characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("", name).strip()
    if len(name) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - 3] + "..."
    return name or "upload"


@contextmanager
def spooled(stream: BinaryIO, *, max_bytes: int, tmp_dir: str | os.PathLike[str] | None = None) -> Iterator[
        Path]:
    """Copy ``stream`` into a new private file (mode 0600, random name); delete it afterwards.

    Raises ``UploadTooLarge`` past ``max_bytes``.
    """
    fd, name = tempfile.mkstemp(prefix="audiolsh-upload-", suffix=".bin", dir=tmp_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            written = 0
            while chunk := stream.read(CHUNK_BYTES):
                written += len(chunk)
                if written > max_bytes:
                    raise UploadTooLarge(
                        f"the upload is larger than the limit of {max_bytes / 1024 / 1024:g} MB"
                    )
                out.write(chunk)
        yield path
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def decode(path: Path, name: str, *, max_analysis_s: float, min_clip_s: float,
           max_scan_s: float | None = None) -> tuple[np.ndarray, int]:
    """The first ``max_analysis_s`` of an upload as mono float32 at the library's rate, or up to
    ``max_scan_s`` (longer) where its channels and rate fit the decoding budget.

    Any decoding problem becomes ``BadUpload`` with a message about ``name``, never the path.
    """
    duration_s = _check_header(path, name, max_analysis_s=max_analysis_s,
                               max_scan_s=max(max_scan_s or 0.0, max_analysis_s))
    try:
        y, sr = load(path, sr=SAMPLE_RATE, duration_s=duration_s)
    except AudioError as exc:
        log.info("upload %r refused: %s", name, exc.problem)
        raise BadUpload(f"{name}: {_friendly(exc.problem)}") from None
    got_s = len(y) / sr
    if got_s < min_clip_s:
        raise BadUpload(f"{name}: too short: {seconds(got_s)} of audio, at least {min_clip_s:g} s is needed")
    return y, sr


def seconds(s: float) -> str:
    """A length as the command line says it (0.998 s is not "1.0 s", under a 1-s minimum)."""
    return f"{s:.3f} s"


def _check_header(path: Path, name: str, *, max_analysis_s: float, max_scan_s: float) -> float:
    """The seconds to decode: ``max_scan_s``, or less where the channels and rate would not fit
    ``MAX_DECODED_BYTES``; refused when not even ``max_analysis_s`` fits."""
    try:
        with captured():  # an MPEG upload's header is read by libmpg123, which talks on stderr
            header = sf.info(str(path))
    except (RuntimeError, TypeError, ValueError):
        return max_scan_s  # not a libsndfile format: ffmpeg decodes it straight to mono at the library's rate
    fits_s = MAX_DECODED_BYTES / (header.samplerate * header.channels * 4)
    if fits_s < max_analysis_s:
        raise BadUpload(f"{name}: {header.channels} channels at {header.samplerate} Hz is more than"
                        " this server decodes")
    return min(max_scan_s, fits_s)


def _friendly(problem: str) -> str:
    """Decoder jargon turned into what a person can act on (the details go to the log)."""
    if problem.startswith("empty file"):
        return "the file is empty"
    if problem.startswith("silent"):
        return "the audio is silent"
    if problem.startswith("corrupt") or problem.startswith("no audio samples"):
        return "the audio data is corrupt or truncated"
    if "not audio" in problem or problem.startswith("unsupported format"):
        return "this is not an audio file that can be decoded (or it is corrupt)"
    return "the audio cannot be used"


def has_ffmpeg() -> bool:
    """Browser recordings (WebM/Opus, MP4/AAC) need ffmpeg to decode."""
    return shutil.which("ffmpeg") is not None
