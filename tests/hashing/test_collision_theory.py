"""Empirical collision rates against the theory each family is built on.

hyperplane: P[bit equal] = 1 - theta / pi.  p-stable: P[hash equal] = p(c) (Datar et al.).
MinHash: P[signature value equal] = J.  Cross-polytope: P[vertex equal] = the Gaussian-rotation
curve (``CrossPolytopeLSH.collision_probability``).  Plus the banding maths of ``optimal_bands``.
(Learned k-means cells have no data-independent collision law: their tests are the contract's
and the index's.)
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.hashing import CrossPolytopeLSH, HyperplaneLSH, MinHashLSH, PStableLSH, optimal_bands

DIM = 24
# 64 tables x 64 bits = 4096 planes (or projections): per-pair standard error <= 0.008.
N_TABLES, N_BITS = 64, 64
N_PAIRS = 4
STATS = settings(max_examples=25, deadline=None, derandomize=True, database=None)

HYPERPLANES = HyperplaneLSH(DIM, n_tables=N_TABLES, n_bits=N_BITS, seed=17)


def _orthonormal_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((DIM, 2)))
    return q[:, 0], q[:, 1]


def _at_angle(u: np.ndarray, v: np.ndarray, theta: float, scale: float = 1.0) -> np.ndarray:
    return (scale * (np.cos(theta) * u + np.sin(theta) * v)).astype(np.float32)


def _bit_agreement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx, cy = HYPERPLANES.codes(x), HYPERPLANES.codes(y)
    assert cx.shape == (len(x), N_TABLES * N_BITS)
    return np.mean(cx == cy, axis=1)


@STATS
@given(theta=st.floats(0.0, np.pi), seed=st.integers(0, 2**32 - 1))
def test_hyperplane_bit_collision_rate(theta: float, seed: int) -> None:
    pairs = [_orthonormal_pair(seed + i) for i in range(N_PAIRS)]
    x = np.stack([u for u, _ in pairs]).astype(np.float32)
    # Scaling one side must not matter: only the angle does.
    y = np.stack([_at_angle(u, v, theta, scale=3.5) for u, v in pairs])
    rate = _bit_agreement(x, y)
    expected = 1.0 - theta / np.pi
    assert abs(rate.mean() - expected) < 0.03
    assert np.all(np.abs(rate - expected) < 0.05)
    assert HYPERPLANES.collision_probability(np.cos(theta)) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    steps=st.lists(st.integers(0, 1000), min_size=2, max_size=6, unique=True),
    seed=st.integers(0, 2**32 - 1),
)
def test_hyperplane_collisions_fall_with_angle(steps: list[int], seed: int) -> None:
    """Along one arc, every plane that separates at angle a still separates at b > a."""
    u, v = _orthonormal_pair(seed)
    thetas = [i * np.pi / 1000 for i in sorted(steps)]
    x = np.repeat(u[None, :].astype(np.float32), len(thetas), axis=0)
    y = np.stack([_at_angle(u, v, t) for t in thetas])
    agree = HYPERPLANES.codes(x) == HYPERPLANES.codes(y)
    counts = agree.sum(axis=1)
    assert np.all(np.diff(counts) <= 0)
    # The bits that disagree at a small angle are a subset of those at a larger one.
    for a, b in pairwise(agree):
        assert not np.any(b & ~a)


def test_hyperplane_extremes() -> None:
    u, v = _orthonormal_pair(0)
    x = u[None, :].astype(np.float32)
    assert _bit_agreement(x, x)[0] == 1.0
    assert _bit_agreement(x, -x)[0] == 0.0
    assert abs(_bit_agreement(x, _at_angle(u, v, np.pi / 2)[None, :])[0] - 0.5) < 0.03


PSTABLE = PStableLSH(DIM, n_tables=N_TABLES, n_hashes=N_BITS, bucket_width=4.0, seed=23)


def _hash_agreement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    hx, hy = np.floor(PSTABLE.project(x)), np.floor(PSTABLE.project(y))
    return np.mean((hx == hy).reshape(len(x), -1), axis=1)


def _unit(seed: int) -> np.ndarray:
    d = np.random.default_rng(seed).standard_normal(DIM)
    return d / np.linalg.norm(d)


@STATS
@given(distance=st.floats(0.05, 16.0), seed=st.integers(0, 2**32 - 1))
def test_pstable_hash_collision_rate(distance: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N_PAIRS, DIM)) * 5).astype(np.float32)
    dirs = np.stack([_unit(seed + i + 1) for i in range(N_PAIRS)])
    y = (x + distance * dirs).astype(np.float32)
    rate = _hash_agreement(x, y)
    expected = float(PSTABLE.collision_probability(distance))
    assert abs(rate.mean() - expected) < 0.03
    assert np.all(np.abs(rate - expected) < 0.05)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    steps=st.lists(st.integers(0, 1000), min_size=2, max_size=6, unique=True),
    seed=st.integers(0, 2**32 - 1),
)
def test_pstable_collisions_fall_with_distance(steps: list[int], seed: int) -> None:
    """Moving along a ray, a point that has left a bucket never comes back to it."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(DIM) * 5).astype(np.float32)
    d = _unit(seed)
    distances = [i * 0.03 for i in sorted(steps)]
    points = np.stack([x + c * d for c in distances]).astype(np.float32)
    h = np.floor(PSTABLE.project(points)).reshape(len(points), -1)
    home = np.floor(PSTABLE.project(x)).reshape(-1)
    agree = h == home
    assert np.all(np.diff(agree.sum(axis=1)) <= 0)
    for near, far in pairwise(agree):
        assert not np.any(far & ~near)


def test_pstable_probability_curve() -> None:
    c = np.linspace(0.01, 40.0, 400)
    p = PSTABLE.collision_probability(c)
    assert np.all(np.diff(p) < 0)
    assert p[0] > 0.99
    assert p[-1] < 0.1
    # A wider bucket collides more at the same distance.
    wide = PStableLSH(DIM, bucket_width=8.0).collision_probability(c)
    assert np.all(wide > p)


def _sets_with_jaccard(jaccard: float, rng: np.random.Generator, union: int = 400):
    """Two sets whose exact Jaccard is shared / union."""
    shared = round(jaccard * union)
    rest = union - shared
    only_a = rest // 2
    elements = rng.choice(2**40, size=union, replace=False)
    a = elements[: shared + only_a]
    b = np.concatenate([elements[:shared], elements[shared + only_a :]])
    exact = shared / union
    return a.tolist(), b.tolist(), exact


@STATS
@given(jaccard=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_minhash_estimates_jaccard(jaccard: float, seed: int) -> None:
    family = MinHashLSH(num_perm=256, n_bands=64, n_rows=4, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    left, right, exact = [], [], []
    for _ in range(6):
        a, b, j = _sets_with_jaccard(jaccard, rng)
        left.append(a)
        right.append(b)
        exact.append(j)
    est = family.estimate_jaccard(family.signatures(left), family.signatures(right))
    assert est.shape == (6,)
    assert np.all(np.abs(est - np.array(exact)) < 0.17)
    assert abs(float(np.mean(est - np.array(exact)))) < 0.06


def test_minhash_signature_extremes() -> None:
    family = MinHashLSH(num_perm=256, seed=3)
    rng = np.random.default_rng(0)
    a = rng.choice(10**9, 300, replace=False)
    b = rng.choice(10**9, 300, replace=False) + 10**9  # disjoint from a
    sig = family.signatures([a.tolist(), a[::-1].tolist(), b.tolist()])
    assert sig.shape == (3, 256)
    assert sig.dtype == np.uint32
    assert family.estimate_jaccard(sig[0], sig[1]) == 1.0
    assert family.estimate_jaccard(sig[0], sig[2]) < 0.05


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    t1=st.floats(0.1, 0.9),
    gap=st.floats(0.05, 0.5),
    num_perm=st.sampled_from([32, 64, 128, 256]),
)
def test_optimal_bands_fit_and_grow_with_threshold(t1: float, gap: float, num_perm: int) -> None:
    t2 = min(t1 + gap, 0.95)
    b1, r1 = optimal_bands(t1, num_perm)
    b2, r2 = optimal_bands(t2, num_perm)
    for b, r in ((b1, r1), (b2, r2)):
        assert b >= 1
        assert r >= 1
        assert b * r <= num_perm
    # A stricter threshold needs longer bands (rows) so that dissimilar pairs rarely collide.
    assert r2 >= r1


def test_optimal_bands_wide_thresholds_differ() -> None:
    low = optimal_bands(0.2, 128)
    high = optimal_bands(0.8, 128)
    assert high[1] > low[1]
    assert high[0] < low[0]


@pytest.mark.parametrize("num_perm", [128, 256])
@pytest.mark.parametrize("threshold", [0.2, 0.35, 0.5, 0.65, 0.8, 0.9])
def test_candidate_probability_is_an_s_curve(num_perm: int, threshold: float) -> None:
    family = MinHashLSH(num_perm=num_perm, threshold=threshold)
    assert (family.n_bands, family.n_rows) == optimal_bands(threshold, num_perm)
    s = np.linspace(0.0, 1.0, 2001)
    p = family.candidate_probability(s)
    assert p.shape == s.shape
    assert p[0] == pytest.approx(0.0, abs=1e-12)
    assert p[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(p) >= -1e-12)
    crossing = s[np.argmax(p >= 0.5)]
    assert abs(crossing - threshold) < 0.08
    # Steep around the threshold: well below it rarely a candidate, well above it nearly always.
    assert family.candidate_probability(max(threshold - 0.2, 0.0))[0] < 0.25
    assert family.candidate_probability(min(threshold + 0.2, 1.0))[0] > 0.75


@STATS
@given(jaccard=st.sampled_from([0.3, 0.5, 0.7, 0.9]), seed=st.integers(0, 2**16))
def test_band_collisions_follow_candidate_probability(jaccard: float, seed: int) -> None:
    """Share of pairs sharing a band bucket ~ 1 - (1 - J^r)^b over many pairs."""
    family = MinHashLSH(num_perm=64, n_bands=8, n_rows=4, seed=seed)
    rng = np.random.default_rng(seed)
    n_pairs = 150
    left, right = [], []
    for _ in range(n_pairs):
        a, b, _ = _sets_with_jaccard(jaccard, rng, union=100)
        left.append(a)
        right.append(b)
    ka, kb = family.keys(left), family.keys(right)
    hit = np.any(ka == kb, axis=1).mean()
    expected = float(family.candidate_probability(jaccard)[0])
    # Binomial(150, p): 4.5 standard errors at worst p = 0.5.
    assert abs(hit - expected) < 0.19
    # And per band, the share of equal band keys is J^r.
    assert abs(np.mean(ka == kb) - jaccard**4) < 0.08


# 64 tables x 8 cross-polytopes of 32 coordinates (24 dims padded): 512 hashes per pair.
CROSS_POLYTOPES = CrossPolytopeLSH(DIM, n_tables=64, n_bits=48, seed=17)


@pytest.mark.parametrize("theta", [0.1, 0.3, 0.5, 0.8, 1.2, np.pi / 2, 2.2])
def test_cross_polytope_collision_rate_follows_the_curve(theta: float) -> None:
    """The pseudo-random rotations (sign flips + Hadamard transforms) collide as a true
    random rotation does, measured on seeded pairs."""
    fam = CROSS_POLYTOPES
    assert (fam.rotation_dim, fam.n_hashes, fam.last_dim) == (32, 8, 32)
    pairs = [_orthonormal_pair(300 + i) for i in range(N_PAIRS)]
    x = np.stack([u for u, _ in pairs]).astype(np.float32)
    y = np.stack([_at_angle(u, v, theta, scale=2.5) for u, v in pairs])
    rate = (fam.hashes(x) == fam.hashes(y)).reshape(N_PAIRS, -1).mean(axis=1)
    expected = float(CrossPolytopeLSH.collision_probability(np.cos(theta), 32)[0])
    assert abs(rate.mean() - expected) < 0.03
    assert np.all(np.abs(rate - expected) < 0.07)


def test_cross_polytope_curve() -> None:
    c = np.cos(np.linspace(0.0, np.pi, 13))
    p = CrossPolytopeLSH.collision_probability(c, 64)
    assert p[0] == 1.0
    assert np.all(np.diff(p) <= 1e-9)  # falls with the angle
    # Orthogonal vectors are independent: sum over the 2w vertices of (1 / 2w)^2.
    assert CrossPolytopeLSH.collision_probability(0.0, 64)[0] == pytest.approx(1 / 128, rel=1e-3)
    # One coordinate is the sign of a projection: a hyperplane bit.
    np.testing.assert_allclose(CrossPolytopeLSH.collision_probability(c, 1),
                               HyperplaneLSH.collision_probability(c))
    # More vertices separate more sharply than a hyperplane at every angle in (0, pi/2).
    mid = np.cos(np.linspace(0.2, 1.3, 5))
    assert np.all(CrossPolytopeLSH.collision_probability(mid, 32) < HyperplaneLSH.collision_probability(mid))
