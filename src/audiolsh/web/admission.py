"""Back-pressure: a bounded queue in front of the analysis workers.

At most ``workers`` analyses (decoding and feature extraction of an upload, then the query)
run at once and at most ``max_queue`` more wait for a worker; a request beyond that is refused
at once with ``Busy`` (503) and a ``Retry-After`` estimated from recent analysis times.  A
client is then told to come back instead of waiting in a line that grows with the number of
clients, so the latency of what is admitted stays bounded by about ``max_queue / workers + 1``
analyses.  Cheap requests (health, the catalogue) never pass through here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from audiolsh.parallel import usable_cores
from audiolsh.web.errors import Busy

#: What an analysis is assumed to take before one has been timed (s).
FIRST_GUESS_S = 2.0
#: Weight of the newest analysis time in the running mean.
SMOOTHING = 0.2
MAX_RETRY_AFTER_S = 60


def default_max_queue() -> int:
    """Twice the cores this process may run on: enough to keep every worker fed between two
    requests of a client, few enough that a queued request waits a few analyses at most."""
    return 2 * usable_cores()


class Admission:
    """``workers`` running and ``max_queue`` waiting analyses at most (thread-safe)."""

    def __init__(self, *, workers: int, max_queue: int, timeout_s: float) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._workers = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._mean_s = FIRST_GUESS_S
        self.refused = 0

    @property
    def running(self) -> int:
        """Analyses holding a worker now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Admitted analyses waiting for a worker now."""
        return self._admitted - self._running

    def retry_after_s(self) -> int:
        """Whole seconds until the line ahead has likely cleared: the admitted analyses at the
        mean analysis time, shared by the workers (1..60)."""
        with self._lock:
            ahead = max(self._admitted, 1)
            mean_s = self._mean_s
        return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(mean_s * ahead / self.workers))))

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Run the body on a worker; raises ``Busy`` at once when the queue is full, or when no
        worker frees up within ``timeout_s``."""
        with self._lock:
            full = self._admitted >= self.workers + self.max_queue
            if full:
                self.refused += 1
            else:
                self._admitted += 1
        if full:
            raise Busy(f"the server is at capacity ({self.workers} analyses running and {self.max_queue}"
                       " waiting); try again shortly", retry_after_s=self.retry_after_s())
        try:
            if not self._workers.acquire(timeout=self.timeout_s):
                raise Busy(f"the server is busy: no worker was free within {self.timeout_s:g} s;"
                           " try again", retry_after_s=self.retry_after_s())
            with self._lock:
                self._running += 1
            t0 = time.perf_counter()
            try:
                yield
            finally:
                took_s = time.perf_counter() - t0
                with self._lock:
                    self._running -= 1
                    self._mean_s += SMOOTHING * (took_s - self._mean_s)
                self._workers.release()
        finally:
            with self._lock:
                self._admitted -= 1
