"""The k-means family at IVF speed: cells fitted the same whatever the assignment blocks, a
probed cell measured where it lies (lone queries, batches and the general path agree), and a
default-built k-means index probing for its target recall (``families.tune_cells``)."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.hashing import KMeansLSH, kmeans
from audiolsh.index import Index
from audiolsh.index.families import by_cell
from audiolsh.search import BruteForce, VectorLSH, prepare

DIM = 32


def _mixture(seed: int, n: int, centres_seed: int = 0) -> np.ndarray:
    """Overlapping Gaussian clusters: the same centres for every ``seed`` (fresh draws)."""
    centres = np.random.default_rng(centres_seed).standard_normal((60, DIM)) * 1.2
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 60, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


def test_cells_do_not_depend_on_the_assignment_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seed gives the same cells; rows assigned in blocks of 64 land where they
    land in one block (near ties are decided exactly)."""
    X = prepare(_mixture(1, 3000), "cosine")
    whole = KMeansLSH(DIM, n_tables=2, n_cells=48, seed=3).fit(X)
    again = KMeansLSH(DIM, n_tables=2, n_cells=48, seed=3).fit(X)
    monkeypatch.setattr(kmeans, "ASSIGN_BLOCK", 64 * 48)
    blocked = KMeansLSH(DIM, n_tables=2, n_cells=48, seed=3).fit(X)
    assert whole.centroids_ is not None
    np.testing.assert_array_equal(whole.centroids_, again.centroids_)
    np.testing.assert_array_equal(whole.centroids_, blocked.centroids_)
    np.testing.assert_array_equal(blocked.keys(X), whole.keys(X))
    other = KMeansLSH(DIM, n_tables=2, n_cells=48, seed=4).fit(X)
    assert not np.array_equal(other.centroids_, whole.centroids_)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_contiguous_cells_answer_as_the_general_path(metric: str) -> None:
    """One table stored cell by cell: lone queries (serial kernel), a batch (parallel
    kernel) and the general path (probes, gather, re-rank) give the same ids, distances and
    candidate counts, removed rows never among them."""
    fam = KMeansLSH(DIM, n_cells=40, seed=0, spherical=metric == "cosine")
    s, _ = by_cell(VectorLSH(fam, metric=metric).fit(_mixture(2, 4000)))
    assert len(s._cells[4]) == 41  # the cells' row offsets: the contiguous scan is taken
    alive = np.ones(len(s), np.uint8)
    alive[::7] = 0
    s.alive_ = alive
    Q = _mixture(3, 40)
    general = s._search(Q, 10, 5, 0)
    batch = s.search(Q, 10, n_probes=5)
    answers = [(batch, slice(None))] + [
        (s.search(Q[i], 10, n_probes=5), slice(i, i + 1)) for i in range(len(Q))]
    for got, rows in answers:
        np.testing.assert_array_equal(got.ids, general.ids[rows])
        np.testing.assert_array_equal(got.distances, general.distances[rows])
        np.testing.assert_array_equal(got.n_candidates, general.n_candidates[rows])
    assert not np.isin(batch.ids, np.flatnonzero(alive == 0)).any()
    assert (batch.n_candidates > 0).all()


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_a_default_kmeans_index_reaches_its_target_on_fresh_queries(metric: str) -> None:
    """No probes given: the segment's tuned probes reach recall@10 0.95 on queries it never
    saw, and ``recall=`` asks for more or fewer at query time."""
    X = _mixture(4, 20_000)
    Q = _mixture(5, 300)
    truth = BruteForce(metric).fit(prepare(X, metric)).search(prepare(Q, metric), 10).ids
    with Index.create(None, family="kmeans", metric=metric) as index:
        ids = index.add(X)
        row_of = np.full(int(ids.max()) + 1, -1)
        row_of[ids] = np.arange(len(X))
        point = index._segments[0].info.config["operating_point"]
        assert point["target_recall"] == 0.95 and point["stop"] >= 0.0  # adaptive: cell_stop
        assert 1 <= point["n_probes"] <= point["max_probes"]
        default = index.query(Q, 10)
        assert _recall(row_of[default.ids], truth) >= 0.95
        low, high = index.query(Q, 10, recall=0.8), index.query(Q, 10, recall=0.99)
        assert low.n_candidates.sum() < default.n_candidates.sum() < high.n_candidates.sum()
        assert _recall(row_of[high.ids], truth) >= _recall(row_of[default.ids], truth)


@pytest.mark.parametrize("family", ["kmeans", "hyperplane"])
def test_the_build_reports_its_tuning_time_and_tunes_the_same_for_a_seed(
        family: str, caplog: pytest.LogCaptureFixture) -> None:
    """``build_segment`` returns (and logs) the seconds of the build and of its tuning, the
    tuning a part of the build; the tuned point is a function of the rows and the seed."""
    from audiolsh.index.build import IndexConfig, build_segment

    X = prepare(_mixture(6, 4000), "cosine")
    ids = np.arange(len(X))
    config = IndexConfig(metric="cosine", family=family)
    with caplog.at_level("DEBUG", logger="audiolsh.index.build"):
        first = build_segment(config, X, ids, prepared=True)
    again = build_segment(config, X, ids, prepared=True)
    other = build_segment(IndexConfig(metric="cosine", family=family, seed=1), X, ids, prepared=True)
    for build in (first, again, other):
        assert 0 < build.timings["tune_s"] < build.timings["build_s"]
    (logged,) = [r.timings for r in caplog.records if hasattr(r, "timings")]  # type: ignore[attr-defined]
    assert logged == first.timings
    point = first.info.config["operating_point"]
    assert point == again.info.config["operating_point"]
    assert "tune_s" not in point  # a segment stays a pure function of its rows
    np.testing.assert_array_equal(first.arrays["ids"], again.arrays["ids"])
    assert other.info.config["family"] != first.info.config["family"]


def test_the_held_out_queries_follow_the_build_work() -> None:
    """tune_cells' exact pass (queries x rows x dim) stays within TUNE_SHARE of the k-means
    work of the build (Lloyd passes over the fit sample, then every row, cells x dim each)
    once above the floor, and never passes TUNE_FLOPS."""
    from audiolsh.index import families

    lo, hi = families.TUNE_QUERIES
    for n in (2_000, 26_000, 300_000, 1_000_000, 4_000_000):
        fam = KMeansLSH(128, n_cells=families.auto_cells(n))
        nq = families.tune_queries(fam, n)
        fit_rows = min(n, kmeans.FIT_PER_CELL * fam.n_cells)
        build = (kmeans.N_ITER * fit_rows + n) * fam.n_cells * 128
        assert lo <= nq <= hi
        assert nq == lo or nq * n * 128 <= min(families.TUNE_SHARE * build, families.TUNE_FLOPS)
    assert families.tune_queries(KMeansLSH(128, n_cells=families.auto_cells(26_000)), 26_000) == lo


def test_the_cell_rule_at_the_measured_sizes() -> None:
    """About 2 sqrt(n) cells (docs/results.md, "Issue #18: confirmed ratios and the cell rule":
    3 sqrt(n) was faster at 300k anisotropic rows, slower at 1M isotropic); at most n / 8 and
    MAX_AUTO_CELLS; one cell, an exact scan, below the rows a segment is tuned from."""
    from audiolsh.index import autotune, families

    sizes = {26_000: 322, 300_000: 1_095, 1_000_000: 2_000, 10_000_000: 6_325}
    assert {n: families.auto_cells(n) for n in sizes} == sizes
    assert families.auto_cells(autotune.MIN_ROWS - 1) == 1
    assert families.auto_cells(autotune.MIN_ROWS) == round(2 * autotune.MIN_ROWS**0.5)
    assert families.auto_cells(10**12) == families.MAX_AUTO_CELLS


def test_scored_probes_give_the_probes_and_their_gaps() -> None:
    """The gaps the tuning's walk replays: 0 at the home cells, then ascending as the probes,
    each its table's home score less the cell's."""
    X = prepare(_mixture(8, 3000), "cosine")
    fam = KMeansLSH(DIM, n_tables=2, n_cells=40, seed=0, spherical=True)
    fam.fit(X)
    keys, tables, gaps = fam.scored_probes(X[:50], 12)
    want_keys, want_tables = fam.probes(X[:50], 12)
    np.testing.assert_array_equal(keys, want_keys)
    np.testing.assert_array_equal(tables, want_tables)
    assert (gaps[:, :2] == 0).all() and (np.diff(gaps[:, 2:], axis=1) >= 0).all()
    S = fam.scores(X[:50])
    q, p = 7, 5
    t, home = tables[q, p], keys[q, tables[q, p]]
    assert gaps[q, p] == pytest.approx(float(S[q, t, home]) - float(S[q, t, keys[q, p]]))
