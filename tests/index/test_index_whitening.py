"""Whitened hyperplanes through the Index: automatic choice, persistence, old indexes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.errors import ParameterError
from audiolsh.index import WHITEN_MIN_ROWS_PER_DIM, Index

DIM = 16


def anisotropic(seed: int, n: int) -> np.ndarray:
    """Clusters whose centres spread along a few directions (a steep PCA spectrum)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(77).standard_normal((DIM, DIM)))[0]
    centres = (np.random.default_rng(78).standard_normal((40, DIM)) * np.arange(1, DIM + 1) ** -1.5) @ basis.T
    X = centres[rng.integers(0, 40, n)] + 0.05 * rng.standard_normal((n, DIM))
    return X.astype(np.float32)


def test_auto_whitens_crowded_segments_with_enough_rows() -> None:
    index = Index.create(None, metric="cosine", n_tables=4, n_bits=8)
    index.add(anisotropic(0, WHITEN_MIN_ROWS_PER_DIM * DIM))  # steep spectrum: crowded tables
    index.add(anisotropic(1, 50))  # too few rows for a covariance estimate
    index.add(np.random.default_rng(2).standard_normal((400, DIM)).astype(np.float32))  # balanced
    families = {s.n_items: s.config["family"] for s in index.segments}
    assert families[WHITEN_MIN_ROWS_PER_DIM * DIM]["whiten"] == 0.5
    assert families[WHITEN_MIN_ROWS_PER_DIM * DIM]["learned"] == ["planes"]
    assert families[50]["whiten"] == 0.0 and families[50]["learned"] == []
    assert families[400]["whiten"] == 0.0
    explicit = Index.create(None, metric="cosine", whiten=0.8)
    explicit.add(anisotropic(2, 100))
    assert explicit.segments[0].config["family"]["whiten"] == 0.8


@pytest.mark.parametrize("bad", [-0.5, 1.01, "strong", True])
def test_bad_whiten_is_refused(bad: object) -> None:
    with pytest.raises(ParameterError, match="whiten"):
        Index.create(None, metric="cosine", whiten=bad)


def test_whitened_index_reopens_with_the_same_answers(tmp_path: Path) -> None:
    X, Q = anisotropic(3, 3000), anisotropic(4, 40)
    path = tmp_path / "idx"
    with Index.create(path, metric="cosine", n_tables=6, n_rerank=50) as index:
        index.add(X)
        before = index.query(Q, 5)
        before_probes = index.query(Q, 5, n_probes=40, n_rerank=0)
    seg = next((path / "segments").iterdir())
    assert (seg / "family_planes.npy").exists()
    for readonly in (False, True):
        with Index.open(path, readonly=readonly) as again:
            assert again.segments[0].config["family"]["whiten"] == 0.5
            for got, want in ((again.query(Q, 5), before),
                              (again.query(Q, 5, n_probes=40, n_rerank=0), before_probes)):
                np.testing.assert_array_equal(got.ids, want.ids)
                np.testing.assert_array_equal(got.distances, want.distances)
                np.testing.assert_array_equal(got.n_candidates, want.n_candidates)


def test_index_written_before_whitening_opens_and_answers_the_same(tmp_path: Path) -> None:
    """An old index: no ``whiten`` in the index config nor in the segment's family config."""
    X, Q = anisotropic(5, 2000), anisotropic(6, 30)
    path = tmp_path / "idx"
    with Index.create(path, metric="cosine", n_tables=5, whiten=0.0) as index:
        index.add(X)
        before = index.query(Q, 6)
    db = sqlite3.connect(path / "catalogue.sqlite")
    with db:
        config = json.loads(db.execute("SELECT value FROM config WHERE name = 'index'").fetchone()[0])
        del config["whiten"]
        db.execute("UPDATE config SET value = ? WHERE name = 'index'", (json.dumps(config),))
        for seg_id, text in db.execute("SELECT id, config FROM segments").fetchall():
            seg = json.loads(text)
            for key in ("whiten", "learned", "fit_sample"):
                del seg["family"][key]
            db.execute("UPDATE segments SET config = ? WHERE id = ?", (json.dumps(seg), seg_id))
    db.close()
    with Index.open(path) as again:
        assert "whiten" not in again.segments[0].config["family"]
        got = again.query(Q, 6)
        np.testing.assert_array_equal(got.ids, before.ids)
        np.testing.assert_array_equal(got.distances, before.distances)
        assert again.config.whiten == "auto"  # new segments get the new default


@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**32 - 1), whiten=st.sampled_from([0.25, 0.5, 1.0]))
def test_query_finds_each_added_row_first(seed: int, whiten: float) -> None:
    X = anisotropic(seed % 1000, 400)
    index = Index.create(None, metric="cosine", n_tables=4, n_bits=6, whiten=whiten)
    ids = index.add(X)
    res = index.query(X[::7], 3)
    np.testing.assert_array_equal(res.ids[:, 0], ids[::7])
    np.testing.assert_allclose(res.distances[:, 0], 0.0, atol=1e-5)
