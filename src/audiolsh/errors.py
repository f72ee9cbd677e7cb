"""One exception root for the project; each error inherits the builtin it resembles."""

from __future__ import annotations

import os

from audiolsh.files import shown


class AudiolshError(Exception):
    """Root of every error audiolsh raises on purpose."""


class ParameterError(AudiolshError, ValueError):
    """A parameter is out of range or of the wrong kind."""


class AudioError(AudiolshError, RuntimeError):
    """An audio file cannot be used: corrupt, empty, silent, too short, unsupported, huge.

    The message always names the file.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{shown(self.path)}: {problem}")


class InputFormatError(AudiolshError, ValueError):
    """A vector or table file cannot be read (bad header, bad record, wrong shape)."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{shown(self.path)}: {problem}")


class IndexFormatError(AudiolshError, RuntimeError):
    """The index directory is missing, of another format version, or inconsistent."""


class StorageUnavailable(IndexFormatError):
    """The storage cannot be reached right now (a Redis server down, refusing, timing out);
    the same call may work once it is back.  The message names the location, never a password."""
