#!/usr/bin/env python
"""Right by default (issue #18): the ``Index`` as built with no options, on fresh queries.

Per dataset: build an on-disk Index with its defaults (every segment tuned for recall@10
0.95 at build, ``index.autotune``), then 1000 fresh queries (drawn from the same
distribution, never indexed): recall@10 against brute force, single-query QPS through
``Index.query`` (one query a call), the probes and candidates per query, the build time and
the tuning's share of it (``build_segment``'s timings: the hyperplane tuner, or k-means'
``tune_cells``, against the whole ``Index.add``).  ``--recall`` adds query-time targets;
``--baseline`` also builds with the fixed defaults of before (``target_recall=None``) in the
same run, ``--hyperplane`` with the hyperplane family (the default is k-means),
``--unbounded`` with no byte budget for the tables (``max_table_bytes=None``).

Datasets (seeded, generated here or in knn.py so anyone can rerun them):

* ``A``: isotropic Gaussian clusters, 1000 centres N(0, I) in 128-d, rows = centre + 0.5 N(0, I).
* ``B``: ``knn.clustered_data`` (a mixture with a decaying spectrum and a random rotation).
* ``C``: the per-second log-mel embeddings of the dev corpus (``knn.real_embeddings``).

    python benchmarks/knn_default.py --data A:1000000,B:300000,C --out out.json

The build's share spent tuning is timed after a small warm-up build (the compiled kernels'
one-off load from numba's cache is not tuning).  For stable ratios on a shared machine run
it with ``OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1`` (recorded in the output).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from audiolsh.evaluation.metrics import recall_at_k
from audiolsh.index import Index
from audiolsh.search import BruteForce
from knn import clustered_data, real_embeddings

N_QUERIES = 1000
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")


def isotropic(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, 0xA])
    centres = rng.standard_normal((1000, 128)).astype(np.float32)
    X = centres[rng.integers(0, 1000, n)]
    X += 0.5 * rng.standard_normal((n, 128), dtype=np.float32)
    return X


def dataset(name: str, n: int | None, corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    """Indexed rows and N_QUERIES fresh queries."""
    if name == "A":
        X = isotropic((n or 1_000_000) + N_QUERIES)
    elif name == "B":
        X = clustered_data((n or 300_000) + N_QUERIES, seed=0)
    elif name == "C":
        E, _ = real_embeddings(corpus)
        X = E[np.random.default_rng(0).permutation(len(E))][: (n + N_QUERIES) if n else None]
    else:
        raise SystemExit(f"unknown dataset {name!r} (A, B or C)")
    return np.ascontiguousarray(X[N_QUERIES:]), np.ascontiguousarray(X[:N_QUERIES])


def single_qps(index: Index, Q: np.ndarray, **options: object) -> float:
    index.query(Q[:1], 10, **options)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for i in range(len(Q)):
        index.query(Q[i:i + 1], 10, **options)  # type: ignore[arg-type]
    return len(Q) / (time.perf_counter() - t0)


class TuneTimes(logging.Handler):
    """The seconds each segment's build and tuning took (``build_segment``'s debug line, for
    either family: the hyperplane tuner and k-means' ``tune_cells``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: list[float] = []
        self.builds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        timings = getattr(record, "timings", None)
        if timings is not None:
            self.seconds.append(float(timings["tune_s"]))
            self.builds.append(float(timings["build_s"]))


def measure(X: np.ndarray, Q: np.ndarray, truth: np.ndarray, recalls: list[float],
            **params: object) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("AUDIOLSH_BENCH_TMP")) as d:
        times = TuneTimes()
        tuner = logging.getLogger("audiolsh.index.build")
        tuner.addHandler(times)
        tuner.setLevel(logging.DEBUG)
        t0 = time.perf_counter()
        with Index.create(Path(d) / "idx", metric="cosine", **params) as index:  # type: ignore[arg-type]
            index.add(X)
        build_s = time.perf_counter() - t0
        tuner.removeHandler(times)
        with Index.open(Path(d) / "idx", readonly=True) as index:
            segs = index.info()["segments"]
            points = [s.config.get("operating_point") for s in index.segments]
            tune_s = sum(times.seconds)
            out: dict = {
                "params": {k: v for k, v in params.items()},
                "build_s": round(build_s, 2),
                "tune_s": round(tune_s, 2),
                "segment_build_s": round(sum(times.builds), 2),
                "tune_share": round(tune_s / build_s, 3),
                "segments": [{"n_items": s["n_items"], "family": s["family"].get("family"),
                              "n_tables": s["family"]["n_tables"], "n_bits": s["family"].get("n_bits"),
                              "n_cells": s["family"].get("n_cells"), "whiten": s["family"].get("whiten")}
                             for s in segs],
                "operating_points": [
                    {k: v for k, v in p.items() if k not in ("curve", "fixed")} if p else None
                    for p in points],
                "table_bytes_per_item": round(index.info()["table_bytes_per_item"], 1),
                "points": [],
            }
            for r in [None, *recalls]:
                opts = {} if r is None else {"recall": r}
                res = index.query(Q, 10, **opts)  # type: ignore[arg-type]
                out["points"].append({
                    "recall_target": r,
                    "recall": round(float(recall_at_k(res.ids, truth).mean()), 4),
                    "single_qps": round(single_qps(index, Q, **opts), 1),
                    "probes": None if res.n_probes is None else round(float(res.n_probes.mean()), 1),
                    "candidates": round(float(res.n_candidates.mean()), 1),
                })
    return out


def warm_up() -> None:
    """A small tuned build of each family and a query first: the compiled kernels load from numba's cache
    once per process, and that is not the first dataset's tuning or build."""
    X = isotropic(3000, seed=1)
    for family in ("auto", "hyperplane"):
        with Index.create(None, metric="cosine", family=family) as index:
            index.add(X[:2500])
            index.query(X[2500:], 10)
            index.query(X[2500:2501], 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="A:1000000,B:300000,C",
                    help="datasets with optional sizes, NAME[:N],... (default: the issue's)")
    ap.add_argument("--recall", default="0.9,0.99", help="query-time recall targets to try too")
    ap.add_argument("--baseline", action="store_true", help="also build with the fixed defaults")
    ap.add_argument("--hyperplane", action="store_true",
                    help="also build with the hyperplane family (its own tuner, autotune.tune_segment)")
    ap.add_argument("--unbounded", action="store_true",
                    help="also build with no table byte budget (max_table_bytes=None)")
    default_corpus = Path(os.environ.get("AUDIOLSH_CORPUS", "~/.cache/audiolsh-corpus")) / "dev"
    ap.add_argument("--corpus", type=Path, default=default_corpus.expanduser())
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    recalls = [float(r) for r in args.recall.split(",") if r]
    results = {"load_before": os.getloadavg(), "datasets": {},
               "threads": {v: os.environ.get(v) for v in THREAD_VARS}}
    warm_up()
    for spec in args.data.split(","):
        name, _, size = spec.partition(":")
        X, Q = dataset(name, int(size) if size else None, args.corpus)
        brute = BruteForce("cosine").fit(X)
        truth = np.concatenate([brute.search(Q[i:i + 100], 10).ids for i in range(0, len(Q), 100)])
        del brute
        runs = {"default": measure(X, Q, truth, recalls)}
        if args.baseline:
            runs["fixed (before)"] = measure(X, Q, truth, [], target_recall=None)
        if args.hyperplane:
            runs["hyperplane"] = measure(X, Q, truth, [], family="hyperplane")
        if args.unbounded:
            runs["no byte budget"] = measure(X, Q, truth, [], max_table_bytes=None)
        results["datasets"][name] = {"n": len(X), "dim": X.shape[1], **runs}
        print(json.dumps({name: results["datasets"][name]}, indent=1), flush=True)
    return finish(results, args.out)


def finish(results: dict, out: Path | None) -> int:
    """The load after the run; the figures written to ``out`` when given."""
    results["load_after"] = os.getloadavg()
    if out:
        out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
