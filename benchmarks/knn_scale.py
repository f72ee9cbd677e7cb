#!/usr/bin/env python
"""k-NN at scale (issue #18): 1M, 2M (AudioSet's size) and 10M x 128, memory-mapped.

The rows are ``knn.py``'s dataset A (isotropic Gaussian clusters, ``iso_data``), written block
by block to one ``.npy`` file (10M x 128 float32 = 5.1 GB) and memory-mapped; each size is a
prefix of it.  Per size and re-rank type (float32, float16, int8), for one hash family
(``--family``: kmeans, the default an index builds with, or hyperplane):

* build: ``Index.reserve_ids`` + ``build_segment`` over the memory map + ``Index.attach``;
  seconds, peak RSS and peak anonymous memory (sampled; the mapped rows are file pages).
  Hyperplane segments hash the rows where they are; a k-means segment assigns them to cells a
  block at a time, then stores them cell by cell (through a temporary file above 1 GB);
* bytes per item of the hash tables (and row codes), and of the rows the re-rank reads;
* open: in a fresh process, ``Index.open`` and then the first query (numba's cached kernel
  loads then), seconds and the RSS after them (the rows stay on disk until a query reads them);
* single-query QPS (``Index.query``, one query at a time), batch QPS and recall@10 against
  brute force (computed in chunks of the memory map, cached beside the data), at the
  segment's own probes and multiples of them; for float16 / int8 also with ``--recheck``
  (the compact pass's best N measured again on the float32 rows); RSS after serving.

    flock /tmp/audiolsh-bigmem.lock flock /tmp/audiolsh-bench.lock \\
        python benchmarks/knn_scale.py --sizes 1M,2M,10M --dir DIR --out scale.json
    ... --family hyperplane --rerank float32,int8 --rerank-smallest float16 --index-dir DIR2
    ... --rerank float32,float16,int8 --recheck 0,20,40 --multiples 1
    python benchmarks/knn_scale.py --sizes 50k --queries 50   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audiolsh.index import Index
from audiolsh.index.build import build_segment
from knn import ISO, ISO_BLOCK, iso_block, iso_centres, load_avg, log, machine, versions

K = 10
TRUTH_CHUNK = 262_144


def size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * mult)


def status_mb(field: str = "VmRSS:") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def mapped_mb(folder: str) -> dict[str, float]:
    """Resident MB of this process's maps of the files under ``folder``, by file name (the
    index's float32 rows ``vectors.npy``, its compact copy ``rerank.npy``), from
    /proc/self/smaps: what serving keeps in memory, apart from the benchmark's own reads of
    the data file."""
    root = str(Path(folder).resolve())
    out: dict[str, float] = {}
    key = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = line.split()[-1]
            key = f"mapped_{Path(path).stem}_mb" if path.startswith(root) else None
        elif key and line.startswith("Rss:"):
            out[key] = round(out.get(key, 0.0) + int(line.split()[1]) / 1024, 1)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AnonPeak:
    """The most anonymous memory (RssAnon) seen while inside, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while True:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            if self._stop.wait(0.2):
                return

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_data(path: Path, n: int, d: int = 128, seed: int = 0) -> np.ndarray:
    """The first ``n`` rows of dataset A in ``path`` (made block by block), memory-mapped."""
    if path.exists():
        X = np.load(path, mmap_mode="r")
        if len(X) >= n:
            return X
    log(f"writing {n:,} x {d} rows to {path}")
    out = np.lib.format.open_memmap(path.with_suffix(".part.npy"), mode="w+", dtype=np.float32,
                                    shape=(n, d))
    centres = iso_centres(d, seed, int(ISO["n_clusters"]))
    for lo in range(0, n, ISO_BLOCK):
        m = min(ISO_BLOCK, n - lo)
        out[lo : lo + m] = iso_block(centres, lo // ISO_BLOCK, m, seed, ISO["spread"])
    out.flush()
    del out
    path.with_suffix(".part.npy").rename(path)
    return np.load(path, mmap_mode="r")


def queries(n: int, d: int = 128, seed: int = 0) -> np.ndarray:
    centres = iso_centres(d, seed, int(ISO["n_clusters"]))
    return iso_block(centres, 0, n, seed, ISO["spread"], stream=0x152)


def exact_top(X: np.ndarray, Q: np.ndarray, n: int) -> np.ndarray:
    """Exact top-10 rows (cosine, unit rows) of every query among X[:n], in chunks."""
    best_s = np.full((len(Q), K), -np.inf, np.float32)
    best_i = np.full((len(Q), K), -1, np.int64)
    for lo in range(0, n, TRUTH_CHUNK):
        S = Q @ np.asarray(X[lo : min(n, lo + TRUTH_CHUNK)]).T
        part = np.argpartition(-S, K - 1, axis=1)[:, :K]
        s = np.concatenate([best_s, np.take_along_axis(S, part, 1)], axis=1)
        i = np.concatenate([best_i, part + lo], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_i


def recall(X: np.ndarray, Q: np.ndarray, truth: np.ndarray, got: np.ndarray) -> float:
    """A returned row counts when it is no farther than the exact 10th (ties count)."""
    kth = np.einsum("qd,qd->q", np.asarray(X[truth[:, -1]]), Q)
    safe = np.where(got >= 0, got, 0)
    sims = np.einsum("qkd,qd->qk", np.asarray(X[safe.ravel()]).reshape(*got.shape, -1), Q)
    hits = (sims >= kth[:, None] - 1e-6) & (got >= 0)
    return float(np.minimum(hits.sum(1), K).mean() / K)


def build(folder: Path, X: np.ndarray, n: int, rerank_dtype: str, family: str) -> dict[str, Any]:
    """One segment over the memory-mapped rows X[:n], attached to a new index."""
    loc = folder / f"idx-{family}-{n}-{rerank_dtype}"
    if (loc / "manifest.json").exists():
        with Index.open(loc, readonly=True) as index:
            if len(index) == n:
                return {"location": str(loc), "reused": True}
        raise SystemExit(f"{loc}: an index of another size is in the way")
    with AnonPeak() as anon:
        t0 = time.perf_counter()
        index = Index.create(loc, metric="cosine", rerank_dtype=rerank_dtype, family=family)
        ids = index.reserve_ids(n)
        seg = build_segment(index.config, X[:n], ids, prepared=True)
        hashed = time.perf_counter() - t0
        index.attach([seg])
        total = time.perf_counter() - t0
    info = index.info()
    index.close()
    fam = seg.info.config["family"]
    point = seg.info.config.get("operating_point") or {}
    del seg
    shape = ({"L": fam["n_tables"], "cells": fam["n_cells"], "tuned_probes": point.get("n_probes")}
             if family == "kmeans" else
             {"L": fam["n_tables"], "K": fam["n_bits"], "whiten": fam["whiten"], "center": fam["center"]})
    return {
        "location": str(loc), "build_s": round(total, 1), "hash_s": round(hashed, 1),
        "write_s": round(total - hashed, 1), "peak_rss_mb": round(peak_rss_mb()),
        "peak_anon_mb": round(anon.peak_mb), **shape,
        "table_bytes_per_item": round(info["table_bytes_per_item"], 1),
        "rerank_bytes_per_item": round(
            (info["data_bytes"] - (n * X.shape[1] * 4 if rerank_dtype != "float32" else 0)) / n, 1),
    }


OPEN_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from audiolsh.index import Index
t1 = time.perf_counter()
def rss(field="VmRSS:"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
q = np.load(sys.argv[2])[:1]
r0 = rss()
t2 = time.perf_counter()
index = Index.open(sys.argv[1], readonly=True)
n = len(index)
t3 = time.perf_counter()
index.query(q, 10)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t3 - t2, "first_query_s": t4 - t3,
                  "open_plus_first_query_s": t4 - t2, "rss_before_open_mb": r0,
                  "rss_after_open_mb": rss(), "anon_rss_after_open_mb": rss("RssAnon:"), "n": n}))
"""


def open_time(loc: str, qfile: Path) -> dict[str, Any]:
    """``Index.open`` + the first query in a fresh process (best of 3: the page cache is warm,
    the machine shared)."""
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", OPEN_PROBE, loc, str(qfile)], check=True,
                             capture_output=True, text=True, env=os.environ)
        runs.append(json.loads(out.stdout))
    best = min(runs, key=lambda r: r["open_plus_first_query_s"])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in best.items()}


def serve(loc: str, X: np.ndarray, Q: np.ndarray, truth: np.ndarray, multiples: list[int],
          time_cap_s: float, warm: bool = False, rechecks: tuple[int, ...] = (0,)) -> list[dict[str, Any]]:
    """Single-query QPS (one ``Index.query`` per query, up to ``time_cap_s``), batch QPS (all
    queries in one call, best of 3) and recall@10 of all queries, at the segment's own
    operating point (``probes`` None: a k-means segment's tuned, adaptive probes) and at
    multiples of its fixed probes, each with every ``rechecks`` (a compact copy's best N
    measured again on the float32 rows; 0: none).  ``warm``: one untimed batch of every
    query at the most probes first, so that the timing sees the pages of the rows the
    queries read already mapped into this process (as in a server that has run a while)."""
    out = []
    with Index.open(loc, readonly=True) as index:
        default = index._default_probes(index._segments[0])
        if warm:
            index.query(Q, K, n_probes=default * max(multiples), recheck=max(rechecks))
        for probes in [None, *(default * m for m in multiples)]:
            for rc in rechecks:
                index.load_kernels(Q, K, n_probes=probes, recheck=rc)
                got = np.full((len(Q), K), -1, np.int64)
                t0 = time.perf_counter()
                done = 0
                for i in range(len(Q)):
                    got[i] = index.query(Q[i : i + 1], K, n_probes=probes, recheck=rc).ids[0]
                    done += 1
                    if time.perf_counter() - t0 > time_cap_s:
                        break
                qps = done / (time.perf_counter() - t0)
                batch_s = []
                for _ in range(3):
                    t1 = time.perf_counter()
                    res = index.query(Q, K, n_probes=probes, recheck=rc)
                    batch_s.append(time.perf_counter() - t1)
                got[done:] = res.ids[done:]
                out.append({"probes": probes, "default": probes is None, "recheck": rc,
                            "single_qps": round(qps), "batch_qps": round(len(Q) / min(batch_s)),
                            "candidates": round(float(res.n_candidates.mean())),
                            "recall": round(recall(X, Q, truth, got), 4)})
                log(f"  probes={probes} recheck={rc}: recall {out[-1]['recall']:.3f} single QPS"
                    f" {qps:,.0f} batch QPS {out[-1]['batch_qps']:,}")
        out.append({"rss_mb": round(status_mb()), "anon_rss_mb": round(status_mb("RssAnon:")),
                    "file_rss_mb": round(status_mb("RssFile:")), **mapped_mb(loc)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1M,2M,10M", help="comma-separated row counts (k, M)")
    ap.add_argument("--family", choices=("kmeans", "hyperplane"), default="kmeans",
                    help="hash family of the indexes [default: kmeans, an index's default]")
    ap.add_argument("--rerank", default="float32",
                    help="re-rank types to build at each size (comma-separated)")
    ap.add_argument("--rerank-smallest", default="",
                    help="more re-rank types, built at the smallest size only")
    ap.add_argument("--dir", type=Path, default=Path("knn-scale"),
                    help="folder of the data file, the truth and the queries")
    ap.add_argument("--index-dir", type=Path, help="folder of the indexes [default: --dir]")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--multiples", default="1,2,4", help="probes: multiples of the default")
    ap.add_argument("--recheck", default="0",
                    help="compact types: float32 rechecks of the best N to time (comma-separated)")
    ap.add_argument("--time-cap", type=float, default=2.0, help="seconds of single queries per point")
    ap.add_argument("--warm", action="store_true",
                    help="map the queries' rows into the process before timing (see serve)")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)

    sizes = sorted(size(s) for s in args.sizes.split(","))
    multiples = [int(m) for m in args.multiples.split(",")]
    args.dir.mkdir(parents=True, exist_ok=True)
    index_dir = args.index_dir or args.dir
    index_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "versions": versions(),
        "load_avg_start": load_avg(), "data": {"iso_data": ISO}, "family": args.family, "sizes": {},
    }
    have = [p for p in args.dir.glob("iso-*.npy") if int(p.stem.split("-")[1]) >= sizes[-1]]
    X = write_data(min(have) if have else args.dir / f"iso-{sizes[-1]}.npy", sizes[-1])
    Q = queries(args.queries)
    qfile = args.dir / f"queries-{args.queries}.npy"
    np.save(qfile, Q)
    for n in sizes:
        log(f"=== {n:,} rows")
        tfile = args.dir / f"truth-{n}-{args.queries}.npy"
        if tfile.exists():
            truth = np.load(tfile)
        else:
            t0 = time.perf_counter()
            truth = exact_top(X, Q, n)
            np.save(tfile, truth)
            log(f"exact answers in {time.perf_counter() - t0:.0f} s")
        entry: dict[str, Any] = {}
        types = args.rerank.split(",") + (
            args.rerank_smallest.split(",") if n == sizes[0] and args.rerank_smallest else [])
        for dtype in types:
            log(f"build {n:,} rows, {args.family}, re-rank {dtype}")
            b = build(index_dir, X, n, dtype, args.family)
            log(f"  {b}")
            b["open"] = open_time(b["location"], qfile)
            log(f"  open {b['open']}")
            rechecks = tuple(int(r) for r in args.recheck.split(",")) if dtype != "float32" else (0,)
            *b["points"], b["serving_memory"] = serve(b["location"], X, Q, truth, multiples,
                                                      args.time_cap, args.warm, rechecks)
            entry[dtype] = b
        report["sizes"][str(n)] = entry
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))
    report["load_avg_end"] = load_avg()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


def table(report: dict[str, Any]) -> str:
    """Markdown: one line per size and re-rank type; "default" is the segment's own probes
    (a k-means segment's tuned operating point)."""
    lines = ["| rows | re-rank | L x K (cells) | build (s) | peak RSS / anon (MB) | table B/item |"
             " re-rank B/item | open, open + 1st query (s) | RSS after open (MB) |"
             " default: probes, recall, QPS | best >= 0.95: probes, recall, QPS |",
             "|---" * 11 + "|"]
    for n, entry in report["sizes"].items():
        for dtype, b in entry.items():
            pts = b["points"]
            d = next(p for p in pts if p["default"])
            ok = [p for p in pts if p["recall"] >= 0.95]
            best = max(ok, key=lambda p: p["single_qps"]) if ok else None
            best_probes = best and (best["probes"] or "tuned")
            shape = f"{b.get('L', '-')} x " + (f"({b['cells']})" if "cells" in b else str(b.get("K", "-")))
            lines.append(
                f"| {int(n):,} | {dtype} | {shape} | {b.get('build_s', '-')} |"
                f" {b.get('peak_rss_mb', '-')} / {b.get('peak_anon_mb', '-')} |"
                f" {b.get('table_bytes_per_item', '-')} | {b.get('rerank_bytes_per_item', '-')} |"
                f" {b['open']['open_s']}, {b['open']['open_plus_first_query_s']} |"
                f" {b['open']['rss_after_open_mb']:.0f} |"
                f" {d['probes'] or 'tuned'}, {d['recall']:.3f}, {d['single_qps']:,} |"
                + (f" {best_probes}, {best['recall']:.3f}, {best['single_qps']:,} |" if best else " - |"))
    lines += ["", "| rows | re-rank | probes | recheck | recall@10 | single QPS | batch QPS |"
              " candidates | RSS after serving: all / anon / file (MB) |", "|---" * 9 + "|"]
    for n, entry in report["sizes"].items():
        for dtype, b in entry.items():
            m = b.get("serving_memory", {})
            for p in b["points"]:
                lines.append(
                    f"| {int(n):,} | {dtype} | {p['probes'] or 'tuned'} | {p.get('recheck', 0)} |"
                    f" {p['recall']:.3f} | {p['single_qps']:,} | {p.get('batch_qps', '-'):,} |"
                    f" {p.get('candidates', '-')} |"
                    f" {m.get('rss_mb', '-')} / {m.get('anon_rss_mb', '-')} / {m.get('file_rss_mb', '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
