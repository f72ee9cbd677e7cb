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


def test_a_worker_cache_starts_from_the_precompiled_seed(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("root_conftest", Path(__file__).parents[1] / "conftest.py")
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    seed, cache = tmp_path / "seed", tmp_path / "gw0"
    (seed / "search_ab").mkdir(parents=True)
    (cache / "search_ab").mkdir(parents=True)
    files = {"k-1.py311.nbi": b"seed index k", "k-1.py311.1.nbc": b"seed code k",
             "old-9.py311.nbi": b"seed index old", "old-9.py311.1.nbc": b"seed code old",
             "new-5.py311.nbi": b"seed index new", "new-5.py311.2.nbc": b"seed code new"}
    for name, data in files.items():
        (seed / "search_ab" / name).write_bytes(data)
    for name in ("old-9.py311.nbi", "old-9.py311.1.nbc"):
        os.utime(seed / "search_ab" / name, (1_000, 1_000))
    # the worker compiled "old" again after the seed: its index and code stay, as a pair
    (cache / "search_ab" / "old-9.py311.nbi").write_bytes(b"worker index old")
    (cache / "search_ab" / "old-9.py311.1.nbc").write_bytes(b"worker code old")
    # the worker's "k" is older than the seed's: replaced, index and code together
    (cache / "search_ab" / "k-1.py311.nbi").write_bytes(b"stale")
    os.utime(cache / "search_ab" / "k-1.py311.nbi", (500, 500))
    assert conftest.seed_cache(seed, cache) == 4
    got = {p.name: p.read_bytes() for p in (cache / "search_ab").iterdir()}
    assert got == {"k-1.py311.nbi": b"seed index k", "k-1.py311.1.nbc": b"seed code k",
                   "old-9.py311.nbi": b"worker index old", "old-9.py311.1.nbc": b"worker code old",
                   "new-5.py311.nbi": b"seed index new", "new-5.py311.2.nbc": b"seed code new"}
    assert conftest.seed_cache(seed, cache) == 0  # copies keep the seed's times
    assert conftest.seed_cache(tmp_path / "no-seed", cache) == 0  # a run without make test
