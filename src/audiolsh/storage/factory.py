"""Storage locations: one string names where an index lives, its scheme names the backend.

    /music/lib, file:///music/lib   the embedded backend (a directory)
    memory://name                   in memory, shared by the handles of this process that name it
    :memory:, None                  in memory, private to one handle (create only)

A library is several indexes under one location (``join(location, "rhythm")``), so a backend
that can hold one index can hold a whole library.
"""

from __future__ import annotations

import os
from pathlib import Path

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.storage.base import Storage
from audiolsh.storage.embedded import MANIFEST, EmbeddedStorage
from audiolsh.storage.memory import MemoryStorage

Location = str | os.PathLike[str]
SCHEMES = ("file", "memory")


def split(location: Location | None) -> tuple[str, str]:
    """(scheme, rest): ("memory", "") for a private memory location."""
    if location is None:
        return "memory", ""
    text = os.fspath(location)
    if text == ":memory:":
        return "memory", ""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "file", text
    if scheme not in SCHEMES:
        hint = " (install audiolsh[redis])" if scheme in ("redis", "rediss", "unix") else ""
        raise ParameterError(
            f"{text!r}: unknown storage scheme {scheme!r}; use a directory or one of"
            f" {[s + '://' for s in SCHEMES]}{hint}")
    if scheme == "memory" and not rest:
        raise ParameterError(f"{text!r}: a memory location needs a name (memory://name)")
    return scheme, rest


def join(location: Location | None, name: str) -> str | None:
    """The location of ``name`` inside ``location`` (None stays None: private memory)."""
    if location is None or os.fspath(location) == ":memory:":
        return None
    scheme, rest = split(location)
    if scheme == "file":
        return os.fspath(Path(rest) / name)
    return f"{scheme}://{rest.rstrip('/')}/{name}"


def describe(location: Location | None) -> str:
    return ":memory:" if location is None else os.fspath(location)


def storage_exists(location: Location | None) -> bool:
    """True when a storage was created at ``location`` (a directory's manifest, a memory name)."""
    scheme, rest = split(location)
    if scheme == "file":
        return (Path(rest) / MANIFEST).exists()
    return bool(rest) and MemoryStorage.exists(rest)


def open_storage(location: Location | None, *, create: bool = False, readonly: bool = False) -> Storage:
    """The storage at ``location``; ``create`` makes it when absent (an existing one is opened)."""
    scheme, rest = split(location)
    if scheme == "file":
        return EmbeddedStorage(rest, create=create, readonly=readonly)
    if not rest:
        if not create:
            raise ParameterError("a private memory storage can only be created, not opened")
        return MemoryStorage()
    if not create and not MemoryStorage.exists(rest):
        raise IndexFormatError(f"memory://{rest}: no index here")
    return MemoryStorage(rest)
