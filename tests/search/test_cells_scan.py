"""The k-means query path at IVF speed: answers named by the rows' ids inside the compiled
call (``VectorLSH.name_rows``) and adaptive probing of the cells (``cells.search_cells``'s
``stop``)."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.hashing import KMeansLSH
from audiolsh.index.families import by_cell
from audiolsh.search import VectorLSH

DIM = 24


def _mixture(seed: int, n: int) -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((30, DIM)) * 1.5
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


def _by_cell(metric: str, n: int = 3000) -> tuple[VectorLSH, np.ndarray]:
    fam = KMeansLSH(DIM, n_cells=32, seed=0, spherical=metric == "cosine")
    return by_cell(VectorLSH(fam, metric=metric).fit(_mixture(1, n)))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_named_rows_answer_with_the_ids_they_were_given(metric: str) -> None:
    """Lone queries, a batch, the general path, and short answers widened then answered
    exactly: every id is the name of the row the unnamed searcher answers."""
    s, order = _by_cell(metric)
    Q = _mixture(2, 12)
    plain = s.search(Q, 10, n_probes=3)
    names = order[::-1].copy() + 1000  # not the row numbers, nor the order itself
    s.name_rows(names)
    for got in (s.search(Q, 10, n_probes=3), s._search(Q, 10, 3, 0)):
        np.testing.assert_array_equal(got.ids, names[plain.ids])
        np.testing.assert_array_equal(got.distances, plain.distances)
    lone = np.stack([s.search(q, 10, n_probes=3).ids[0] for q in Q])
    np.testing.assert_array_equal(lone, names[plain.ids])
    # 5 live rows: every query is short of 10, widened, then answered exactly (-1 stays -1)
    alive = np.zeros(len(s), np.uint8)
    alive[[3, 500, 1200, 2000, 2999]] = 1
    s.alive_ = alive
    short = s.search(Q, 10, n_probes=1)
    assert set(short.ids[:, :5].ravel()) == set(names[[3, 500, 1200, 2000, 2999]])
    assert (short.ids[:, 5:] == -1).all()
    s.name_rows(None)
    assert set(s.search(Q, 10, n_probes=1).ids[:, :5].ravel()) == {3, 500, 1200, 2000, 2999}


def test_row_names_must_be_one_non_negative_integer_per_row() -> None:
    s, order = _by_cell("cosine", 500)
    for bad in (order[:-1], order.astype(np.float32), np.full(500, -2)):
        with pytest.raises(ParameterError, match="row ids"):
            s.name_rows(bad)


def _searchers(metric: str) -> list[VectorLSH]:
    """Cells stored cell by cell (the contiguous scan), one table's buckets, two tables'."""
    X = _mixture(1, 3000)
    spherical = metric == "cosine"
    contiguous, _ = _by_cell(metric)
    one = VectorLSH(KMeansLSH(DIM, n_cells=32, seed=0, spherical=spherical), metric=metric).fit(X)
    two = VectorLSH(KMeansLSH(DIM, n_tables=2, n_cells=32, seed=0, spherical=spherical), metric=metric).fit(X)
    return [contiguous, one, two]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_adaptive_probing_answers_as_the_fixed_search_of_the_probes_it_used(metric: str) -> None:
    """Each query's adaptive answer is exactly the fixed search's with as many probes as it
    used, never more than the cap nor fewer than the home cells; easy queries stop early,
    hard ones go on; lone queries (serial kernel) and a batch (parallel) agree."""
    Q = _mixture(2, 40)
    for s in _searchers(metric):
        L = s.family.n_tables
        got = s.search(Q, 10, n_probes=12, stop=1.0)
        assert got.n_probes is not None
        assert (got.n_probes >= L).all() and (got.n_probes <= 12).all()
        assert (got.n_probes < 12).sum() >= 5 and (got.n_probes > L).sum() >= 5
        for i, used in enumerate(got.n_probes):
            fixed = s.search(Q[i], 10, n_probes=int(used))
            np.testing.assert_array_equal(got.ids[i], fixed.ids[0])
            np.testing.assert_array_equal(got.distances[i], fixed.distances[0])
            np.testing.assert_array_equal(got.n_candidates[i], fixed.n_candidates[0])
            lone = s.search(Q[i], 10, n_probes=12, stop=1.0)
            np.testing.assert_array_equal(lone.ids[0], got.ids[i])
            assert lone.n_probes is not None and lone.n_probes[0] == used
        fixed_all = s.search(Q, 10, n_probes=12)
        assert fixed_all.n_probes is not None and (fixed_all.n_probes == 12).all()  # no stop
        assert got.n_candidates.sum() < fixed_all.n_candidates.sum()


def test_where_the_neighbours_share_the_home_cell_adaptive_probing_loses_nothing() -> None:
    """Tight clusters far apart: a cell holding another cluster lies far beyond the k-th
    distance, so the walk stops before it, with the exhaustive answer of all the cap's
    cells (a cluster k-means split in two is probed in both halves)."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((16, DIM)) * 10
    X = (centres[np.repeat(np.arange(16), 100)] + rng.standard_normal((1600, DIM)) * 0.1).astype(np.float32)
    Q = (centres[rng.integers(0, 16, 30)] + rng.standard_normal((30, DIM)) * 0.1).astype(np.float32)
    s, _ = by_cell(VectorLSH(KMeansLSH(DIM, n_cells=16, seed=0), metric="cosine").fit(X))
    exhaustive = s.search(Q, 10, n_probes=8)
    adaptive = s.search(Q, 10, n_probes=8, stop=1.0)
    np.testing.assert_array_equal(adaptive.ids, exhaustive.ids)
    np.testing.assert_array_equal(adaptive.distances, exhaustive.distances)
    assert adaptive.n_probes is not None and adaptive.n_probes.mean() < 2
    assert adaptive.n_candidates.sum() * 3 < exhaustive.n_candidates.sum()


def test_cells_with_and_without_removed_rows_scan_alike() -> None:
    """Rows removed from some cells only: the cells with none are scanned without a test
    per row, the others with one; answers and counts are the general path's."""
    s, _ = _by_cell("cosine")
    offsets = s._cells[4]
    alive = np.ones(len(s), np.uint8)
    for c in range(0, 32, 3):  # a few rows of every third cell
        alive[offsets[c] : min(offsets[c] + 5, offsets[c + 1])] = 0
    s.alive_ = alive
    Q = _mixture(4, 30)
    got, general = s.search(Q, 10, n_probes=6), s._search(Q, 10, 6, 0)
    np.testing.assert_array_equal(got.ids, general.ids)
    np.testing.assert_array_equal(got.n_candidates, general.n_candidates)
    assert not np.isin(got.ids, np.flatnonzero(alive == 0)).any()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_compiled_probe_order_is_the_familys_over_two_tables(metric: str) -> None:
    """Home cells, then the nearest other cells of both tables merged by gap: the one-call
    path measures the cells ``KMeansLSH.probes`` gives (the general path's answers)."""
    X = _mixture(1, 3000)
    fam = KMeansLSH(DIM, n_tables=2, n_cells=32, seed=0, spherical=metric == "cosine")
    s = VectorLSH(fam, metric=metric).fit(X)
    Q = _mixture(5, 30)
    for P in (1, 2, 3, 9):
        got, general = s.search(Q, 10, n_probes=P), s._search(Q, 10, P, 0)
        np.testing.assert_array_equal(got.ids, general.ids)
        np.testing.assert_array_equal(got.n_candidates, general.n_candidates)
