"""Query-directed multi-probe: which buckets are probed, in what order, and what it buys."""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.hashing import HyperplaneLSH, PStableLSH, perturbation_sets, probe_sequence
from audiolsh.search import BruteForce, VectorLSH

DIM = 32


def _popcount(a: np.ndarray) -> np.ndarray:
    bytes_ = np.ascontiguousarray(a, dtype=np.uint64).view(np.uint8).reshape(*a.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1)


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bits=st.integers(4, 64),
    n_tables=st.integers(1, 6),
    factor=st.integers(1, 30),
)
def test_hyperplane_probes_are_few_bit_flips(
    seed: int, n_bits: int, n_tables: int, factor: int
) -> None:
    family = HyperplaneLSH(DIM, n_tables=n_tables, n_bits=n_bits, seed=seed % 1000)
    X = np.random.default_rng(seed).standard_normal((30, DIM)).astype(np.float32)
    home = family.keys(X)
    keys, tables = family.probes(X, factor * n_tables)
    home_of_probe = np.take_along_axis(home, tables.astype(np.int64), axis=1)
    flips = _popcount(keys ^ home_of_probe)
    assert flips.max() <= 3
    # Only bits that exist are flipped.
    if n_bits < 64:
        assert np.all(keys >> np.uint64(n_bits) == 0)
    # A bucket is probed at most once per query.
    for t_row, k_row in zip(tables.tolist(), keys.tolist()):
        assert len(set(zip(t_row, k_row))) == len(k_row)


def _flip_scores(family: HyperplaneLSH, x: np.ndarray, keys: np.ndarray, tables: np.ndarray):
    """Score of every probe: sum of the squared margins of the bits it flips."""
    proj = family.project(x)[0]  # (L, K)
    home = family.keys(x)[0]
    scores = []
    for key, t in zip(keys.tolist(), tables.tolist()):
        diff = int(key) ^ int(home[t])
        bits = [j for j in range(family.n_bits) if diff >> j & 1]
        scores.append(float(np.sum(proj[t, bits].astype(np.float64) ** 2)))
    return np.array(scores)


@pytest.mark.parametrize("n_probes", [5, 17, 60, 200])
def test_hyperplane_probes_are_the_cheapest_flips_in_order(n_probes: int) -> None:
    """With K <= 12 every bit is a candidate: the probes must be the P cheapest subsets."""
    family = HyperplaneLSH(DIM, n_tables=4, n_bits=10, seed=3)
    X = np.random.default_rng(1).standard_normal((8, DIM)).astype(np.float32)
    keys, tables = family.probes(X, n_probes)
    assert keys.shape == (8, n_probes)
    for i in range(len(X)):
        got = _flip_scores(family, X[i : i + 1], keys[i], tables[i])
        assert np.all(np.diff(got) >= -1e-4 * max(1.0, got.max()))
        proj = family.project(X[i : i + 1])[0].astype(np.float64) ** 2
        every = sorted(
            float(proj[t, list(c)].sum())
            for t in range(family.n_tables)
            for size in range(4)
            for c in combinations(range(family.n_bits), size)
        )
        np.testing.assert_allclose(got, every[:n_probes], rtol=1e-3, atol=1e-5)


def test_pstable_probes_are_neighbouring_cells() -> None:
    family = PStableLSH(8, n_tables=3, n_hashes=5, bucket_width=2.0, seed=4)
    X = np.random.default_rng(2).standard_normal((6, 8)).astype(np.float32) * 3
    keys, tables = family.probes(X, 40)
    P = family.project(X)
    h = np.floor(P)
    for i in range(len(X)):
        # Every cell reachable by moving <= 3 coordinates one step, and its score.
        reachable: dict[tuple[int, int], float] = {}
        for t in range(family.n_tables):
            for moves in product((-1, 0, 1), repeat=family.n_hashes):
                if sum(m != 0 for m in moves) > 3:
                    continue
                cell = h[i, t] + np.array(moves)
                full = np.zeros((1, family.n_tables, family.n_hashes))
                full[0, t] = cell
                key = int(family._keys(full)[0, t])
                frac = P[i, t] - h[i, t]
                cost = sum(
                    (frac[j] if m < 0 else 1 - frac[j]) ** 2 for j, m in enumerate(moves) if m
                )
                reachable[(t, key)] = float(cost)
        probed = list(zip(tables[i].tolist(), keys[i].tolist()))
        assert len(set(probed)) == len(probed)
        assert all(p in reachable for p in probed)
        costs = np.array([reachable[p] for p in probed])
        assert np.all(np.diff(costs) >= -1e-4)


def test_probe_sequence_template() -> None:
    sets = perturbation_sets(5)
    assert sets.shape == (1 + 5 + 10 + 10, 5)
    assert sets[0].sum() == 0
    assert sets.sum(axis=1).max() == 3
    assert len({row.tobytes() for row in sets}) == len(sets)
    # Scores ascending along M; the empty set (home) costs 0 and wins in every table.
    home = np.array([[10, 20]], dtype=np.uint64)
    scores = np.array([[[0.1, 0.2, 0.9], [0.05, 0.5, 0.6]]])
    deltas = np.array([[[1, 2, 4], [8, 16, 32]]], dtype=np.uint64)
    keys, tables = probe_sequence(home, scores, deltas, 5)
    assert sorted(zip(tables[0, :2].tolist(), keys[0, :2].tolist())) == [(0, 10), (1, 20)]
    # Next: table 1 + delta 8 (0.05), table 0 + 1 (0.1), table 0 + 2 (0.2).
    assert list(zip(tables[0, 2:].tolist(), keys[0, 2:].tolist())) == [(1, 28), (0, 11), (0, 12)]


def _clustered(seed: int, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, DIM))
    X = centres[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, DIM))
    Q = centres[rng.integers(0, 200, n_queries)] + 0.6 * rng.standard_normal((n_queries, DIM))
    return X.astype(np.float32), Q.astype(np.float32)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))


@pytest.fixture(scope="module")
def clustered_cosine() -> tuple[VectorLSH, np.ndarray, np.ndarray]:
    X, Q = _clustered(0, 20_000, 200)
    family = HyperplaneLSH(DIM, n_tables=8, n_bits=14, seed=1)
    searcher = VectorLSH(family, metric="cosine").fit(X)
    truth = BruteForce("cosine").fit(X).search(Q, 10).ids
    return searcher, Q, truth


def test_more_probes_never_lower_recall(clustered_cosine) -> None:
    searcher, Q, truth = clustered_cosine
    L = searcher.family.n_tables
    recalls, candidates = [], []
    for n_probes in (L, 4 * L, 16 * L):
        res = searcher.search(Q, 10, n_probes=n_probes)
        recalls.append(_recall(res.ids, truth))
        candidates.append(res.n_candidates.mean())
    assert recalls == sorted(recalls)
    assert candidates == sorted(candidates)
    # Probing is worth it: 16 L probes clearly beat home buckets only.
    assert recalls[-1] > recalls[0] + 0.2


def test_many_probes_reach_high_recall(clustered_cosine) -> None:
    searcher, Q, truth = clustered_cosine
    res = searcher.search(Q, 10, n_probes=64 * searcher.family.n_tables)
    assert _recall(res.ids, truth) >= 0.95
    # ... while looking at a small share of the rows.
    assert res.n_candidates.mean() < 0.2 * len(searcher)


def test_more_probes_never_lower_recall_euclidean() -> None:
    X, Q = _clustered(5, 8_000, 150)
    family = PStableLSH(DIM, n_tables=6, n_hashes=8, bucket_width=12.0, seed=2)
    searcher = VectorLSH(family, metric="euclidean").fit(X)
    truth = BruteForce("euclidean").fit(X).search(Q, 10).ids
    recalls = [
        _recall(searcher.search(Q, 10, n_probes=p).ids, truth) for p in (6, 24, 96, 384)
    ]
    assert recalls == sorted(recalls)
    assert recalls[-1] >= 0.95
    assert recalls[-1] > recalls[0] + 0.3
