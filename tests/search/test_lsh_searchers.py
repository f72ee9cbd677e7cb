"""VectorLSH, SetLSH and BruteForce: self-retrieval, exactness, the alive mask, short buckets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.errors import ParameterError
from audiolsh.hashing import HyperplaneLSH, MinHashLSH, PStableLSH, as_sets
from audiolsh.search import BruteForce, BucketTables, Neighbors, SetLSH, VectorLSH, merge

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None)


def _vectors(seed: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _sets(seed: int, n: int, universe: int = 2000) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [
        rng.choice(universe, size=int(rng.integers(3, 40)), replace=False).tolist() for _ in range(n)
    ]


def _set_clusters(
    seed: int, *, n_clusters: int, per_cluster: int, variant_seed: int = 0
) -> list[list[int]]:
    """Variants of a few base sets: 40 elements each, 5 swapped per variant (J ~ 0.6-0.8)."""
    base_rng = np.random.default_rng(seed)
    bases = [base_rng.choice(10**6, size=40, replace=False) for _ in range(n_clusters)]
    rng = np.random.default_rng([seed, variant_seed])
    out = []
    for base in bases:
        for _ in range(per_cluster):
            keep = rng.permutation(base)[:35]
            out.append(np.concatenate([keep, rng.integers(10**6, 2 * 10**6, 5)]).tolist())
    return out


def _vector_searcher(metric: str, dim: int, seed: int, **kw: Any) -> VectorLSH:
    if metric == "cosine":
        family: Any = HyperplaneLSH(
            dim, n_tables=kw.get("n_tables", 6), n_bits=kw.get("n_bits", 8), seed=seed
        )
    else:
        family = PStableLSH(
            dim, n_tables=kw.get("n_tables", 6), n_hashes=kw.get("n_bits", 4),
            bucket_width=kw.get("width", 4.0), seed=seed,
        )
    return VectorLSH(family, metric=metric)


def _np_distances(Q: np.ndarray, X: np.ndarray, metric: str) -> np.ndarray:
    Q64, X64 = Q.astype(np.float64), X.astype(np.float64)
    if metric == "cosine":
        Qn = Q64 / np.linalg.norm(Q64, axis=1, keepdims=True)
        Xn = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
        return 1.0 - Qn @ Xn.T
    return np.sqrt(((Q64[:, None, :] - X64[None, :, :]) ** 2).sum(axis=2))


def _jaccard_distances(qs: list[list[int]], xs: list[list[int]]) -> np.ndarray:
    out = np.zeros((len(qs), len(xs)))
    for i, q in enumerate(qs):
        a = set(q)
        for j, x in enumerate(xs):
            b = set(x)
            out[i, j] = 1.0 - len(a & b) / len(a | b)
    return out


def _assert_valid(res: Neighbors, n_queries: int, k: int) -> None:
    assert res.ids.shape == (n_queries, k)
    assert res.distances.shape == (n_queries, k)
    assert res.ids.dtype == np.int64
    assert res.distances.dtype == np.float32
    assert res.n_candidates.shape == (n_queries,)
    found = res.ids >= 0
    assert np.all(np.isfinite(res.distances[found]))
    assert np.all(np.isinf(res.distances[~found]))
    finite = np.where(found, res.distances, np.float32(np.finfo(np.float32).max))
    assert np.all(np.diff(finite, axis=1) >= 0)
    for row in res.ids:
        live = row[row >= 0]
        assert len(set(live.tolist())) == len(live)


# -- self retrieval ------------------------------------------------------------------------


@PROPERTY
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 400),
    dim=st.integers(2, 40),
    metric=st.sampled_from(["cosine", "euclidean"]),
    k=st.integers(1, 12),
)
def test_vector_search_finds_itself_first(seed: int, n: int, dim: int, metric: str, k: int) -> None:
    X = _vectors(seed, n, dim)
    searcher = _vector_searcher(metric, dim, seed % 1000).fit(X)
    res = searcher.search(X, k)
    _assert_valid(res, n, k)
    # A row is at distance ~0 of itself, whether found in its buckets or (for rows short of
    # k candidates) by the exact fallback.
    assert np.all(np.abs(res.distances[:, 0]) < 1e-5)
    first = res.ids[:, 0]
    others = np.flatnonzero(first != np.arange(n))
    # Another row may only come first when it is the same point (direction, for cosine) to
    # float32 precision, which in low dimensions happens to random data.
    D = _np_distances(X[others], X[first[others]], metric)
    assert np.all(np.diag(D) < 1e-5)
    assert np.all((res.ids >= 0).sum(axis=1) == min(k, n))


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 200), k=st.integers(1, 8))
def test_set_search_finds_itself_first(seed: int, n: int, k: int) -> None:
    sets = _sets(seed, n)
    searcher = SetLSH(MinHashLSH(num_perm=64, threshold=0.5, seed=seed % 1000)).fit(sets)
    res = searcher.search(sets, k)
    _assert_valid(res, n, k)
    assert np.all(res.distances[:, 0] == 0.0)
    for i, j in enumerate(res.ids[:, 0].tolist()):
        assert j == i or set(sets[j]) == set(sets[i])


# -- brute force ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 7, 300])
def test_brute_force_matches_numpy(metric: str, k: int, rng: np.random.Generator) -> None:
    X = rng.standard_normal((250, 12)).astype(np.float32)
    Q = rng.standard_normal((30, 12)).astype(np.float32)
    res = BruteForce(metric).fit(X).search(Q, k)
    _assert_valid(res, len(Q), k)
    D = _np_distances(Q, X, metric)
    kk = min(k, len(X))
    expected_d = np.sort(D, axis=1)[:, :kk]
    np.testing.assert_allclose(res.distances[:, :kk], expected_d, atol=1e-3, rtol=1e-4)
    # Ids agree wherever the distance is not within rounding of a neighbour's.
    gaps = np.diff(np.sort(D, axis=1), axis=1)
    for qi in range(len(Q)):
        for r in range(kk):
            clear = (r == 0 or gaps[qi, r - 1] > 1e-3) and (r >= gaps.shape[1] or gaps[qi, r] > 1e-3)
            if clear:
                assert res.ids[qi, r] == np.argsort(D[qi])[r]
    if k > len(X):
        assert np.all(res.ids[:, len(X) :] == -1)
        assert np.all(np.isinf(res.distances[:, len(X) :]))
    np.testing.assert_array_equal(res.n_candidates, len(X))


def test_brute_force_euclidean_exact_for_offset_data(rng: np.random.Generator) -> None:
    X = (rng.standard_normal((500, 16)) + 100.0).astype(np.float32)
    Q = X[:50] + 0.01 * rng.standard_normal((50, 16)).astype(np.float32)
    res = BruteForce("euclidean").fit(X).search(Q, 5)
    D = _np_distances(Q, X, "euclidean")
    np.testing.assert_allclose(res.distances, np.sort(D, axis=1)[:, :5], atol=1e-3)
    np.testing.assert_array_equal(res.ids, np.argsort(D, axis=1)[:, :5])


def test_brute_force_euclidean_exact_far_from_origin(rng: np.random.Generator) -> None:
    X = (rng.standard_normal((3000, 16)) + 1000.0).astype(np.float32)
    Q = X[:200] + 0.01 * rng.standard_normal((200, 16)).astype(np.float32)
    res = BruteForce("euclidean").fit(X).search(Q, 10)
    D = _np_distances(Q, X, "euclidean")
    np.testing.assert_array_equal(res.ids, np.argsort(D, axis=1)[:, :10])
    np.testing.assert_allclose(res.distances, np.sort(D, axis=1)[:, :10], atol=1e-3)


def test_brute_force_jaccard_matches_python(rng: np.random.Generator) -> None:
    xs = _sets(1, 120, universe=80)
    qs = _sets(2, 15, universe=80)
    res = BruteForce("jaccard").fit(xs).search(qs, 6)
    _assert_valid(res, len(qs), 6)
    D = _jaccard_distances(qs, xs)
    np.testing.assert_allclose(res.distances, np.sort(D, axis=1)[:, :6], atol=1e-6)
    for qi in range(len(qs)):
        np.testing.assert_allclose(D[qi, res.ids[qi]], res.distances[qi], atol=1e-6)


def test_brute_force_cosine_zero_vector_is_not_nan() -> None:
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)
    res = BruteForce("cosine").fit(X).search(np.array([[1.0, 0.0]], np.float32), 3)
    assert res.ids[0, 0] == 0
    assert np.all(np.isfinite(res.distances))


# -- the alive mask ------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "jaccard"])
def test_alive_mask_hides_rows(metric: str, rng: np.random.Generator) -> None:
    n = 300
    alive = (rng.random(n) > 0.4).astype(np.uint8)
    data: Any
    if metric == "jaccard":
        data = _sets(3, n)
        lsh: Any = SetLSH(MinHashLSH(num_perm=64, threshold=0.5, seed=1))
    else:
        data = rng.standard_normal((n, 10)).astype(np.float32)
        lsh = _vector_searcher(metric, 10, 1)
    lsh.fit(data, alive=alive)
    brute = BruteForce(metric).fit(data, alive=alive)
    for searcher in (lsh, brute):
        res = searcher.search(data, 10)
        _assert_valid(res, n, 10)
        returned = res.ids[res.ids >= 0]
        assert np.all(alive[returned] == 1)
        # A live row still finds itself; a dead one never does.
        live_rows = np.flatnonzero(alive)
        dead_rows = np.flatnonzero(alive == 0)
        if metric != "jaccard":
            np.testing.assert_array_equal(res.ids[live_rows, 0], live_rows)
        assert not np.any(res.ids[dead_rows] == dead_rows[:, None])
        if searcher is brute or metric != "jaccard":
            # Every query still gets k answers: 10 <= live rows.
            assert np.all((res.ids >= 0).sum(axis=1) == 10)
        else:
            # MinHash answers hold only band matches: a live row finds itself, no padding.
            np.testing.assert_array_equal(res.ids[live_rows, 0], live_rows)
    # Reviving every row through the attribute the index uses brings them back.
    lsh.alive_ = np.ones(n, np.uint8)
    res = lsh.search(data, 1)
    if metric != "jaccard":
        np.testing.assert_array_equal(res.ids[:, 0], np.arange(n))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_fewer_live_rows_than_k(metric: str, rng: np.random.Generator) -> None:
    X = rng.standard_normal((40, 6)).astype(np.float32)
    alive = np.zeros(40, np.uint8)
    alive[[3, 17, 29]] = 1
    for searcher in (_vector_searcher(metric, 6, 0), BruteForce(metric)):
        searcher.fit(X, alive=alive)
        res = searcher.search(X[:5], 5)
        _assert_valid(res, 5, 5)
        assert np.all(np.sort(res.ids[:, :3], axis=1) == [3, 17, 29])
        assert np.all(res.ids[:, 3:] == -1)


# -- short buckets -------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_singleton_buckets_still_answer_k(metric: str, rng: np.random.Generator) -> None:
    """K = 24 bits on 50 rows: nearly every bucket holds one row, yet k answers come back."""
    X = rng.standard_normal((50, 16)).astype(np.float32)
    searcher = _vector_searcher(metric, 16, 5, n_tables=4, n_bits=24, width=0.5).fit(X)
    sizes = searcher.tables_.bucket_sizes()
    assert np.mean(sizes == 1) > 0.9
    Q = rng.standard_normal((20, 16)).astype(np.float32)
    res = searcher.search(Q, 10)
    _assert_valid(res, 20, 10)
    assert np.all(res.ids >= 0)
    # The answers are real rows at their real distances.
    D = _np_distances(Q, X, metric)
    np.testing.assert_allclose(
        res.distances, np.take_along_axis(D, res.ids, axis=1), atol=2e-3, rtol=1e-3
    )
    # And with so few rows the widening ends exact.
    truth = BruteForce(metric).fit(X).search(Q, 10)
    np.testing.assert_array_equal(np.sort(res.ids, axis=1), np.sort(truth.ids, axis=1))


# -- batches -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "jaccard"])
def test_batch_and_single_queries_agree(metric: str, rng: np.random.Generator) -> None:
    data: Any
    if metric == "jaccard":
        data = _set_clusters(4, n_clusters=60, per_cluster=10)
        queries: Any = _set_clusters(4, n_clusters=60, per_cluster=10, variant_seed=5)[::25]
        searcher: Any = SetLSH(MinHashLSH(num_perm=64, threshold=0.4, seed=3)).fit(data)
    else:
        data = rng.standard_normal((3000, 16)).astype(np.float32)
        queries = rng.standard_normal((24, 16)).astype(np.float32)
        searcher = _vector_searcher(metric, 16, 3, n_bits=8, width=8.0).fit(data)
    k = 5 if metric == "jaccard" else 8
    batch = searcher.search(queries, k)
    # Answered from buckets, not by the exact fallback (see the BruteForce test below).
    assert np.all(batch.n_candidates < len(data))
    for i in range(len(queries)):
        one = searcher.search(queries[i : i + 1], k)
        np.testing.assert_array_equal(one.ids[0], batch.ids[i])
        np.testing.assert_array_equal(one.distances[0], batch.distances[i])
        np.testing.assert_array_equal(one.n_candidates[0], batch.n_candidates[i])
    # Splitting the batch across the serial/parallel kernels changes nothing either.
    halves = [searcher.search(queries[:3], k), searcher.search(queries[3:], k)]
    np.testing.assert_array_equal(np.concatenate([h.ids for h in halves]), batch.ids)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_brute_force_batch_and_single_queries_agree(metric: str, rng: np.random.Generator) -> None:
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    Q = rng.standard_normal((24, 16)).astype(np.float32)
    brute = BruteForce(metric).fit(X)
    batch = brute.search(Q, 8)
    for i in range(len(Q)):
        one = brute.search(Q[i : i + 1], 8)
        np.testing.assert_array_equal(one.ids[0], batch.ids[i])
        np.testing.assert_array_equal(one.distances[0], batch.distances[i])


def test_lsh_is_a_subset_of_exact_distances(rng: np.random.Generator) -> None:
    """Every LSH answer is a true row at its exact distance: LSH only loses, never invents."""
    X = rng.standard_normal((2000, 20)).astype(np.float32)
    Q = rng.standard_normal((50, 20)).astype(np.float32)
    for metric in ("cosine", "euclidean"):
        res = _vector_searcher(metric, 20, 7, n_bits=10, width=3.0).fit(X).search(Q, 10)
        truth = BruteForce(metric).fit(X).search(Q, 10)
        ok = res.ids >= 0
        D = _np_distances(Q, X, metric)
        got = np.take_along_axis(D, np.maximum(res.ids, 0), axis=1)
        np.testing.assert_allclose(res.distances[ok], got[ok], atol=2e-3, rtol=1e-3)
        # The r-th LSH answer is never closer than the r-th true answer.
        assert np.all(res.distances >= truth.distances - 2e-3)


# -- errors, tables and merging ------------------------------------------------------------


def test_parameter_errors(rng: np.random.Generator) -> None:
    X = rng.standard_normal((30, 8)).astype(np.float32)
    searcher = _vector_searcher("cosine", 8, 0).fit(X)
    with pytest.raises(ParameterError):
        searcher.search(X, 0)
    with pytest.raises(ParameterError):
        searcher.search(X, 3, n_probes=0)
    with pytest.raises(ParameterError):
        searcher.search(np.zeros((2, 9), np.float32), 3)
    with pytest.raises(ParameterError):
        BruteForce("cosine").fit(X).search(np.zeros((2, 9), np.float32), 3)
    with pytest.raises(ParameterError):
        VectorLSH(HyperplaneLSH(8), metric="jaccard")
    with pytest.raises(ParameterError):
        BruteForce("manhattan")
    with pytest.raises(ParameterError):
        BruteForce("euclidean").fit(np.array([[np.nan, 1.0]]))


def test_bucket_tables_structure(rng: np.random.Generator) -> None:
    keys = rng.integers(0, 7, size=(200, 3)).astype(np.uint64)
    keys[:, 2] = rng.integers(0, 2**64 - 1, size=200, dtype=np.uint64)
    tables = BucketTables.build(keys)
    assert tables.n_tables == 3
    for t in range(3):
        lo, hi = tables.table_start[t], tables.table_start[t + 1]
        bk = tables.bucket_keys[lo:hi]
        assert np.all(np.diff(bk.astype(object)) > 0)  # strictly sorted, no repeats
        assert set(bk.tolist()) == set(keys[:, t].tolist())
        rows = []
        for b in range(lo, hi):
            members = tables.members[tables.bucket_start[b] : tables.bucket_start[b + 1]]
            assert len(members) > 0
            assert np.all(keys[members, t] == tables.bucket_keys[b])
            rows += members.tolist()
        assert sorted(rows) == list(range(200))
    assert tables.bucket_sizes().sum() == 200 * 3
    rebuilt = BucketTables.from_arrays(tables.arrays())
    for name, a in tables.arrays().items():
        np.testing.assert_array_equal(getattr(rebuilt, name), a)


def test_merge_is_top_k_of_union(rng: np.random.Generator) -> None:
    parts = []
    for offset in (0, 100, 200):
        d = np.sort(rng.random((4, 5)).astype(np.float32), axis=1)
        ids = rng.permutation(100)[:5][None, :].repeat(4, axis=0) + offset
        d[1, 3:] = np.inf
        ids[1, 3:] = -1
        parts.append(Neighbors(ids.astype(np.int64), d, np.full(4, 5, np.int64)))
    merged = merge(parts, 6)
    all_d = np.concatenate([p.distances for p in parts], axis=1)
    all_i = np.concatenate([p.ids for p in parts], axis=1)
    np.testing.assert_array_equal(merged.distances, np.sort(all_d, axis=1)[:, :6])
    for q in range(4):
        for i, d in zip(merged.ids[q], merged.distances[q]):
            assert d in all_d[q][all_i[q] == i]
    np.testing.assert_array_equal(merged.n_candidates, 15)
    assert merge(parts[:1], 3) is parts[0]


def test_as_sets_batches_take(rng: np.random.Generator) -> None:
    sets = _sets(6, 20)
    batch = as_sets(sets)
    rows = np.array([5, 0, 19, 5])
    taken = batch.take(rows)
    assert len(taken) == 4
    for i, r in enumerate(rows):
        assert taken[i].tolist() == sorted(set(sets[r]))


def test_set_search_returns_band_matches_without_an_exact_scan() -> None:
    """Distinct sets share no band: each query gets itself only, not k padded rows."""
    sets = [list(range(i * 1000, i * 1000 + 50)) for i in range(40)]
    lsh = SetLSH(MinHashLSH(num_perm=64, threshold=0.5, seed=2)).fit(sets)
    res = lsh.search(sets, 5)
    np.testing.assert_array_equal(res.ids[:, 0], np.arange(40))
    assert np.all(res.ids[:, 1:] == -1)
    assert np.all(res.n_candidates == 1)
