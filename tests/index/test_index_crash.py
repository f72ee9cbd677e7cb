"""Crash safety: SIGKILL a writer at random moments; every reported commit must survive whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from audiolsh.index import Index

DIM = 16
BATCH = 150
N_KILLS = 6

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from audiolsh.index import Index

    path, start, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    index = Index.open(path)
    print("ready", flush=True)
    b = start
    while True:
        X = np.random.default_rng(b).standard_normal((batch, {dim})).astype(np.float32)
        index.add(X, keys=[f"b{{b}}-{{i}}" for i in range(batch)])
        print(b, flush=True)
        b += 1
    """
).format(dim=DIM)


def _batch(b: int) -> np.ndarray:
    return np.random.default_rng(b).standard_normal((BATCH, DIM)).astype(np.float32)


def _keys(b: int) -> list[str]:
    return [f"b{b}-{i}" for i in range(BATCH)]


class _Lines:
    """Collect a child's stdout lines on a thread (so the pipe never blocks it)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._stream = proc.stdout
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self._stream:
            self.lines.append(line.strip())

    def wait_for(self, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while text not in self.lines:
            assert time.monotonic() < end, f"no {text!r} from the writer: {self.lines}"
            time.sleep(0.01)

    def join(self) -> list[str]:
        self._thread.join(timeout=10)
        return list(self.lines)


def _assert_no_stray_folders(index: Index, path: Path) -> None:
    with index.storage.write():  # the next write collects what a crash left behind
        pass
    live = {s.id for s in index.storage.segments()}
    on_disk = {p.name for p in (path / "segments").iterdir()}
    assert on_disk == live
    for folder in on_disk:
        names = [p.name for p in (path / "segments" / folder).iterdir()]
        assert not [n for n in names if n.startswith(".")], names


@pytest.mark.slow
def test_sigkilled_writer_loses_nothing_it_reported(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    Index.create(path, metric="cosine", max_segments=3, seed=2).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(1234)
    delays = rng.uniform(0.02, 0.9, N_KILLS)
    committed: set[int] = set()
    reported_all: set[int] = set()
    next_batch = 0
    for delay in delays:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(next_batch), str(BATCH)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _Lines(proc)
        try:
            lines.wait_for("ready", timeout=60)
            # Each run commits a batch before the kill, however slow the machine: the kills
            # land while batches are being written, not only before the first.
            lines.wait_for(str(next_batch), timeout=60)
            time.sleep(float(delay))
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        reported = {int(x) for x in lines.join() if x.isdigit()}
        assert proc.stderr is not None
        proc.stderr.close()
        reported_all |= reported
        # Batches this run touched: every reported one, plus the one in flight when killed.
        last = max(reported, default=next_batch - 1) + 1
        attempted = range(next_batch, last + 1)

        index = Index.open(path)
        for b in attempted:
            n_present = len(index.storage.ids_for_keys(_keys(b)))
            assert n_present in (0, BATCH), f"batch {b} partially committed: {n_present} rows"
            if b in reported:
                assert n_present == BATCH, f"batch {b} was reported committed but is missing"
            if n_present:
                committed.add(b)
        assert len(index) == BATCH * len(committed)
        assert len(index) % BATCH == 0
        # Every committed batch answers: its rows find themselves under their own keys.
        for b in sorted(committed)[-3:] + sorted(committed)[:1]:
            assert f"b{b}-{BATCH - 1}" in index
            res = index.query(_batch(b)[::25], k=1)
            hits = index.hits(res)
            assert [h[0].key for h in hits] == _keys(b)[::25]
        _assert_no_stray_folders(index, path)
        index.close()
        next_batch = last + 1

    assert reported_all <= committed
    # The kills did land while batches were being written (not only between runs).
    assert len(reported_all) >= N_KILLS
    # A final writer on the crashed-and-recovered index works normally.
    index = Index.open(path)
    ids = index.add(_batch(10_000), keys=[f"final-{i}" for i in range(BATCH)])
    assert len(index) == BATCH * (len(committed) + 1)
    np.testing.assert_array_equal(index.query(_batch(10_000), k=1).ids[:, 0], ids)
    assert len(index.segments) <= 3
    index.close()
