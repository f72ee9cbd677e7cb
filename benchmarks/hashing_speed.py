#!/usr/bin/env python
"""Hashing throughput: the deterministic projection kernel against the BLAS product it replaced.

Keys of ``--n`` seeded float32 rows (default 1M x 128) for random hyperplanes (8 tables x 16
bits) and p-stable projections (8 x 8), as rows per second, for:

* ``keys``: ``family.keys(X)``; the BLAS row is the former code, ``A @ planes`` (p-stable:
  ``(A @ a + b) / w``) followed by the same numpy key arithmetic.
* ``project``: the float32 projections alone (the multi-probe margins).
* ``knn build``: ``VectorLSH(family).fit(X)`` (row preparation, keys, bucket tables, row
  codes), the family's hashing BLAS or kernel.

Each thread count runs in its own process (``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` set before numpy loads); the two paths alternate within a process
and the best of ``--repeats`` is kept.  The last lines say whether one batch and 25k-row
chunks give the same bits (BLAS, then the kernel).  Run it under the shared lock:

    flock /tmp/audiolsh-bench.lock .venv/bin/python benchmarks/hashing_speed.py
    .venv/bin/python benchmarks/hashing_speed.py --n 100000 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CHUNK = 25_000
ROW = "{:>7}  {:<16} {:<10} {:>12} {:>14} {:>11}"


def _blas_families() -> tuple[type, type]:
    """The families with the former BLAS projection, for comparison only."""
    import numpy as np

    from audiolsh.hashing import HyperplaneLSH, PStableLSH
    from audiolsh.hashing.base import as_matrix

    class BlasHyperplane(HyperplaneLSH):
        def project(self, X: Any) -> np.ndarray:
            A = as_matrix(X, self.dim)
            if self.center:
                A = A - self.mean_
            return (A @ self.planes_).reshape(len(A), self.n_tables, self.n_bits)

        def keys(self, X: Any) -> np.ndarray:
            return self._keys(self.project(X))

    class BlasPStable(PStableLSH):
        def project(self, X: Any) -> np.ndarray:
            A = as_matrix(X, self.dim)
            P = (A @ self.projections_ + self.offsets_) / self.bucket_width
            return P.reshape(len(A), self.n_tables, self.n_hashes)

        def keys(self, X: Any) -> np.ndarray:
            return self._keys(np.floor(self.project(X)))

    return BlasHyperplane, BlasPStable


def _best(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best wall time of every function, the functions alternating round by round."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def child(n: int, dim: int, repeats: int) -> None:
    import numpy as np

    from audiolsh.hashing import HyperplaneLSH, PStableLSH
    from audiolsh.search import VectorLSH

    BlasHyperplane, BlasPStable = _blas_families()
    X = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    setups = {
        "hyperplane 8x16": (
            lambda: HyperplaneLSH(dim, n_tables=8, n_bits=16, seed=1),
            lambda: BlasHyperplane(dim, n_tables=8, n_bits=16, seed=1),
            "cosine",
        ),
        "p-stable 8x8": (
            lambda: PStableLSH(dim, n_tables=8, n_hashes=8, bucket_width=4.0, seed=1),
            lambda: BlasPStable(dim, n_tables=8, n_hashes=8, bucket_width=4.0, seed=1),
            "euclidean",
        ),
    }
    rows = []
    for name, (kernel_family, blas_family, metric) in setups.items():
        fk, fb = kernel_family(), blas_family()
        fk.keys(X[:1000])  # compile (or load) the kernels
        fk.keys(X[:10])
        for what, run_k, run_b in (
            ("keys", lambda f=fk: f.keys(X), lambda f=fb: f.keys(X)),
            ("project", lambda f=fk: f.project(X), lambda f=fb: f.project(X)),
            (
                "knn build",
                lambda m=metric, mk=kernel_family: VectorLSH(mk(), metric=m).fit(X),
                lambda m=metric, mb=blas_family: VectorLSH(mb(), metric=m).fit(X),
            ),
        ):
            t = _best({"blas": run_b, "kernel": run_k}, repeats)
            rows.append({"family": name, "what": what, "blas_s": t["blas"], "kernel_s": t["kernel"]})
        # Bits: one batch against 25k-row chunks.
        for label, f in (("blas", fb), ("kernel", fk)):
            whole = f.project(X)
            parts = np.concatenate([f.project(X[i : i + CHUNK]) for i in range(0, n, CHUNK)])
            keys_whole = f.keys(X)
            keys_parts = np.concatenate([f.keys(X[i : i + CHUNK]) for i in range(0, n, CHUNK)])
            rows.append({
                "family": name, "what": f"chunks {label}",
                "projections_differing": int((whole.view(np.uint32) != parts.view(np.uint32)).sum()),
                "keys_differing": int((keys_whole != keys_parts).sum()),
            })
    print(json.dumps(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.n, a.dim, a.repeats)
        return
    load = os.getloadavg()[0]
    print(f"{a.n} x {a.dim} float32 rows; best of {a.repeats}; load average {load:.2f} at start")
    print(ROW.format("threads", "family", "what", "BLAS rows/s", "kernel rows/s", "kernel/BLAS"))
    chunk_lines = []
    for threads in [int(t) for t in a.threads.split(",")]:
        env = dict(os.environ, **dict.fromkeys(THREAD_VARS, str(threads)))
        cmd = [sys.executable, __file__, "--child", "--n", str(a.n), "--dim", str(a.dim),
               "--repeats", str(a.repeats)]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        for r in json.loads(out.strip().splitlines()[-1]):
            if "blas_s" in r:
                b, k = a.n / r["blas_s"], a.n / r["kernel_s"]
                print(ROW.format(threads, r["family"], r["what"], f"{b:,.0f}", f"{k:,.0f}", f"{k / b:.2f}"))
            else:
                chunk_lines.append(
                    f"{threads} thread(s), {r['family']}, one batch vs {CHUNK}-row {r['what']}: "
                    f"{r['projections_differing']} projections and {r['keys_differing']} keys differ"
                )
    print("\n".join(chunk_lines))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
