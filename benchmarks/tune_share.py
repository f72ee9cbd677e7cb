#!/usr/bin/env python
"""The tuning's share of a segment build, robust to a loaded machine (issue #18).

``knn_default.py`` times one build per family, so one stall of a busy machine moves its tune
share by tens of percent at 26k rows, where a whole build is a few tenths of a second.  Here
``build_segment`` (the library's timings, ``SegmentBuild.timings``) runs ``--repeats`` times
per family and the least build and tuning seconds are kept; then an ``Index`` built with its
defaults answers ``--passes`` passes of single queries (fresh queries, the fastest pass
kept) for the recall@10 and QPS of the tuned point.  Only public calls, so the same script
times any snapshot of the sources (``PYTHONPATH=<snapshot>/src``).

    PYTHONPATH=src python benchmarks/tune_share.py --data C,B:100000 --out share.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from audiolsh.evaluation.metrics import recall_at_k
from audiolsh.index import Index
from audiolsh.index.build import IndexConfig, build_segment
from audiolsh.search import BruteForce, prepare
from knn_default import dataset, finish, warm_up


def best_pass(index: Index, Q: np.ndarray, passes: int) -> float:
    best = np.inf
    for _ in range(passes):
        t0 = time.perf_counter()
        for i in range(len(Q)):
            index.query(Q[i:i + 1], 10)
        best = min(best, time.perf_counter() - t0)
    return len(Q) / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="C", help="datasets of knn_default.py, NAME[:N],...")
    ap.add_argument("--families", default="kmeans,hyperplane")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--queries", type=int, default=300)
    default_corpus = Path(os.environ.get("AUDIOLSH_CORPUS", "~/.cache/audiolsh-corpus")) / "dev"
    ap.add_argument("--corpus", type=Path, default=default_corpus.expanduser())
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    warm_up()
    results: dict = {"load_before": os.getloadavg(), "runs": []}
    for spec in args.data.split(","):
        name, _, size = spec.partition(":")
        X, Q = dataset(name, int(size) if size else None, args.corpus)
        Q = Q[: args.queries]
        P = prepare(X, "cosine")
        truth = BruteForce("cosine").fit(P).search(prepare(Q, "cosine"), 10).ids
        for family in args.families.split(","):
            config = IndexConfig(metric="cosine", family=family)
            builds, tunes = [], []
            for _ in range(args.repeats):
                seg = build_segment(config, P, np.arange(len(P)), prepared=True)
                builds.append(seg.timings["build_s"])
                tunes.append(seg.timings["tune_s"])
            point = seg.info.config.get("operating_point") or {}
            with Index.create(None, metric="cosine", family=family) as index:
                ids = index.add(X)
                res = index.query(Q, 10)
                row_of = np.full(int(ids.max()) + 1, -1)
                row_of[ids] = np.arange(len(X))
                run = {
                    "data": spec, "n": len(X), "family": family,
                    "build_min_s": round(min(builds), 4),
                    "build_median_s": round(float(np.median(builds)), 4),
                    "tune_min_s": round(min(tunes), 4),
                    "tune_median_s": round(float(np.median(tunes)), 4),
                    "share_of_min": round(min(tunes) / min(builds), 4),
                    "n_probes": point.get("n_probes"), "stop": point.get("stop"),
                    "recall": round(float(recall_at_k(row_of[res.ids], truth).mean()), 4),
                    "candidates": round(float(res.n_candidates.mean()), 1),
                    "single_qps_best": round(best_pass(index, Q, args.passes), 1),
                }
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
    return finish(results, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
