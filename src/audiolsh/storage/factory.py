"""Storage locations: one string names where an index lives, its scheme names the backend.

    /music/lib, file:///music/lib   the embedded backend (a directory)
    memory://name                   in memory, shared by the handles of this process that name it
    :memory:, None                  in memory, private to one handle (create only)
    redis://host:port/db?prefix=NAME, rediss://..., unix:///path/redis.sock?db=N&prefix=NAME
                                    in Redis under a key prefix, shared by every process that
                                    names it (needs redis-py: audiolsh[redis])

A library is several indexes under one location (``join(location, "rhythm")``), so a backend
that can hold one index can hold a whole library.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.storage import embedded, memory
from audiolsh.storage.base import Storage
from audiolsh.storage.embedded import MANIFEST, EmbeddedStorage
from audiolsh.storage.memory import MemoryStorage
from audiolsh.storage.redis_codec import SCHEMES as REDIS_SCHEMES

Location = str | os.PathLike[str]
SCHEMES = ("file", "memory", *REDIS_SCHEMES)


def _redis() -> Any:
    """The Redis backend's module, imported only when a location names it."""
    from audiolsh.storage import redis

    return redis


def split(location: Location | None) -> tuple[str, str]:
    """(scheme, rest): ("memory", "") for a private memory location."""
    if location is None:
        return "memory", ""
    text = os.fspath(location)
    if text == ":memory:":
        return "memory", ""
    scheme, sep, rest = text.partition("://")
    if not sep:
        if not text.strip():
            raise ParameterError("the index location is empty: give --index a folder (or a redis:// URL)")
        _check_folder(text)
        return "file", text
    if scheme not in SCHEMES:
        raise ParameterError(
            f"{text!r}: unknown storage scheme {scheme!r}; use a directory or one of"
            f" {[s + '://' for s in SCHEMES]}")
    if scheme == "memory" and not rest:
        raise ParameterError(f"{text!r}: a memory location needs a name (memory://name)")
    return scheme, rest


def _check_folder(text: str) -> None:
    """A directory location must be a folder, or one that can be made: not a file, nor inside one."""
    path = Path(os.path.abspath(text))
    for at in (path, *path.parents):
        if os.path.lexists(at):
            if not at.is_dir():
                inside = "" if at == path else f" ({at} is a file)"
                raise ParameterError(f"{text}: this is not a folder{inside}; give --index a folder")
            return


def join(location: Location | None, name: str) -> str | None:
    """The location of ``name`` inside ``location`` (None stays None: private memory)."""
    if location is None or os.fspath(location) == ":memory:":
        return None
    scheme, rest = split(location)
    if scheme == "file":
        return os.fspath(Path(rest) / name)
    if scheme in REDIS_SCHEMES:
        return _redis().join(os.fspath(location), name)
    return f"{scheme}://{rest.rstrip('/')}/{name}"


def parent(location: Location | None) -> tuple[str, str] | None:
    """The inverse of :func:`join`: (the location holding ``location``, its name there), or None
    at the top (``/``, ``memory://name``, a Redis prefix of one name, private memory)."""
    if location is None or os.fspath(location) == ":memory:":
        return None
    scheme, rest = split(location)
    if scheme == "file":
        path = Path(os.path.abspath(rest))
        return (os.fspath(path.parent), path.name) if path.name else None
    if scheme in REDIS_SCHEMES:
        return _redis().parent(os.fspath(location))  # type: ignore[no-any-return]
    head, sep, name = rest.rstrip("/").rpartition("/")
    return (f"{scheme}://{head}", name) if sep and head and name else None


def describe(location: Location | None) -> str:
    """The location for messages (without a password)."""
    if location is None:
        return ":memory:"
    text = os.fspath(location)
    if text.partition("://")[0] in REDIS_SCHEMES:
        return _redis().describe(text)
    return text


def storage_exists(location: Location | None) -> bool:
    """True when a storage was created at ``location`` (a directory's manifest, a memory name)."""
    scheme, rest = split(location)
    if scheme == "file":
        return (Path(rest) / MANIFEST).exists()
    if scheme in REDIS_SCHEMES:
        return bool(_redis().storage_exists(os.fspath(location or "")))
    return bool(rest) and MemoryStorage.exists(rest)


def storage_started(location: Location | None) -> bool:
    """True when a storage exists at ``location`` or its creation began (a directory's folder
    without its manifest yet)."""
    scheme, rest = split(location)
    return storage_exists(location) or (scheme == "file" and Path(rest).is_dir())


@contextlib.contextmanager
def location_lock(location: Location | None) -> Iterator[None]:
    """Hold the writers' lock of ``location`` (waiting for another holder): what writes several
    storages under one location (a library) changes them one writer at a time.  A holder that
    dies never leaves it held: a directory's lock is the kernel's (``flock``), a Redis
    location's a lease that expires."""
    scheme, rest = split(location)
    lock: contextlib.AbstractContextManager[None]
    if scheme == "file":
        lock = embedded.location_lock(rest)
    elif scheme in REDIS_SCHEMES:
        lock = _redis().location_lock(os.fspath(location or ""))
    elif rest:
        lock = memory.location_lock(rest)
    else:  # private memory: one handle, nobody to wait for
        lock = contextlib.nullcontext()
    with lock:
        yield


def open_storage(location: Location | None, *, create: bool = False, readonly: bool = False) -> Storage:
    """The storage at ``location``; ``create`` makes it when absent (an existing one is opened)."""
    scheme, rest = split(location)
    if scheme == "file":
        return EmbeddedStorage(rest, create=create, readonly=readonly)
    if scheme in REDIS_SCHEMES:
        return _redis().RedisStorage(
            os.fspath(location or ""), create=create, readonly=readonly)
    if not rest:
        if not create:
            raise ParameterError("a private memory storage can only be created, not opened")
        return MemoryStorage()
    if not create and not MemoryStorage.exists(rest):
        raise IndexFormatError(f"memory://{rest}: no index here")
    return MemoryStorage(rest)
