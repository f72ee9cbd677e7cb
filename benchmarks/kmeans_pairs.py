"""Single-query speed of the k-means family against faiss IVFFlat and hnswlib, interleaved.

On a shared, loaded machine the best-of-passes timing of ``knn.py`` swings with bursts of
load (a point can come out faster than a cheaper one).  Here every method answers the same
query back to back, round after round, and each keeps the median of its per-query times, so
a burst costs every method alike.  Methods: our k-means searcher (``KMeansLSH`` cells stored
cell by cell, as a segment keeps them) and faiss IVFFlat with the same number of cells and
probes; the default-built k-means ``Index`` through the Python API (its tuned probes); and
hnswlib at the ef values given.  Data as ``knn.py`` makes it (``real``, ``aniso``, ``iso``).

    python benchmarks/kmeans_pairs.py --data aniso --n 100000 --cells 1024 --probes 1,2,3

``--stat best`` keeps each method's fastest pass of 100 queries instead (passes alternate
between methods), the uncontended cost.  ``--stops 0.5,1`` adds our cells probed adaptively
(at most the largest ``--probes``); ``--numpy-ids`` adds our cells with the ids mapped after
the call in numpy, as this script did before the kernel named the rows itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import knn
from audiolsh.hashing import KMeansLSH
from audiolsh.index import Index
from audiolsh.index.families import by_cell
from audiolsh.search import BruteForce, VectorLSH, prepare

K = 10


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def interleaved(methods: dict[str, Callable[[np.ndarray], Any]], Q: np.ndarray,
                rounds: int) -> dict[str, float]:
    """Median seconds per query of every method, the methods taking turns on each query."""
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for i in range(len(Q)):
            q = Q[i : i + 1]
            for name, fn in methods.items():
                t0 = time.perf_counter()
                fn(q)
                times[name].append(time.perf_counter() - t0)
    return {m: statistics.median(t) for m, t in times.items()}


def best_passes(methods: dict[str, Callable[[np.ndarray], Any]], Q: np.ndarray, rounds: int,
                size: int = 100) -> dict[str, float]:
    """Seconds per query of every method's fastest pass over ``size`` queries, the methods
    taking turns pass by pass (a pass's own cache state; the least loaded pass counts)."""
    best = {m: np.inf for m in methods}
    for r in range(rounds):
        lo = (r * size) % max(len(Q) - size, 1)
        for name, fn in methods.items():
            t0 = time.perf_counter()
            for i in range(lo, lo + size):
                fn(Q[i : i + 1])
            best[name] = min(best[name], (time.perf_counter() - t0) / size)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=["real", "aniso", "iso"], required=True)
    ap.add_argument("--n", type=int, default=None, help="rows of the generated data")
    ap.add_argument("--cells", type=ints, required=True, help="cells (nlist), comma-separated")
    ap.add_argument("--probes", type=ints, required=True, help="probes (nprobe), comma-separated")
    ap.add_argument("--ef", type=ints, default=[10, 20, 40, 80], help="hnswlib ef values")
    ap.add_argument("--stops", type=floats, default=[],
                    help="adaptive probing of our cells: stops, each with the largest --probes as cap")
    ap.add_argument("--numpy-ids", action="store_true",
                    help="also time our cells with the ids mapped in numpy after the call, as"
                         " before VectorLSH.name_rows")
    ap.add_argument("--queries", type=int, default=300, help="queries timed (of 1000 for recall)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stat", choices=["median", "best"], default="median",
                    help="median: per-query times, methods alternating query by query; best: the"
                         " fastest of --rounds passes of 100 queries, methods alternating by pass")
    args = ap.parse_args(argv)

    import faiss
    import hnswlib

    faiss.omp_set_num_threads(1)
    ns = argparse.Namespace(corpus=Path("~/.cache/audiolsh-corpus/dev").expanduser(), quick=False,
                            queries=1000, n=args.n, clustered_preset="calibrated")
    _, X, Q, _ = knn.load_vectors(args.data, ns)
    X, Q = prepare(X, "cosine"), prepare(Q, "cosine")
    truth = BruteForce("cosine").fit(X).search(Q, K).ids

    def recall(ids: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth)]))

    methods: dict[str, Callable[[np.ndarray], Any]] = {}
    info: dict[str, tuple[float, float]] = {}  # name -> (recall, build s)

    def add(name: str, fn: Callable[[np.ndarray], np.ndarray], build: float) -> None:
        fn(Q[:1])
        info[name] = (recall(np.concatenate([fn(Q[i : i + 1]) for i in range(len(Q))])), build)
        methods[name] = fn

    for C in args.cells:
        t0 = time.perf_counter()
        s, order = by_cell(VectorLSH(KMeansLSH(X.shape[1], n_cells=C, seed=0), metric="cosine")
                           .fit(X, prepared=True))
        s.name_rows(order)  # answers in the rows' original numbers, mapped in the kernel
        ours_build = time.perf_counter() - t0
        plain, _ = by_cell(s) if args.numpy_ids else (None, None)  # same cells, row numbers
        t0 = time.perf_counter()
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(X.shape[1]), X.shape[1], C, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        ivf.train(X[np.sort(rng.choice(len(X), min(len(X), 64 * C), replace=False))])
        ivf.add(X)
        ivf_build = time.perf_counter() - t0
        for P in args.probes:
            def ours(q: np.ndarray, s: Any = s, P: int = P) -> np.ndarray:
                return s.search(q, K, n_probes=P).ids

            def numpy_ids(q: np.ndarray, s: Any = plain, order: np.ndarray = order, P: int = P) -> np.ndarray:
                ids = s.search(q, K, n_probes=P).ids
                return np.where(ids >= 0, order[np.maximum(ids, 0)], -1)

            def flat(q: np.ndarray, ivf: Any = ivf, P: int = P) -> np.ndarray:
                ivf.nprobe = P
                return ivf.search(q, K)[1]

            add(f"audiolsh kmeans cells={C} P={P}", ours, ours_build)
            if plain is not None:
                add(f"audiolsh kmeans, ids in numpy, cells={C} P={P}", numpy_ids, ours_build)
            add(f"faiss IVFFlat nlist={C} nprobe={P}", flat, ivf_build)
        cap = max(args.probes)
        for stop in args.stops:
            def walk(q: np.ndarray, s: Any = s, stop: float = stop, cap: int = cap) -> np.ndarray:
                return s.search(q, K, n_probes=cap, stop=stop).ids

            used = float(np.mean(s.search(Q, K, n_probes=cap, stop=stop).n_probes))
            add(f"audiolsh kmeans cells={C} cap={cap} stop={stop} (mean probes {used:.2f})", walk,
                ours_build)

    t0 = time.perf_counter()
    index = Index.create(None, metric="cosine", family="kmeans")
    item_ids = index.add(X)
    index_build = time.perf_counter() - t0
    row_of = np.full(int(item_ids.max()) + 2, -1, np.int64)
    row_of[item_ids] = np.arange(len(X))
    seg = index._segments[0]
    probes = seg.info.config["operating_point"]["n_probes"]
    add(f"audiolsh Index kmeans (default build: cells={seg.family.n_cells}, tuned P={probes})",
        lambda q: row_of[index.query(q, K).ids], index_build)

    t0 = time.perf_counter()
    h = hnswlib.Index(space="cosine", dim=X.shape[1])
    h.init_index(max_elements=len(X), M=16, ef_construction=100, random_seed=0)
    h.add_items(X, num_threads=2)
    h_build = time.perf_counter() - t0
    for ef in args.ef:
        def graph(q: np.ndarray, ef: int = ef) -> np.ndarray:
            h.set_ef(ef)
            return h.knn_query(q, K, num_threads=1)[0]

        add(f"hnswlib M=16 efC=100 ef={ef}", graph, h_build)

    if args.stat == "median":
        med = interleaved(methods, Q[: args.queries], args.rounds)
    else:
        med = best_passes(methods, Q[: args.queries], args.rounds)
    print(f"{args.data}: n={len(X)}, {args.queries} queries, {args.rounds} rounds interleaved;"
          f" {args.stat} single-query time")
    print(f"| method | recall@10 | single QPS (1 / {args.stat}) | build (s) |")
    print("|---|---:|---:|---:|")
    for name in methods:
        r, b = info[name]
        print(f"| {name} | {r:.3f} | {1 / med[name]:,.0f} | {b:.1f} |")
    ok = {n: 1 / med[n] for n in methods if info[n][0] >= knn.TARGET_RECALL}
    for group in ("audiolsh kmeans", "faiss IVFFlat", "audiolsh Index kmeans", "hnswlib"):
        best = max((n for n in ok if n.startswith(group)), key=lambda n: ok[n], default=None)
        found = f"{best} {ok[best]:,.0f} QPS" if best else "none"
        print(f"- fastest >= {knn.TARGET_RECALL}: {group}: {found}")
    index.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
