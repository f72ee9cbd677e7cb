"""The local self-join: equal to a brute-force all-pairs join when the probes cover every
bucket, the same however the items are blocked, and a bucket cap that bounds the pairs and
says what it left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.hashing import SetBatch
from audiolsh.index import Index
from audiolsh.index.join import self_join
from audiolsh.search.brute import jaccard_rows


def brute_join(D: np.ndarray, ids: np.ndarray, *, k: int | None, max_distance: float = np.inf
               ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Exact all-pairs join from a dense distance matrix: per item (ids ascending) its
    neighbours nearest first, ties by id."""
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    order = np.argsort(ids)
    ids, D = ids[order], D[np.ix_(order, order)]
    ranked = np.lexsort((np.broadcast_to(ids, D.shape), D), axis=-1)
    nbs, dists = [], []
    for row, r in zip(D, ranked):  # a reference: clarity over speed
        r = r[row[r] <= max_distance]
        r = r[:k] if k is not None else r
        nbs.append(ids[r])
        dists.append(row[r])
    return ids, nbs, dists


def assert_same(result, ids, nbs, dists, *, atol: float = 1e-5) -> None:
    assert np.array_equal(result.ids, ids)
    for i, item in enumerate(ids):
        got, d = result.neighbours_of(int(item))
        assert np.array_equal(got, nbs[i]), (item, got, nbs[i])
        np.testing.assert_allclose(d, dists[i], atol=atol)


def cosine_index(path: Path, X: np.ndarray, **params) -> Index:
    index = Index.create(str(path), metric="cosine", **params)
    half = len(X) // 2
    index.add(X[:half])
    index.add(X[half:])  # two segments: the join merges their answers
    return index


def test_probes_covering_every_bucket_give_the_brute_force_join(tmp_path: Path, rng) -> None:
    X = rng.standard_normal((1200, 12)).astype(np.float32)
    with cosine_index(tmp_path / "idx", X, n_tables=3, n_bits=3, whiten=0.0) as index:
        result = self_join(index, k=7, n_probes=3 * 8)
        data, ids = index.live_data()
    D = 1.0 - data.astype(np.float64) @ data.T.astype(np.float64)
    assert_same(result, *brute_join(D, ids, k=7))
    assert result.stats.n_segments == 2 and result.stats.n_pairs == 7 * 1200


def test_pairs_within_a_similarity_and_removed_items(tmp_path: Path, rng) -> None:
    X = rng.standard_normal((900, 8)).astype(np.float32)
    with cosine_index(tmp_path / "idx", X, n_tables=2, n_bits=3, whiten=0.0) as index:
        index.remove(["3", "500", "899"])
        result = self_join(index, k=None, min_similarity=0.8, n_probes=16)
        data, ids = index.live_data()
    D = 1.0 - data.astype(np.float64) @ data.T.astype(np.float64)
    want = brute_join(D, ids, k=None, max_distance=np.float32(1 - 0.8))
    assert not np.isin([3, 500, 899], result.neighbours).any()
    assert_same(result, *want)
    assert result.stats.n_pairs == sum(len(n) for n in want[1]) > 0


def test_blocks_do_not_change_the_answer(tmp_path: Path, rng) -> None:
    X = rng.standard_normal((700, 16)).astype(np.float32)
    with cosine_index(tmp_path / "idx", X, n_tables=4) as index:
        whole = self_join(index, k=5, n_probes=32)
        assert whole.same_pairs(self_join(index, k=5, n_probes=32, block_items=33))


def test_euclidean_index(tmp_path: Path, rng) -> None:
    X = rng.standard_normal((600, 6)).astype(np.float32)
    with Index.create(str(tmp_path / "e"), metric="euclidean", n_tables=2, n_bits=1,
                      bucket_width=50.0) as index:
        index.add(X)  # one hash of a wide cell per table: one bucket holds everything
        result = self_join(index, k=4, n_probes=2)
        with pytest.raises(ParameterError, match="--max-distance"):
            self_join(index, min_similarity=0.5)
    D = np.sqrt(((X[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(-1))
    assert_same(result, *brute_join(D, np.arange(600), k=4), atol=1e-4)


def near_duplicate_sets(rng: np.random.Generator, n_groups: int, n_random: int) -> list[np.ndarray]:
    """Groups of a base set and 1-3 variants sharing 60-95 % of it, plus random sets."""
    sets = []
    for _ in range(n_groups):
        base = rng.choice(1_000_000, int(rng.integers(40, 80)), replace=False)
        sets.append(base)
        for _ in range(int(rng.integers(1, 4))):
            keep = rng.random(len(base)) < rng.uniform(0.6, 0.95)
            fresh = rng.choice(1_000_000, int((~keep).sum()), replace=False)
            sets.append(np.concatenate([base[keep], fresh]))
    sets += [rng.choice(1_000_000, int(rng.integers(40, 80)), replace=False) for _ in range(n_random)]
    return [sets[i] for i in rng.permutation(len(sets))]


def jaccard_matrix(sets: SetBatch) -> np.ndarray:
    n = len(sets)
    return 1.0 - jaccard_rows(sets, sets, np.tile(np.arange(n), (n, 1)))


def test_sets_above_a_similarity(tmp_path: Path, rng) -> None:
    raw = near_duplicate_sets(rng, 80, 150)
    with Index.create(str(tmp_path / "s"), metric="jaccard", threshold=0.1) as index:
        index.add(raw)
        result = self_join(index, k=None, min_similarity=0.5)
        sets, ids = index.live_data()
    D = jaccard_matrix(sets).astype(np.float32)
    ids_, nbs, dists = brute_join(D, ids, k=None, max_distance=np.float32(0.5))
    assert sum(len(n) for n in nbs) > 100
    assert_same(result, ids_, nbs, dists, atol=0)


def test_the_cap_bounds_a_giant_bucket_and_says_what_it_dropped(tmp_path: Path, rng) -> None:
    X = rng.standard_normal((1500, 16)).astype(np.float32)
    X[:400] = X[0] + 1e-4 * rng.standard_normal((400, 16)).astype(np.float32)  # one crowded bucket
    with Index.create(str(tmp_path / "g"), metric="cosine", n_tables=4, n_bits=8, whiten=0.0) as index:
        index.add(X)
        free = self_join(index, k=5, n_probes=16)
        capped = self_join(index, k=5, n_probes=16, max_bucket=40, seed=3)
        again = self_join(index, k=5, n_probes=16, max_bucket=40, seed=3, block_items=100)
    st = capped.stats
    assert free.stats.largest_bucket >= 400 and st.largest_bucket == free.stats.largest_bucket
    assert st.n_capped_buckets >= 4  # the crowded bucket of every table
    assert st.n_members_dropped >= 4 * (400 - 40)
    assert st.n_pairs_dropped > 0 and free.stats.n_pairs_dropped == 0
    assert st.n_candidates <= 1500 * 16 * 40
    # The crowd's 400 x 399 pairs become at most 400 x 4 tables x 40 sampled members.
    assert st.n_candidates <= free.stats.n_candidates - 400 * (399 - 4 * 40)
    assert capped.same_pairs(again)  # the sample is seeded, not drawn per block
    # Items outside the crowd keep their answers, but for neighbours that sat in its buckets.
    same = [np.array_equal(free.neighbours_of(i)[0], capped.neighbours_of(i)[0]) for i in range(400, 1500)]
    assert np.mean(same) > 0.9


def test_bad_parameters(tmp_path: Path, rng) -> None:
    with cosine_index(tmp_path / "idx", rng.standard_normal((50, 4)).astype(np.float32)) as index:
        with pytest.raises(ParameterError, match="k, a minimum similarity"):
            self_join(index, k=None)
        with pytest.raises(ParameterError, match="not both"):
            self_join(index, min_similarity=0.5, max_distance=0.2)
        with pytest.raises(ParameterError, match="max_bucket"):
            self_join(index, max_bucket=0)


def test_the_hamming_prefilter_reads_codes_of_any_width_in_one_build(tmp_path: Path, rng) -> None:
    # A join with the pre-filter (n_rerank) measures only the candidates nearest by Hamming
    # distance of their codes: with a budget above every candidate count it is the join without
    # it; codes of 8 and 16 bits a table, whole 64-bit words a row or not, run one build.
    from audiolsh.search import bucket_join

    X = rng.standard_normal((900, 12)).astype(np.float32)
    builds = []
    for n_tables, n_bits in [(6, 8), (3, 12)]:  # 6 and 6 bytes a row: not whole words
        with cosine_index(tmp_path / f"w{n_bits}", X, n_tables=n_tables, n_bits=n_bits, whiten=0.0,
                          family="hyperplane") as index:
            plain = self_join(index, k=5, n_probes=n_tables * 4, n_rerank=0)
            wide = self_join(index, k=5, n_probes=n_tables * 4, n_rerank=100_000)
            narrow = self_join(index, k=5, n_probes=n_tables * 4, n_rerank=20)
            codes = index._segments[0].searcher.codes_
        assert codes.shape[1] == n_tables and codes.itemsize == (1 if n_bits <= 8 else 2)
        assert wide.same_pairs(plain)
        assert narrow.stats.n_pairs == plain.stats.n_pairs  # k found, exact distances
        for item in plain.ids[:50]:
            _, d = narrow.neighbours_of(int(item))
            _, best = plain.neighbours_of(int(item))
            assert (d >= best - 1e-6).all()
        builds.append(len(bucket_join._join_vectors.signatures))
    assert builds[0] == builds[1]
