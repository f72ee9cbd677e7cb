"""The seam for parallel work: ingest and the evaluations hand their jobs to an ``Executor``.

``LocalExecutor`` runs them in this machine's processes (or inline with one worker); a
distributed engine is another class with the same ``map``.  Jobs and their results cross
process boundaries, so both must be plain data (numpy arrays, dataclasses of them).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_map(fn: Callable[[T], R], items: Iterable[T], workers: int, *,
               ahead: int | None = None) -> Generator[R, None, None]:
    """``fn`` of every item in up to ``workers`` threads of this process, results in the items'
    order as they are taken, at most ``ahead`` items (default: two per thread) started beyond
    the one taken last: for work that releases the GIL (hashlib on large buffers, reading
    files), which then keeps every core busy instead of one while the others wait, and reads a
    file shortly before the one who takes its result reads it again."""
    todo = iter(items)
    n = max(1, workers)
    if n <= 1:
        yield from (fn(x) for x in todo)
        return
    with ThreadPoolExecutor(max_workers=n) as pool:
        window = deque(pool.submit(fn, x) for x in itertools.islice(todo, max(ahead or 2 * n, 1)))
        try:
            while window:
                fut = window.popleft()
                window.extend(pool.submit(fn, x) for x in itertools.islice(todo, 1))
                yield fut.result()
        except BaseException:  # closed early, an error, Ctrl-C: what has not started never will
            pool.shutdown(wait=True, cancel_futures=True)
            raise


class Executor(Protocol):
    workers: int

    def map(self, fn: Callable[[T], R], jobs: Iterable[T]) -> Iterator[R]:
        """``fn`` of every job; results in the jobs' order, each as soon as it and those
        before it are done.  ``jobs`` may be lazy, and reading it may act (``index_audio``
        hashes and plans as it hands out jobs): it is read only in the thread iterating the
        results (or listed before the work starts)."""
        ...


def numba_cache_lock_path() -> str:
    """The lock every audiolsh process of this user takes to read or write numba's cache."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"audiolsh-numba-cache-{uid}.lock")


def lock_numba_cache(lock_path: str | None = None) -> None:
    """From now on this process reads and writes numba's cache (a kernel's index and code) only
    while it holds ``lock_path`` (default ``numba_cache_lock_path()``), so processes compiling
    the same kernels into one cache take turns at it: numba writes the index and then the code
    with no lock, and two processes adding argument types of one kernel at once can leave the
    index naming the other's code (numba#10128), as two workers did on a fresh install. Once a
    process holds a lock, later calls keep it; no-op without ``fcntl`` (Windows)."""
    try:
        import fcntl
    except ImportError:
        return
    import functools

    from numba.core import caching

    cls = caching.IndexDataCacheFile
    if getattr(cls.save, "audiolsh_lock", None) is not None:
        return
    path = lock_path or numba_cache_lock_path()
    held = threading.local()  # a read inside a read (an import while unpickling) must not wait on itself

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def run(*args: Any, **kwargs: Any) -> Any:
            if getattr(held, "depth", 0):
                return method(*args, **kwargs)
            try:
                lock = open(path, "a")
            except OSError:  # no writable temporary folder: unlocked, as numba itself is
                return method(*args, **kwargs)
            with lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                held.depth = 1
                try:
                    return method(*args, **kwargs)
                finally:
                    held.depth = 0
                    fcntl.flock(lock, fcntl.LOCK_UN)

        run.audiolsh_lock = path  # type: ignore[attr-defined]
        return run

    for name in ("save", "load"):
        setattr(cls, name, locked(getattr(cls, name)))


def _die_with(parent: int) -> None:
    """A worker of process ``parent``: it ends when the parent does (killed by the OOM killer,
    or by ``kill -9``), instead of sleeping on forever holding the library's files open.  A
    worker a fork server started (Python 3.14's default start method) has that server for
    parent: it is left as the pool makes it."""
    if os.getppid() != parent:
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # not Linux: the pool's own checks only
        return
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)


def _start_worker(parent: int) -> None:
    lock_numba_cache()
    _die_with(parent)


#: Jobs a ``LocalExecutor`` worker may have submitted beyond the result taken next: enough that
#: a long job at the head does not leave the other workers idle for long, few enough that a lazy
#: source is read only a little ahead of the work.
PER_WORKER_AHEAD = 8


class LocalExecutor:
    """Processes of this machine: ``workers`` of them (None: one per core), inline for one."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def map(self, fn: Callable[[T], R], jobs: Iterable[T]) -> Iterator[R]:
        todo = iter(jobs)
        head = list(itertools.islice(todo, self.workers))
        if len(head) <= 1:  # one worker, or (fewer jobs than asked for) at most one job
            yield from (fn(job) for job in itertools.chain(head, todo))
            return
        n = len(head)
        ahead = PER_WORKER_AHEAD * n
        lock_numba_cache()  # here too: a thread of this process may compile beside the workers
        with ProcessPoolExecutor(max_workers=n, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            window = deque(pool.submit(fn, job) for job in head)
            more = True
            try:
                while window:
                    # Jobs are read (a lazy source: hashing, planning) to keep two a worker in
                    # hand, and more while the first result is not ready (so it is handed on as
                    # soon as it is).
                    while more and len(window) < ahead and (len(window) < 2 * n or not window[0].done()):
                        job = list(itertools.islice(todo, 1))
                        more = bool(job)
                        window.extend(pool.submit(fn, j) for j in job)
                    yield window.popleft().result()
            except BaseException as exc:  # an error, a closed generator, Ctrl-C: no queued job starts
                workers = list((getattr(pool, "_processes", None) or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                if isinstance(exc, KeyboardInterrupt):
                    # Ctrl-C: the jobs running are dropped, not waited for (a long file took
                    # minutes); a worker only computes, what is committed is the parent's.
                    for proc in workers:
                        proc.terminate()
                pool.shutdown(wait=True)
                raise
