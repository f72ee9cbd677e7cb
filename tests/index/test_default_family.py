"""The default family: k-means for dense vectors (cosine, euclidean), the metric's own
family otherwise, hyperplanes when hyperplane knobs are given or a config predates families;
and small k-means segments answer exactly."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from audiolsh.index import Index, autotune
from audiolsh.index.build import IndexConfig, build_segment


@pytest.mark.parametrize(("params", "family"), [
    ({"metric": "cosine"}, "kmeans"),
    ({"metric": "euclidean"}, "kmeans"),
    ({"metric": "jaccard"}, "hyperplane"),  # MinHash; the field stays as before
    ({"metric": "cosine", "n_tables": 4}, "hyperplane"),
    ({"metric": "cosine", "n_bits": 10}, "hyperplane"),
    ({"metric": "euclidean", "bucket_width": 2.0}, "hyperplane"),
    ({"metric": "cosine", "whiten": 0.5}, "hyperplane"),
    ({"metric": "cosine", "family": "kmeans", "n_tables": 2}, "kmeans"),
    ({"metric": "cosine", "family": "cross-polytope"}, "cross-polytope"),
])
def test_the_default_family_follows_the_metric_and_the_knobs_given(params: dict, family: str) -> None:
    assert IndexConfig(**params).validate().family == family
    with Index.create(None, **params) as index:
        assert index.config.family == family
        stored = index.storage.config()
    assert stored is not None and stored["family"] == family  # resolved once, kept on disk
    if family == "kmeans" and "n_tables" not in params:
        assert stored["n_tables"] == 1


def test_a_config_without_a_family_field_stays_hyperplane() -> None:
    old = asdict(IndexConfig(metric="cosine"))
    del old["family"]
    assert IndexConfig.from_dict(old).family == "hyperplane"
    assert IndexConfig.from_dict({**old, "family": "kmeans"}).family == "kmeans"


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("n", [1, 2, 10, 100, autotune.MIN_ROWS - 1])
def test_small_kmeans_segments_answer_exactly(metric: str, n: int) -> None:
    """Below the rows a segment is tuned from, a default segment is one cell: every query
    scans it all (no untuned probe budget to miss neighbours with)."""
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 16)).astype(np.float32)
    Q = rng.standard_normal((20, 16)).astype(np.float32)
    k = min(10, n)
    seg = build_segment(IndexConfig(metric=metric).validate(), X, np.arange(n, dtype=np.int64))
    assert seg.info.config["family"]["n_cells"] == 1
    with Index.create(None, metric=metric) as index:
        index.add(X)
        got, exact = index.query(Q, k), index.query(Q, k, exact=True)
    np.testing.assert_array_equal(got.ids, exact.ids)
    np.testing.assert_allclose(got.distances, exact.distances, rtol=1e-5, atol=1e-6)


def test_segments_from_the_tuned_size_up_get_cells_and_an_operating_point() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((autotune.MIN_ROWS, 8)).astype(np.float32)
    seg = build_segment(IndexConfig().validate(), X, np.arange(len(X), dtype=np.int64))
    assert seg.info.config["family"]["n_cells"] > 1 and "operating_point" in seg.info.config
