"""Quality of approximate neighbours against exact ones, and how far a measured mean could move."""

from __future__ import annotations

import math

import numpy as np


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per query, the share of the true k nearest (``truth``, -1 padded) that ``found`` holds."""
    k = truth.shape[1]
    valid = truth >= 0
    # Compare every found id with every true id of the same query: (nq, k, k) booleans.
    hit = (found[:, :, None] == truth[:, None, :]) & valid[:, None, :] & (found[:, :, None] >= 0)
    n_true = np.maximum(valid.sum(axis=1), 1)
    return hit.any(axis=1).sum(axis=1) / np.minimum(n_true, k)


def bootstrap_ci(per_query: np.ndarray, *, over: np.ndarray | None = None, level: float = 0.95,
                 n_resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over queries, or with ``over`` (the same
    queries under another method) of the ratio of the two means, both from the same resamples.
    With one query per track this resamples tracks: how far the figure could move on another
    draw of as many tracks."""
    x = np.asarray(per_query, np.float64)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, x.size, (n_resamples, x.size))
    stat = x[pick].mean(axis=1)
    if over is not None:
        den = np.asarray(over, np.float64)[pick].mean(axis=1)
        stat = np.divide(stat, den, out=np.full_like(stat, np.inf), where=den > 0)
    lo, hi = np.percentile(stat, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
