"""Query expansion in the excerpt protocol: a candidate near the query's best match rises."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.evaluation.excerpt_methods import Methods
from audiolsh.hashing import SetBatch

DIMS = {"rhythm": 282, "timbre": 320}
N_OTHER = 40  # distractor tracks, two excerpts each


def _collection(seed: int = 0):
    """Track 0 holds a1 (near the query) and a2 (near a1, far from the query); track 1's b is
    nearer the query than a2 but far from a1; the rest is noise. Peak sets are disjoint."""
    rng = np.random.default_rng(seed)
    basis = {m: np.linalg.qr(rng.normal(size=(dim, 3)))[0].T * 6 for m, dim in DIMS.items()}

    def vec(m: str, coefs: list[float]) -> np.ndarray:
        return np.asarray(coefs) @ basis[m] + rng.normal(size=DIMS[m]) * 0.5

    named = {"a1": [1, 1, 0], "a2": [0.3, 1, 0], "b": [0.5, 0, 0.87]}
    vectors = {m: np.stack([vec(m, c) for c in named.values()]
                           + [rng.normal(size=DIMS[m]) for _ in range(2 * N_OTHER)]) for m in DIMS}
    labels = np.array([0, 0, 1, *np.repeat(np.arange(2, 2 + N_OTHER), 2)])
    n = len(labels)
    sets = SetBatch(np.arange(0, 20 * n + 1, 20, dtype=np.int64), np.arange(1, 20 * n + 1, dtype=np.uint64))
    query_vectors = {m: vec(m, [1, 0, 0])[None, :] for m in DIMS}
    query_sets = SetBatch(np.array([0, 20], np.int64), np.arange(10**6, 10**6 + 20, dtype=np.uint64))
    return vectors, sets, labels, query_vectors, query_sets


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_expansion_retrieves_the_best_matchs_sibling(seed: int | None) -> None:
    vectors, sets, labels, qv, qs = _collection()
    chroma = np.zeros((len(labels), 12), np.float32)
    first = np.arange(len(labels))
    methods = Methods(vectors, sets, chroma, first, first + 1, seed=seed, labels=labels,
                      methods=("combined", "combined_qe"))
    lsh = seed is not None
    plain = methods.search("combined", qv, qs, [], 2, lsh=lsh)
    expanded = methods.search("combined_qe", qv, qs, [], 2, lsh=lsh)
    # Without expansion the query's nearest are a1 and the distractor b; with it, a1 and a2.
    assert plain.tolist() == [[0, 2]]
    assert expanded.tolist() == [[0, 1]]
