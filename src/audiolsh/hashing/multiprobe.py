"""Query-directed multi-probe (Lv et al., VLDB 2007), vectorised over queries and tables.

A family reports, for each query and table, the M cheapest single perturbations of the
home bucket (their score and the amount they add to the 64-bit key).  A perturbation set
is a subset of those M; its score is the sum of its members' scores.  Sets come from a
fixed template (all subsets of size <= 3 of the M cheapest), so the probe sequence of a
whole batch is one matrix product and one partial sort instead of a heap per query.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import numpy as np

MAX_PERTURBED = 12
MAX_SET_SIZE = 3


@lru_cache(maxsize=32)
def perturbation_sets(m: int, max_size: int = MAX_SET_SIZE) -> np.ndarray:
    """All subsets of {0..m-1} of size 0..max_size as a (n_sets, m) 0/1 matrix, empty set first."""
    rows = [np.zeros(m, dtype=np.uint8)]
    for size in range(1, min(max_size, m) + 1):
        for combo in combinations(range(m), size):
            row = np.zeros(m, dtype=np.uint8)
            row[list(combo)] = 1
            rows.append(row)
    return np.stack(rows)


def probe_sequence(
    home: np.ndarray, scores: np.ndarray, deltas: np.ndarray, n_probes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n_probes`` buckets per query across all tables.

    home: (n, L) uint64 home keys.  scores: (n, L, M) float, ascending along M.
    deltas: (n, L, M) uint64, what each perturbation adds to the key (mod 2^64).
    Returns keys (n, P) uint64 and tables (n, P) int32, best first.
    """
    n, n_tables = home.shape
    m = scores.shape[2]
    n_probes = max(1, min(n_probes, n_tables * (len(perturbation_sets(m)) if m else 1)))
    if n_probes <= n_tables or m == 0:
        # Home buckets only; the table order does not matter.
        p = min(n_probes, n_tables)
        tables = np.broadcast_to(np.arange(p, dtype=np.int32), (n, p))
        return np.ascontiguousarray(home[:, :p]), np.ascontiguousarray(tables)
    sets = perturbation_sets(m)  # (S, M)
    set_scores = scores.astype(np.float32) @ sets.T.astype(np.float32)  # (n, L, S)
    flat = set_scores.reshape(n, -1)
    part = np.argpartition(flat, n_probes - 1, axis=1)[:, :n_probes]
    order = np.take_along_axis(flat, part, axis=1).argsort(axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)  # (n, P) flat (table, set) indices
    table = (best // len(sets)).astype(np.int32)
    set_idx = best % len(sets)
    rows = np.arange(n)[:, None]
    # key + sum of chosen deltas: the set's members are its 1-entries in the template.
    chosen = sets[set_idx].astype(bool)  # (n, P, M)
    d = np.where(chosen, deltas[rows, table], np.uint64(0))  # (n, P, M)
    keys = home[rows, table] + d.sum(axis=2, dtype=np.uint64)
    return keys.astype(np.uint64), table
