"""Loaded before tests/conftest.py, which imports numba through the package.

Under pytest-xdist each worker compiles numba kernels into a cache of its own: numba's cache is
not safe for two processes compiling the same gufuncs at once (numba#10128; librosa's peak_pick
segfaulted a worker on a fresh clone)."""

from __future__ import annotations

import os
from pathlib import Path

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = str(Path(__file__).resolve().parent / ".pytest_cache" / "numba" / _WORKER)
