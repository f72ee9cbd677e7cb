"""What C decoders print on the process's stderr, captured and counted instead of shown.

libsndfile decodes MP3 through libmpg123, which reports each frame it cannot decode ("bad frame",
"big_values too large") on file descriptor 2 rather than to its caller.  :func:`captured` points
descriptor 2 at a temporary file for the length of a decode, so those lines never reach the
terminal and can be counted; anything else written meanwhile (another thread's log line) is
passed on to the real stderr afterwards.  Descriptor 2 belongs to the whole process, so
captures take turns (one lock).  :func:`check_errors` refuses a stream whose decoding errors
outnumber half its frames, with the decoder's first reason.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from audiolsh.errors import AudioError

logger = logging.getLogger(__name__)

#: Samples per channel in one MPEG audio frame: the unit decoding errors are counted against.
CODEC_FRAME = 1152
#: A stream with more decoding errors than this share of its frames is refused.
MAX_ERROR_SHARE = 0.5

_LOCK = threading.Lock()
_DECODER_LINE = re.compile(r"mpg123|^\[src/|^(?:note|warning|error)\b", re.IGNORECASE)
_ERROR = re.compile(r"\berror\b:?\s*(.*)", re.IGNORECASE)
_FFMPEG_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


@dataclass
class Captured:
    """The decoder's lines written while a capture was on."""

    lines: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        """The reasons of the lines that report an error (``error: <reason>``)."""
        out = []
        for line in self.lines:
            m = _ERROR.search(line)
            if m:
                out.append(m.group(1).strip() or line.strip())
        return out


@contextmanager
def captured() -> Iterator[Captured]:
    """Descriptor 2 into a private file while the block runs; the decoder's lines end up in the
    yielded ``Captured``, every other line on the real stderr."""
    out = Captured()
    with _LOCK:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing can reach a terminal
            yield out
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield out
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
                other: list[str] = []
                for line in text.splitlines():
                    (out.lines if _DECODER_LINE.search(line) else other).append(line)
                if other:
                    os.write(2, ("\n".join(other) + "\n").encode("utf-8", "replace"))


def tool_errors(stderr: bytes) -> list[str]:
    """The error lines of a command-line decoder run at ``-loglevel error`` (ffmpeg), without
    the ``[codec @ 0x...]`` prefix."""
    lines = stderr.decode("utf-8", "replace").splitlines()
    return [_FFMPEG_PREFIX.sub("", line).strip() for line in lines if line.strip()]


def check_errors(path: str | os.PathLike[str], errors: list[str], n_samples: int, *, decoder: str) -> None:
    """Refuse ``path`` when its decoding errors outnumber half the codec frames that
    ``n_samples`` (per channel, at the stream's rate) fill: a mostly undecodable stream."""
    if not errors:
        return
    n_frames = max(1, round(n_samples / CODEC_FRAME))
    if len(errors) <= MAX_ERROR_SHARE * n_frames:
        logger.info("%s: %d decoding errors in about %d frames (%s: %s)",
                    path, len(errors), n_frames, decoder, errors[0])
        return
    reason = " ".join(errors[0].split())[:120]
    raise AudioError(
        path,
        f"not audio or mostly undecodable: {len(errors)} decoding errors in about {n_frames}"
        f" frames ({decoder}: {reason})",
    )
