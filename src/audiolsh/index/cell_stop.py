"""Adaptive probing for a k-means segment: the stop of its operating point, learned at build.

``families.tune_cells`` picks the fixed probes for the target from held-out rows.  Here the
same held-out rows are searched with the adaptive walk (``cells._search_cells``: stop
before a cell whose centroid gap exceeds stop x the k-th distance found), twice the tuned
probes the cap, for a few stops; each (cap, stop) gets its recall less
two standard errors and a margin (as ``autotune``), and its cost, the candidates measured.
The cheapest that reaches the target, when cheaper than the fixed probes, becomes the
point (``autotune.pick`` reads it at query time), and the curve holds the cheapest for
every recall of ``autotune.RECALL_GRID``, so ``--recall`` picks another without a rebuild.

A held-out row is in the index: it is searched for k + 1 and its own row is the extra one
(the walk's k-th distance is then the k-th of the others).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audiolsh.index import autotune
from audiolsh.search import VectorLSH

STOPS = (0.2, 0.35, 0.5, 0.7, 1.0, 1.4)  # 0.35-1.0 paid on real and aniso; 0.2 for lower targets
# held-out rows searched: at most this many of tune_cells' (every other of its 400), which
# halves the cost of their exact neighbours, computed again here
MAX_QUERIES = 200


def with_stop(searcher: VectorLSH, point: dict[str, Any] | None, seed: int) -> dict[str, Any] | None:
    """``point`` (from ``tune_cells``, same seed) with the cheapest adaptive (cap, stop) that
    reaches its target, and a curve of the cheapest point per recall; unchanged when no
    adaptive point is cheaper than the fixed probes."""
    if point is None:
        return None
    X, k = searcher.vectors_, int(point["k"])
    n, nq = len(X), int(point["n_queries"])
    rng = np.random.default_rng([seed, 0x7C31])  # tune_cells' held-out rows, evenly thinned
    rows = np.sort(rng.choice(n, nq, replace=False))[:: max(1, -(-nq // MAX_QUERIES))]
    nq = len(rows)
    truth, _ = autotune.nearest_others(X, rows, k, searcher.metric)
    Q = np.ascontiguousarray(X[rows])

    def measure(cap: int, stop: float) -> tuple[float, float, float, int, float]:
        got = searcher.search(Q, k + 1, n_probes=cap, stop=stop)
        found = (got.ids[:, :, None] == truth[:, None, :]).any(axis=1).mean(axis=1)
        lcb = found.mean() - autotune.Z * found.std() / math.sqrt(nq) - autotune.MARGIN
        used = float(np.mean(got.n_probes)) if got.n_probes is not None else float(cap)
        return float(lcb), float(got.n_candidates.mean()), used, cap, stop

    chosen, most = int(point["n_probes"]), int(point["max_probes"])
    fixed = measure(chosen, 0.0)
    cap = min(2 * chosen, most)  # room for hard queries; easy ones stop long before
    options = [fixed] + [measure(cap, stop) for stop in STOPS]
    target = float(point["target_recall"])

    def cheapest(r: float) -> tuple[float, float, float, int, float] | None:
        ok = [o for o in options if o[0] >= r]
        return min(ok, key=lambda o: o[1]) if ok else None

    best = cheapest(target)
    if best is None or best[4] == 0.0 or best[1] >= fixed[1]:
        return point
    lcb, _, used, cap, stop = best
    old = {entry[0]: entry for entry in point["curve"]}
    curve = []
    for r in autotune.RECALL_GRID:
        o = cheapest(r)
        if o is None or (r in old and old[r][3] <= o[2]):  # the fixed model's, when no dearer
            if r in old:
                curve.append(old[r])
            continue
        curve.append([r, o[3], o[4], round(o[2], 2)])
    return {**point, "n_probes": cap, "stop": stop, "recall_estimate": round(lcb, 4),
            "probes_estimate": round(used, 2), "curve": curve}
