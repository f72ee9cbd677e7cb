"""Frame features summarised over excerpt windows (mean and standard deviation per window)."""

from __future__ import annotations

import numpy as np


def window_starts(duration_s: float, *, window_s: float, hop_s: float) -> np.ndarray:
    """Start times of the windows covering a signal; a signal shorter than one window gets one."""
    last = max(duration_s - window_s, 0.0)
    return np.arange(0.0, last + 1e-9, hop_s)


def window_stats(frames: np.ndarray, frame_times_s: np.ndarray, starts_s: np.ndarray, *,
                 window_s: float) -> np.ndarray:
    """(n_windows, 2 d): mean and std of the frames whose time falls in each window.

    Cumulative sums make it one pass over the frames whatever the number of windows.
    """
    X = np.asarray(frames, dtype=np.float64)
    d = X.shape[1]
    c1 = np.vstack([np.zeros((1, d)), np.cumsum(X, axis=0)])
    c2 = np.vstack([np.zeros((1, d)), np.cumsum(X * X, axis=0)])
    lo = np.searchsorted(frame_times_s, starts_s, side="left")
    hi = np.searchsorted(frame_times_s, starts_s + window_s, side="left")
    n = np.maximum(hi - lo, 1)[:, None]
    mean = (c1[hi] - c1[lo]) / n
    var = np.maximum((c2[hi] - c2[lo]) / n - mean * mean, 0.0)
    return np.hstack([mean, np.sqrt(var)]).astype(np.float32)
