"""The operating point of a k-means segment: probe cap and adaptive stop, modelled at build.

``families.tune_cells`` gives, for held-out rows of the segment, the probe that first holds
each of their ``autotune.NEAREST`` true neighbours (own row left out), those neighbours'
distances, every probe's gap (``KMeansLSH.scored_probes``) and the rows each probed cell
holds.  With every candidate measured exactly, a true neighbour is in the answer exactly
when its cell is probed, so these give the recall and the candidates of every fixed probe
count at once.  The adaptive walk (``cells._search_cells``: stop before a cell whose gap
exceeds stop x the k-th distance found) is replayed on the same rows (``autotune.walk``):
the k-th distance found after p probes is the k-th among the neighbours found so far, or
while fewer than k are, the NEAREST-th, which is never above the kernel's, so the replay
stops no later than the kernel and its recall is a lower bound.  No search is run.

Every (cap, stop) is scored at once; the cheapest by candidates whose recall less two
standard errors (over queries) and a margin reaches the target is the point, a stop of 0
(no stop) among them, and the curve keeps the cheapest for every recall of
``autotune.RECALL_GRID``, so ``--recall`` picks another without a rebuild.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audiolsh.index import autotune
from audiolsh.index.autotune import CAP, COST, LCB, PROBES, STOP

#: stops tried between the 1st and 99th percentile of the gap / k-th distance ratios
STOP_GRID = 12
#: caps scored: every probe count up to ALL_CAPS, then CAP_STEPS geometric steps (to the most)
ALL_CAPS, CAP_STEPS = 16, 24


def operating_point(found: np.ndarray, dist: np.ndarray, gaps: np.ndarray, sizes: np.ndarray,
                    n_tables: int, target: float) -> dict[str, Any]:
    """The point for ``target`` from the held-out model (module docstring).  ``found`` (m, M):
    the first probe holding each neighbour (P: none), ``dist`` (m, M) their distances in the
    kernel's units, ascending; ``gaps``, ``sizes`` (m, P): each probe's gap and rows."""
    k = autotune.K
    m, P = gaps.shape
    # share[q, p]: the share of q's k nearest within its first p probes (p = 0..P)
    hits = np.bincount((np.arange(m)[:, None] * (P + 1) + found[:, :k]).ravel(), minlength=m * (P + 1))
    share = np.concatenate([np.zeros((m, 1)), np.cumsum(hits.reshape(m, P + 1)[:, :P], axis=1) / k], axis=1)
    rows = np.concatenate([np.zeros((m, 1)), np.cumsum(sizes, axis=1)], axis=1)
    stops = np.concatenate([autotune.stop_grid(gaps, dist[:, k - 1], min(n_tables, P), STOP_GRID, 0.01),
                            [np.inf]])
    used = np.maximum(autotune.walk(found, dist, gaps, stops, k, n_tables), 1)  # (m, stops)
    caps = np.unique(np.concatenate([np.arange(1, min(P, ALL_CAPS) + 1),
                                     np.geomspace(min(P, ALL_CAPS), P, CAP_STEPS).round().astype(np.int64)]))
    u = np.minimum(used[None], caps[:, None, None])  # (caps, m, stops)
    q = np.arange(m)[None, :, None]
    per_q = share[q, u]
    lcb = per_q.mean(axis=1) - autotune.Z * per_q.std(axis=1) / math.sqrt(m) - autotune.MARGIN
    shape = lcb.shape
    points = np.stack([lcb, rows[q, u].mean(axis=1), np.broadcast_to(caps[:, None], shape),
                       np.broadcast_to(stops[None], shape), u.mean(axis=1), per_q.mean(axis=1)],
                      axis=-1).reshape(-1, 6)
    chosen = autotune._best(points, target)
    if chosen is None:
        chosen = autotune._fallback(points)
    curve = [[r, int(p[CAP]), autotune._stop(p[STOP]), round(float(p[PROBES]), 2)]
             for r in autotune.RECALL_GRID if (p := autotune._best(points, r)) is not None]
    fixed = share[:, 1:].mean(axis=0) - autotune.Z * share[:, 1:].std(axis=0) / math.sqrt(m) - autotune.MARGIN
    steps = np.flatnonzero(np.diff(fixed, prepend=-1.0) > 0)  # where the bound rises
    return {
        "version": autotune.VERSION,
        "k": k,
        "target_recall": target,
        "n_probes": int(chosen[CAP]),
        "stop": autotune._stop(chosen[STOP]),
        "recall_estimate": round(float(chosen[LCB]), 4),
        "probes_estimate": round(float(chosen[PROBES]), 2),
        "candidates_estimate": round(float(chosen[COST]), 1),
        "max_probes": P,
        "curve": curve,
        "fixed": [[int(i) + 1, round(float(fixed[i]), 4)] for i in steps],
        "n_queries": m,
        "shapes_tried": 1,
    }
