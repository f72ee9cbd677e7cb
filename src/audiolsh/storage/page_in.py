"""Reading an index's memory-mapped files into the page cache before queries need them.

Queries read the embedded backend's segments through memory maps.  After a reboot, or once
other work has pushed them out of memory, every page a query touches is a disk read (a
10,000-hour index: the first 3-s query 10 s, the next ones 1-2 s each, until most of it is
cached); one sequential read of the files caches them in a fraction of that.  Done only when
they fit in three quarters of the memory the system can give (``MemAvailable``), so that
what it brings in is not pushed out again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 8 << 20
MEMORY_SHARE = 0.75
"""Page in only files that take at most this share of the memory available now."""


@dataclass(frozen=True)
class PageIn:
    files: int
    bytes: int
    seconds: float
    skipped: str | None = None  # why nothing was read
    stopped: bool = False


def available_memory() -> int | None:
    """Bytes the system can give without swapping (``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # dropped by a compaction since it was listed
        return 0


def page_in(files: Iterable[str | os.PathLike[str]], *, stop: threading.Event | None = None,
            budget_bytes: int | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> PageIn:
    """Read ``files`` once, smallest first (the bucket offsets and track tables every query
    reads before the postings), so the page cache holds them.

    budget_bytes : read nothing when the files are larger (default: ``MEMORY_SHARE`` of
        ``available_memory()``; no limit where that is unknown)
    stop : checked between chunks; set it to end early (a server shutting down)
    on_progress : ``(bytes read, total bytes)`` after each file
    """
    t0 = time.perf_counter()
    sized = sorted(((_size(Path(f)), Path(f)) for f in files), key=lambda x: x[0])
    total = sum(n for n, _ in sized)
    if budget_bytes is None:
        free = available_memory()
        budget_bytes = None if free is None else int(free * MEMORY_SHARE)
    if budget_bytes is not None and total > budget_bytes:
        return PageIn(0, 0, time.perf_counter() - t0,
                      skipped=f"the index files ({total / 1e6:,.0f} MB) are more than the memory"
                              f" set aside for them ({budget_bytes / 1e6:,.0f} MB)")
    buf = bytearray(CHUNK)
    done = n_files = 0
    for _, path in sized:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while n := os.readv(fd, [buf]):
                done += n
                if stop is not None and stop.is_set():
                    return PageIn(n_files, done, time.perf_counter() - t0, stopped=True)
        except OSError as exc:  # not counted as read
            log.info("page-in: %s: %s", path, exc)
            continue
        finally:
            os.close(fd)
        n_files += 1
        if on_progress is not None:
            on_progress(done, total)
    return PageIn(n_files, done, time.perf_counter() - t0)
