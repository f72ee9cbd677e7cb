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
