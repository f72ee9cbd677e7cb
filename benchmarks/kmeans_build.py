#!/usr/bin/env python
"""Where a k-means segment's build time goes (issue #18): the phases of ``build_segment`` for
the kmeans family, timed apart (wall and CPU seconds), with a digest of the centroids and the
keys so that two source trees can be compared on the same rows (same seed: same digest).

Phases: ``fit`` (Lloyd's iterations on the seeded sample), ``keys`` (every row's cell),
``tables`` (the bucket tables), ``by_cell`` (rows stored cell by cell), ``tune_cells`` (the
probes for the target recall).  The rows are the first ``--n`` of a ``.npy`` file (e.g.
``knn_scale.py``'s 10M isotropic set), memory-mapped, as unit rows (cosine).

    PYTHONPATH=src python benchmarks/kmeans_build.py --data iso-10000000.npy --n 1M --cells 2048
    PYTHONPATH=other/src python benchmarks/kmeans_build.py ...   # the same rows, other sources
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.hashing import KMeansLSH
from audiolsh.index.families import auto_cells, by_cell, tune_cells
from audiolsh.search import BucketTables, VectorLSH


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help=".npy file of unit rows")
    ap.add_argument("--n", default="1M", help="rows (k, M suffixes)")
    ap.add_argument("--cells", type=int, help="cells [default: the auto rule, about 2 sqrt(n)]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="append the result as one JSON line")
    args = ap.parse_args(argv)
    text = args.n.lower()
    n = int(float(text.rstrip("km")) * {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1))
    X = np.load(args.data, mmap_mode="r")[:n]
    cells = args.cells or auto_cells(n)
    # compile the kernels outside the timing
    KMeansLSH(X.shape[1], n_cells=8).fit(np.asarray(X[:2000])).keys(np.asarray(X[:2000]))

    phases: dict[str, dict[str, float]] = {}

    def timed(name: str, fn: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        phases[name] = {"wall_s": round(time.perf_counter() - t0, 2),
                        "cpu_s": round(time.process_time() - c0, 2)}
        return out

    fam = KMeansLSH(X.shape[1], n_cells=cells, seed=args.seed)
    vectors = np.ascontiguousarray(X, np.float32)
    timed("fit", lambda: fam.fit(vectors))
    keys = timed("keys", lambda: fam.keys(vectors))
    tables = timed("tables", lambda: BucketTables.build(keys))
    searcher = VectorLSH(fam, metric="cosine").load(vectors, tables)
    moved, _ = timed("by_cell", lambda: by_cell(searcher))
    timed("tune_cells", lambda: tune_cells(moved, 0.95, args.seed))
    assert fam.centroids_ is not None
    result = {
        "n": n, "cells": cells, "sources": str(Path(sys.modules["audiolsh"].__file__ or "").parent),
        "load_avg": [round(x, 2) for x in os.getloadavg()], "phases": phases,
        "total_wall_s": round(sum(p["wall_s"] for p in phases.values()), 2),
        "digest": digest(fam.centroids_, keys),
    }
    print(json.dumps(result))
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
