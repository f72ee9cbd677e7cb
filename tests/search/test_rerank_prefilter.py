"""The Hamming pre-filter: exact re-ranking of only the candidates nearest by hash code."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from audiolsh.evaluation import recall_at_k
from audiolsh.hashing import HyperplaneLSH, PStableLSH
from audiolsh.index import Index
from audiolsh.search import BruteForce, VectorLSH


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((50, 32)) * 2
    X = (centres[rng.integers(0, 50, 20_000)] + rng.standard_normal((20_000, 32))).astype(np.float32)
    Q = (centres[rng.integers(0, 50, 200)] + rng.standard_normal((200, 32))).astype(np.float32)
    return X, Q


def test_codes_are_the_table_bits_in_a_narrow_type(clustered) -> None:
    X, _ = clustered
    fam = HyperplaneLSH(32, n_tables=6, n_bits=12, seed=3)
    s = VectorLSH(fam).fit(X)
    assert s.codes_.dtype == np.uint16 and s.codes_.shape == (len(X), 6)
    np.testing.assert_array_equal(s.codes_.astype(np.uint64), fam.keys(s.vectors_))
    # p-stable keys are not bit strings: no codes, no pre-filter.
    e = VectorLSH(PStableLSH(32, n_tables=4, n_hashes=4, bucket_width=4.0), metric="euclidean").fit(X)
    assert e.codes_.shape == (len(X), 0)


def test_a_large_rerank_budget_gives_the_same_answers_as_none(clustered) -> None:
    X, Q = clustered
    s = VectorLSH(HyperplaneLSH(32, n_tables=8, n_bits=12, seed=0)).fit(X)
    full = s.search(Q, 10, n_probes=32, n_rerank=0)
    big = s.search(Q, 10, n_probes=32, n_rerank=len(X))
    np.testing.assert_array_equal(full.ids, big.ids)
    np.testing.assert_array_equal(full.distances, big.distances)


def test_a_small_budget_keeps_most_of_the_recall_with_exact_distances(clustered) -> None:
    X, Q = clustered
    s = VectorLSH(HyperplaneLSH(32, n_tables=8, n_bits=12, seed=0)).fit(X)
    truth = BruteForce("cosine").fit(X).search(Q, 10)
    full = s.search(Q, 10, n_probes=64)
    small = s.search(Q, 10, n_probes=64, n_rerank=200)
    r_full = recall_at_k(full.ids, truth.ids).mean()
    r_small = recall_at_k(small.ids, truth.ids).mean()
    assert full.n_candidates.mean() > 600  # the budget really cuts the exact work
    assert r_small >= r_full - 0.1 and r_small > 0.8
    # A budget of k leaves the ranking to the codes alone: it must cost recall, which shows
    # the budget is applied.
    tiny = s.search(Q, 10, n_probes=64, n_rerank=10)
    assert recall_at_k(tiny.ids, truth.ids).mean() < r_small - 0.05
    # Whatever was kept is measured exactly: distances match a direct computation.
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    direct = 1 - np.einsum("qkd,qd->qk", Xn[small.ids], Qn)
    np.testing.assert_allclose(small.distances, direct, atol=1e-5)


def test_index_persists_codes_and_reads_segments_without_them(tmp_path: Path, clustered) -> None:
    X, Q = clustered
    path = tmp_path / "idx"
    with Index.create(path, metric="cosine", family="hyperplane", n_rerank=500) as index:
        index.add(X[:5000])
        before = index.query(Q[:20], 5)
    seg = next((path / "segments").iterdir())
    assert (seg / "codes.npy").exists()
    with Index.open(path) as index:
        np.testing.assert_array_equal(index.query(Q[:20], 5).ids, before.ids)
    # A segment written before codes existed still answers (exactly over its candidates).
    shutil.move(seg / "codes.npy", tmp_path / "codes.npy")
    with Index.open(path) as index:
        res = index.query(Q[:20], 5)
        exact = index.query(Q[:20], 5, n_rerank=0)
        np.testing.assert_array_equal(res.ids, exact.ids)


def test_codes_keep_16_bits_a_table_and_the_prefilter_agrees_on_both_paths(clustered) -> None:
    """K > 16: the codes keep each table's first 16 bits (2 bytes a table, not 4), and the
    one-call path (a lone query, keys cut in the kernel) and the batch path (keys cut by
    the cast) rank the candidates alike."""
    X, Q = clustered
    fam = HyperplaneLSH(32, n_tables=8, n_bits=20, seed=1)
    s = VectorLSH(fam).fit(X)
    assert s.codes_.dtype == np.uint16 and s.codes_.shape == (len(X), 8)
    np.testing.assert_array_equal(s.codes_, (fam.keys(s.vectors_) & 0xFFFF).astype(np.uint16))
    batch = s.search(Q[:20], 10, n_probes=256, n_rerank=30)
    lone = np.concatenate([s.search(Q[i], 10, n_probes=256, n_rerank=30).ids for i in range(20)])
    np.testing.assert_array_equal(lone, batch.ids)
    assert (batch.n_candidates > 30).all()  # the budget applied
