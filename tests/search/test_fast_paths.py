"""Fast paths: the one-call search of a few vectors, and collision-counted set candidates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.hashing import HyperplaneLSH, MinHashLSH, PStableLSH, as_sets
from audiolsh.search import BruteForce, Neighbors, SetLSH, VectorLSH, kernels
from audiolsh.search.brute import prepare


def _data(seed: int, n: int, dim: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, dim)) + offset).astype(np.float32)
    Q = (X[:30] + 0.2 * rng.standard_normal((30, dim))).astype(np.float32)
    return X, np.concatenate([Q, rng.standard_normal((10, dim)).astype(np.float32) + offset])


def _general(s: VectorLSH, Q: np.ndarray, k: int, **kw: Any) -> Neighbors:
    rerank = kw.get("n_rerank", s.default_rerank)
    return s._search(Q, k, kw.get("n_probes"), rerank)


def _assert_same(a: Neighbors, b: Neighbors) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.n_candidates, b.n_candidates)


def _one_by_one(s: VectorLSH, Q: np.ndarray, k: int, **kw: Any) -> list[Neighbors]:
    return [s.search(q, k, **kw) for q in Q]


def test_unit_rows_are_bit_identical_to_prepare() -> None:
    rng = np.random.default_rng(0)
    for dim in (1, 3, 7, 8, 9, 40, 127, 128, 129, 172, 282, 300, 1000, 2049):
        x = (rng.standard_normal((2, dim)) * rng.uniform(0.01, 100)).astype(np.float32)
        for dtype in (np.float32, np.float64):
            A, finite = kernels.unit_rows(x.astype(dtype), True)
            assert finite
            np.testing.assert_array_equal(A, prepare(x.astype(dtype), "cosine"))
    A, finite = kernels.unit_rows(np.zeros((1, 5), np.float32), True)
    assert finite and not A.any()
    assert not kernels.unit_rows(np.array([[1.0, np.nan]], np.float32), True)[1]


@pytest.mark.parametrize(
    ("center", "whiten", "metric", "n_bits", "n_tables"),
    [
        (False, 0.0, "cosine", 10, 8),
        (True, 0.0, "cosine", 10, 8),
        (True, 0.5, "cosine", 12, 6),
        (False, 0.0, "euclidean", 8, 8),
    ],
)
def test_a_lone_query_answers_as_the_general_path(
    center: bool, whiten: float, metric: str, n_bits: int, n_tables: int
) -> None:
    X, Q = _data(1, 4000, 24, offset=0.5 if center else 0.0)
    fam = HyperplaneLSH(24, n_tables=n_tables, n_bits=n_bits, seed=2, center=center, whiten=whiten)
    s = VectorLSH(fam, metric=metric, n_probes=20).fit(X)
    assert s._fast is not None
    alive = np.ones(len(X), np.uint8)
    alive[np.random.default_rng(5).choice(len(X), 400, replace=False)] = 0
    alive[:5] = 0  # some queries' own rows are removed
    s.alive_ = alive
    for kw in ({}, {"n_probes": 3}, {"n_probes": 100}, {"n_rerank": 15}, {"n_rerank": 1}):
        for k in (1, 5):
            full = _general(s, Q, k, **kw)
            for i, one in enumerate(_one_by_one(s, Q, k, **kw)):
                _assert_same(one, full.take(np.array([i])))
                assert np.all(alive[one.ids[one.ids >= 0]] == 1)
    # Two and three queries at once take the same path.
    _assert_same(s.search(Q[:3], 4), _general(s, Q[:3], 4))


def test_the_fast_path_is_taken_and_hashes_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    X, Q = _data(2, 3000, 16)
    fam = HyperplaneLSH(16, n_tables=8, n_bits=8, seed=0)
    s = VectorLSH(fam, n_probes=16).fit(X)
    expected = _general(s, Q[:1], 3)
    expected64 = _general(s, Q[:1].astype(np.float64), 3)

    def no_python_hashing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the lone query left the compiled path")

    monkeypatch.setattr(fam, "probes", no_python_hashing)
    monkeypatch.setattr(kernels, "search_vectors", no_python_hashing)
    _assert_same(s.search(Q[0], 3), expected)  # a 1-D vector is one query
    _assert_same(s.search(Q[:1].astype(np.float64), 3), expected64)
    _assert_same(s.search(Q[:1].tolist(), 3), expected)


def test_short_answers_are_widened_as_before() -> None:
    # 12 bits over 300 rows: most buckets hold one row, so k = 20 needs wider probing, and
    # k beyond the live rows needs the exact fallback.
    X, Q = _data(3, 300, 16)
    s = VectorLSH(HyperplaneLSH(16, n_tables=2, n_bits=12, seed=1), n_probes=2).fit(X)
    alive = np.ones(len(X), np.uint8)
    alive[100:] = 0
    s.alive_ = alive
    for k in (20, 150):
        full = _general(s, Q, k)
        for i, one in enumerate(_one_by_one(s, Q, k)):
            _assert_same(one, full.take(np.array([i])))
            assert (one.ids >= 0).sum() == min(k, 100)


def test_fast_path_validates_like_the_general_path() -> None:
    X, _ = _data(4, 500, 8)
    s = VectorLSH(HyperplaneLSH(8, n_tables=4, n_bits=6, seed=0)).fit(X)
    with pytest.raises(ParameterError, match="NaN"):
        s.search(np.array([1.0, np.nan] + [0.0] * 6, np.float32), 2)
    with pytest.raises(ParameterError, match="dimension"):
        s.search(np.ones(9, np.float32), 2)
    with pytest.raises(ParameterError):
        s.search(X[:1], 0)
    # An unfitted centred family fails as before, not with a wrong answer.
    unfitted = VectorLSH(HyperplaneLSH(8, n_tables=4, n_bits=6, center=True)).fit(X)
    unfitted.family.mean_ = None  # type: ignore[attr-defined]
    with pytest.raises(ParameterError, match="fit"):
        unfitted.search(X[:1], 2)


def test_other_families_fall_back_to_the_general_path() -> None:
    X, Q = _data(5, 2000, 12)
    s = VectorLSH(PStableLSH(12, n_tables=4, n_hashes=3, bucket_width=4.0, seed=0), metric="euclidean").fit(X)
    assert s._fast is None
    _assert_same(s.search(Q[:1], 3), _general(s, Q[:1], 3))


# --- collision-counted candidates for sets --------------------------------------------------


def _planted_sets(seed: int) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    """800 random sets of 60 elements from a small universe (J ~ 0.03 between them, as dense
    peak-pair sets are) and 40 queries, each a 70 % overlap variant of one planted row."""
    rng = np.random.default_rng(seed)
    base = [rng.choice(5000, size=60, replace=False) for _ in range(800)]
    planted = rng.choice(800, size=40, replace=False)
    queries = []
    for p in planted:
        keep = rng.permutation(base[p])[:50]
        queries.append(np.concatenate([keep, rng.integers(10**6, 2 * 10**6, 10)]).tolist())
    return [b.tolist() for b in base], queries, planted


def test_collision_counting_finds_the_planted_neighbours() -> None:
    sets, queries, planted = _planted_sets(0)
    s = SetLSH(MinHashLSH(num_perm=64, threshold=0.03, seed=1)).fit(sets)
    full = s.search(queries, 2)
    assert full.n_candidates.mean() > 0.15 * len(sets)  # a low threshold: many candidates
    counted = SetLSH(MinHashLSH(num_perm=64, threshold=0.03, seed=1), n_candidates=20).fit(sets)
    res = counted.search(queries, 2)
    assert np.mean(res.ids[:, 0] == planted) == 1.0
    assert np.all(res.n_candidates == 20)
    # Only the counted candidates are measured, exactly.
    truth = BruteForce("jaccard").fit(sets).search(queries, 1)
    np.testing.assert_array_equal(res.distances[:, 0], truth.distances[:, 0])


def test_collision_counting_with_room_for_all_equals_the_plain_search() -> None:
    sets, queries, _ = _planted_sets(1)
    s = SetLSH(MinHashLSH(num_perm=32, threshold=0.1, seed=0)).fit(sets)
    plain = s.search(queries, 5)
    _assert_same(s.search(queries, 5, n_candidates=len(sets)), plain)
    _assert_same(s.search(queries[:1], 5, n_candidates=len(sets)), plain.take(np.array([0])))
    # A budget below k still measures k candidates.
    assert np.all(s.search(queries, 5, n_candidates=1).n_candidates <= 5)


def test_collision_counting_keeps_the_rows_with_most_shared_bands() -> None:
    sets, queries, _ = _planted_sets(2)
    fam = MinHashLSH(num_perm=32, n_bands=32, n_rows=1, seed=3)
    s = SetLSH(fam).fit(sets)
    qs = as_sets(queries)
    shared = (fam.signatures(qs)[:, None, :] == fam.signatures(s.sets_)[None, :, :]).sum(axis=2)
    budget = 30
    res = s.search(queries, budget, n_candidates=budget)
    for i in range(len(queries)):
        got = np.sort(res.ids[i][res.ids[i] >= 0])
        order = np.argsort(-shared[i], kind="stable")
        # Every row above the cut-off count is kept, and the kept ones reach it.
        cut = shared[i][order[budget - 1]]
        assert set(np.flatnonzero(shared[i] > cut)) <= set(got.tolist())
        assert shared[i][got].min() >= cut and len(got) == budget


def test_collision_counting_never_returns_removed_rows() -> None:
    sets, queries, planted = _planted_sets(3)
    alive = np.ones(len(sets), np.uint8)
    alive[planted[:20]] = 0
    alive[::7] = 0
    s = SetLSH(MinHashLSH(num_perm=64, threshold=0.03, seed=0), n_candidates=50).fit(sets, alive=alive)
    res = s.search(queries, 5)
    assert np.all(alive[res.ids[res.ids >= 0]] == 1)
    one = s.search(queries[:1], 5)
    assert np.all(alive[one.ids[one.ids >= 0]] == 1)
    with pytest.raises(ParameterError):
        SetLSH(MinHashLSH(num_perm=16), n_candidates=0)
