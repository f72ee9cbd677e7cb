"""Adaptive probing for a k-means segment: the stop of its operating point, learned at build.

``families.tune_cells`` picks the fixed probes for the target from held-out rows and bounds
their recall from below.  Here the same held-out rows are searched at those probes, then
with the adaptive walk (``cells._search_cells``: stop before a cell whose centroid gap
exceeds stop x the k-th distance found) under them as the cap, for a few stops.  The walk
probes a prefix of the fixed probes, so it can only lose what the fixed search found: a
stop's recall is bounded from below by the fixed bound less the share of the fixed answer
it misses (each missed row counted as a true neighbour, so the bound is conservative), less
two standard errors.  No exact neighbours are needed.  The cheapest stop, by candidates
measured, whose bound reaches the target becomes the point when it costs fewer candidates
than the fixed probes (``autotune.pick`` reads it at query time), and the curve takes the
cheapest point for every recall of ``autotune.RECALL_GRID`` it reaches, so ``--recall``
picks another without a rebuild.

A held-out row is in the index: it is searched for k + 1 and its own row is the extra one
(the walk's k-th distance is then the k-th of the others).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audiolsh.index import autotune
from audiolsh.search import VectorLSH

STOPS = (0.35, 0.7, 1.0, 1.4, 2.0)


def with_stop(searcher: VectorLSH, point: dict[str, Any] | None, seed: int) -> dict[str, Any] | None:
    """``point`` (from ``tune_cells``, same seed) with the cheapest adaptive (cap, stop) that
    reaches its target, and a curve of the cheapest point per recall; unchanged when no
    adaptive point is cheaper than the fixed probes."""
    if point is None:
        return None
    X, k = searcher.vectors_, int(point["k"])
    n, nq = len(X), int(point["n_queries"])
    rng = np.random.default_rng([seed, 0x7C31])  # tune_cells' held-out rows
    Q = np.ascontiguousarray(X[np.sort(rng.choice(n, nq, replace=False))])
    cap = int(point["n_probes"])
    fixed = searcher.search(Q, k + 1, n_probes=cap)
    bound = float(point["recall_estimate"])

    def measure(stop: float) -> tuple[float, float, float, float]:
        got = searcher.search(Q, k + 1, n_probes=cap, stop=stop)
        kept = (fixed.ids[:, :, None] == got.ids[:, None, :]).any(axis=2).sum(axis=1)
        lost = (k + 1 - kept) / k  # the fixed answer's rows the walk missed, as true ones
        lcb = bound - lost.mean() - autotune.Z * lost.std() / math.sqrt(nq)
        used = float(np.mean(got.n_probes)) if got.n_probes is not None else float(cap)
        return float(lcb), float(got.n_candidates.mean()), used, stop

    options = [measure(stop) for stop in STOPS]
    target = float(point["target_recall"])

    def cheapest(r: float) -> tuple[float, float, float, float] | None:
        ok = [o for o in options if o[0] >= r]
        return min(ok, key=lambda o: o[1]) if ok else None

    best = cheapest(target)
    if best is None or best[1] >= float(fixed.n_candidates.mean()):
        return point
    lcb, _, used, stop = best
    old = {entry[0]: entry for entry in point["curve"]}
    curve = []
    for r in autotune.RECALL_GRID:
        o = cheapest(r)
        if o is None or (r in old and old[r][3] <= o[2]):  # the fixed model's, when no dearer
            if r in old:
                curve.append(old[r])
            continue
        curve.append([r, cap, o[3], round(o[2], 2)])
    return {**point, "stop": stop, "recall_estimate": round(lcb, 4),
            "probes_estimate": round(used, 2), "curve": curve}
