"""Result types shared by every searcher and interface."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Neighbors:
    """k nearest rows per query, nearest first.

    ids : (n_queries, k) int64, -1 where fewer than k rows exist.
    distances : (n_queries, k) float32, inf where ids is -1.  Cosine: 1 - cos; Euclidean: L2;
        Jaccard: 1 - J.
    n_candidates : (n_queries,) exact distances computed per query (LSH only; brute force
        reports the number of rows).
    n_probes : (n_queries,) buckets probed per query, where the searcher counts them (vector
        LSH: adaptive probing stops early on easy queries); else None.
    """

    ids: np.ndarray
    distances: np.ndarray
    n_candidates: np.ndarray
    n_probes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> Neighbors:
        probes = None if self.n_probes is None else self.n_probes[rows]
        return Neighbors(self.ids[rows], self.distances[rows], self.n_candidates[rows], probes)


def merge(parts: list[Neighbors], k: int) -> Neighbors:
    """Best k of several result sets over the same queries (e.g. one per segment)."""
    if len(parts) == 1:
        return parts[0]
    ids = np.concatenate([p.ids for p in parts], axis=1)
    dist = np.concatenate([p.distances for p in parts], axis=1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    counted = [p.n_probes for p in parts if p.n_probes is not None]
    return Neighbors(
        np.take_along_axis(ids, order, axis=1),
        np.take_along_axis(dist, order, axis=1),
        np.sum([p.n_candidates for p in parts], axis=0),
        np.sum(counted, axis=0) if len(counted) == len(parts) else None,
    )


def replace_rows(base: Neighbors, rows: np.ndarray, new: Neighbors) -> Neighbors:
    ids, dist, cand = base.ids.copy(), base.distances.copy(), base.n_candidates.copy()
    ids[rows], dist[rows], cand[rows] = new.ids, new.distances, new.n_candidates
    probes = None
    if base.n_probes is not None and new.n_probes is not None:
        probes = base.n_probes.copy()
        probes[rows] = new.n_probes
    return Neighbors(ids, dist, cand, probes)
