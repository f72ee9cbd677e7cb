"""Keys do not depend on how the rows are batched: one batch, any chunks, one row at a time.

The data are rows within rounding of a hyperplane or of a p-stable cell edge, in 129
dimensions, where a BLAS product gives other bits for a lone row than for the same row in
a batch (and so other keys): the first test shows it, so the others would fail with the
former ``A @ planes`` projection.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audiolsh.hashing import HyperplaneLSH, MinHashLSH, PStableLSH, as_sets, projection
from audiolsh.hashing.hyperplane import probe_cap, query_probes
from audiolsh.hashing.projection import PARALLEL_FROM

DIM = 129
N_ROWS = PARALLEL_FROM + 44  # the whole batch takes the parallel build, small chunks the serial one
WIDTH = 2.0


def _near_planes(fam: HyperplaneLSH, n: int, seed: int) -> np.ndarray:
    """Rows whose centred projection on one random plane each is zero up to rounding."""
    rng = np.random.default_rng(seed)
    mean = np.zeros(DIM) if fam.mean_ is None else fam.mean_.astype(np.float64)
    P = fam.planes_[:, rng.integers(0, fam.planes_.shape[1], n)].T.astype(np.float64)
    R = rng.standard_normal((n, DIM)) * 3
    R -= ((R * P).sum(1) / (P * P).sum(1))[:, None] * P
    return (R + mean).astype(np.float32)


def _near_edges(fam: PStableLSH, n: int, seed: int) -> np.ndarray:
    """Rows with (a.x + b) / w an integer up to rounding for one random projection each."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, fam.projections_.shape[1], n)
    a = fam.projections_[:, cols].T.astype(np.float64)
    b = fam.offsets_[cols].astype(np.float64)
    R = rng.standard_normal((n, DIM)) * 3
    t = (R * a).sum(1) + b
    R += ((np.round(t / WIDTH) * WIDTH - t) / (a * a).sum(1))[:, None] * a
    return R.astype(np.float32)


def _hyperplane() -> HyperplaneLSH:
    return HyperplaneLSH(DIM, n_tables=8, n_bits=16, seed=3)


def _centred() -> HyperplaneLSH:
    X = np.random.default_rng(4).standard_normal((500, DIM)).astype(np.float32) + 2.5
    return HyperplaneLSH(DIM, n_tables=8, n_bits=16, seed=4, center=True).fit(X)


def _whitened() -> HyperplaneLSH:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((800, DIM)) * np.arange(1, DIM + 1) ** -1.0 + 0.5
    return HyperplaneLSH(DIM, n_tables=8, n_bits=16, seed=5, whiten=0.5).fit(X.astype(np.float32))


def _pstable() -> PStableLSH:
    return PStableLSH(DIM, n_tables=8, n_hashes=8, bucket_width=WIDTH, seed=6)


VECTOR_FAMILIES: dict[str, Callable[[], Any]] = {
    "hyperplane": _hyperplane, "centred": _centred, "whitened": _whitened, "pstable": _pstable,
}
_CACHE: dict[str, tuple[Any, np.ndarray]] = {}


def _family_and_rows(name: str) -> tuple[Any, np.ndarray]:
    if name not in _CACHE:
        fam = VECTOR_FAMILIES[name]()
        X = _near_edges(fam, N_ROWS, 11) if name == "pstable" else _near_planes(fam, N_ROWS, 11)
        _CACHE[name] = fam, X
    return _CACHE[name]


def _blas_projection(fam: Any, X: np.ndarray) -> np.ndarray:
    """The former projection: one BLAS call for the whole batch."""
    if isinstance(fam, PStableLSH):
        return ((X @ fam.projections_ + fam.offsets_) / fam.bucket_width).reshape(len(X), fam.n_tables, -1)
    A = X - fam.mean_ if fam.center else X
    return (A @ fam.planes_).reshape(len(X), fam.n_tables, -1)


def _keys_of(fam: Any, proj: np.ndarray) -> np.ndarray:
    return fam._keys(np.floor(proj)) if isinstance(fam, PStableLSH) else fam._keys(proj)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _chunks(n: int, cuts: list[int]) -> list[slice]:
    edges = [0, *sorted(set(cuts)), n]
    return [slice(a, b) for a, b in pairwise(edges) if b > a]


@pytest.mark.parametrize("name", sorted(VECTOR_FAMILIES))
def test_a_blas_projection_of_a_lone_row_differs_from_the_batch(name: str) -> None:
    fam, X = _family_and_rows(name)
    batch = _blas_projection(fam, X)
    alone = np.concatenate([_blas_projection(fam, X[i : i + 1]) for i in range(len(X))])
    assert (_bits(batch) != _bits(alone)).any(axis=(1, 2)).sum() > 0
    assert (_keys_of(fam, batch) != _keys_of(fam, alone)).any(axis=1).sum() > 0


cut_lists = st.lists(st.integers(1, N_ROWS - 1), max_size=40)


@pytest.mark.parametrize("name", sorted(VECTOR_FAMILIES))
@settings(max_examples=20, deadline=None)
@given(cuts=cut_lists)
@example(cuts=list(range(1, N_ROWS)))  # one row at a time
@example(cuts=[1, 2, 3, 10, 17, 100, PARALLEL_FROM + 1, N_ROWS - 1])
def test_keys_and_projections_do_not_depend_on_the_chunks(name: str, cuts: list[int]) -> None:
    fam, X = _family_and_rows(name)
    parts = _chunks(len(X), cuts)
    np.testing.assert_array_equal(
        _bits(fam.project(X)), np.concatenate([_bits(fam.project(X[s])) for s in parts])
    )
    np.testing.assert_array_equal(fam.keys(X), np.concatenate([fam.keys(X[s]) for s in parts]))


@pytest.mark.parametrize("name", sorted(VECTOR_FAMILIES))
def test_a_row_projects_alone_as_within_any_batch(name: str) -> None:
    fam, X = _family_and_rows(name)
    proj, keys = fam.project(X), fam.keys(X)
    # The fused key kernels give the keys of the projections.
    np.testing.assert_array_equal(_keys_of(fam, proj), keys)
    for i in range(0, len(X), 7):
        np.testing.assert_array_equal(_bits(fam.project(X[i])), _bits(proj[i : i + 1]))
        np.testing.assert_array_equal(fam.keys(X[i]), keys[i : i + 1])
    # Shuffled, repeated, inside a batch of other rows (parallel and serial builds).
    rng = np.random.default_rng(0)
    for size in (2, 5, PARALLEL_FROM - 1, 3 * PARALLEL_FROM):
        rows = rng.integers(0, len(X), size)
        np.testing.assert_array_equal(_bits(fam.project(X[rows])), _bits(proj[rows]))
        np.testing.assert_array_equal(fam.keys(X[rows]), keys[rows])


@pytest.mark.parametrize("name", ["hyperplane", "centred", "whitened"])
def test_the_compiled_lone_query_gets_the_batch_keys_and_probes(name: str) -> None:
    fam, X = _family_and_rows(name)
    mean = fam.mean_ if fam.center else np.zeros(DIM, np.float32)
    n_probes = min(40, probe_cap(fam.n_tables, fam.n_bits))
    keys = fam.keys(X)
    probe_keys, probe_tables = fam.probes(X, n_probes)
    for i in range(len(X)):
        home, q_keys, q_tables = query_probes(X[i], mean, fam.planes_, fam._weights, fam.n_tables, n_probes)
        np.testing.assert_array_equal(home[0], keys[i])
        np.testing.assert_array_equal(q_keys[0], probe_keys[i])
        np.testing.assert_array_equal(q_tables[0], probe_tables[i])


_SETS = [
    np.random.default_rng(i).choice(10_000, size=1 + i % 50, replace=False).tolist() for i in range(120)
]


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(1, len(_SETS) - 1), max_size=20))
def test_minhash_hashes_integers_only_so_chunks_give_the_same_keys(cuts: list[int]) -> None:
    fam = MinHashLSH(num_perm=64, n_bands=16, n_rows=4, seed=7)
    batch = as_sets(_SETS)
    assert fam.signatures(batch).dtype == np.uint32
    parts = [fam.keys(batch.take(np.arange(s.start, s.stop))) for s in _chunks(len(_SETS), cuts)]
    np.testing.assert_array_equal(fam.keys(batch), np.concatenate(parts))


@pytest.mark.parametrize(
    ("dim", "n_tables", "n_bits"), [(1, 1, 1), (3, 2, 3), (6, 3, 5), (13, 8, 40), (64, 9, 64)]
)
def test_the_kernels_sum_in_the_stated_order(dim: int, n_tables: int, n_bits: int) -> None:
    """Every output is 0, then + (x_k - mean_k) * plane_k for k in order, in float32 (the
    numpy reference rounds each product and each sum on its own), over one tile of
    columns or several (n_tables * n_bits > TILE)."""
    rng = np.random.default_rng(dim)
    X = (rng.standard_normal((PARALLEL_FROM + 3, dim)) * 4).astype(np.float32)
    mean = rng.standard_normal(dim).astype(np.float32)
    planes = rng.standard_normal((dim, n_tables * n_bits)).astype(np.float32)
    offsets = rng.uniform(0, 1.5, n_tables * n_bits).astype(np.float32)
    multipliers = rng.integers(1, 2**63, (n_tables, n_bits), dtype=np.uint64)
    expected = np.zeros((len(X), planes.shape[1]), np.float32)
    for k in range(dim):
        expected = expected + (X[:, k : k + 1] - mean[k]) * planes[k]
    weights = np.left_shift(np.uint64(1), np.arange(n_bits, dtype=np.uint64))
    cells = np.floor((expected + offsets) / np.float32(1.5)).astype(np.int64).view(np.uint64)
    for rows in (slice(0, 1), slice(0, 5), slice(None)):
        A = np.ascontiguousarray(X[rows])
        # + 0: without offsets the kernel still adds zeros, so a -0 sum reads +0.
        np.testing.assert_array_equal(_bits(projection.project(A, mean, planes)), _bits(expected[rows] + 0))
        np.testing.assert_array_equal(
            _bits(projection.project(A, mean, planes, offsets, 1.5)),
            _bits((expected[rows] + offsets) / np.float32(1.5)),
        )
        bits = (expected[rows] > 0).reshape(-1, n_tables, n_bits).astype(np.uint64)
        np.testing.assert_array_equal(
            projection.sign_keys(A, mean, planes, weights), (bits * weights).sum(axis=2, dtype=np.uint64)
        )
        # floor_keys projects uncentred rows: give it the centred ones numpy's way.
        got = projection.floor_keys(A - mean, planes, offsets, 1.5, multipliers)
        want = (cells[rows].reshape(-1, n_tables, n_bits) * multipliers).sum(axis=2, dtype=np.uint64)
        np.testing.assert_array_equal(got, want)
