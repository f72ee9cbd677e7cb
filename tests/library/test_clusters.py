"""clusters: k-means on SVD-reduced per-track features separates two kinds of tracks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.index import Index
from audiolsh.query.clusters import cluster_index, cluster_matrix


def test_two_blobs_become_two_clusters() -> None:
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (30, 20)), rng.normal(6, 1, (20, 20))])
    labels, dist, explained = cluster_matrix(X, 2, seed=0)
    assert len(set(labels[:30].tolist())) == 1 and len(set(labels[30:].tolist())) == 1
    assert labels[0] != labels[-1] and 0 < explained <= 1 and np.all(dist >= 0)
    with pytest.raises(ParameterError, match="groups"):
        cluster_matrix(X[:3], 5)


def test_a_feature_table_index_clusters_its_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(0, 1, (40, 8)) + 3, rng.normal(0, 1, (40, 8)) - 3])
    with Index.create(tmp_path / "v", metric="euclidean") as index:
        index.add(X, keys=[f"a{i}" for i in range(40)] + [f"b{i}" for i in range(40)])
        result = cluster_index(index, n_clusters=2)
    groups = result.groups()
    names = [{result.names[i][0] for i in g} for g in groups]
    assert sorted(map(sorted, names)) == [["a"], ["b"]]


def test_prepared_rows_keep_their_weights() -> None:
    """Library rows are already standardised and weighted (timbre's blocks, combined's parts):
    scaling every column up to unit variance again would let 200 faint columns of noise outvote
    the two that carry the groups."""
    rng = np.random.default_rng(3)
    signal = np.repeat([[2.0, 2.0], [-2.0, -2.0]], 30, axis=0) + rng.normal(0, 0.3, (60, 2))
    X = np.hstack([signal, rng.normal(0, 0.05, (60, 200))])
    truth = np.repeat([0, 1], 30)

    def agreement(labels: np.ndarray) -> float:
        return max(np.mean(labels == truth), np.mean(labels != truth))

    assert agreement(cluster_matrix(X, 2, seed=0, standardise=False)[0]) == 1.0
    assert agreement(cluster_matrix(X, 2, seed=0)[0]) < 0.9


def test_library_clusters_do_not_rescale_the_stored_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import audiolsh.query.clusters as clusters
    from audiolsh.audio import synth
    from audiolsh.library import Library, analyse

    seen: dict[str, object] = {}
    real = clusters.cluster_matrix

    def spy(X: np.ndarray, n_clusters: int, **kw: object):  # type: ignore[no-untyped-def]
        seen.update(kw)
        return real(X, n_clusters, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(clusters, "cluster_matrix", spy)
    lib = Library.create(None, modes=("timbre",))
    lib.add_batch([analyse(synth.music(duration_s=12.0, sr=22050, seed=s), 22050, modes=lib.modes,
                           window_s=10.0, hop_s=5.0, path=f"t{s}.wav", content_hash=f"{s:040x}")
                   for s in range(4)])
    result = clusters.cluster_library(lib, by="timbre", n_clusters=2)
    assert seen.get("standardise") is False and len(result.names) == 4
