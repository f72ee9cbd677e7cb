"""LocalExecutor: results in the jobs' order, and kernels compiled once before the workers start."""

from __future__ import annotations

import multiprocessing
import os

import numba
import numpy as np
import pytest

from audiolsh.parallel import LocalExecutor


@numba.njit
def _kernel(x: np.ndarray) -> float:
    return float(x.sum())


@numba.njit
def _untouched(x: np.ndarray) -> float:  # compiled by one test only
    return float(x.sum())


def _job(i: int) -> tuple[int, int, int, float]:
    """(job, process, kernels compiled in this process before this job ran, result)."""
    compiled = len(_kernel.signatures)
    return i, os.getpid(), compiled, _kernel(np.arange(i, dtype=np.float64))


def _untouched_job(i: int) -> tuple[int, int, int, float]:
    compiled = len(_untouched.signatures)
    return i, os.getpid(), compiled, _untouched(np.arange(i, dtype=np.float64))


def test_results_come_in_the_jobs_order_from_several_processes() -> None:
    out = list(LocalExecutor(2).map(_job, range(12)))
    assert [r[0] for r in out] == list(range(12))
    assert [r[3] for r in out] == [float(sum(range(i))) for i in range(12)]
    assert len({r[1] for r in out}) >= 2


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="inherited by fork only")
def test_the_first_job_compiles_here_and_the_workers_inherit_its_kernels() -> None:
    # A worker that compiled a kernel itself would see none before its first job: with two
    # workers compiling librosa's gufuncs into one cache at once, one can crash (numba#10128).
    assert _untouched.signatures == []
    out = list(LocalExecutor(2).map(_untouched_job, range(6)))
    first, rest = out[0], out[1:]
    assert first[1] == os.getpid() and first[2] == 0
    assert all(r[1] != os.getpid() for r in rest)
    assert all(r[2] == 1 for r in rest)
    # run here once, the kernels are here: the next map starts the pool at once
    again = list(LocalExecutor(2).map(_untouched_job, range(6)))
    assert [r[0] for r in again] == list(range(6))
    assert all(r[1] != os.getpid() and r[2] == 1 for r in again)


def test_one_worker_or_one_job_runs_here() -> None:
    assert {r[1] for r in LocalExecutor(1).map(_job, range(3))} == {os.getpid()}
    assert [r[1] for r in LocalExecutor(4).map(_job, [5])] == [os.getpid()]


def _pid_job(i: int) -> tuple[int, int]:
    return i, os.getpid()


def test_a_function_run_here_inline_starts_the_pool_at_once_next_time() -> None:
    from audiolsh import parallel

    assert _pid_job not in parallel._ran_here
    it = LocalExecutor(1).map(_pid_job, range(3))
    assert next(it) == (0, os.getpid())
    assert _pid_job in parallel._ran_here  # marked before its first result is handed over
    out = list(LocalExecutor(2).map(_pid_job, range(4)))
    assert [r[0] for r in out] == list(range(4)) and all(r[1] != os.getpid() for r in out)
