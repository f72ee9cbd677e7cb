"""A reader Index keeps answering, and sees new rows, while another process commits."""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.index import Index

DIM = 12
BATCH = 20
N_BATCHES = 25
#: Batches after which the writer stops until the reader has seen them: proof that the reader
#: answered while the writer was at work, whatever the machine's load.
CHECKPOINTS = (N_BATCHES // 3, 2 * N_BATCHES // 3)
DEADLINE_S = 300.0  # generous: a guard against a hang, never a duration asserted

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from audiolsh.index import Index

    path, n_batches, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    checkpoints = {{int(b) for b in sys.argv[4].split(",")}}
    index = Index.open(path)
    for b in range(n_batches):
        X = np.random.default_rng(1000 + b).standard_normal((batch, {dim})).astype(np.float32)
        index.add(X, keys=[f"w{{b}}-{{i}}" for i in range(batch)])
        if b in checkpoints:
            print("committed", b, flush=True)
            sys.stdin.readline()  # until the reader has seen it
    index.close()
    print("done", flush=True)
    """
).format(dim=DIM)


def _batch(b: int) -> np.ndarray:
    return np.random.default_rng(1000 + b).standard_normal((BATCH, DIM)).astype(np.float32)


def _check_answers(reader: Index, n: int, probe: np.ndarray, probe_ids: np.ndarray) -> None:
    """What must hold of every answer, whenever it is asked: whole batches only, the old rows
    under their ids whatever compaction did meanwhile, every batch seen complete and searchable."""
    assert (n - 200) % BATCH == 0
    res = reader.query(probe, k=3)
    np.testing.assert_array_equal(res.ids[:, 0], probe_ids)
    assert np.all(res.distances[:, 0] < 1e-5)
    seen = (n - 200) // BATCH
    if seen:
        last = reader.query(_batch(seen - 1), k=1)
        assert np.all(last.ids[:, 0] >= 0)
        assert np.all(last.distances[:, 0] < 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("readonly", [False, True])
def test_reader_keeps_answering_while_another_process_commits(
    tmp_path: Path, readonly: bool
) -> None:
    path = tmp_path / "idx"
    base = np.random.default_rng(7).standard_normal((200, DIM)).astype(np.float32)
    with Index.create(path, metric="euclidean", max_segments=3) as index:
        base_ids = index.add(base, keys=[f"base-{i}" for i in range(200)])
    script = tmp_path / "writer.py"
    script.write_text(WRITER)

    reader = Index.open(path, readonly=readonly)
    assert len(reader) == 200
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(N_BATCHES), str(BATCH),
         ",".join(map(str, CHECKPOINTS))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None and proc.stdin is not None
    reading = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reading.start()
    sizes = []
    seen_paused = []
    said: list[str] = []
    probe, probe_ids = base[::10], base_ids[::10]
    try:
        deadline = time.monotonic() + DEADLINE_S
        while proc.poll() is None:
            assert time.monotonic() < deadline, "writer did not finish"
            n = len(reader)
            sizes.append(n)
            _check_answers(reader, n, probe, probe_ids)
            try:
                said.append(lines.get_nowait().strip())
            except queue.Empty:
                continue
            line = said[-1].split()
            if line[0] == "committed":
                # The writer has committed batch b and waits: the reader sees exactly it.
                b = int(line[1])
                n = len(reader)
                assert n == 200 + (b + 1) * BATCH
                sizes.append(n)
                _check_answers(reader, n, probe, probe_ids)
                seen_paused.append(b)
                proc.stdin.write("go\n")
                proc.stdin.flush()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        reading.join(30)
        assert proc.stderr is not None
        err = proc.stderr.read()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()  # type: ignore[union-attr]
    assert proc.returncode == 0, err
    said += [x.strip() for x in lines.queue]
    assert said[-1:] == ["done"]
    assert sizes == sorted(sizes)
    # The reader answered while the writer was at work, at the points the writer waited for it.
    assert seen_paused == list(CHECKPOINTS)
    assert len(reader) == 200 + N_BATCHES * BATCH
    for b in (0, N_BATCHES // 2, N_BATCHES - 1):
        assert f"w{b}-3" in reader
        hit = reader.hits(reader.query(_batch(b)[3], k=1))[0][0]
        assert hit.key == f"w{b}-3"
    assert len(reader.segments) <= 3
    reader.close()


def test_two_writers_compacting_at_once_do_not_duplicate_rows(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    first = Index.create(path, metric="euclidean", max_segments=8)
    batches = [_batch(b) for b in range(3)]
    for b, X in enumerate(batches):
        first.add(X, keys=[f"{b}-{i}" for i in range(BATCH)])
    second = Index.open(path)
    assert len(second) == 3 * BATCH
    # The interleaving two processes can produce: `second` has planned its compaction when
    # `first` commits one of its own, then `second` commits.
    write = second.storage.write
    raced: list[bool] = []

    def write_after_the_other_writer():  # type: ignore[no-untyped-def]
        if not raced:
            raced.append(True)
            first.compact(full=True)
        return write()

    second.storage.write = write_after_the_other_writer  # type: ignore[method-assign]
    second.compact(full=True)
    assert raced
    assert len(second) == 3 * BATCH
    assert len(first) == 3 * BATCH
    res = second.query(batches[1][:5], k=2)
    assert np.all(res.ids[:, 0] != res.ids[:, 1])


def test_two_first_writers_of_other_dimensions_cannot_both_commit(tmp_path: Path) -> None:
    """Two handles open a new index before either commits: the first's rows give it its
    dimension, and the second's rows of another dimension are refused, naming both (the second
    trusted its own empty config, committed too, and left an index no query could read)."""
    path = tmp_path / "idx"
    first = Index.create(path, metric="cosine")
    second = Index.open(path)
    assert first.config.dim is None and second.config.dim is None
    X = np.random.default_rng(1).standard_normal((50, 64)).astype(np.float32)
    first.add(X, keys=[f"a{i}" for i in range(50)])
    with pytest.raises(ParameterError, match=r"dimension 128, but the index .* holds .* dimension 64"):
        second.add(np.random.default_rng(2).standard_normal((30, 128)).astype(np.float32))
    second.add(X[:10] + 0.01, keys=[f"b{i}" for i in range(10)])  # its own dimension goes in
    for handle in (first, Index.open(path, readonly=True)):
        assert len(handle) == 60 and handle.config.dim == 64
        assert handle.query(X[:3], k=1).ids.shape == (3, 1)


def test_a_writer_commits_while_another_builds_its_segment(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The segment (k-means and all, minutes for millions of rows) is built outside the write
    transaction: another writer's commit goes through meanwhile (it waited for the build and
    gave up after SQLite's 30 s, 'database is locked')."""
    from audiolsh.index import vector

    path = tmp_path / "idx"
    first = Index.create(path, metric="euclidean")
    first.add(_batch(0), keys=[f"0-{i}" for i in range(BATCH)])
    second = Index.open(path)
    build = vector.build_segment
    during: list[int] = []

    def build_while_another_commits(*args: Any, **kwargs: Any) -> Any:
        if not during:  # the first build: the other writer commits in the middle of it
            during.append(0)
            during[0] = len(second.add(_batch(2), keys=[f"2-{i}" for i in range(BATCH)]))
        return build(*args, **kwargs)

    monkeypatch.setattr(vector, "build_segment", build_while_another_commits)
    ids = first.add(_batch(1), keys=[f"1-{i}" for i in range(BATCH)])
    assert during == [BATCH] and len(ids) == BATCH
    reader = Index.open(path, readonly=True)
    assert len(reader) == 3 * BATCH and "1-0" in reader and "2-0" in reader
