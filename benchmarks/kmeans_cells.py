"""How many k-means cells a default-built index should have: the size rule's constant.

A default-built ``Index`` (k-means, probes and stop tuned at build for recall@10 0.95) is
built once per variant of the rule on one of ``knn.py``'s datasets, then every index answers
the same single queries, interleaved (``knn.interleaved_passes``: the variants take turns pass
by pass, the order rotated each round; each keeps its fastest pass, the median is reported
too).  A variant is ``c`` (cells = c sqrt(rows), ``families.CELLS_PER_SQRT_ROW``) or
``c:fit_per_cell:iterations`` (also the rows a cell of the fit sample and Lloyd's
iterations, ``kmeans.FIT_PER_CELL`` and ``kmeans.N_ITER``).  Recall is on the 1000 fresh
queries; the build is against hnswlib's at ``knn.py``'s first grid point for the data.

    python benchmarks/kmeans_cells.py --data real --variants 2,3,4,5
    python benchmarks/kmeans_cells.py --data aniso --variants 2,3,4,4:20:6 --hnsw
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import knn
from audiolsh.hashing import kmeans
from audiolsh.index import Index, families
from audiolsh.search import BruteForce, prepare

# A query's work model, load-free: scoring a centroid and scanning a row (the float32 kernels'
# costs on this machine, docs/results.md "Issue #18: k-means family": 17 of 19 µs at 2048
# centroids, about 17 ns a 128-d row).
NS_CENTROID = 8.3
NS_ROW = 17.0


def variant(text: str) -> tuple[float, int, int]:
    """``c`` or ``c:fit_per_cell:iterations`` (module docstring)."""
    parts = text.split(":")
    c = float(parts[0])
    fpc = int(parts[1]) if len(parts) > 1 else kmeans.FIT_PER_CELL
    iters = int(parts[2]) if len(parts) > 2 else kmeans.N_ITER
    return c, fpc, iters


def build(X: np.ndarray, c: float, fpc: int, iters: int
          ) -> tuple[Index, np.ndarray, float, dict[str, Any]]:
    """A default-built index under the variant's constants, row numbers by item id, its
    build seconds and its operating point."""
    saved = families.CELLS_PER_SQRT_ROW, kmeans.FIT_PER_CELL, kmeans.N_ITER
    families.CELLS_PER_SQRT_ROW, kmeans.FIT_PER_CELL, kmeans.N_ITER = c, fpc, iters
    try:
        t0 = time.perf_counter()
        index = Index.create(None, metric="cosine")
        ids = index.add(X)
        seconds = time.perf_counter() - t0
    finally:
        families.CELLS_PER_SQRT_ROW, kmeans.FIT_PER_CELL, kmeans.N_ITER = saved
    seg = index._segments[0]
    point = dict(seg.info.config["operating_point"])
    point["n_cells"] = seg.family.n_cells
    row_of = np.full(int(ids.max()) + 2, -1, np.int64)  # item id -> row; -1 stays -1
    row_of[ids] = np.arange(len(X))
    return index, row_of, seconds, point


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=["real", "aniso", "iso"], required=True)
    ap.add_argument("--n", type=int, default=None, help="rows of the generated data")
    ap.add_argument("--variants", type=lambda t: [variant(x) for x in t.split(",") if x],
                    default=[variant(x) for x in ("2", "3", "4")])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--size", type=int, default=200, help="queries a timed pass")
    ap.add_argument("--hnsw", action="store_true", help="build hnswlib for the build ratio")
    args = ap.parse_args(argv)

    ns = argparse.Namespace(corpus=Path("~/.cache/audiolsh-corpus/dev").expanduser(), quick=False,
                            queries=1000, n=args.n, clustered_preset="calibrated")
    _, X, Q, _ = knn.load_vectors(args.data, ns)
    X, Q = prepare(X, "cosine"), prepare(Q, "cosine")
    truth = knn.Truth(X, Q, BruteForce("cosine").fit(X).search(Q, knn.K).ids)
    hnsw_s = None
    if args.hnsw:
        import hnswlib

        M, efc, _ = knn.GRIDS[args.data].hnsw[0]
        t0 = time.perf_counter()
        h = hnswlib.Index(space="cosine", dim=X.shape[1])
        h.init_index(max_elements=len(X), M=M, ef_construction=efc, random_seed=0)
        h.add_items(X, num_threads=knn.N_THREADS)
        hnsw_s = time.perf_counter() - t0
        del h
        gc.collect()
        print(f"hnswlib M={M} ef_construction={efc}: build {hnsw_s:.1f} s", flush=True)

    warm, _, _, _ = build(X[: min(len(X), 20_000)], *args.variants[0])  # compile, untimed
    warm.query(Q[:1], knn.K)
    warm.query(Q[:8], knn.K)
    warm.close()
    rows: dict[str, dict[str, Any]] = {}
    fns = {}
    indexes = []
    for c, fpc, iters in args.variants:
        index, row_of, seconds, point = build(X, c, fpc, iters)
        ids = row_of[index.query(Q, knn.K).ids]
        name = f"c={c:g} fit/cell={fpc} iters={iters}"
        stop = point.get("stop", 0.0)
        walk = index._segments[0].searcher.search(Q, knn.K, n_probes=point["n_probes"], stop=stop)
        cand = float(walk.n_candidates.mean())
        rows[name] = {"cells": point["n_cells"], "probes": point["n_probes"], "stop": stop,
                      "build_s": seconds, "recall": truth.recall(ids), "candidates": cand,
                      "work_us": NS_CENTROID * point["n_cells"] / 1e3 + NS_ROW * cand / 1e3}
        fns[name] = lambda i, index=index: index.query(Q[i : i + 1], knn.K)
        indexes.append(index)
        print(f"{name}: {rows[name]}", flush=True)
    for fn in fns.values():
        fn(0)
    passes = knn.interleaved_passes(fns, len(Q), args.rounds, args.size, cap_s=2.0)
    print(f"\n{args.data}: n={len(X):,}; default-built Index per rule; best / median of"
          f" {args.rounds} interleaved passes of {args.size} single queries")
    print("| variant | cells | tuned probes (stop) | recall@10 | candidates | work model (µs) |"
          " build (s) |" + (" build / hnswlib's |" if hnsw_s else "") + " QPS best | QPS median |")
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if hnsw_s else "") + "---:|---:|")
    for name, r in rows.items():
        q = passes[name]
        ratio = f" {r['build_s'] / hnsw_s:.3f} |" if hnsw_s else ""
        print(f"| {name} | {r['cells']:,} | {r['probes']} ({r['stop']:g}) | {r['recall']:.3f} |"
              f" {r['candidates']:,.0f} | {r['work_us']:.1f} | {r['build_s']:.1f} |{ratio}"
              f" {max(q):,.0f} | {statistics.median(q):,.0f} |")
    for index in indexes:
        index.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
