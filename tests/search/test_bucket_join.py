"""The bucket-join kernels: the cap's seeded sample, the probe lookup and the pair kernel."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.search import BucketTables, kernels
from audiolsh.search.bucket_join import cap_tables, join_vectors, resolve


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(1, 4), st.integers(1, 6), st.integers(1, 50), st.integers(0, 9))
def test_cap_keeps_a_seeded_sample_of_every_big_bucket(n: int, n_tables: int, n_keys: int, cap: int,
                                                       seed: int) -> None:
    rng = np.random.default_rng([n, n_tables, n_keys])
    keys = rng.integers(0, n_keys, (n, n_tables)).astype(np.uint64)
    tables = BucketTables.build(keys)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    capped = cap_tables(tables, ids, cap, seed=seed)
    sizes = np.diff(tables.bucket_start)
    kept = np.diff(capped.tables.bucket_start)
    assert np.array_equal(kept, np.minimum(sizes, cap))
    assert np.array_equal(capped.dropped, sizes - kept)
    assert np.array_equal(capped.tables.bucket_keys, tables.bucket_keys)
    for b in range(tables.n_buckets):  # members are a subset of the bucket's, in stored order
        full = tables.members[tables.bucket_start[b]:tables.bucket_start[b + 1]]
        part = capped.tables.members[capped.tables.bucket_start[b]:capped.tables.bucket_start[b + 1]]
        assert np.isin(part, full).all() and np.all(np.diff(part) > 0)
    again = cap_tables(tables, ids, cap, seed=seed)
    assert np.array_equal(again.tables.members, capped.tables.members)


def test_another_seed_samples_others() -> None:
    keys = np.zeros((500, 2), np.uint64)  # one bucket per table
    tables = BucketTables.build(keys)
    ids = np.arange(500, dtype=np.int64)
    a = cap_tables(tables, ids, 50, seed=1).tables.members
    b = cap_tables(tables, ids, 50, seed=2).tables.members
    assert len(a) == len(b) == 100 and not np.array_equal(a, b)
    assert not np.array_equal(a[:50], a[50:])  # tables draw apart


def test_resolve_drops_absent_keys() -> None:
    tables = BucketTables.build(np.array([[5, 1], [7, 1], [5, 2]], np.uint64))
    probe_keys = np.array([[5, 9], [2, 7]], np.uint64)
    q_ptr, buckets = resolve(probe_keys, np.array([[0, 1], [1, 0]], np.int32), tables)
    assert q_ptr.tolist() == [0, 1, 3]
    assert [tables.bucket_keys[b] for b in buckets] == [5, 2, 7]


def test_pairs_skip_self_and_removed_rows_and_sort_by_distance_then_id() -> None:
    X = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [0.6, 0.8]], np.float32)
    ids = np.array([10, 11, 12, 13, 14], np.int64)
    tables = BucketTables.build(np.zeros((5, 1), np.uint64))
    dead = kernels.dead_bit_map(np.array([1, 1, 1, 0, 1], np.uint8))  # row 3 removed
    pairs = join_vectors(X[:2], ids[:2], np.array([0, 1, 2]), np.array([0, 0]), tables, X, ids, dead,
                         metric=kernels.COSINE, k=3)
    assert pairs.neighbours.tolist() == [11, 14, 12, 10, 14, 12]
    assert pairs.n_candidates.tolist() == [3, 3]
    within = join_vectors(X[:1], ids[:1], np.array([0, 1]), np.array([0]), tables, X, ids, dead,
                          metric=kernels.COSINE, k=None, max_distance=0.5)
    assert within.neighbours.tolist() == [11, 14]


def test_rows_in_memory_and_read_only_run_one_build_of_the_pair_kernel() -> None:
    # Memory-mapped segments give read-only arrays, another numba type than arrays in memory:
    # the join passes both read-only, so the second compiles nothing and answers the same.
    from audiolsh.search import bucket_join

    rng = np.random.default_rng(21)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    ids = np.arange(100, 160, dtype=np.int64)
    tables = BucketTables.build(rng.integers(0, 3, (60, 2)).astype(np.uint64))
    dead = kernels.dead_bit_map(np.ones(60, np.uint8))
    q_ptr, buckets = resolve(np.ascontiguousarray(tables.bucket_keys[:2][None].repeat(5, 0)),
                             np.zeros((5, 2), np.int32), tables)

    def frozen(a: np.ndarray) -> np.ndarray:
        b = a.copy()
        b.flags.writeable = False
        return b

    first = join_vectors(X[:5], ids[:5], q_ptr, buckets, tables, X, ids, dead, metric=kernels.COSINE, k=4)
    built = len(bucket_join._join_vectors.signatures)
    read_only = BucketTables(*(frozen(getattr(tables, n)) for n in ("table_start", "bucket_keys",
                                                                     "bucket_start", "members")))
    again = join_vectors(frozen(X[:5]), ids[:5], q_ptr, buckets, read_only, frozen(X), frozen(ids),
                         frozen(dead), metric=kernels.COSINE, k=4)
    assert len(bucket_join._join_vectors.signatures) == built >= 1
    assert again.neighbours.tolist() == first.neighbours.tolist() and len(first.neighbours)
