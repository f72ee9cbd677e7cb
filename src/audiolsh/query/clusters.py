"""Groups of similar tracks (S4's feature table): SVD-reduced features, then k-means.

For a library, each track is the mean of its excerpt vectors of one mode as the index stores
them (standardised, timbre's two blocks balanced, then the library's learned within-track
normalisation, which the combined rows have jointly), only centred before the SVD so that
those weights hold; for a vector index (e.g. a feature table imported
with ``vectors add file.csv``) each row is itself, and its columns are standardised first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import check_int
from audiolsh.index import Index
from audiolsh.library import Library
from audiolsh.query.hits import live_windows

CLUSTER_BY = ("timbre", "rhythm", "chroma", "combined")


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray          # (n,) cluster of each member
    names: list[str]            # (n,) member names (track paths or item keys)
    ids: np.ndarray             # (n,) track ids (library) or item ids (vector index)
    distances: np.ndarray       # (n,) distance of each member to its centroid (reduced space)
    explained_variance: float   # share of the variance the SVD keeps

    def groups(self) -> list[list[int]]:
        """Member positions per cluster, nearest to the centroid first."""
        out = []
        for c in range(int(self.labels.max(initial=-1)) + 1):
            members = np.flatnonzero(self.labels == c)
            out.append(members[np.argsort(self.distances[members])].tolist())
        return out


def cluster_matrix(X: np.ndarray, n_clusters: int, *, n_components: int = 16, seed: int = 0,
                   standardise: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means on the centred (and, with ``standardise``, scaled) SVD-reduced rows:
    (labels, distances, explained variance)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD

    n_clusters = check_int("n_clusters", n_clusters, 1)
    if len(X) < n_clusters:
        raise ParameterError(f"cannot make {n_clusters} groups of {len(X)} items")
    X = np.asarray(X, np.float64)
    X = X - X.mean(axis=0)
    if standardise:
        X /= np.maximum(X.std(axis=0), 1e-9)
    n_comp = max(1, min(n_components, X.shape[1] - 1, len(X) - 1))
    if X.shape[1] > 1 and len(X) > 2:
        svd = TruncatedSVD(n_components=n_comp, random_state=seed)
        Z = svd.fit_transform(X)
        explained = float(svd.explained_variance_ratio_.sum())
    else:
        Z, explained = X, 1.0
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(Z)
    dist = np.linalg.norm(Z - km.cluster_centers_[km.labels_], axis=1)
    return km.labels_.astype(np.int64), dist, explained


def cluster_library(library: Library, *, by: str, n_clusters: int, seed: int = 0) -> Clustering:
    if by not in CLUSTER_BY:
        raise ParameterError(f"--by must be one of {list(CLUSTER_BY)}, got {by!r}")
    library.mode(by)
    X, tracks, _offsets = live_windows(library, by)
    keep = tracks >= 0
    uniq, inverse = np.unique(tracks[keep], return_inverse=True)
    X = np.asarray(X)[keep]
    sums = np.zeros((len(uniq), X.shape[1]))
    np.add.at(sums, inverse, X)
    means = sums / np.bincount(inverse, minlength=len(uniq))[:, None]
    labels, dist, explained = cluster_matrix(means, n_clusters, seed=seed, standardise=False)
    paths = {t.id: t.path for t in library.tracks()}
    return Clustering(labels, [paths.get(int(t), "?") for t in uniq], uniq, dist, explained)


def cluster_index(index: Index, *, n_clusters: int, seed: int = 0) -> Clustering:
    if index.config.metric == "jaccard":
        raise ParameterError("clusters need vectors, not sets")
    X, ids = index.live_data()
    items = index.items(ids)
    names = [it.key if it else str(i) for it, i in zip(items, ids.tolist())]
    labels, dist, explained = cluster_matrix(np.asarray(X), n_clusters, seed=seed)
    return Clustering(labels, names, ids, dist, explained)
