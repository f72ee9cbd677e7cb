"""Loaded before tests/conftest.py, which imports numba through the package.

Under pytest-xdist each worker compiles numba kernels into a cache of its own: numba's cache is
not safe for two processes compiling the same gufuncs at once (numba#10128; librosa's peak_pick
segfaulted a worker on a fresh clone).  It starts as a copy of ``.pytest_cache/numba/seed``, which
``make test`` fills first with ``audiolsh precompile`` (every core compiling the common kernels
once, instead of each worker and the commands its tests start compiling them in turn)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_CACHES = Path(__file__).resolve().parent / ".pytest_cache" / "numba"


def seed_cache(seed: Path, cache: Path) -> int:
    """Copy into ``cache`` the files of ``seed`` it lacks or holds an older copy of (a kernel
    compiled again after a change); returns how many."""
    copied = 0
    for src in seed.rglob("*"):
        dst = cache / src.relative_to(seed)
        if src.is_file() and (not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied += 1
    return copied


if _WORKER and not os.environ.get("NUMBA_CACHE_DIR"):
    seed_cache(_CACHES / "seed", _CACHES / _WORKER)
    os.environ["NUMBA_CACHE_DIR"] = str(_CACHES / _WORKER)
    if "numba" in sys.modules:  # pyproject's filterwarnings names a numba warning: imported already
        sys.modules["numba"].core.config.reload_config()
