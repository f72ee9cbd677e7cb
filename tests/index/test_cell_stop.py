"""A default-built k-means index probes adaptively when that is cheaper: its operating point
(cap and stop) is modelled from held-out rows at build (``cell_stop``), with no search; its
answers reach the target on fresh queries with fewer candidates than the fixed probes, the
model's recall is a lower bound of the walk's on the held-out rows, and ``recall=`` still
trades."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.index import Index, autotune, families
from audiolsh.index.build import IndexConfig
from audiolsh.search import BruteForce, VectorLSH, prepare

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
        assert point["stop"] > 0
        assert point["probes_estimate"] < point["n_probes"]  # the cap is seldom reached
        adaptive = index.query(Q, 10)
        assert adaptive.n_probes is not None and adaptive.n_probes.mean() < point["n_probes"]
        found = (row_of[adaptive.ids][:, :, None] == truth[:, None, :]).any(axis=1).mean()
        assert found >= 0.95
        fixed = index.query(Q, 10, n_probes=autotune.fixed_probes(point, None))
        assert adaptive.n_candidates.sum() < fixed.n_candidates.sum()
        low = index.query(Q, 10, recall=0.8)
        assert low.n_candidates.sum() < adaptive.n_candidates.sum()


def test_the_tuning_runs_no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adaptive point comes from the model, not from searching the held-out rows at a
    few stops (what the build did before), and it is the same for the same seed."""
    X = _mixture(6, 6000)
    with Index.create(None, family="kmeans") as index:
        index.add(X)
        expected = index._segments[0].info.config["operating_point"]

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tuning searched")

    monkeypatch.setattr(VectorLSH, "search", no_search)
    with Index.create(None, family="kmeans") as index:
        index.add(X)
        assert index._segments[0].info.config["operating_point"] == expected


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_modelled_recall_is_a_lower_bound_of_the_walk(metric: str) -> None:
    """On the held-out rows themselves, the kernel's walk at every point of the curve finds
    at least the share of true neighbours the model gives it (before the error margin): the
    model's k-th distance is never above the walk's, so it stops no later."""
    X = prepare(_mixture(7, 8000), metric)
    fam = families.learned_family(IndexConfig(metric=metric, family="kmeans"), X, 0)
    searcher, _ = families.by_cell(VectorLSH(fam, metric=metric).fit(X, prepared=True))
    point = families.tune_cells(searcher, 0.95, 0)
    assert point is not None and point["stop"] > 0
    n, nq = len(X), point["n_queries"]
    rows = np.sort(np.random.default_rng([0, 0x7C31]).choice(n, nq, replace=False))  # tune_cells'
    truth, _ = autotune.nearest_others(searcher.vectors_, rows, 10, metric)
    for r, cap, stop, _ in point["curve"]:  # searched for 11: their own row and 10 others
        got = searcher.search(searcher.vectors_[rows], 11, n_probes=cap, stop=stop)
        assert (got.ids[:, :, None] == truth[:, None, :]).any(axis=1).mean() >= r
