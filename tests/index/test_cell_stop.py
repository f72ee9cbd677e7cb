"""A default-built k-means index probes adaptively when that is cheaper (``cell_stop``): its
operating point carries a stop learned from held-out rows, its answers reach the target on
fresh queries with fewer candidates than the fixed probes, and ``recall=`` still trades."""

from __future__ import annotations

import numpy as np

from audiolsh.index import Index, autotune, cell_stop
from audiolsh.search import BruteForce, prepare

DIM = 32


def _mixture(seed: int, n: int) -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((60, DIM)) * 1.2
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 60, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


def test_a_default_kmeans_index_stops_early_and_keeps_its_target() -> None:
    X, Q = _mixture(4, 12_000), _mixture(5, 300)
    truth = BruteForce("cosine").fit(prepare(X, "cosine")).search(prepare(Q, "cosine"), 10).ids
    with Index.create(None, family="kmeans") as index:
        ids = index.add(X)
        row_of = np.full(int(ids.max()) + 1, -1)
        row_of[ids] = np.arange(len(X))
        point = index._segments[0].info.config["operating_point"]
        assert point["stop"] in cell_stop.STOPS
        assert point["probes_estimate"] < point["n_probes"]  # the cap is seldom reached
        adaptive = index.query(Q, 10)
        assert adaptive.n_probes is not None and adaptive.n_probes.mean() < point["n_probes"]
        found = (row_of[adaptive.ids][:, :, None] == truth[:, None, :]).any(axis=1).mean()
        assert found >= 0.95
        fixed = index.query(Q, 10, n_probes=autotune.fixed_probes(point, None))
        assert adaptive.n_candidates.sum() < fixed.n_candidates.sum()
        low = index.query(Q, 10, recall=0.8)
        assert low.n_candidates.sum() < adaptive.n_candidates.sum()


def test_no_point_stays_none() -> None:
    assert cell_stop.with_stop(None, None, 0) is None  # type: ignore[arg-type]


def test_a_stop_never_claims_more_than_the_fixed_probes_reach() -> None:
    """The walk probes a prefix of the fixed probes: asked for more than their bound, no
    stop is taken and the point is returned unchanged."""
    with Index.create(None, family="kmeans") as index:
        index.add(_mixture(6, 6000))
        seg = index._segments[0]
        point = seg.info.config["operating_point"]
        assert point["stop"] > 0
        greedy = {**point, "stop": 0.0, "target_recall": point["recall_estimate"] + 0.01}
        assert cell_stop.with_stop(seg.searcher, greedy, 0) is greedy
