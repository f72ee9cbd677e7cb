"""The compiled search kernel: its builds, the removed-row bit map, and what it gathers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from audiolsh.hashing import HyperplaneLSH
from audiolsh.search import VectorLSH, compact, kernels


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


@numba.njit(cache=False)
def _top3(values, counted):  # pragma: no cover - compiled
    top_d = np.full(3, np.inf)
    top_i = np.full(3, -1, np.int64)
    n = 0
    for j in range(len(values)):
        if counted:
            n = kernels.insert_counted(top_d, top_i, n, values[j], j)
        else:
            kernels._insert(top_d, top_i, values[j], j)
    return top_d, top_i, n


def test_counted_insertion_takes_inf_until_full_and_the_top_k_never_does() -> None:
    # k-means multi-probe collects its m smallest gaps from a count (the home cells' gaps are
    # inf and may be held while fewer than m are); the re-rank's top-k starts full of inf.
    values = np.array([np.inf, 2.0, np.inf, np.inf, 1.0, 1.0])
    d, i, n = _top3(values, True)
    assert n == 3
    np.testing.assert_array_equal(d, [1.0, 1.0, 2.0])
    np.testing.assert_array_equal(i, [4, 5, 1])  # equal values in insertion order
    d, i, n = _top3(values[:3], True)
    np.testing.assert_array_equal(d, [2.0, np.inf, np.inf])
    np.testing.assert_array_equal(i, [1, 0, 2])  # the infs were taken
    d, i, _ = _top3(values[:3], False)
    np.testing.assert_array_equal(d, [2.0, np.inf, np.inf])
    np.testing.assert_array_equal(i, [1, -1, -1])  # ... and here rejected
    d, i, _ = _top3(values, False)
    np.testing.assert_array_equal(i, [4, 5, 1])


@numba.njit
def _decoded(bits, table):  # type: ignore[no-untyped-def]
    X = bits.reshape(1, -1)
    out = np.empty(X.shape[1], np.float32)
    for t in range(X.shape[1]):
        out[t] = kernels._value(X, table, 0, t)
    return out


def test_float16_rows_decode_exactly_every_bit_pattern() -> None:
    """The compact float16 rows are decoded by the CPU where it can (F16C), else by the
    table: every one of the 65536 values, subnormals, infinities and NaNs included, exactly
    as numpy decodes them."""
    bits = np.arange(2**16, dtype=np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    got = _decoded(bits, compact._FLOAT16_TABLE)
    nan = np.isnan(want)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])
    assert np.isnan(got[nan]).all()


def test_float16_decode_uses_the_cpu_where_it_has_f16c() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    assert kernels.HALF_IN_HARDWARE == ("f16c" in cpuinfo.read_text().split())


def test_float16_copy_rounds_as_numpy_does() -> None:
    """The compact float16 copy (converted by the CPU where it can) has numpy's bits for every
    float16 value, the float32 just above each, the exact ties between neighbours (to even),
    overflow to infinity, subnormals and signed zeros."""
    h = np.arange(2**16, dtype=np.uint16).view(np.float16)
    h = h[np.isfinite(h)].astype(np.float32)
    ties = (h[:-1] + np.diff(h) / 2).astype(np.float32)
    edges = np.array([65504, 65519.99, 65520, 1e30, -1e30, 2.98e-8, 1e-9, 0.0, -0.0], np.float32)
    rng = np.random.default_rng(7)
    values = np.concatenate([h, np.nextafter(h, np.float32(np.inf)), ties, edges,
                             rng.standard_normal(1000).astype(np.float32)])
    rows = values[: len(values) // 16 * 16].reshape(-1, 16)
    with np.errstate(over="ignore"):
        want = rows.astype(np.float16)
    got = compact.compact_rows(rows, "float16")["rerank"]
    assert got.dtype == np.float16 and got.shape == rows.shape
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


_NO_F16C = """
import llvmlite.binding as llvm
features = llvm.get_host_cpu_features()
features["f16c"] = False  # a CPU without the conversion (numba compiles for it too)
llvm.get_host_cpu_features = lambda: features
import numba
import numpy as np
from audiolsh.search import compact, kernels
assert not kernels.HALF_IN_HARDWARE

@numba.njit
def decoded(bits, table):
    X = bits.reshape(1, -1)
    out = np.empty(X.shape[1], np.float32)
    for t in range(X.shape[1]):
        out[t] = kernels._value(X, table, 0, t)
    return out

bits = np.arange(2**16, dtype=np.uint16)
want = bits.view(np.float16).astype(np.float32)
got = decoded(bits, compact._FLOAT16_TABLE)
same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
assert same.all()
rows = np.random.default_rng(3).standard_normal((100, 16)).astype(np.float32)
assert np.array_equal(compact.compact_rows(rows, "float16")["rerank"].view(np.uint16),
                      rows.astype(np.float16).view(np.uint16))
print("table path ok")
"""


def test_without_f16c_float16_rows_go_through_the_table(tmp_path: Path) -> None:
    """A CPU without F16C: the decode and the copy take the table and numpy's conversion,
    with the same values (a fresh process, its own numba cache)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", _NO_F16C], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "table path ok" in proc.stdout


_ONE_BODY = """
import numpy as np
from audiolsh.hashing import PStableLSH
from audiolsh.search import VectorLSH, kernels

rng = np.random.default_rng(12)
X = rng.standard_normal((1500, 16)).astype(np.float32)
s = VectorLSH(PStableLSH(16, n_tables=4, n_hashes=4, bucket_width=6.0, seed=3), metric="euclidean").fit(X)
Q = rng.standard_normal((9, 16)).astype(np.float32)
lone = s.search(Q[:1], 4)
bodies = set(kernels.vectors_chunk.signatures)
batch = s.search(Q, 4)
assert bodies and set(kernels.vectors_chunk.signatures) == bodies, "the batch compiled another body"
assert np.array_equal(lone.ids[0], batch.ids[0])
print("one body")
"""


def test_the_serial_and_parallel_builds_share_one_compiled_body(tmp_path: Path) -> None:
    # The per-chunk body is its own compiled function, called by both builds: a batch after a
    # lone query of the same types compiles only the thin parallel loop around it.  A fresh
    # process with an empty numba cache: kernels loaded from a cache compile no body at all.
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", _ONE_BODY], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "one body" in proc.stdout


def test_codes_of_every_width_run_one_build_and_measure_the_same_hamming_distance() -> None:
    # Codes of 8 or 16 bits a table, whole 64-bit words a row or not, are read as padded words:
    # one build of each kernel, and the pre-filter's distance is the codes' own.
    from audiolsh.search.lsh import query_words, word_codes

    rng = np.random.default_rng(13)
    X = rng.standard_normal((1200, 20)).astype(np.float32)
    Q = rng.standard_normal((8, 20)).astype(np.float32)
    built = [kernels.search_vectors_parallel, kernels.search_hyperplane]
    counts = []
    for n_tables, n_bits in [(8, 8), (6, 8), (5, 12), (4, 16)]:
        s = VectorLSH(HyperplaneLSH(20, n_tables=n_tables, n_bits=n_bits, seed=4), n_rerank=30).fit(X)
        s.search(Q, 5)
        s.search(Q[:1], 5)
        counts.append([len(k.signatures) for k in built])
        words, bits = word_codes(s.codes_)
        keys = s.family.keys(s._queries(Q))
        q = query_words(keys, s.codes_, words, bits)
        assert words.dtype == np.uint64 and bits == 8 * s.codes_.itemsize
        mine = np.unpackbits((q[:, None, :] ^ words[None]).view(np.uint8), axis=-1).sum(axis=-1)
        cut = keys.astype(s.codes_.dtype)
        bits_of = np.unpackbits((cut[:, None, :] ^ s.codes_[None]).view(np.uint8), axis=-1).sum(axis=-1)
        np.testing.assert_array_equal(mine, bits_of)
    assert counts[1:] == counts[:-1]


@pytest.mark.parametrize("family", ["kmeans", "hyperplane", "pstable"])
def test_an_index_in_memory_and_memory_mapped_runs_one_build_of_each_kernel(
    family: str, tmp_path: Path
) -> None:
    # A memory-mapped segment's arrays are read-only, another numba type than arrays built in
    # memory: the index is frozen when loaded, so the second copy compiles nothing new.
    from audiolsh.hashing import KMeansLSH, PStableLSH
    from audiolsh.search import cells
    from audiolsh.search.tables import ARRAY_NAMES, BucketTables

    rng = np.random.default_rng(14)
    X = rng.standard_normal((1500, 16)).astype(np.float32)
    Q = rng.standard_normal((40, 16)).astype(np.float32)
    make = {
        "kmeans": lambda: VectorLSH(KMeansLSH(16, n_cells=24, seed=5), n_probes=3),
        "hyperplane": lambda: VectorLSH(HyperplaneLSH(16, n_tables=4, n_bits=8, seed=5), n_rerank=40),
        "pstable": lambda: VectorLSH(PStableLSH(16, n_tables=4, n_hashes=4, bucket_width=6.0, seed=5),
                                     metric="euclidean"),
    }[family]
    built = [cells.search_cells, cells.search_cells_parallel, kernels.search_hyperplane,
             kernels.search_vectors_serial, kernels.search_vectors_parallel]
    memory = make().fit(X)
    answers = [memory.search(Q[:1], 5), memory.search(Q, 5)]
    counts = [len(k.signatures) for k in built]

    def mapped(name: str, a: np.ndarray) -> np.ndarray:
        np.save(tmp_path / f"{name}.npy", a)
        return np.load(tmp_path / f"{name}.npy", mmap_mode="r")

    tables = BucketTables(*(mapped(n, getattr(memory.tables_, n)) for n in ARRAY_NAMES))
    on_disk = make()
    on_disk.family = memory.family
    on_disk.load(mapped("vectors", memory.vectors_), tables, codes=mapped("codes", memory.codes_))
    assert not on_disk.vectors_.flags.writeable and not tables.members.flags.writeable
    again = [on_disk.search(Q[:1], 5), on_disk.search(Q, 5)]
    assert [len(k.signatures) for k in built] == counts and sum(counts) >= 2
    for a, b in zip(answers, again):
        np.testing.assert_array_equal(a.ids, b.ids)


def test_numbas_pedantic_scope_warning_is_not_shown_to_users() -> None:
    # numba's parallel lowering of the int8 re-rank warns "variable ... is not in scope" and asks
    # the user to report it; a process that uses the search kernels does not show it, and
    # numba's other warnings still show.
    code = (
        "import warnings\n"
        "import audiolsh.search\n"
        "from numba.core.errors import NumbaIRAssumptionWarning, NumbaPerformanceWarning\n"
        "warnings.warn(NumbaIRAssumptionWarning(\"variable '_fold_v1648_qc_2.1' is not in scope.\"))\n"
        "warnings.warn(NumbaPerformanceWarning('another warning'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not in scope" not in proc.stderr and "another warning" in proc.stderr


def test_a_refit_family_is_read_anew_by_the_lone_query_path() -> None:
    # The lone-query path keeps read-only views of the family's mean and planes; fitting the
    # searcher again replaces them, and the next query reads the new ones.
    rng = np.random.default_rng(15)
    X1 = rng.standard_normal((800, 12)).astype(np.float32) + 3.0
    X2 = rng.standard_normal((800, 12)).astype(np.float32) - 3.0
    Q = X2[:3] + 0.01

    def make() -> VectorLSH:
        return VectorLSH(HyperplaneLSH(12, n_tables=4, n_bits=6, center=True, seed=6), n_rerank=50)

    s = make().fit(X1)
    s.search(Q[:1], 5)
    s.fit(X2)
    fresh = make().fit(X2)
    for q in Q:
        a, b = s.search(q[None], 5), fresh.search(q[None], 5)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.n_candidates, b.n_candidates)
