"""Remote-probe mode (``?mode=remote``): buckets and rows stay in Redis, a query is one round
trip, and the answers are those of the same index in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.index import Index

redis = pytest.importorskip("redis")


def _remote(redis_url: str) -> str:
    return redis_url + "&mode=remote"


def _server(redis_url: str) -> Any:
    return redis.Redis(unix_socket_path=redis_url.split("unix://", 1)[1].split("?", 1)[0])


def _data(rng: np.random.Generator, n: int = 3000, dim: int = 24) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.standard_normal((30, dim)).astype(np.float32)
    X = centres[rng.integers(0, 30, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    Q = X[rng.choice(n, 40, replace=False)] + 0.05 * rng.standard_normal((40, dim)).astype(np.float32)
    return X, Q


def _answers(index: Index, Q: Any, k: int = 10, **kw: Any) -> tuple[list[list[int]], list[list[float]]]:
    res = index.query(Q, k, **kw)
    return res.ids.tolist(), np.round(res.distances, 5).tolist()


@pytest.mark.parametrize(("metric", "params"), [
    ("cosine", {}), ("euclidean", {}), ("jaccard", {}),
    # collision counting: the rows sharing most bands, fetched as the local search measures them
    ("jaccard", {"n_candidates": 12, "threshold": 0.15}),
])
def test_remote_answers_as_the_same_index_in_memory(redis_url: str, rng: np.random.Generator,
                                                    metric: str, params: dict[str, Any]) -> None:
    if metric == "jaccard":
        X: Any = [rng.choice(400, size=int(rng.integers(5, 40)), replace=False) for _ in range(2400)]
        Q: Any = [np.concatenate([x[:-2], [401, 402]]) for x in X[:40]]
    else:
        X, Q = _data(rng, n=2400)
    here = Index.create(None, metric=metric, seed=7, **params)
    there = Index.create(_remote(redis_url), metric=metric, seed=7, **params)
    for idx in (here, there):
        for part in range(0, len(X), 800):  # three segments
            idx.add(X[part:part + 800])
    assert [s["remote"] for s in there.info()["segments"]] == [True] * 3
    assert _answers(there, Q) == _answers(here, Q)
    if "n_candidates" in params:
        assert there.query(Q, 10).n_candidates.max() == 3 * 12  # 12 per segment
    # One probe cannot fill k=200: both widen their probes, then scan exactly, alike.
    assert _answers(there, Q, 200, n_probes=1) == _answers(here, Q, 200, n_probes=1)
    # A fresh reader holds the ids and hash families, not the rows.
    with Index.open(redis_url, readonly=True) as reader:
        assert _answers(reader, Q) == _answers(here, Q)
        assert all(s._searcher is None for s in reader._segments)
        some = np.arange(0, 2400, 97)
        np.testing.assert_array_equal(reader.rows_found(some)[1], here.rows_found(some)[1])
        if metric == "jaccard":
            got, want = reader.rows(some), here.rows(some)
            np.testing.assert_array_equal(got.indptr, want.indptr)
            np.testing.assert_array_equal(got.elements, want.elements)
        else:
            np.testing.assert_array_equal(reader.rows(some), here.rows(some))
        # Removals hide rows at once; the merge that follows fetches the rows and writes a
        # remote segment again.
        gone = [str(i) for i in range(0, 2400, 3)]
        assert here.remove(gone) == there.remove(gone) == 800
        assert _answers(reader, Q) == _answers(there, Q) == _answers(here, Q)
        there.compact(full=True)
        here.compact(full=True)
        assert [s["remote"] for s in there.info()["segments"]] == [True]
        assert _answers(reader, Q) == _answers(here, Q)
        assert len(reader) == len(here) == 1600


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Round trips: every packed send of redis-py (a command, or a whole pipeline)."""
    sends: list[int] = []
    real = redis.connection.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        sends.append(1)
        real(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send)
    yield sends


def _sent(server: Any) -> int:
    """EVALSHA calls since the last reset; the commands they ran inside are read-only look-ups
    (a client-sent command besides them fails the check)."""
    stats = server.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    for name in ("config|resetstat", "info"):
        calls.pop(name, None)
    evalsha = calls.pop("evalsha", 0)
    assert set(calls) <= {"get", "exists", "hmget"}, calls
    return evalsha


def test_a_query_is_one_round_trip_and_one_command(redis_url: str, rng: np.random.Generator,
                                                   counted: list[int]) -> None:
    X, Q = _data(rng)
    with Index.create(_remote(redis_url), metric="cosine") as idx:
        for part in range(0, len(X), 1000):
            idx.add(X[part:part + 1000])
    server = _server(redis_url)
    with Index.open(redis_url, readonly=True) as reader:
        assert len(reader.segments) == 3
        reader.query(Q[:1], 10)  # the probe script is loaded once per handle
        server.config_resetstat()
        counted.clear()
        res = reader.query(Q[:1], 10)
        assert len(counted) == 1
        assert _sent(server) == 1  # all three segments, and the version check
        assert res.n_candidates[0] > 0
        # A batch is one round trip too: one command per query.
        server.config_resetstat()
        counted.clear()
        reader.query(Q, 10)
        assert len(counted) == 1
        assert _sent(server) == len(Q)


def test_a_reader_sees_a_commit_at_its_next_query(redis_url: str, rng: np.random.Generator) -> None:
    X, Q = _data(rng)
    with Index.create(_remote(redis_url), metric="cosine") as writer, \
            Index.open(redis_url, readonly=True) as reader:
        writer.add(X[:2000])
        before = reader.query(Q[:1], 1)
        new = writer.add(Q[:1] * 3.0)  # the query's own direction: the nearest of all
        after = reader.query(Q[:1], 1)
        assert after.ids[0, 0] == new[0] != before.ids[0, 0]
        # A compaction drops the segments the reader holds: it reads the list again.
        writer.compact(full=True)
        again = reader.query(Q[:1], 1)
        assert again.ids[0, 0] == new[0]
        assert len(reader.segments) == 1


def test_the_reader_fetches_only_what_a_query_needs(redis_url: str, rng: np.random.Generator) -> None:
    X = rng.standard_normal((20000, 64)).astype(np.float32)
    # Fixed probing: recall 0.95 on structureless noise would rightly probe most of the rows
    # (hyperplanes' fixed 4 probes a table; k-means' untuned 1/16 of the cells fetch more).
    with Index.create(_remote(redis_url), metric="cosine", family="hyperplane", target_recall=None) as idx:
        idx.add(X)
    server = _server(redis_url)
    sent = int(server.info("stats")["total_net_output_bytes"])
    with Index.open(redis_url, readonly=True) as reader:
        res = reader.query(X[:2], 10)
        assert res.ids[:, 0].tolist() == [0, 1]
    fetched = int(server.info("stats")["total_net_output_bytes"]) - sent
    # the open (ids, hash family) and two queries' candidate rows, not the 5 MB of vectors
    assert fetched < X.nbytes / 10


def test_modes_are_checked(redis_url: str) -> None:
    with Index.create(_remote(redis_url), metric="cosine"):
        pass
    with pytest.raises(IndexFormatError, match="made in remote mode, not shared"):
        Index.open(redis_url + "&mode=shared")
    with pytest.raises(ParameterError, match="mode must be one of"):
        Index.open(redis_url + "&mode=fast")
    # The shared store is the default, and a remote location names its mode once.
    other = redis_url.replace("prefix=", "prefix=other-")
    with Index.create(other, metric="cosine"):
        pass
    with pytest.raises(IndexFormatError, match="made in shared mode, not remote"):
        Index.open(_remote(other))


def test_dropped_segments_leave_no_hash_behind(redis_url: str, rng: np.random.Generator) -> None:
    X, _ = _data(rng)
    server = _server(redis_url)
    prefix = redis_url.split("prefix=", 1)[1]
    with Index.create(_remote(redis_url), metric="cosine", max_segments=2) as idx:
        for part in range(0, len(X), 500):
            idx.add(X[part:part + 500])
        live = {s.id for s in idx.segments}
        stored = {k.decode().split(":")[2] for k in server.scan_iter(match=f"{prefix}:seg:*")}
        assert stored == live
        hashes = [k for k in server.scan_iter(match=f"{prefix}:seg:*") if server.type(k) == b"hash"]
        # a bucket hash and a rows hash for every live segment
        assert len(hashes) == 2 * len(live)


def test_a_fetch_budget_measures_the_rows_in_most_probed_buckets(redis_url: str,
                                                                rng: np.random.Generator) -> None:
    # The fixed default probes (32): the budget must cut into what they gather.
    X, Q = _data(rng, n=4000)
    with Index.create(_remote(redis_url), metric="cosine", n_tables=8, target_recall=None) as idx:
        idx.add(X)
        full = idx.query(Q, 10)
        assert (full.n_candidates > 100).all()
        small = idx.query(Q, 10, n_rerank=100)
        assert (small.n_candidates == 100).all()
        # the rows found in most tables are the likeliest neighbours: most answers stay
        kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(full.ids.tolist(), small.ids.tolist())])
        assert kept > 0.6
        # a budget no query reaches changes nothing
        big = idx.query(Q, 10, n_rerank=int(full.n_candidates.max()))
        assert big.ids.tolist() == full.ids.tolist()
