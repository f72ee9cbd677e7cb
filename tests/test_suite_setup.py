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
    for name in ("k.nbi", "k.1.nbc", "old.nbi"):
        (seed / "search_ab" / name).write_bytes(name.encode())
    os.utime(seed / "search_ab" / "old.nbi", (1_000, 1_000))
    (cache / "search_ab").mkdir(parents=True)
    (cache / "search_ab" / "old.nbi").write_bytes(b"the worker's own, newer")
    (cache / "search_ab" / "k.nbi").write_bytes(b"stale")
    os.utime(cache / "search_ab" / "k.nbi", (500, 500))
    assert conftest.seed_cache(seed, cache) == 2
    assert (cache / "search_ab" / "k.nbi").read_bytes() == b"k.nbi"  # the seed's is newer
    assert (cache / "search_ab" / "k.1.nbc").read_bytes() == b"k.1.nbc"  # missing
    assert (cache / "search_ab" / "old.nbi").read_bytes() == b"the worker's own, newer"
    assert conftest.seed_cache(seed, cache) == 0  # copies keep the seed's times
    assert conftest.seed_cache(tmp_path / "no-seed", cache) == 0  # a run without make test
