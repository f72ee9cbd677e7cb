"""knn.py's confirmation stage: interleaved passes, and issue #18's table read from them."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import knn


def test_interleaved_passes_rotate_the_order_and_time_every_method_each_round() -> None:
    calls: list[tuple[str, int]] = []
    fns = {name: (lambda i, name=name: calls.append((name, i))) for name in "abc"}
    qps = knn.interleaved_passes(fns, n_queries=10, rounds=4, size=3, cap_s=60.0)
    assert {n: len(v) for n, v in qps.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(q > 0 for v in qps.values() for q in v)
    firsts = [calls[r * 9][0] for r in range(4)]  # who opens each round: 3 methods x 3 queries
    assert firsts == ["a", "b", "c", "a"]
    # every method answers the same queries in a round, the next ones the round after
    assert [i for n, i in calls[:9] if n == "b"] == [0, 1, 2]
    assert [i for n, i in calls[9:18] if n == "b"] == [3, 4, 5]


def row(method: str, params: str, recall: float, qps: float, build: float = 1.0) -> knn.Row:
    return knn.Row(method, params, recall, qps, None, build, 4.0)


def test_issue_table_reads_the_confirmed_figures_not_the_sweep() -> None:
    # In the sweep IVFFlat looks faster; confirmed, the kernel is (and its other point won).
    sweep = [row(knn.OURS_KMEANS, "cells=512 P=12", 0.96, 20_000.0),
             row(knn.OURS_KMEANS, "cells=512 cap=16 stop=0.7", 0.955, 18_000.0),
             row(knn.IVF, "nlist=256 nprobe=8", 0.957, 30_000.0),
             row(knn.HNSW, "ef=20", 0.965, 40_000.0, build=10.0),
             row(knn.INDEX_KMEANS, "defaults, probes=10 (default)", 0.965, 15_000.0, build=2.0)]
    confirmed = [
        {"method": r.method, "params": r.params, "recall": r.recall, "sweep_qps": r.single_qps,
         "best_qps": best, "median_qps": best * 0.9, "passes": 5, "build_s": r.build_s,
         "bytes_per_item": r.bytes_per_item}
        for r, best in zip(sweep, (26_000.0, 39_000.0, 29_000.0, 52_000.0, 25_000.0))]
    data = {"rows": [asdict(r) for r in sweep], "stats": {"n": 26_000}, "confirmed": confirmed}
    cols, table = knn.issue_table({"real": data})
    c = cols["real (n=26,000)"]
    assert c["QPS figures"].startswith("confirmed")
    assert c["k-means kernel / faiss IVFFlat"] == pytest.approx(39_000 / 29_000)
    assert c["k-means kernel / hnswlib"] == pytest.approx(39_000 / 52_000)
    assert c["k-means kernel best point"] == "cells=512 cap=16 stop=0.7"
    # by median passes each method's own fastest point by its median
    med = {r.params: m for r, m in zip(sweep, (25_000.0, 20_000.0, 26_100.0, 40_000.0, 1.0))}
    for conf in confirmed:
        conf["median_qps"] = med[conf["params"]]
    c = knn.issue_table({"real": data})[0]["real (n=26,000)"]
    assert c["k-means kernel / faiss IVFFlat, median passes"] == pytest.approx(25_000 / 26_100)
    assert c["Index default: single QPS"] == 25_000.0
    assert c["Index default / k-means kernel"] == pytest.approx(25_000 / 39_000)
    assert c["Index default build / hnswlib's"] == pytest.approx(0.2)
    assert "confirmed: best of interleaved passes" in table
    # A run without the stage (or an old --out file) keeps the sweep's figures, and says so.
    del data["confirmed"]
    c = knn.issue_table({"real": data})[0]["real (n=26,000)"]
    assert c["QPS figures"].startswith("sweep")
    assert c["k-means kernel / faiss IVFFlat"] == pytest.approx(20_000 / 30_000)


def test_a_method_keeps_its_fastest_points_at_the_target_and_the_default_always() -> None:
    b = knn.VectorBench.__new__(knn.VectorBench)
    b.budget = knn.Budget(confirm_top=2)
    b.candidates = {}
    for params, recall, qps in (("P=1", 0.90, 9e4), ("P=2", 0.96, 1e4), ("P=3", 0.97, 3e4),
                                ("P=4", 0.99, 2e4)):
        b.keep(row(knn.OURS_KMEANS, params, recall, qps), lambda i: None)
    b.keep(row(knn.INDEX_KMEANS, "defaults (default)", 0.90, 1e3), lambda i: None, always=True)
    assert [r.params for r, _ in b.candidates[knn.OURS_KMEANS]] == ["P=3", "P=4"]
    assert f"{knn.INDEX_KMEANS} [defaults (default)]" in b.candidates
    b.budget = knn.Budget(confirm_rounds=0)
    b.candidates = {}
    b.keep(row(knn.OURS_KMEANS, "P=3", 0.97, 3e4), lambda i: None)
    assert b.candidates == {}
