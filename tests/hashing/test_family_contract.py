"""The HashFamily contract, checked the same way for every family.

keys: (n, L) uint64 and deterministic; a config (also through JSON) rebuilds identical
buckets; the seed matters; probes start with the home buckets; bad parameters are refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.hashing import (
    CrossPolytopeLSH,
    HashFamily,
    HyperplaneLSH,
    KMeansLSH,
    MinHashLSH,
    PStableLSH,
    as_sets,
    from_config,
    optimal_bands,
)
from audiolsh.hashing.base import learned_arrays

DIM = 16
N_ROWS = 120


def _vectors(seed: int, n: int = N_ROWS, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, DIM)) + shift).astype(np.float32)


def _sets(seed: int, n: int = N_ROWS) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.choice(5000, size=int(rng.integers(5, 60)), replace=False).tolist() for _ in range(n)]


def _hyperplane(seed: int) -> HyperplaneLSH:
    return HyperplaneLSH(DIM, n_tables=6, n_bits=10, seed=seed)


def _hyperplane_centred(seed: int) -> HyperplaneLSH:
    # Non-negative data: the centre learned by fit() must survive the config round trip.
    return HyperplaneLSH(DIM, n_tables=6, n_bits=10, seed=seed, center=True).fit(
        _vectors(99, 500, shift=3.0)
    )


def _hyperplane_whitened(seed: int) -> HyperplaneLSH:
    # Learned planes: restored from the config plus learned_arrays().
    rng = np.random.default_rng(98)
    X = rng.standard_normal((800, DIM)) * np.arange(1, DIM + 1) ** -1.0 + 0.5
    return HyperplaneLSH(DIM, n_tables=6, n_bits=10, seed=seed, whiten=0.5).fit(X.astype(np.float32))


def _pstable(seed: int) -> PStableLSH:
    return PStableLSH(DIM, n_tables=6, n_hashes=5, bucket_width=3.0, seed=seed)


def _minhash(seed: int) -> MinHashLSH:
    return MinHashLSH(num_perm=64, n_bands=16, n_rows=4, seed=seed)


def _cross_polytope(seed: int) -> CrossPolytopeLSH:
    return CrossPolytopeLSH(DIM, n_tables=6, n_bits=8, seed=seed)


def _cross_polytope_centred(seed: int) -> CrossPolytopeLSH:
    return CrossPolytopeLSH(DIM, n_tables=6, n_bits=8, seed=seed, center=True).fit(
        _vectors(99, 500, shift=3.0)
    )


def _kmeans(seed: int) -> KMeansLSH:
    # Learned cells: restored from the config plus learned_arrays().
    return KMeansLSH(DIM, n_tables=2, n_cells=32, seed=seed).fit(_vectors(97, 600))


def _kmeans_euclidean(seed: int) -> KMeansLSH:
    return KMeansLSH(DIM, n_tables=3, n_cells=24, seed=seed, spherical=False).fit(
        _vectors(96, 600, shift=1.0)
    )


# (family factory, data factory)
FAMILIES: dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]] = {
    "hyperplane": (_hyperplane, _vectors),
    "hyperplane-centred": (_hyperplane_centred, lambda s: _vectors(s, shift=3.0)),
    "hyperplane-whitened": (_hyperplane_whitened, lambda s: _vectors(s, shift=0.5)),
    "pstable": (_pstable, _vectors),
    "minhash": (_minhash, _sets),
    "cross-polytope": (_cross_polytope, _vectors),
    "cross-polytope-centred": (_cross_polytope_centred, lambda s: _vectors(s, shift=3.0)),
    "kmeans": (_kmeans, _vectors),
    "kmeans-euclidean": (_kmeans_euclidean, lambda s: _vectors(s, shift=1.0)),
}


@pytest.fixture(params=sorted(FAMILIES))
def case(request: pytest.FixtureRequest) -> tuple[str, Callable[[int], Any], Any]:
    make, data = FAMILIES[request.param]
    return request.param, make, data(7)


def _n_rows(data: Any) -> int:
    return len(data)


def test_family_satisfies_protocol(case: tuple[str, Callable[[int], Any], Any]) -> None:
    _, make, _ = case
    family = make(0)
    assert isinstance(family, HashFamily)
    assert family.to_config()["family"] == family.name


def test_keys_shape_dtype_and_determinism(case: tuple[str, Callable[[int], Any], Any]) -> None:
    _, make, data = case
    family = make(3)
    keys = family.keys(data)
    assert keys.shape == (_n_rows(data), family.n_tables)
    assert keys.dtype == np.uint64
    np.testing.assert_array_equal(family.keys(data), keys)
    # A second instance built with the same parameters hashes identically.
    np.testing.assert_array_equal(make(3).keys(data), keys)
    # Buckets are not degenerate: rows spread over several keys in every table.
    for t in range(family.n_tables):
        assert len(np.unique(keys[:, t])) > 3


def test_keys_do_not_depend_on_batch_order(case: tuple[str, Callable[[int], Any], Any]) -> None:
    _, make, data = case
    family = make(4)
    keys = family.keys(data)
    perm = np.random.default_rng(0).permutation(_n_rows(data))
    shuffled = [data[i] for i in perm] if isinstance(data, list) else data[perm]
    np.testing.assert_array_equal(family.keys(shuffled), keys[perm])


def _assert_same_buckets(a: Any, b: Any, data: Any) -> None:
    np.testing.assert_array_equal(a.keys(data), b.keys(data))
    for n_probes in (1, a.n_tables, 3 * a.n_tables + 1):
        ka, ta = a.probes(data, n_probes)
        kb, tb = b.probes(data, n_probes)
        np.testing.assert_array_equal(ka, kb)
        np.testing.assert_array_equal(ta, tb)


def test_config_round_trip(case: tuple[str, Callable[[int], Any], Any]) -> None:
    _, make, data = case
    family = make(11)
    config = family.to_config()
    arrays = learned_arrays(family)  # stored beside the config (segment arrays in an index)
    _assert_same_buckets(family, from_config(config, arrays=arrays), data)
    # Through JSON, as the index stores it.
    text = json.dumps(config)
    restored = json.loads(text)
    assert restored == config
    rebuilt = from_config(restored, arrays=arrays)
    assert type(rebuilt) is type(family)
    assert rebuilt.to_config() == config
    _assert_same_buckets(family, rebuilt, data)


def test_different_seeds_give_different_keys(case: tuple[str, Callable[[int], Any], Any]) -> None:
    _, make, data = case
    a, b = make(0).keys(data), make(1).keys(data)
    # Independent functions: the same (row, table) key by chance only, which is rare.
    assert np.mean(a == b) < 0.1


def test_probes_shape_and_home_buckets_first(case: tuple[str, Callable[[int], Any], Any]) -> None:
    name, make, data = case
    family = make(5)
    n, n_tables = _n_rows(data), family.n_tables
    home = family.keys(data)
    for n_probes in (n_tables, 2 * n_tables, 7 * n_tables + 3):
        keys, tables = family.probes(data, n_probes)
        assert keys.dtype == np.uint64
        assert tables.dtype == np.int32
        assert keys.shape == tables.shape
        assert keys.shape[0] == n
        assert n_tables <= keys.shape[1] <= n_probes
        if name != "minhash":
            # Vector families have neighbouring buckets to offer: exactly P probes.
            assert keys.shape[1] == n_probes
        assert tables.min() >= 0
        assert tables.max() < n_tables
        # The first L probes are the L home buckets, one per table.
        first = np.sort(tables[:, :n_tables], axis=1)
        np.testing.assert_array_equal(first, np.broadcast_to(np.arange(n_tables), (n, n_tables)))
        np.testing.assert_array_equal(
            keys[:, :n_tables],
            np.take_along_axis(home, tables[:, :n_tables].astype(np.int64), axis=1),
        )
        # No bucket is probed twice.
        for t_row, k_row in zip(tables.tolist(), keys.tolist()):
            assert len(set(zip(t_row, k_row))) == len(k_row)


def test_fewer_probes_than_tables_start_at_home(case: tuple[str, Callable[[int], Any], Any]) -> None:
    _, make, data = case
    family = make(6)
    home = family.keys(data)
    keys, tables = family.probes(data, 1)
    assert keys.shape[1] >= 1
    np.testing.assert_array_equal(keys[:, 0], home[np.arange(len(home)), tables[:, 0]])


def test_probes_extend_each_other() -> None:
    """More probes keep the buckets of fewer probes (a longer probe list is a superset)."""
    family = _hyperplane(8)
    data = _vectors(3)
    small_k, small_t = family.probes(data, 9)
    big_k, big_t = family.probes(data, 40)
    for i in range(len(data)):
        small = set(zip(small_t[i].tolist(), small_k[i].tolist()))
        big = set(zip(big_t[i].tolist(), big_k[i].tolist()))
        assert small <= big


def test_unknown_family_in_config() -> None:
    with pytest.raises(ParameterError, match="unknown hash family"):
        from_config({"family": "nope"})


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: HyperplaneLSH(DIM, n_bits=0), id="hyperplane-n_bits=0"),
        pytest.param(lambda: HyperplaneLSH(DIM, n_bits=65), id="hyperplane-n_bits=65"),
        pytest.param(lambda: HyperplaneLSH(DIM, n_tables=0), id="hyperplane-n_tables=0"),
        pytest.param(lambda: HyperplaneLSH(0), id="hyperplane-dim=0"),
        pytest.param(lambda: HyperplaneLSH(DIM, seed=-1), id="hyperplane-seed=-1"),
        pytest.param(lambda: HyperplaneLSH(DIM, n_bits=2.5), id="hyperplane-n_bits-float"),
        pytest.param(lambda: HyperplaneLSH(DIM, n_tables=True), id="hyperplane-n_tables-bool"),
        pytest.param(lambda: PStableLSH(DIM, n_hashes=0), id="pstable-n_hashes=0"),
        pytest.param(lambda: PStableLSH(DIM, n_tables=0), id="pstable-n_tables=0"),
        pytest.param(lambda: PStableLSH(DIM, bucket_width=-1), id="pstable-width=-1"),
        pytest.param(lambda: PStableLSH(DIM, bucket_width=0), id="pstable-width=0"),
        pytest.param(lambda: PStableLSH(DIM, bucket_width=float("nan")), id="pstable-width=nan"),
        pytest.param(lambda: PStableLSH(DIM, bucket_width=float("inf")), id="pstable-width=inf"),
        pytest.param(lambda: PStableLSH(0), id="pstable-dim=0"),
        pytest.param(lambda: MinHashLSH(threshold=1.5), id="minhash-threshold=1.5"),
        pytest.param(lambda: MinHashLSH(threshold=0.0), id="minhash-threshold=0"),
        pytest.param(lambda: MinHashLSH(num_perm=1), id="minhash-num_perm=1"),
        pytest.param(lambda: MinHashLSH(n_bands=0, n_rows=4), id="minhash-n_bands=0"),
        pytest.param(lambda: MinHashLSH(n_bands=4, n_rows=0), id="minhash-n_rows=0"),
        pytest.param(lambda: MinHashLSH(num_perm=64, n_bands=9, n_rows=8), id="minhash-b*r>perm"),
        pytest.param(lambda: MinHashLSH(n_bands=4), id="minhash-bands-without-rows"),
        pytest.param(lambda: CrossPolytopeLSH(DIM, n_bits=0), id="cross-polytope-n_bits=0"),
        pytest.param(lambda: CrossPolytopeLSH(DIM, n_bits=65), id="cross-polytope-n_bits=65"),
        pytest.param(lambda: CrossPolytopeLSH(1, n_bits=64), id="cross-polytope-64-signs"),
        pytest.param(lambda: CrossPolytopeLSH(DIM, n_tables=0), id="cross-polytope-n_tables=0"),
        pytest.param(lambda: KMeansLSH(DIM, n_cells=0), id="kmeans-n_cells=0"),
        pytest.param(lambda: KMeansLSH(DIM, n_tables=0), id="kmeans-n_tables=0"),
        pytest.param(lambda: KMeansLSH(DIM, n_cells=4, centroids=np.zeros((1, 3, DIM))),
                     id="kmeans-centroids-shape"),
        pytest.param(lambda: KMeansLSH(DIM).fit(np.zeros((0, DIM), np.float32)), id="kmeans-fit-empty"),
        pytest.param(lambda: optimal_bands(1.5, 128), id="optimal_bands-threshold=1.5"),
        pytest.param(lambda: optimal_bands(0.5, 1), id="optimal_bands-num_perm=1"),
    ],
)
def test_bad_parameters_raise(build: Callable[[], Any]) -> None:
    with pytest.raises(ParameterError):
        build()


def test_threshold_checked_even_with_explicit_bands() -> None:
    with pytest.raises(ParameterError):
        MinHashLSH(num_perm=64, n_bands=8, n_rows=4, threshold=1.5)


@pytest.mark.parametrize(
    "family",
    [HyperplaneLSH(DIM, n_tables=2, n_bits=4), PStableLSH(DIM, n_tables=2, n_hashes=4),
     CrossPolytopeLSH(DIM, n_tables=2, n_bits=6), KMeansLSH(DIM, n_cells=4).fit(_vectors(1, 40))],
    ids=["hyperplane", "pstable", "cross-polytope", "kmeans"],
)
def test_wrong_dimension_and_non_finite_rows_raise(family: Any) -> None:
    good = _vectors(1, 4)
    family.keys(good)  # sanity: the right shape works
    for bad in (
        np.zeros((4, DIM + 1), np.float32),
        np.zeros((4, DIM - 1), np.float32),
        np.zeros((2, 2, DIM), np.float32),
    ):
        with pytest.raises(ParameterError, match="dimension"):
            family.keys(bad)
        with pytest.raises(ParameterError, match="dimension"):
            family.probes(bad, 4)
    nan = good.copy()
    nan[2, 3] = np.nan
    with pytest.raises(ParameterError):
        family.keys(nan)


def test_single_vector_is_one_row() -> None:
    family = _pstable(2)
    X = _vectors(2, 5)
    assert family.keys(X[3]).shape == (1, family.n_tables)


@pytest.mark.parametrize(
    "family",
    [HyperplaneLSH(DIM, center=True), CrossPolytopeLSH(DIM, center=True), KMeansLSH(DIM)],
    ids=["hyperplane", "cross-polytope", "kmeans"],
)
def test_learned_state_must_be_fit(family: Any) -> None:
    with pytest.raises(ParameterError, match="fit"):
        family.keys(_vectors(0, 3))
    with pytest.raises(ParameterError, match="fit"):
        family.probes(_vectors(0, 3), 4)


def test_learned_cells_need_their_arrays() -> None:
    config = _kmeans(0).to_config()
    with pytest.raises(ParameterError, match="centroids"):
        from_config(config)


def test_centring_changes_buckets_of_one_orthant_data() -> None:
    """Uncentred planes put non-negative data in few buckets; centring spreads it out."""
    X = np.abs(_vectors(5, 400)) + 2.0
    plain = HyperplaneLSH(DIM, n_tables=4, n_bits=10, seed=1).keys(X)
    centred = HyperplaneLSH(DIM, n_tables=4, n_bits=10, seed=1, center=True).fit(X).keys(X)
    assert len(np.unique(centred[:, 0])) > 2 * len(np.unique(plain[:, 0]))


def test_minhash_accepts_ints_strings_and_bytes() -> None:
    family = _minhash(0)
    words = ["alpha", "beta", "gamma", "delta"]
    np.testing.assert_array_equal(
        family.keys([words]), family.keys([[*reversed(words), "beta"]])
    )
    np.testing.assert_array_equal(
        family.keys([[b"x", b"y"]]), family.keys([[b"y", b"x", b"x"]])
    )
    assert not np.array_equal(family.keys([words]), family.keys([words[:3]]))
    batch = as_sets([[3, 1, 2], [5]])
    assert batch[0].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(family.keys(batch), family.keys([[1, 2, 3], [5]]))
