"""Input files: only regular files are read, and names that are not UTF-8 are shown escaped.

A FIFO, a device or a socket given as an input would block a read forever or never end
(``/dev/zero``); a symbolic link loop never resolves.  :func:`check_regular` says which, in a
few words, before anything opens the file; :func:`open_regular` opens without blocking and
checks again on the open descriptor (the name may be replaced between the two).

A file name is bytes on POSIX; Python gives the bytes that are not UTF-8 as lone surrogates,
which neither a terminal, JSON nor SQLite can take.  :func:`shown` is the name as valid text
(those bytes as ``\\xNN``), for messages, records and catalogues.

:func:`ast_race_retry` runs a read of a ``.npy`` header again when CPython 3.11 reports a
spurious "AST constructor recursion depth mismatch": numpy parses each header with
``ast.literal_eval``, and two threads building ASTs at once can trip that check
(python/cpython#106905); the web app's page-in thread and its request threads read segments
and the shipped normalisation at once.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import BinaryIO, TypeVar

__all__ = ["ast_race_retry", "check_regular", "open_regular", "regular_problem", "shown"]

T = TypeVar("T")
_AST_RACE = "AST constructor recursion depth mismatch"

#: Builds the caller's exception from (path, problem): ``AudioError``, ``InputFormatError``.
ErrorFactory = Callable[[str | os.PathLike[str], str], Exception]

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a file unchanged since it was last read: size, modification time, inode, device."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def shown(path: str | os.PathLike[str] | bytes) -> str:
    """``path`` as text that is always valid UTF-8: bytes of the name that are not UTF-8 appear
    as ``\\xNN`` (``b"caf\\xe9.wav"`` -> ``"caf\\\\xe9.wav"``); a valid name is unchanged."""
    raw = path if isinstance(path, bytes) else os.fspath(path)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "backslashreplace")
    try:
        raw.encode("utf-8")
        return raw
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(raw).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that surrogateescape did not make
        return raw.encode("utf-8", "backslashreplace").decode("utf-8")


def _kind_problem(mode: int, what: str) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"is a directory, not {what}"
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file: {kind}"


def regular_problem(path: str | os.PathLike[str], *, what: str = "a file") -> str | None:
    """Why ``path`` is not a regular file to read (following symbolic links), or None.

    One short phrase: ``"file not found"``, ``"symbolic link loop"``, ``"broken symbolic link"``,
    ``"is a directory, not <what>"``, ``"not a regular file: a FIFO (named pipe)"``, ...
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link" if os.path.lexists(path) else "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot access file: {exc.strerror or exc}"
    except ValueError as exc:  # a NUL byte in the name
        return f"invalid file name: {exc}"
    return _kind_problem(st.st_mode, what)


def check_regular(path: str | os.PathLike[str], error: ErrorFactory, *, what: str = "a file") -> None:
    """Raise ``error(path, problem)`` unless ``path`` is a regular file (see ``regular_problem``)."""
    problem = regular_problem(path, what=what)
    if problem is not None:
        raise error(path, problem)


def open_regular(path: str | os.PathLike[str], error: ErrorFactory, *, what: str = "a file") -> BinaryIO:
    """``path`` opened for reading in binary, refused unless it is a regular file.  The open never
    blocks (a FIFO without a writer) and the open descriptor is checked again."""
    check_regular(path, error, what=what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(path, "file not found") from None
    except OSError as exc:
        raise error(path, f"cannot read file: {exc.strerror or exc}") from None
    try:
        problem = _kind_problem(os.fstat(fd).st_mode, what)
        if problem is not None:
            raise error(path, problem)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def ast_race_retry(read: Callable[[], T], *, attempts: int = 3) -> T:
    """``read()``, run again (up to ``attempts`` times in all) when it fails with CPython's
    spurious AST recursion-depth error; ``read`` must start from scratch each time (reopen or
    rewind its source). Any other error is raised at once."""
    for attempt in range(attempts):
        try:
            return read()
        except SystemError as exc:
            if _AST_RACE not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
