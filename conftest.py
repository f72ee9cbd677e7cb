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
    """Copy into ``cache`` each kernel of ``seed`` (its index ``.nbi`` and its code ``.nbc``
    files, together, so an index never names another build's code) that ``cache`` lacks or
    holds an older index of (a kernel compiled again after a change); returns the files copied."""
    copied = 0
    for index in seed.rglob("*.nbi"):
        dst = cache / index.relative_to(seed)
        if dst.exists() and dst.stat().st_mtime >= index.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        for src in [*index.parent.glob(index.name[:-len("nbi")] + "*.nbc"), index]:  # the index last
            shutil.copy2(src, dst.parent / src.name)
            copied += 1
    return copied


if _WORKER and not os.environ.get("NUMBA_CACHE_DIR"):
    seed_cache(_CACHES / "seed", _CACHES / _WORKER)
    os.environ["NUMBA_CACHE_DIR"] = str(_CACHES / _WORKER)
    if "numba" in sys.modules:  # pyproject's filterwarnings names a numba warning: imported already
        sys.modules["numba"].core.config.reload_config()
