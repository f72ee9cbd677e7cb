"""A small pool of read-only library handles, so concurrent requests never share one.

The storage's SQLite connections and the indexes' lazily loaded segments are not safe to use
from two threads at once.  Each worker borrows a whole ``Library`` for the length of one query;
with ``size=1`` this is one lock around the library.  Handles are opened on first use and kept,
except one whose storage could not be reached (``StorageUnavailable``, a Redis server down): it
is closed and dropped, half-refreshed state and all, and the next borrow opens a fresh one, so
the pool recovers by itself once the storage is back.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from audiolsh.errors import StorageUnavailable
from audiolsh.library import Library
from audiolsh.web.errors import Busy

log = logging.getLogger(__name__)


class LibraryPool:
    """At most ``size`` read-only handles on the library at ``path`` (a location), each used by one thread."""

    def __init__(self, path: str | os.PathLike[str], *, size: int = 2, timeout_s: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.size = size
        self.timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.LifoQueue[Library] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._opened: list[Library] = []
        self._busy = 0
        # Open one handle now: a missing or unreadable library fails at startup, not per request.
        self._idle.put(self._open())

    def _open(self) -> Library:
        library = Library.open(self.path, readonly=True)
        with self._lock:
            self._opened.append(library)
        log.info("opened %s read-only (%d handles)", self.path, len(self._opened))
        return library

    @property
    def busy(self) -> int:
        """Handles in use right now."""
        return self._busy

    @contextmanager
    def borrow(self, *, timeout_s: float | None = None) -> Iterator[Library]:
        """A handle for this thread alone; raises ``Busy`` when none frees up in time."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        if not self._slots.acquire(timeout=wait):
            raise Busy(f"the server is busy: no worker was free within {wait:g} s; try again")
        try:
            try:
                library = self._idle.get_nowait()
            except queue.Empty:
                library = self._open()
            with self._lock:
                self._busy += 1
            keep = True
            try:
                yield library
            except StorageUnavailable:
                keep = False
                raise
            finally:
                with self._lock:
                    self._busy -= 1
                if keep:
                    self._idle.put(library)
                else:
                    self._drop(library)
        finally:
            self._slots.release()

    def _drop(self, library: Library) -> None:
        """Forget a handle whose storage failed; closing it must not fail the request again."""
        with self._lock:
            if library in self._opened:
                self._opened.remove(library)
        try:
            library.close()
        except Exception as exc:  # the storage is already known to be unwell
            log.debug("closing a dropped handle on %s: %s", self.path, exc)
        log.warning("dropped a handle on %s: its storage cannot be reached (%d handles left)",
                    self.path, len(self._opened))

    def close(self) -> None:
        """Close every idle handle (shutdown); a later ``borrow`` opens new ones."""
        while True:
            try:
                library = self._idle.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                if library in self._opened:
                    self._opened.remove(library)
            library.close()
