"""Partially whitened hyperplanes: the maths in the whitened space, balance, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.errors import ParameterError
from audiolsh.hashing import HyperplaneLSH, from_config
from audiolsh.hashing.base import learned_arrays
from audiolsh.hashing.hyperplane import key_balance

DIM = 24
SPECTRUM = np.arange(1, DIM + 1, dtype=np.float64) ** -1.5  # per-direction std


def anisotropic(seed: int, n: int) -> np.ndarray:
    """Rows whose variance sits in a few (rotated) directions, away from the origin."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(1234).standard_normal((DIM, DIM)))[0]
    return ((rng.standard_normal((n, DIM)) * SPECTRUM) @ basis.T + 0.3).astype(np.float32)


FIT_ROWS = anisotropic(0, 4000)


def whitening_map(X: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The test's own z = diag(lambda^(-alpha/2)) U^T (x - mean) from the same rows."""
    mean = X.mean(axis=0, dtype=np.float64)
    B = X.astype(np.float64) - mean
    lam, U = np.linalg.eigh(B.T @ B / (len(B) - 1))
    return mean, U * lam ** (-alpha / 2)


def entropy_bits(keys: np.ndarray) -> float:
    _, counts = np.unique(keys, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


@pytest.fixture(scope="module")
def wide() -> HyperplaneLSH:
    # 64 x 64 planes: per-pair standard error of the agreement rate <= 0.008.
    return HyperplaneLSH(DIM, n_tables=64, n_bits=64, seed=5, whiten=0.5).fit(FIT_ROWS)


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(theta=st.floats(0.0, np.pi), seed=st.integers(0, 2**32 - 1))
def test_bit_agreement_is_one_minus_angle_over_pi_in_the_whitened_space(
    wide: HyperplaneLSH, theta: float, seed: int
) -> None:
    """Pairs at a chosen angle in the whitened space, mapped back: P[bit equal] = 1 - theta/pi."""
    mean, M = whitening_map(FIT_ROWS, 0.5)
    back = np.linalg.inv(M.T)  # x = mean + back @ z
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(4):
        u, v = np.linalg.qr(rng.standard_normal((DIM, 2)))[0].T
        z1 = u * rng.uniform(0.5, 2.0)
        z2 = (np.cos(theta) * u + np.sin(theta) * v) * rng.uniform(0.5, 2.0)
        xs.append(mean + back @ z1)
        ys.append(mean + back @ z2)
    cx = wide.codes(np.array(xs, np.float32))
    cy = wide.codes(np.array(ys, np.float32))
    rate = (cx == cy).mean(axis=1)
    expected = 1.0 - theta / np.pi
    assert abs(rate.mean() - expected) < 0.03
    assert np.all(np.abs(rate - expected) < 0.06)


def test_whitening_decorrelates_bits_and_balances_buckets() -> None:
    X = anisotropic(1, 20_000)
    plain = HyperplaneLSH(DIM, n_tables=4, n_bits=12, seed=2, center=True).fit(X)
    white = HyperplaneLSH(DIM, n_tables=4, n_bits=12, seed=2, whiten=0.5).fit(X)
    h_plain = np.mean([entropy_bits(plain.keys(X)[:, t]) for t in range(4)])
    h_white = np.mean([entropy_bits(white.keys(X)[:, t]) for t in range(4)])
    # Random planes all cut the few high-variance directions: correlated bits, few buckets.
    assert h_white > h_plain + 1.0
    # Each whitened bit splits the data roughly in half (the planes pass through the mean).
    share = white.codes(X).mean(axis=0)
    assert np.all(np.abs(share - 0.5) < 0.1)


def test_key_balance_tells_crowded_tables_from_balanced_ones() -> None:
    crowded = key_balance(anisotropic(1, 20_000), n_bits=12)
    balanced = key_balance(np.random.default_rng(0).standard_normal((20_000, DIM)), n_bits=12)
    assert crowded < 0.6 < 0.8 < balanced <= 1.0
    assert key_balance(np.zeros((1, DIM)), n_bits=8) == 1.0


def test_whiten_zero_is_the_plain_family_and_old_configs_read_the_same() -> None:
    X = anisotropic(2, 500)
    plain = HyperplaneLSH(DIM, n_tables=6, n_bits=10, seed=4, center=True).fit(X)
    zero = HyperplaneLSH(DIM, n_tables=6, n_bits=10, seed=4, center=True, whiten=0.0).fit(X)
    np.testing.assert_array_equal(plain.keys(X), zero.keys(X))
    config = plain.to_config()
    assert config["whiten"] == 0.0 and config["learned"] == []
    old = {k: v for k, v in config.items() if k not in ("whiten", "learned", "fit_sample")}
    np.testing.assert_array_equal(from_config(old).keys(X), plain.keys(X))


def test_learned_planes_round_trip_through_json_and_arrays() -> None:
    X = anisotropic(3, 3000)
    fam = HyperplaneLSH(DIM, n_tables=5, n_bits=14, seed=9, whiten=0.7).fit(X)
    arrays = learned_arrays(fam)
    assert set(arrays) == {"planes"} and arrays["planes"].shape == (DIM, 5 * 14)
    config = json.loads(json.dumps(fam.to_config()))
    assert config["whiten"] == 0.7 and config["learned"] == ["planes"] and config["center"]
    rebuilt = from_config(config, arrays={"planes": arrays["planes"].copy()})
    np.testing.assert_array_equal(rebuilt.keys(X), fam.keys(X))
    for n_probes in (5, 40):
        for a, b in zip(rebuilt.probes(X[:50], n_probes), fam.probes(X[:50], n_probes)):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ParameterError, match="planes"):
        from_config(config)


def test_fit_is_deterministic_and_samples_by_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    import audiolsh.hashing.hyperplane as hp

    monkeypatch.setattr(hp, "FIT_SAMPLE", 1000)
    X = anisotropic(4, 5000)
    a = HyperplaneLSH(DIM, n_tables=2, n_bits=8, seed=1, whiten=0.5).fit(X)
    b = HyperplaneLSH(DIM, n_tables=2, n_bits=8, seed=1, whiten=0.5).fit(X)
    np.testing.assert_array_equal(a.planes_, b.planes_)
    assert a.to_config()["fit_sample"] == 1000


def test_unfitted_whitened_family_and_bad_values_are_refused() -> None:
    with pytest.raises(ParameterError, match="fit"):
        HyperplaneLSH(DIM, whiten=0.5).keys(FIT_ROWS[:3])
    for bad in (-0.1, 1.5, "half", True, float("nan")):
        with pytest.raises(ParameterError, match="whiten"):
            HyperplaneLSH(DIM, whiten=bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="planes"):
        HyperplaneLSH(DIM, n_tables=2, n_bits=4, planes=np.zeros((DIM, 8), np.float32))
    with pytest.raises(ParameterError, match="shape"):
        HyperplaneLSH(DIM, n_tables=2, n_bits=4, whiten=0.5, planes=np.zeros((DIM, 9), np.float32))


def test_constant_rows_fall_back_to_plain_planes() -> None:
    X = np.ones((50, DIM), np.float32)
    fam = HyperplaneLSH(DIM, n_tables=2, n_bits=6, seed=0, whiten=0.5).fit(X)
    assert np.isfinite(fam.planes_).all()
    assert fam.keys(X).shape == (50, 2)
