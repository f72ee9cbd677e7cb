#!/usr/bin/env python
"""The scale plan of ``docs/scaling.md`` from measured costs (issue #15).

Inputs: the JSON of ``spark_scale.py`` runs at several sizes (``--vectors``) and of
``spark_audio.py`` (``--audio``).  From them, per size n: core-seconds per row of the build
(``spark vectors add``: its tasks; the driver's attach, one process, apart) and of the
self-join (one operating point, ``--point``), index bytes per row, shuffle bytes per row of
the shuffled join, core-seconds per query of ``spark query``
and the Python workers' peak memory; per hour of audio: core-seconds, library bytes and
fingerprint hashes.

Each per-row cost is fitted as ``c * n**a`` (least squares on log-log; a constant when one size
is given).  The check: the model fitted on every size but the largest predicts the largest,
and the table reports prediction against measurement.  Then, for each target (``--targets``),
with executors of ``--cores`` cores and ``--memory-gb`` GB: rows per task (what a worker held
at the largest measured task, scaled to the memory a task gets), tasks, executors for the
build to take ``--build-hours`` at most, index and shuffle bytes, build, join and query time.

    python benchmarks/scale_plan.py --vectors s100k.json s1m.json s4m.json --audio a.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ADD = "audiolsh spark vectors add (--no-merge)"
JOIN = "audiolsh spark join (broadcast)"
SHUFFLE = "audiolsh spark join (shuffle)"
QUERY = "audiolsh spark query"


@dataclass
class Fit:
    """``c * n**a``, fitted on sizes ``n``."""

    c: float
    a: float
    sizes: list[int]

    def __call__(self, n: float) -> float:
        return self.c * n ** self.a

    @classmethod
    def of(cls, points: list[tuple[int, float]]) -> Fit:
        points = [(n, v) for n, v in points if v and v > 0]
        if not points:
            return cls(math.nan, 0.0, [])
        if len(points) == 1:
            return cls(points[0][1], 0.0, [points[0][0]])
        x = np.log([n for n, _ in points])
        y = np.log([v for _, v in points])
        a, b = np.polyfit(x, y, 1)
        return cls(float(np.exp(b)), float(a), [n for n, _ in points])


def cores_of(run: dict[str, Any]) -> int:
    master = run["command"].split("--master", 1)[1].split()[0] if "--master" in run["command"] else "local[2]"
    inner = master[master.find("[") + 1:master.find("]")] if "[" in master else ""
    return int(inner) if inner.isdigit() else int(run["machine"]["nproc"])


def vector_costs(runs: list[dict[str, Any]], point: str) -> dict[str, list[tuple[int, float]]]:
    """Per measure, (n, value) at every size the runs hold."""
    out: dict[str, list[tuple[int, float]]] = {k: [] for k in (
        "build_core_s_per_row", "join_core_s_per_row", "query_core_s_per_query", "index_bytes_per_row",
        "shuffle_bytes_per_row", "worker_peak_mb", "rows_per_task", "recall", "local_build_core_s_per_row",
        "attach_s_per_row")}
    for run in runs:
        cores = cores_of(run)
        for r in run["rows"]:
            n, t = r["n"], r["time_s"]
            if r["method"] == ADD and t:
                parts = int(r["params"].split()[0])
                driver = r["extra"].get("driver_attach_s", 0.0)
                out["build_core_s_per_row"].append((n, (t - driver) * cores / n))
                out["attach_s_per_row"].append((n, driver / n))
                out["local_build_core_s_per_row"].append((n, r["extra"]["local_build_s"] / n))
                out["index_bytes_per_row"].append((n, r["extra"]["index_bytes_per_row"]))
                out["worker_peak_mb"].append((n, r["extra"]["worker_peak_mb"]))
                out["rows_per_task"].append((n, n / parts))
            elif r["method"] == JOIN and r["params"] == point and t and r["section"] == "vectors":
                out["join_core_s_per_row"].append((n, t * cores / n))
                out["recall"].append((n, r["recall"]))
            elif r["method"] == SHUFFLE and r["params"] == point and r["shuffle_mb"]:
                out["shuffle_bytes_per_row"].append((n, r["shuffle_mb"] * 2**20 / n))
            elif r["method"] == QUERY and t:
                queries = int(r["params"].split()[0].replace(",", ""))
                out["query_core_s_per_query"].append((n, t * cores / queries))
    return {k: sorted(v) for k, v in out.items()}


def check(costs: dict[str, list[tuple[int, float]]]) -> list[str]:
    """Fit on all sizes but the largest, predict the largest."""
    out = ["| measure | fitted on | predicted at | predicted | measured | error |",
           "|---|---|---|---|---|---|"]
    for name, points in costs.items():
        if len(points) < 2 or name in ("recall", "rows_per_task"):
            continue
        fit = Fit.of(points[:-1])
        n, measured = points[-1]
        predicted = fit(n)
        out.append(f"| {name} | {', '.join(f'{s:,}' for s in fit.sizes)} | {n:,} | {predicted:.3g} |"
                   f" {measured:.3g} | {100 * (predicted - measured) / measured:+.0f} % |")
    return out


def human_bytes(b: float) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{b / 2**10:,.0f} KB"


def human_s(s: float) -> str:
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min" if s >= 60 else f"{s:,.1f} s"


def plan_vectors(costs: dict[str, list[tuple[int, float]]], targets: list[int], args: argparse.Namespace,
                 ) -> list[str]:
    fits = {k: Fit.of(v) for k, v in costs.items()}
    # what one task held: the worker's peak at the largest measured task, per row beyond a base
    (n_big, peak_mb), (_, rows_big) = costs["worker_peak_mb"][-1], costs["rows_per_task"][-1]
    base_mb = 400.0  # a Python worker with numpy, numba and pyarrow loaded, holding nothing
    mb_per_row = max(peak_mb - base_mb, 1.0) / rows_big
    task_mb = args.memory_gb * 1024 / args.cores
    rows_per_task = int(min(args.max_rows_per_task, (task_mb - base_mb) / mb_per_row))
    out = ["| target | index | rows per task | build tasks | executors | build | self-join (k=10) |"
           " shuffle (shuffled join) | batch query (1M queries) |", "|---|---|---|---|---|---|---|---|---|"]
    for n in targets:
        index_b = n * fits["index_bytes_per_row"](n)
        tasks = math.ceil(n / rows_per_task)
        build_core_s = n * fits["build_core_s_per_row"](n)
        executors = max(1, math.ceil(build_core_s / (args.build_hours * 3600) / args.cores))
        cores = executors * args.cores
        # tasks run in waves of `cores`; the driver then attaches every segment, alone
        build_s = math.ceil(tasks / cores) * build_core_s / tasks + n * fits["attach_s_per_row"](n)
        join_s = n * fits["join_core_s_per_row"](n) / cores
        query_s = 1e6 * fits["query_core_s_per_query"](n) / cores
        broadcast = index_b <= args.memory_gb * 2**30 / 2
        shuffle_b = n * fits["shuffle_bytes_per_row"](n)
        out.append(f"| {n:,} x 128 | {human_bytes(index_b)} | {rows_per_task:,} | {tasks:,} | {executors:,}"
                   f" x {args.cores} cores, {args.memory_gb} GB | {human_s(build_s)} | {human_s(join_s)}"
                   f" ({'broadcast' if broadcast else 'shuffled: the index is larger than half an executor'})"
                   f" | {human_bytes(shuffle_b)} | {human_s(query_s)} |")
    fit_lines = [f"- {k}: {f.c:.3g} * n^{f.a:.3f} (sizes {', '.join(f'{s:,}' for s in f.sizes)})"
                 for k, f in fits.items() if f.sizes and k not in ("rows_per_task", "recall")]
    return [*out, "", f"Per task: {mb_per_row * 1e6 / 2**10:,.0f} MB per million rows beyond a"
            f" {base_mb:.0f} MB worker (measured peak {peak_mb:,.0f} MB at {rows_big:,.0f} rows per task,"
            f" n = {n_big:,}).",
            "", "Fits (core-seconds, bytes, MB):", *fit_lines]


def plan_audio(audio: dict[str, Any], hours: list[float], args: argparse.Namespace) -> list[str]:
    rows = [r for r in audio["rows"] if r["method"].startswith("audiolsh spark index")]
    if not rows:
        return []
    big = max(rows, key=lambda r: r["hours"])
    core_s_per_hour = big["core_s_per_hour"]
    bytes_per_hour = big["library_bytes"] / big["hours"]
    out = ["| target | library | fingerprint hashes | executors | build |", "|---|---|---|---|---|"]
    for h in hours:
        core_s = h * core_s_per_hour
        executors = max(1, math.ceil(core_s / (args.build_hours * 3600) / args.cores))
        out.append(f"| {h:,.0f} h of audio | {human_bytes(h * bytes_per_hour)} |"
                   f" {h * big['hashes_per_hour']:,.3g} | {executors:,} x {args.cores} cores |"
                   f" {human_s(core_s / (executors * args.cores))} |")
    return [*out, "", f"From {Path(big['folder']).name}: {big['hours']:.2f} h, {core_s_per_hour:,.0f}"
            f" core-seconds per hour of audio, {human_bytes(bytes_per_hour)} per hour, peak"
            f" {big['peak_rss_mb']:,.0f} MB in one process."]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", nargs="+", type=Path, required=True, help="spark_scale.py JSON results")
    ap.add_argument("--audio", type=Path, help="spark_audio.py JSON results")
    ap.add_argument("--point", default="k=10 probes=256 rerank=300", help="the join's operating point")
    ap.add_argument("--targets", default="2000000,100000000,1000000000", help="vector rows")
    ap.add_argument("--hours", default="100000", help="hours of audio")
    ap.add_argument("--cores", type=int, default=4, help="cores per executor")
    ap.add_argument("--memory-gb", type=int, default=16, help="memory per executor")
    ap.add_argument("--build-hours", type=float, default=1.0, help="wall time the build may take")
    ap.add_argument("--max-rows-per-task", type=int, default=4_000_000)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.vectors]
    costs = vector_costs(runs, args.point)
    lines = ["Measured per-row costs (core-seconds, bytes; n rows):", ""]
    lines += [f"- {k}: " + ", ".join(f"{n:,}: {v:.3g}" for n, v in pts) for k, pts in costs.items() if pts]
    lines += ["", "Check: fitted on the smaller sizes, predicting the largest:", "", *check(costs), ""]
    lines += ["Plan:", "", *plan_vectors(costs, [int(x) for x in args.targets.split(",")], args), ""]
    if args.audio:
        audio = json.loads(args.audio.read_text())
        lines += ["Audio:", "", *plan_audio(audio, [float(x) for x in args.hours.split(",")], args), ""]
    print("\n".join(lines))
    if args.md:
        command = f"scale_plan.py {' '.join(argv or sys.argv[1:])}"
        args.md.write_text("\n".join([f"Command: `{command}`", "", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
