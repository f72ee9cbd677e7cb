"""Durable index at scale: build 1M vectors on disk, then time open, first query and len.

    python benchmarks/index_open.py --n 1000000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from audiolsh.index import Index


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim)).astype(np.float32) * 3
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        out[start : start + m] = centres[rng.integers(0, 1000, m)] + rng.standard_normal((m, dim))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--dir", type=Path, default=None)
    a = ap.parse_args()
    X = clustered(a.n, a.dim, 0)
    root = Path(a.dir or tempfile.mkdtemp(prefix="audiolsh-open-"))
    path = root / "idx"
    shutil.rmtree(path, ignore_errors=True)
    keys = [f"v{i}" for i in range(a.n)]
    t0 = time.perf_counter()
    with Index.create(path, metric="cosine", n_tables=8) as index:
        index.add(X, keys)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = Index.open(path, readonly=True)
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = index.query(X[:1], 10)
    first_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    for q in X[1:101]:
        index.query(q, 10)
    warm_ms = (time.perf_counter() - t0) * 10
    t0 = time.perf_counter()
    hits = index.hits(res)
    hits_ms = (time.perf_counter() - t0) * 1e3
    info = index.info()
    index.close()
    disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(
        "| rows | build + commit (s) | open (s) | first query (ms) | warm query (ms) | hits (ms)"
        " | disk (MB) | table bytes/item |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {a.n:,} | {build_s:.1f} | {open_s:.3f} | {first_ms:.1f} | {warm_ms:.2f} | {hits_ms:.2f}"
          f" | {disk / 1e6:.0f} | {info['table_bytes_per_item']:.1f} |")
    assert hits[0][0].key == "v0"
    if a.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
