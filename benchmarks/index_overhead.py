#!/usr/bin/env python
"""Index overhead (issue #18): an ``Index`` query against the bare kernel at the same point.

One dataset (``knn.py``'s ``clustered_data``, ``--n`` rows x 128 plus held-out queries) is
indexed twice: in one ``add`` (one segment) and in ``--segments`` adds.  Then, at one
operating point (``--probes``, ``--rerank``):

* kernel: the segment's own ``VectorLSH.search`` (the same rows, family, tables, probes and
  re-rank), one row per call and ``--batch`` rows per call;
* ``Index.query`` through the Python API, one row per call and ``--batch`` rows per call;
* ``audiolsh vectors query`` in process (click's CliRunner, so no interpreter start-up): the
  query time it reports for the file's rows (the queries repeated to ``--cli-rows``), and
  the whole command per query (``--format jsonl``: keys resolved, records written) from the
  difference of two runs (all rows, 1 row), each against the kernel on all rows in the same
  round (the median round);
* the several-segment index against its segments' kernels searched one after the other and
  merged by hand.

The machine is shared: every pair is timed interleaved, query by query (the order alternating),
and each call's time is its best of ``--repeats``, so the load falls on both sides alike.
The ratio is Index time / kernel time (1.2 is the issue's bound).

    python benchmarks/index_overhead.py --n 200000 --segments 4 --dir /tmp/overhead  # keeps them
    python benchmarks/index_overhead.py --quick          # a smoke run, ~20 s
    python benchmarks/index_overhead.py --family kmeans --probes 4   # the default family's fast point
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audiolsh.cli  # noqa: F401  # first: its OpenMP setting holds for the kernel and the command alike
from audiolsh.index import Index
from audiolsh.search import BruteForce, Neighbors, VectorLSH, merge
from knn import clustered_data

K = 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def interleaved(a: Callable[[int], Any], b: Callable[[int], Any], n: int, repeats: int
                ) -> tuple[float, float]:
    """Seconds of ``a(i)`` and of ``b(i)`` summed over i < n, each call's best of ``repeats``,
    the two called one after the other (which first alternates)."""
    best = np.full((2, n), np.inf)
    fns = (a, b)
    for r in range(repeats):
        for i in range(n):
            for j in ((0, 1) if (i + r) % 2 == 0 else (1, 0)):
                t0 = time.perf_counter_ns()
                fns[j](i)
                best[j, i] = min(best[j, i], time.perf_counter_ns() - t0)
    return float(best[0].sum() / 1e9), float(best[1].sum() / 1e9)


def segment_kernels(index: Index) -> list[tuple[VectorLSH, np.ndarray]]:
    """Each segment's searcher and its item ids (what the index maps rows to)."""
    out = []
    for seg in index._segments:
        assert isinstance(seg.searcher, VectorLSH)
        out.append((seg.searcher, np.asarray(seg.ids)))
    return out


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a[a >= 0], t)) / len(t) for a, t in zip(ids, truth)]))


def cli_seconds(args: list[str]) -> tuple[float, float]:
    """``audiolsh`` in process: (wall seconds, the query time it reports in seconds)."""
    from click.testing import CliRunner

    from audiolsh.cli import cli

    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, args)
    wall = time.perf_counter() - t0
    if res.exit_code != 0:
        raise SystemExit(f"vectors query failed: {res.output}{res.stderr}")
    m = re.search(r"queries in ([0-9.]+) ms", res.stderr)
    assert m, res.stderr
    return wall, float(m.group(1)) / 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="indexed rows")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--segments", type=int, default=4, help="adds of the several-segment index")
    ap.add_argument("--family", choices=("hyperplane", "kmeans"), default="hyperplane",
                    help="the indexes' hash family (256 probes suit hyperplanes; k-means: 4)")
    ap.add_argument("--probes", type=int, default=256, help="buckets probed per query")
    ap.add_argument("--rerank", type=int, default=300, help="candidates measured exactly")
    ap.add_argument("--rerank-dtype", choices=("float32", "float16"), default="float32",
                    help="rows the exact pass reads (the index's rerank_dtype; int8 rows are"
                         " rechecked by the index, not by the bare kernel)")
    ap.add_argument("--batch", type=int, default=100, help="rows per call of the batch rows")
    ap.add_argument("--cli-rows", type=int, default=20_000,
                    help="rows of the command's query file (the queries repeated)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per call; the best counts")
    ap.add_argument("--dir", type=Path,
                    help="keep the indexes here and use them again (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="50k rows, 200 queries")
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.queries = min(args.n, 50_000), min(args.queries, 200)

    X, Q, truth = dataset(args.n, args.queries, args.dir)
    if args.dir is None:
        with tempfile.TemporaryDirectory(prefix="index-overhead-") as tmp:
            report = run(args, Path(tmp), X, Q, truth)
    else:
        report = run(args, args.dir, X, Q, truth)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


def dataset(n: int, n_queries: int, keep: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, queries and the queries' exact neighbours (kept in ``keep`` when given)."""
    cached = None if keep is None else keep / f"data-{n}-{n_queries}.npz"
    if cached is not None and cached.exists():
        with np.load(cached) as f:
            return f["X"], f["Q"], f["truth"]
    E = clustered_data(n + n_queries)
    Q, X = E[:n_queries], E[n_queries:]
    truth = BruteForce("cosine").fit(X).search(Q, K).ids
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, X=X, Q=Q, truth=truth)
    return X, Q, truth


def build(path: Path, X: np.ndarray, n_adds: int, family: str, rerank_dtype: str = "float32") -> None:
    """The index of X in ``n_adds`` adds, unless ``path`` already holds it (a kept one)."""
    if path.exists():
        with Index.open(path, readonly=True) as index:
            if (len(index) == len(X) and len(index.segments) == n_adds
                    and index.config.family == family and index.config.rerank_dtype == rerank_dtype):
                log(f"{path}: kept from an earlier run")
                return
        shutil.rmtree(path)
    t0 = time.perf_counter()
    with Index.create(path, metric="cosine", family=family, rerank_dtype=rerank_dtype) as index:
        for part in np.array_split(X, n_adds):
            index.add(part)
    log(f"{path}: {len(X)} rows in {n_adds} segments built in {time.perf_counter() - t0:.1f} s")


def run(args: argparse.Namespace, root: Path, X: np.ndarray, Q: np.ndarray, truth: np.ndarray
        ) -> dict[str, Any]:
    nq, P, R = len(Q), args.probes, args.rerank
    tag = "" if args.rerank_dtype == "float32" else f"-{args.rerank_dtype}"
    one_path = root / f"one-{args.family}-{len(X)}{tag}"
    many_path = root / f"many-{args.family}-{len(X)}-{args.segments}{tag}"
    build(one_path, X, 1, args.family, args.rerank_dtype)
    build(many_path, X, args.segments, args.family, args.rerank_dtype)
    qfile, qfile1 = root / "queries.npy", root / "query1.npy"
    # the command's rows: the queries repeated to --cli-rows, so a run lasts long enough
    # (1000 float16 queries take 15 ms) that the process's own jitter is a small share
    n_cli = nq * max(1, -(-args.cli_rows // nq))
    np.save(qfile, np.tile(Q, (n_cli // nq, 1)))
    np.save(qfile1, Q[:1])
    chunks = [slice(i, i + args.batch) for i in range(0, nq, args.batch)]

    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_avg_start": list(os.getloadavg()),
        "n": len(X), "queries": nq, "family": args.family, "probes": P, "rerank": R,
        "rerank_dtype": args.rerank_dtype, "rows": [],
    }
    rows: list[dict[str, Any]] = report["rows"]

    def row(what: str, kernel_s: float, index_s: float, n: int, **extra: Any) -> None:
        rows.append({"what": what, "kernel_qps": n / kernel_s, "index_qps": n / index_s,
                     "ratio": index_s / kernel_s, **extra})
        log(f"{what}: kernel {n / kernel_s:.0f} QPS, index {n / index_s:.0f} QPS,"
            f" ratio {index_s / kernel_s:.3f}")

    with Index.open(one_path, readonly=True) as index:
        [(kernel, seg_ids)] = segment_kernels(index)

        def kern(q: np.ndarray) -> Neighbors:
            return kernel.search(q, K, n_probes=P, n_rerank=R)

        def api(q: np.ndarray) -> Neighbors:
            return index.query(q, K, n_probes=P, n_rerank=R)

        a, b = kern(Q), api(Q)  # the first calls compile and fault the pages in
        same = bool(np.array_equal(seg_ids[a.ids], b.ids) and np.array_equal(a.distances, b.distances))
        report["one_segment"] = {"recall": recall(b.ids, truth), "identical_to_kernel": same,
                                 "candidates": float(b.n_candidates.mean()),
                                 "segments": len(index._segments)}
        log(f"recall@10 {report['one_segment']['recall']:.3f}, identical answers: {same}")
        ks, ix = interleaved(lambda i: kern(Q[i: i + 1]), lambda i: api(Q[i: i + 1]), nq, args.repeats)
        row("API, one row per call", ks, ix, nq)
        ks, ix = interleaved(lambda i: kern(Q[chunks[i]]), lambda i: api(Q[chunks[i]]), len(chunks),
                             args.repeats)
        row(f"API, {args.batch} rows per call", ks, ix, nq)

        cli = ["vectors", "query", "--index", str(one_path), "--probes", str(P), "--rerank", str(R),
               "--format", "jsonl"]
        cli_seconds([*cli, str(qfile1)])  # imports the commands
        # One round: the kernel, the command on all rows, on one row, back to back.  A busy
        # machine moves whole rounds (the parallel kernel on two shared cores most), so each
        # ratio is taken within a round and the median round counts.
        rounds = []
        for _ in range(max(7, args.repeats)):
            t0 = time.perf_counter()
            kern(np.load(qfile))
            kernel_s = time.perf_counter() - t0
            wall, reported = cli_seconds([*cli, str(qfile)])
            one = cli_seconds([*cli, str(qfile1)])[0]
            rounds.append((kernel_s, reported, (wall - one) / (n_cli - 1) * n_cli))
        by_whole = sorted(rounds, key=lambda r: r[2] / r[0])
        kernel_s, reported, whole = by_whole[len(rounds) // 2]
        report["cli_rounds"] = rounds
        row("`vectors query`, the query time it reports", kernel_s, reported, n_cli)
        row("`vectors query`, the whole command per query (jsonl)", kernel_s, whole, n_cli,
            over_reported=whole / reported)

    with Index.open(many_path, readonly=True) as index:
        kernels = segment_kernels(index)

        def kerns(q: np.ndarray) -> Neighbors:
            parts = []
            for s, ids in kernels:
                r = s.search(q, K, n_probes=P, n_rerank=R)
                parts.append(Neighbors(np.where(r.ids >= 0, ids[r.ids], -1), r.distances, r.n_candidates))
            return merge(parts, K)

        def api_many(q: np.ndarray) -> Neighbors:
            return index.query(q, K, n_probes=P, n_rerank=R)

        a, b = kerns(Q), api_many(Q)
        same = bool(np.array_equal(a.ids, b.ids) and np.array_equal(a.distances, b.distances))
        report["several_segments"] = {"recall": recall(b.ids, truth), "identical_to_kernels": same,
                                      "segments": len(kernels)}
        log(f"{len(kernels)} segments: recall@10 {report['several_segments']['recall']:.3f},"
            f" identical answers: {same}")
        ks, ix = interleaved(lambda i: kerns(Q[i: i + 1]), lambda i: api_many(Q[i: i + 1]), nq,
                             args.repeats)
        row(f"{len(kernels)} segments, API, one row per call", ks, ix, nq)
        ks, ix = interleaved(lambda i: kerns(Q[chunks[i]]), lambda i: api_many(Q[chunks[i]]),
                             len(chunks), args.repeats)
        row(f"{len(kernels)} segments, API, {args.batch} rows per call", ks, ix, nq)

    report["load_avg_end"] = list(os.getloadavg())
    print(f"\n{len(X)} x {X.shape[1]} clustered rows, {nq} queries, {args.family}, k={K}, probes {P},"
          f" rerank {R}, {args.rerank_dtype} rows;"
          f" recall@10 {report['one_segment']['recall']:.3f} (one segment),"
          f" {report['several_segments']['recall']:.3f} ({len(kernels)} segments)\n")
    print("| | kernel QPS | Index QPS | Index time / kernel time |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['kernel_qps']:.0f} | {r['index_qps']:.0f} | {r['ratio']:.3f} |")
    whole = next(r for r in rows if "over_reported" in r)
    print(f"\n`vectors query`: the whole command's time per query / its reported query time"
          f" {whole['over_reported']:.3f} (median round of {len(report['cli_rounds'])})")
    print(f"\nload average {report['load_avg_start']} at the start, {report['load_avg_end']} at the end")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
