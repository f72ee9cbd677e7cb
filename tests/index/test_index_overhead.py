"""An Index query adds nothing to the kernel's answer, and reads the catalogue only when
someone committed (issue #18)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from audiolsh.index import Index
from audiolsh.search import Neighbors, VectorLSH, merge
from audiolsh.storage.embedded import EmbeddedStorage

DIM = 24
K = 5


def _data(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _kernels(index: Index, Q: np.ndarray, **params: int) -> Neighbors:
    """What the segments' own searchers answer, mapped to item ids and merged by hand."""
    parts = []
    for seg in index._segments:
        assert isinstance(seg.searcher, VectorLSH)
        r = seg.searcher.search(Q, K, **params)
        ids = np.where(r.ids >= 0, np.asarray(seg.ids)[np.maximum(r.ids, 0)], -1)
        parts.append(Neighbors(ids, r.distances, r.n_candidates))
    return merge(parts, K)


def _same(a: Neighbors, b: Neighbors) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.n_candidates, b.n_candidates)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_query_answers_what_the_kernel_answers(tmp_path: Path, metric: str) -> None:
    X, Q = _data(0, 600), _data(1, 12)
    with Index.create(tmp_path / "idx", metric=metric) as index:
        index.add(X[:200])  # a first segment, so the second's ids do not start at 0
        index.add(X[200:])
        assert len(index.segments) == 2
        for params in ({"n_probes": 8, "n_rerank": 40}, {"n_probes": 30, "n_rerank": 0}):
            want = _kernels(index, Q, **params)
            _same(index.query(Q, K, **params), want)  # a batch
            for i in range(3):  # one row per call, as a 1-d vector too
                _same(index.query(Q[i], K, **params), want.take(np.array([i])))
        index.remove([str(i) for i in range(0, 600, 3)])  # the merged segment's ids skip
        index.compact(full=True)
        [seg] = index._segments
        assert len(seg.ids) == 400 and seg.ids[0] == 1
        params = {"n_probes": 8, "n_rerank": 40}
        got = index.query(Q, K, **params)
        _same(got, _kernels(index, Q, **params))
        assert not np.isin(got.ids, np.arange(0, 600, 3)).any()


def test_query_of_a_raw_row_equals_the_kernel_on_it(tmp_path: Path) -> None:
    """Rows go to the searcher as given: preparing them once more (normalising a unit row
    again) would move the distances' last bits."""
    X = _data(2, 300) * 7.0
    with Index.create(tmp_path / "idx", metric="cosine") as index:
        index.add(X)
        q = X[:4] + 0.01
        _same(index.query(q, K, n_probes=16), _kernels(index, q, n_probes=16))


def test_hits_resolve_each_id_once_and_skip_missing(tmp_path: Path) -> None:
    X = _data(3, 6)
    with Index.create(tmp_path / "idx", metric="euclidean") as index:
        ids = index.add(X, keys=[f"k{i}" for i in range(6)], meta=[{"row": i} for i in range(6)])
        res = index.query(np.repeat(X[:2], 3, axis=0), k=8)  # k > rows: -1 ids at the end
        assert (res.ids[:, 6:] == -1).all()
        hits = index.hits(res)
        assert [len(row) for row in hits] == [6] * 6
        first = hits[0][0]
        assert (first.id, first.key, first.meta, first.track_id) == (ids[0], "k0", {"row": 0}, None)
        assert first.distance == float(res.distances[0, 0])
        assert [h.key for h in hits[3]] == [f"k{i}" for i in res.ids[3, :6]]


@pytest.mark.parametrize("readonly", [False, True])
def test_a_commit_by_another_handle_is_seen_by_the_next_query(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "idx"
    X, extra = _data(4, 300), _data(5, 40)
    with Index.create(path, metric="cosine") as writer:
        writer.add(X)
    with Index.open(path, readonly=readonly) as reader, Index.open(path) as writer:
        statements: list[str] = []
        reader.storage._db.set_trace_callback(statements.append)
        reader.query(X[:1], K)
        reader.query(X[1:3], K)
        assert statements == []  # nothing committed: no catalogue read at all

        new_ids = writer.add(extra)
        got = reader.query(extra[:5], 1)
        np.testing.assert_array_equal(got.ids[:, 0], new_ids[:5])
        assert any("data_version" in s for s in statements)  # the cheap signal moved
        assert any("FROM segments" in s for s in statements)  # and the list was read again

        statements.clear()
        reader.query(extra[:5], 1)
        assert statements == []

        writer.remove([str(i) for i in new_ids[:5]])
        got = reader.query(extra[:5], 1)
        assert not np.isin(got.ids, new_ids[:5]).any()
        assert len(reader) == 300 + 35


def test_version_without_the_wal_index_header_asks_sqlite(tmp_path: Path) -> None:
    """Where the -shm file cannot be read, every version check asks SQLite, as before."""
    a = EmbeddedStorage(tmp_path / "st", create=True)
    b = EmbeddedStorage(tmp_path / "st")
    try:
        a.version()
        os.close(a._shm)  # type: ignore[arg-type]
        a._shm = -1
        v0 = a.version()
        assert a.version() == v0
        with b.write() as w:
            w.set_config({"metric": "cosine"})
        assert a.version() != v0
        assert a.config() == {"metric": "cosine"}
    finally:
        a.close()
        b.close()


def test_vectors_query_leaves_the_collector_as_it_found_it(tmp_path: Path) -> None:
    """The command freezes what it loaded while it answers, and gives it back at the end."""
    import gc

    from click.testing import CliRunner

    from audiolsh.cli import cli

    X = _data(6, 50)
    with Index.create(tmp_path / "idx", metric="cosine") as index:
        index.add(X)
    np.save(tmp_path / "q.npy", X[:3])
    before = gc.get_freeze_count()
    res = CliRunner().invoke(cli, ["vectors", "query", "--index", str(tmp_path / "idx"),
                                   str(tmp_path / "q.npy"), "-k", "2", "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert [line.count('"id"') for line in res.stdout.splitlines()] == [2, 2, 2]
    assert gc.get_freeze_count() == before


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_kmeans_rows_map_to_the_ids_the_kernel_names(tmp_path: Path, metric: str) -> None:
    """A k-means segment stores its rows cell by cell, so its ids are no range: the index maps
    rows through the ids (and -1 to -1) in place, and answers what the kernels answer, single
    and batch, over segments, past the last row, and with removed rows."""
    X, Q = _data(7, 900), _data(8, 12)
    with Index.create(tmp_path / "idx", metric=metric, family="kmeans", n_bits=4) as index:
        index.add(X[:300])
        index.add(X[300:])
        assert all((np.diff(seg.ids) < 0).any() for seg in index._segments)  # not in id order
        for params in ({"n_probes": 2}, {"n_probes": 9}):
            want = _kernels(index, Q, **params)
            _same(index.query(Q, K, **params), want)
            for i in range(3):
                _same(index.query(Q[i], K, **params), want.take(np.array([i])))
        index.remove([str(i) for i in range(0, 900, 4)])
        want = _kernels(index, Q, n_probes=3)
        _same(index.query(Q, K, n_probes=3), want)
        _same(index.query(Q[5], K, n_probes=3), want.take(np.array([5])))
        assert not np.isin(want.ids, np.arange(0, 900, 4)).any()
    with Index.create(tmp_path / "small", metric=metric, family="kmeans", n_bits=2) as index:
        ids = index.add(X[:40])
        got = index.query(Q[:2], 50, n_probes=4)  # more than the rows: -1 after the 40th
        assert (got.ids[:, 40:] == -1).all() and np.isinf(got.distances[:, 40:]).all()
        assert sorted(got.ids[0, :40].tolist()) == ids.tolist()


def test_load_kernels_runs_no_batch_kernel_and_leaves_none_to_compile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``vectors query`` loads its kernels before it times the queries: a k-means batch kernel
    is loaded, not run (a parallel call costs a thread-pool round trip), for the very types
    the query then passes (nothing compiles in the timed query)."""
    from audiolsh.search import cells

    X, Q = _data(9, 900), _data(10, 40)
    searched: list[int] = []
    real = cells.search_cells_of
    monkeypatch.setattr(cells, "search_cells_of", lambda s, A, *a: searched.append(len(A)) or real(s, A, *a))
    with Index.create(tmp_path / "idx", metric="cosine", family="kmeans", n_bits=4) as index:
        index.add(X)
        index.load_kernels(Q, K, n_probes=3)
        assert searched == [1]  # the one-row query; the batch's kernel only loaded
        loaded = set(cells.search_cells_parallel.signatures)
        got = index.query(Q, K, n_probes=3)
        assert set(cells.search_cells_parallel.signatures) == loaded and searched == [1, 40]
        _same(got, _kernels(index, Q, n_probes=3))
