"""Index: create / add / query / remove / len / contains, in memory and on disk, per metric."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.index import Index
from audiolsh.search import BruteForce

METRICS = ["cosine", "euclidean", "jaccard"]
DIM = 16


def make_data(metric: str, seed: int, n: int) -> Any:
    rng = np.random.default_rng(seed)
    if metric == "jaccard":
        return [
            rng.choice(10**9, size=int(rng.integers(5, 40)), replace=False).tolist()
            for _ in range(n)
        ]
    X = rng.standard_normal((n, DIM))
    if metric == "cosine" and seed % 2:
        X = np.abs(X) + 0.1  # non-negative: exercises the centred hyperplanes
    return X.astype(np.float32)


def take(data: Any, rows: Any) -> Any:
    if isinstance(data, list):
        return [data[i] for i in rows]
    return data[np.asarray(rows)]


def open_index(where: Path | None, metric: str, **params: Any) -> Index:
    return Index.create(None if where is None else where / "idx", metric=metric, **params)


@pytest.fixture(params=["memory", "disk"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    return None if request.param == "memory" else tmp_path


@pytest.mark.parametrize("metric", METRICS)
def test_add_query_len_contains(metric: str, where: Path | None) -> None:
    index = open_index(where, metric)
    assert len(index) == 0
    empty = index.query(make_data(metric, 9, 2), k=3)
    assert np.all(empty.ids == -1)
    assert np.all(np.isinf(empty.distances))

    data = make_data(metric, 1, 300)
    keys = [f"row-{i}" for i in range(300)]
    ids = index.add(data, keys=keys)
    assert ids.dtype == np.int64
    assert len(set(ids.tolist())) == 300
    assert len(index) == 300
    assert "row-0" in index
    assert "row-299" in index
    assert "row-300" not in index
    assert 5 not in index  # only string keys

    more = make_data(metric, 3, 100)
    ids2 = index.add(more, keys=[f"more-{i}" for i in range(100)])
    assert set(ids2.tolist()).isdisjoint(ids.tolist())
    assert len(index) == 400

    res = index.query(take(data, range(0, 300, 7)), k=5)
    assert res.ids.shape == (len(range(0, 300, 7)), 5)
    np.testing.assert_array_equal(res.ids[:, 0], ids[::7])
    assert np.all(res.distances[:, 0] < 1e-4)
    hits = index.hits(res)
    assert [h[0].key for h in hits] == keys[::7]
    # Vector answers are always k long; MinHash answers hold band matches only.
    assert all(len(h) == 5 for h in hits) or metric == "jaccard"
    res2 = index.query(take(more, [4, 50]), k=2)
    np.testing.assert_array_equal(res2.ids[:, 0], ids2[[4, 50]])
    index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_exact_query_matches_brute_force(metric: str, where: Path | None) -> None:
    index = open_index(where, metric)
    parts = [make_data(metric, s, 150) for s in (2, 4)]
    ids = np.concatenate([index.add(p) for p in parts])
    allx: Any = parts[0] + parts[1] if metric == "jaccard" else np.concatenate(parts)
    queries = make_data(metric, 77, 10)
    got = index.query(queries, k=8, exact=True)
    truth = BruteForce(metric).fit(allx).search(queries, 8)
    np.testing.assert_allclose(got.distances, truth.distances, atol=1e-5)
    np.testing.assert_array_equal(got.ids, ids[truth.ids])
    # LSH answers are real items at their exact distance and never beat the exact ones.
    lsh = index.query(queries, k=8)
    assert np.all(lsh.distances >= got.distances - 1e-5)
    index.close()


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(
    metric=st.sampled_from(METRICS),
    on_disk=st.booleans(),
    seed=st.integers(0, 2**31),
    n=st.integers(1, 250),
    pick=st.integers(0, 10**6),
)
def test_query_finds_what_was_added(metric: str, on_disk: bool, seed: int, n: int, pick: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        index = open_index(Path(tmp) if on_disk else None, metric, seed=seed % 100)
        index.add(make_data(metric, seed + 1, 50), keys=[f"old-{i}" for i in range(50)])
        data = make_data(metric, seed, n)
        ids = index.add(data, keys=[f"new-{i}" for i in range(n)])
        row = pick % n
        res = index.query(take(data, [row]), k=3)
        assert res.ids[0, 0] == ids[row]
        assert f"new-{row}" in index
        assert len(index) == 50 + n
        index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_remove_undoes_add(metric: str, where: Path | None) -> None:
    index = open_index(where, metric)
    data = make_data(metric, 5, 200)
    keys = [f"k{i}" for i in range(200)]
    ids = index.add(data, keys=keys)
    gone = list(range(0, 200, 8))  # 12.5 %: tombstones only, no compaction
    assert index.remove([keys[i] for i in gone]) == len(gone)
    assert len(index) == 200 - len(gone)
    for i in gone:
        assert keys[i] not in index
    assert keys[1] in index
    res = index.query(data, k=20)
    assert not np.isin(res.ids, ids[gone]).any()
    kept = np.setdiff1d(np.arange(200), gone)
    np.testing.assert_array_equal(res.ids[kept, 0], ids[kept])
    exact = index.query(data, k=20, exact=True)
    assert not np.isin(exact.ids, ids[gone]).any()
    assert index.items(ids[gone]) == [None] * len(gone)

    # Removing what is gone, or never was, removes nothing.
    assert index.remove([keys[0], "never-added"]) == 0
    assert len(index) == 200 - len(gone)

    # A big removal (beyond the 30 % tombstone share) compacts; answers stay right.
    more = list(range(1, 200, 2))
    assert index.remove([keys[i] for i in more]) == len(more)
    left = np.setdiff1d(kept, more)
    assert len(index) == len(left)
    res = index.query(data, k=10)
    assert np.isin(res.ids[res.ids >= 0], ids[left]).all()
    np.testing.assert_array_equal(res.ids[left, 0], ids[left])
    assert sum(s.n_items for s in index.segments) == len(left)

    # Re-adding a removed key gives a new item.
    new_ids = index.add(take(data, [0]), keys=[keys[0]])
    assert keys[0] in index
    assert new_ids[0] not in ids
    assert index.query(take(data, [0]), k=1).ids[0, 0] == new_ids[0]
    index.close()


def test_remove_all_then_query(where: Path | None) -> None:
    index = open_index(where, "euclidean")
    data = make_data("euclidean", 8, 40)
    index.add(data, keys=[str(i) for i in range(40)])
    assert index.remove([str(i) for i in range(40)]) == 40
    assert len(index) == 0
    res = index.query(data[:3], k=4)
    assert np.all(res.ids == -1)
    index.add(data[:5], keys=["a", "b", "c", "d", "e"])
    assert len(index) == 5
    index.close()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_single_vector_and_dimension_checks(metric: str, where: Path | None) -> None:
    index = open_index(where, metric)
    data = make_data(metric, 11, 60)
    index.add(data)
    assert index.config.dim == DIM
    res = index.query(data[7], k=2)  # one vector, not a batch
    assert res.ids.shape == (1, 2)
    with pytest.raises(ParameterError):
        index.add(np.zeros((3, DIM + 1), np.float32))
    with pytest.raises(ParameterError):
        index.add(data[:3], keys=["only-one"])
    with pytest.raises(ParameterError):
        index.query(data[:2], k=0)
    assert len(index) == 60
    index.close()


def test_sessions_and_tracks(where: Path | None) -> None:
    index = open_index(where, "cosine")
    data = make_data("cosine", 12, 30)
    with index.session() as s:
        t1 = s.add_track("one.wav", content_hash="h1", duration_s=10.0)
        t2 = s.add_track("two.wav", content_hash="h2")
        s.add(data[:10], keys=[f"a{i}" for i in range(10)], track=t1,
              offsets_s=np.arange(10) * 0.5)
        s.add(data[10:30], keys=[f"b{i}" for i in range(20)], track=t2)
    assert len(index) == 30
    tracks = {t.path: t for t in index.tracks()}
    assert tracks["one.wav"].n_items == 10
    assert tracks["two.wav"].n_items == 20
    res = index.query(data[[3, 15]], k=1)
    h1, h2 = (row[0] for row in index.hits(res))
    assert (h1.key, h1.track_id, h1.offset_s) == ("a3", tracks["one.wav"].id, 1.5)
    assert (h2.key, h2.track_id, h2.offset_s) == ("b5", tracks["two.wav"].id, None)
    assert index.track_by_hash("h2").id == tracks["two.wav"].id
    assert index.remove_track(tracks["one.wav"].id) == 10
    assert len(index) == 20
    assert "a3" not in index
    assert index.track_by_hash("h1") is None
    res = index.query(data[:10], k=5)
    assert np.all(np.isin(res.ids, index.storage.ids_for_track(tracks["two.wav"].id)))
    with pytest.raises(ParameterError):
        index.remove_track(999)
    index.close()


def test_default_keys_are_unique_across_adds() -> None:
    index = Index.create(None, metric="euclidean")
    data = make_data("euclidean", 13, 10)
    index.add(data[:5])
    index.add(data[5:])
    keys = [it.key for it in index.items(np.arange(10))]
    assert len(set(keys)) == 10
    assert index.remove([keys[0]]) == 1
    assert len(index) == 9


def test_create_refuses_existing_index(tmp_path: Path) -> None:
    Index.create(tmp_path / "idx", metric="euclidean").close()
    with pytest.raises(IndexFormatError, match="already exists"):
        Index.create(tmp_path / "idx", metric="euclidean")
    again = Index.create(tmp_path / "idx", metric="euclidean", exist_ok=True)
    assert again.config.metric == "euclidean"
    again.close()


@pytest.mark.parametrize(
    "params",
    [
        {"metric": "hamming"},
        {"n_tables": 0},
        {"n_bits": 65},
        {"bucket_width": -1.0},
        {"threshold": 1.5},
        {"num_perm": 1},
        {"center": "sometimes"},
        {"max_segments": 0},
        {"n_probes": 0},
    ],
)
def test_bad_index_parameters(params: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ParameterError):
        Index.create(tmp_path / "idx", **params)
    with pytest.raises(ParameterError):
        Index.create(None, **params)


@pytest.mark.parametrize("metric", METRICS)
def test_k_larger_than_the_index(metric: str, where: Path | None) -> None:
    index = open_index(where, metric, max_segments=8)
    parts = [make_data(metric, s, 4) for s in (21, 22, 23)]
    ids = np.concatenate([index.add(p) for p in parts])  # three segments of four rows
    index.remove([str(ids[5])])  # default keys are the item ids
    res = index.query(take(parts[0], [1]), k=20, exact=metric == "jaccard")
    found = res.ids[0][res.ids[0] >= 0]
    assert sorted(found.tolist()) == sorted(np.delete(ids, 5).tolist())
    assert np.all(res.ids[0, 11:] == -1)
    assert np.all(np.isinf(res.distances[0, 11:]))
    assert res.ids[0, 0] == ids[1]
    index.close()


@pytest.mark.parametrize("metric", METRICS)
def test_info_and_live_data(metric: str, where: Path | None) -> None:
    index = open_index(where, metric)
    data = make_data(metric, 31, 50)
    ids = index.add(data, keys=[f"r{i}" for i in range(50)])
    index.remove(["r3", "r4"])
    info = index.info()
    assert info["n_items"] == 48
    assert info["n_deleted"] == 2
    assert sum(s["n_live"] for s in info["segments"]) == 48
    assert info["config"]["metric"] == metric
    rows, live_ids = index.live_data()
    assert sorted(live_ids.tolist()) == sorted(np.delete(ids, [3, 4]).tolist())
    assert len(rows) == 48
    # The live rows are the prepared added rows, in the order of their ids.
    pos = {int(i): j for j, i in enumerate(ids.tolist())}
    for j, i in enumerate(live_ids.tolist()[:10]):
        if metric == "jaccard":
            assert rows[j].tolist() == sorted(set(data[pos[i]]))
        else:
            expected = data[pos[i]]
            if metric == "cosine":
                expected = expected / np.linalg.norm(expected)
            np.testing.assert_allclose(rows[j], expected, rtol=1e-5, atol=1e-6)
    index.close()


def test_set_index_measures_only_the_most_colliding_candidates(tmp_path: Path) -> None:
    """n_candidates is persisted, and a query computes the Jaccard of at most that many sets,
    the ones sharing the most min-hashes: near copies of the query are still the answer."""
    rng = np.random.default_rng(5)
    # Sets drawn from one pool of 1,500 elements overlap a little (Jaccard about 0.02): with
    # 128 one-row bands most of them share a min-hash with any query.
    base = [rng.choice(1500, size=60, replace=False) for _ in range(400)]
    rows = [3, 150, 399]
    queries = [np.concatenate([base[r][:50], rng.choice(1500, size=10)]).tolist() for r in rows]
    answers = {}
    for cap in (None, 10):
        index = Index.create(tmp_path / f"sets{cap}", metric="jaccard", threshold=0.01, n_candidates=cap)
        ids = index.add([b.tolist() for b in base])
        index.close()
        index = Index.open(tmp_path / f"sets{cap}")
        assert index.config.n_candidates == cap
        answers[cap] = index.query(queries, k=3)
        np.testing.assert_array_equal(answers[cap].ids[:, 0], ids[rows])
        index.close()
    assert np.all(answers[None].n_candidates > 100)
    assert np.all(answers[10].n_candidates == 10)


def test_rows_and_query_settings_follow_the_index(tmp_path: Path) -> None:
    """rows() returns live rows only; n_candidates set later reaches the segments already open."""
    rng = np.random.default_rng(9)
    base = [rng.choice(1500, size=60, replace=False).tolist() for _ in range(300)]
    index = Index.create(tmp_path / "sets", metric="jaccard", threshold=0.01, n_candidates=5)
    ids = index.add(base)
    got = index.rows(ids[[7, 2]])
    assert sorted(got[0].tolist()) == sorted(base[7]) and sorted(got[1].tolist()) == sorted(base[2])
    assert index.query([base[0]], k=3).n_candidates[0] == 5
    index.set_params(n_candidates=50)
    assert index.query([base[0]], k=3).n_candidates[0] == 50
    index.remove([index.items(ids[[7]])[0].key])
    data, found = index.rows_found(ids[[7, 2]])
    assert found.tolist() == [False, True] and len(data[0]) == 0
    with pytest.raises(ParameterError, match="removed"):
        index.rows(ids[[7]])
    index.close()
