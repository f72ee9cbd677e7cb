"""How the suite runs on several processes (`make test`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_each_xdist_worker_compiles_into_a_numba_cache_of_its_own() -> None:
    # Two workers compiling the same gufuncs into one cache can segfault (numba#10128).
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        pytest.skip("one process (PYTEST_WORKERS=0): numba's own cache folder")
    import numba

    cache = Path(numba.config.CACHE_DIR)
    assert cache.name == worker
    assert cache.parent.parent.name == ".pytest_cache"
