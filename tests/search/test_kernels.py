"""The compiled search kernel: its builds, the removed-row bit map, and what it gathers."""

from __future__ import annotations

import numpy as np

from audiolsh.hashing import HyperplaneLSH
from audiolsh.search import VectorLSH, kernels


def test_serial_and_parallel_builds_do_not_share_a_cache_entry() -> None:
    # numba's disk cache is keyed by the function's qualified name, not by parallel=: one name
    # for both builds let a lone query run the thread-pool build (and pay for its launch).
    names = {
        kernels.search_vectors_serial.py_func.__qualname__,
        kernels.search_vectors_parallel.py_func.__qualname__,
        kernels.search_sets_serial.py_func.__qualname__,
        kernels.search_sets_parallel.py_func.__qualname__,
    }
    assert len(names) == 4


def test_dead_bit_map_marks_removed_rows_and_padding() -> None:
    alive = np.ones(130, np.uint8)
    alive[[0, 63, 64, 129]] = 0
    bits = kernels.dead_bit_map(alive)
    assert bits.dtype == np.uint64 and bits.shape == (3,)
    unpacked = np.unpackbits(bits.view(np.uint8), bitorder="little").astype(bool)
    np.testing.assert_array_equal(unpacked[:130], alive == 0)
    assert unpacked[130:].all()


def test_candidates_are_the_distinct_live_rows_of_the_probed_buckets() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    s = VectorLSH(HyperplaneLSH(16, n_tables=4, n_bits=6, seed=1)).fit(X)
    alive = (rng.random(3000) > 0.2).astype(np.uint8)
    s.alive_ = alive
    Q = rng.standard_normal((20, 16)).astype(np.float32)
    keys, tables = s.family.probes(s._queries(Q), 9)
    res = s._lookup(s._queries(Q), (keys, tables), 5)
    home = s.family.keys(s.vectors_)
    for i in range(len(Q)):
        hit = np.zeros(len(X), bool)
        for key, t in zip(keys[i], tables[i]):
            hit |= home[:, t] == key
        assert res.n_candidates[i] == int((hit & (alive == 1)).sum())
        assert np.all(alive[res.ids[i][res.ids[i] >= 0]] == 1)
    # A lone query (serial build) and the batch (parallel build) agree.
    one = s._lookup(s._queries(Q[:1]), (keys[:1], tables[:1]), 5)
    np.testing.assert_array_equal(one.ids, res.ids[:1])
    np.testing.assert_array_equal(one.n_candidates, res.n_candidates[:1])
