"""LocalExecutor: results in the jobs' order, and every process that may compile into numba's
cache reads and writes it holding one lock."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numba
import numpy as np
import pytest
from numba.core import caching

from audiolsh import parallel
from audiolsh.parallel import LocalExecutor

T = TypeVar("T")


@numba.njit
def _kernel(x: np.ndarray) -> float:
    return float(x.sum())


def _job(i: int) -> tuple[int, int, float]:
    return i, os.getpid(), _kernel(np.arange(i, dtype=np.float64))


def _lock_of_this_process(i: int) -> tuple[int, str | None, str | None]:
    """(process, the lock numba's cache reads hold here, the one its writes hold)."""
    cls = caching.IndexDataCacheFile
    return os.getpid(), getattr(cls.load, "audiolsh_lock", None), getattr(cls.save, "audiolsh_lock", None)


def test_results_come_in_the_jobs_order_from_several_processes() -> None:
    out = list(LocalExecutor(2).map(_job, range(12)))
    assert [r[0] for r in out] == list(range(12))
    assert [r[2] for r in out] == [float(sum(range(i))) for i in range(12)]
    assert len({r[1] for r in out}) >= 2 and os.getpid() not in {r[1] for r in out}


def test_every_worker_reads_and_writes_numbas_cache_holding_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers compiling the same kernels (librosa's gufuncs at import, ours at first call)
    # into one cache on a fresh install can leave it naming the other's code (numba#10128).
    cls = caching.IndexDataCacheFile
    monkeypatch.setattr(cls, "load", getattr(cls.load, "__wrapped__", cls.load))  # as a fresh process
    monkeypatch.setattr(cls, "save", getattr(cls.save, "__wrapped__", cls.save))
    assert _lock_of_this_process(0)[1:] == (None, None)
    out = list(LocalExecutor(2).map(_lock_of_this_process, range(6)))
    lock = parallel.numba_cache_lock_path()
    assert all(r[0] != os.getpid() for r in out)
    assert {r[1:] for r in out} == {(lock, lock)}
    assert _lock_of_this_process(0)[1:] == (lock, lock)  # and here, beside them


def test_the_cache_lock_is_held_while_numba_reads_or_writes_and_installed_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "numba-cache.lock"
    seen: list[str] = []

    def probe(self: object, *args: object) -> None:  # stands in for numba's own read or write
        with open(lock, "a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                seen.append("held")
                return
            fcntl.flock(other, fcntl.LOCK_UN)
            seen.append("free")

    monkeypatch.setattr(caching.IndexDataCacheFile, "save", probe)
    monkeypatch.setattr(caching.IndexDataCacheFile, "load", probe)
    probe(None)
    parallel.lock_numba_cache(str(lock))
    parallel.lock_numba_cache(str(tmp_path / "another.lock"))  # kept: a second wrap would wait on itself
    assert caching.IndexDataCacheFile.save.__wrapped__ is probe  # type: ignore[attr-defined]
    caching.IndexDataCacheFile.save(None, "key", "data")  # type: ignore[arg-type]
    caching.IndexDataCacheFile.load(None, "key")  # type: ignore[arg-type]
    assert seen == ["free", "held", "held"]
    probe(None)  # and let go after
    assert seen[-1] == "free"


def test_without_a_lock_file_numba_reads_and_writes_unlocked(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(caching.IndexDataCacheFile, "save", lambda self, *a: calls.append(("save", *a)))
    monkeypatch.setattr(caching.IndexDataCacheFile, "load", lambda self, *a: calls.append(("load", *a)) or 7)
    parallel.lock_numba_cache(str(tmp_path / "no such folder" / "numba-cache.lock"))
    caching.IndexDataCacheFile.save(None, "key", "data")  # type: ignore[arg-type]
    assert caching.IndexDataCacheFile.load(None, "key") == 7  # type: ignore[arg-type]
    assert calls == [("save", "key", "data"), ("load", "key")]


@pytest.mark.timeout(60)  # without the guard it waits on its own lock for ever
def test_a_read_inside_a_read_does_not_wait_on_itself(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # unpickling a kernel's code may import a module whose kernels load from the cache in turn
    order: list[str] = []

    def load(self: object, key: str) -> str:
        order.append(key)
        if key == "outer":
            caching.IndexDataCacheFile.load(None, "inner")  # type: ignore[arg-type]
        return key

    monkeypatch.setattr(caching.IndexDataCacheFile, "load", load)
    monkeypatch.setattr(caching.IndexDataCacheFile, "save", lambda self, *a: None)
    parallel.lock_numba_cache(str(tmp_path / "numba-cache.lock"))
    assert caching.IndexDataCacheFile.load(None, "outer") == "outer"  # type: ignore[arg-type]
    assert order == ["outer", "inner"]


def test_one_worker_or_one_job_runs_here() -> None:
    assert {r[1] for r in LocalExecutor(1).map(_job, range(3))} == {os.getpid()}
    assert [r[1] for r in LocalExecutor(4).map(_job, [5])] == [os.getpid()]


def _square(i: int) -> int:
    return i * i


def _counted(items: Iterable[T], pulled: list[T]) -> Iterator[T]:
    """``items``, each noted in ``pulled`` as it is read."""
    for x in items:
        pulled.append(x)
        yield x


def test_jobs_are_read_lazily_a_few_per_worker_ahead_of_the_results() -> None:
    pulled: list[int] = []
    seen = []
    for r in LocalExecutor(2).map(_square, _counted(range(200), pulled)):
        seen.append((r, len(pulled)))
    assert [r for r, _ in seen] == [i * i for i in range(200)]
    # when a result is taken, at most PER_WORKER_AHEAD a worker were read beyond it
    assert all(n <= k + parallel.PER_WORKER_AHEAD * 2 for k, (_, n) in enumerate(seen))
    assert seen[0][1] < 200


def test_thread_map_reads_a_bounded_window_ahead_in_order() -> None:
    pulled: list[int] = []
    out = []
    for r in parallel.thread_map(_square, _counted(range(50), pulled), 3, ahead=4):
        out.append((r, len(pulled)))
    assert [r for r, _ in out] == [i * i for i in range(50)]
    assert all(n <= k + 1 + 4 for k, (_, n) in enumerate(out))


def _gated(job: tuple[int, str]) -> int:
    """Job 0 waits until the window of jobs is full, the others until the pool is shut down."""
    i, folder = job
    (Path(folder) / f"started{i}").touch()
    gate = Path(folder) / ("full" if i == 0 else "go")
    for _ in range(6000):
        if gate.exists():
            return i
        time.sleep(0.01)
    raise TimeoutError(gate)


def test_a_closed_map_starts_no_job_it_had_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Releasing(ProcessPoolExecutor):  # the real pool; the gate opens once shutdown began
        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            super().shutdown(wait=False, cancel_futures=cancel_futures)
            (tmp_path / "go").touch()
            super().shutdown(wait=wait)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", Releasing)
    ahead = parallel.PER_WORKER_AHEAD * 2

    def jobs() -> Iterator[tuple[int, str]]:
        for i in range(40):
            if i == ahead - 1:
                (tmp_path / "full").touch()
            yield i, str(tmp_path)

    results = LocalExecutor(2).map(_gated, jobs())
    assert next(results) == 0
    results.close()  # as an error or Ctrl-C in the caller would
    started = sorted(int(p.name[7:]) for p in tmp_path.glob("started*"))
    assert started[0] == 0 and len(started) <= 2 + 2 + 3 < ahead  # running, next, queued to the workers


def test_a_closed_thread_map_starts_no_item_it_had_queued() -> None:
    go, started = threading.Event(), []

    def gated(i: int) -> int:
        started.append(i)
        if i > 0:
            go.wait(60)
        return i

    def release_when_shut_down(pool: Any, wait: bool = True, **kwargs: Any) -> None:
        real_shutdown(pool, wait=False, **kwargs)
        go.set()
        real_shutdown(pool, wait=wait)

    real_shutdown = parallel.ThreadPoolExecutor.shutdown
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel.ThreadPoolExecutor, "shutdown", release_when_shut_down)
        out = parallel.thread_map(gated, range(30), 2, ahead=10)
        assert next(out) == 0
        out.close()
    assert sorted(started)[:1] == [0] and len(started) <= 3  # item 0, then one a thread


def _mark(job: tuple[int, str]) -> int:
    i, folder = job
    (Path(folder) / f"done{i}").touch()
    return i


def test_every_job_runs_when_the_results_are_taken_slower_than_the_jobs_finish(tmp_path: Path) -> None:
    pulled: list[tuple[int, str]] = []
    out = []
    for r in LocalExecutor(2).map(_mark, _counted(((i, str(tmp_path)) for i in range(30)), pulled)):
        out.append(r)
        for _ in range(6000):  # every job handed out is done before the next result is asked for
            if len(list(tmp_path.glob("done*"))) == len(pulled):
                break
            time.sleep(0.01)
    assert out == list(range(30))


STUCK = """
import os, signal, sys, time
from pathlib import Path
from audiolsh.parallel import LocalExecutor

signal.signal(signal.SIGINT, signal.default_int_handler)  # as a shell starts it (xdist's ignore it)

def job(i):
    Path(sys.argv[1], f"worker-{i}").write_text(str(os.getpid()))
    if i == 0:
        time.sleep(3600)  # a very long file
    return i

if __name__ == "__main__":
    try:
        for r in LocalExecutor(2).map(job, range(2)):
            pass
    except KeyboardInterrupt:
        Path(sys.argv[1], "interrupted").write_text("")
        raise
"""


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie its parent has not reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _stuck_map(tmp_path: Path) -> tuple[Any, int]:
    """A process mapping two jobs over two workers, the first of which never ends; with the pid
    of that job's worker once it runs."""
    import subprocess
    import sys

    script = tmp_path / "stuck.py"
    script.write_text(STUCK)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    deadline = time.monotonic() + 300  # a guard against a hang, not a duration asserted
    while not (tmp_path / "worker-0").exists() or not (tmp_path / "worker-0").read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc, int((tmp_path / "worker-0").read_text())


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_ctrl_c_ends_the_jobs_running_instead_of_waiting_for_them(tmp_path: Path) -> None:
    """Ctrl-C during a long job (a 45-minute file) ended only when the job had: the workers got
    one SIGINT, which they ignore, and the map waited for them."""
    import signal

    proc, worker = _stuck_map(tmp_path)
    try:
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=300) != 0
        assert (tmp_path / "interrupted").exists() and not _alive(worker)
    finally:
        _kill(proc, worker)


def _kill(proc: Any, worker: int) -> None:
    """Leave nothing running, whatever the test found."""
    import signal

    for pid in (proc.pid, worker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    """`kill -9` of a run (the OOM killer) left its workers asleep for ever, holding the
    library's files open."""
    import signal

    proc, worker = _stuck_map(tmp_path)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=300)
        deadline = time.monotonic() + 300  # a guard against a hang, not a duration asserted
        while _alive(worker):
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.05)
    finally:
        _kill(proc, worker)


FORKSERVER = """
import multiprocessing, sys
from audiolsh.parallel import LocalExecutor

def square(i):
    return i * i

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1], force=True)
    print(list(LocalExecutor(2).map(square, range(6))))
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_start_under_every_start_method(tmp_path: Path, method: str) -> None:
    """Python 3.14 starts workers from a fork server by default: their parent is that server,
    and a worker that took that for its own parent's death ended at once (a broken pool)."""
    import subprocess
    import sys

    script = tmp_path / "pool.py"
    script.write_text(FORKSERVER)
    done = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([i * i for i in range(6)])
