"""Served audio files are the catalogue's own.

A track's stored path is served only when it is absolute (a relative one would name a file in
the server's working folder, not the one that was indexed) and names a regular file whose
content hash is still the catalogue's; anything else is a 404.  The check reads the file once
and is remembered by the file's size, modification time and inode, so a player's range
requests cost one ``stat``.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from audiolsh.audio import content_hash
from audiolsh.errors import AudioError
from audiolsh.files import regular_problem, stat_key
from audiolsh.storage import Track
from audiolsh.web.errors import NotFound

_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def _on_disk(stored: str) -> str:
    """The file a stored path names: a name that was not UTF-8 is stored with its bytes shown
    as ``\\xNN`` (``files.shown``), turned back into those bytes here."""
    if os.path.lexists(stored) or not _ESCAPED_BYTE.search(stored):
        return stored
    raw = _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), stored)
    try:
        return os.fsdecode(os.fsencode(raw))
    except UnicodeError:
        return stored


class ServedFiles:
    """The check of each track's file, remembered while the file is unchanged (thread-safe)."""

    def __init__(self) -> None:
        self._matched: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()

    def path_of(self, track: Track) -> Path:
        """The track's own file, or ``NotFound`` saying why it cannot be served."""
        gone = NotFound(f"the audio file of track {track.id} is no longer where it was indexed")
        if not os.path.isabs(track.path):
            raise NotFound(f"track {track.id} was indexed by a relative path, which names no file"
                           " here; index it again to play it")
        path = _on_disk(track.path)
        if regular_problem(path) is not None:
            raise gone
        try:
            st = os.stat(path)
        except OSError:
            raise gone from None
        key = (path, track.content_hash)
        with self._lock:
            if self._matched.get(key) == stat_key(st):
                return Path(path)
        try:
            digest = content_hash(path)
            st_after = os.stat(path)
        except (AudioError, OSError):
            raise gone from None
        if digest != track.content_hash or stat_key(st_after) != stat_key(st):
            raise NotFound(f"the audio file of track {track.id} has changed since it was indexed")
        with self._lock:
            self._matched[key] = stat_key(st)
        return Path(path)
