"""Quality of approximate neighbours against exact ones."""

from __future__ import annotations

import numpy as np


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per query, the share of the true k nearest (``truth``, -1 padded) that ``found`` holds."""
    k = truth.shape[1]
    valid = truth >= 0
    # Compare every found id with every true id of the same query: (nq, k, k) booleans.
    hit = (found[:, :, None] == truth[:, None, :]) & valid[:, None, :] & (found[:, :, None] >= 0)
    n_true = np.maximum(valid.sum(axis=1), 1)
    return hit.any(axis=1).sum(axis=1) / np.minimum(n_true, k)
