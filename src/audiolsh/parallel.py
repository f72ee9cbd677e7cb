"""The seam for parallel work: ingest and the evaluations hand their jobs to an ``Executor``.

``LocalExecutor`` runs them in this machine's processes (or inline with one worker); a
distributed engine is another class with the same ``map``.  Jobs and their results cross
process boundaries, so both must be plain data (numpy arrays, dataclasses of them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Executor(Protocol):
    workers: int

    def map(self, fn: Callable[[T], R], jobs: Iterable[T]) -> Iterator[R]:
        """``fn`` of every job; results in the jobs' order, each as soon as it and those
        before it are done."""
        ...


_ran_here: set[Callable[..., object]] = set()
"""Job functions this process has run itself: the kernels they use are compiled or loaded here."""


class LocalExecutor:
    """Processes of this machine: ``workers`` of them (None: one per core), inline for one."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def map(self, fn: Callable[[T], R], jobs: Iterable[T]) -> Iterator[R]:
        todo = list(jobs)
        if min(self.workers, len(todo)) > 1 and fn not in _ran_here:
            # The first job runs here before the pool starts, so the kernels it compiles (numba's,
            # librosa's gufuncs at import) are compiled once, by one process, and the workers
            # inherit them (fork) or load them: two processes compiling the same gufuncs into one
            # cache at once can crash one of them (numba#10128), as on a fresh install. Once
            # this process has run ``fn``, the pool starts at once (no core idle for a job).
            first = fn(todo.pop(0))
            _ran_here.add(fn)
            yield first
        n = min(self.workers, len(todo))
        if n <= 1:
            for job in todo:
                result = fn(job)
                _ran_here.add(fn)
                yield result
            return
        with ProcessPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(fn, job) for job in todo]
            for fut in futures:
                yield fut.result()

