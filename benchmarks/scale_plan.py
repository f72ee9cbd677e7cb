#!/usr/bin/env python
"""The scale plan of ``docs/scaling.md`` from measured costs (issue #15).

Inputs: the JSON of ``spark_scale.py`` runs at several sizes (``--vectors``) and of
``spark_audio.py`` (``--audio``).  From them, per size n: core-seconds per row of the build
(``spark vectors add``: its tasks; the driver's attach, one process, apart) and of the
self-join (one operating point, ``--point``), index bytes per row, shuffle bytes per row of
the shuffled join, core-seconds per query of ``spark query``
and the Python workers' peak memory; per hour of audio: core-seconds, library bytes and
fingerprint hashes.

Each cost is fitted against size (``MODELS``): a Spark task's time and peak memory, the
driver's attach and the index's bytes as a fixed part plus a part per row; a query's or a
join's core-seconds per row as ``c * n**a`` (they grow with the index).  The check: the model
fitted on every size but the largest predicts the largest, and the table reports prediction
against measurement.  Then, for each target (``--targets``), with executors of ``--cores``
cores and ``--memory-gb`` GB: rows per task (the task's fitted peak within 70 % of its share of
the executor), tasks, executors (one wave of tasks, at most ``--max-executors``), index and
shuffle bytes, build (tasks, then the driver's attach: one process), join and query time.

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
    """A cost against size: ``c * n**a`` (``kind`` "power", least squares on log-log) or
    ``c + a * n`` ("linear": a fixed part and a part per unit); a constant from one point."""

    kind: str
    c: float
    a: float
    sizes: list[int]

    def __call__(self, n: float) -> float:
        return self.c * n ** self.a if self.kind == "power" else self.c + self.a * n

    @classmethod
    def of(cls, points: list[tuple[float, float]], kind: str) -> Fit:
        points = [(n, v) for n, v in points if v is not None and v > 0]
        sizes = [int(n) for n, _ in points]
        if not points:
            return cls(kind, math.nan, 0.0, [])
        if len(points) == 1:
            return cls(kind, points[0][1], 0.0, sizes) if kind == "power" else cls(
                kind, 0.0, points[0][1] / points[0][0], sizes)
        x = np.array([n for n, _ in points], float)
        y = np.array([v for _, v in points], float)
        if kind == "power":
            a, b = np.polyfit(np.log(x), np.log(y), 1)
            return cls(kind, float(np.exp(b)), float(a), sizes)
        a, b = np.polyfit(x, y, 1)
        return cls(kind, max(float(b), 0.0), float(a), sizes)

    def describe(self) -> str:
        if self.kind == "power":
            return f"{self.c:.3g} * n^{self.a:.3f}"
        return f"{self.c:.3g} + {self.a:.3g} * n"


#: measure -> (what it is against, fit kind).  The build and the driver's attach are work per
#: row plus a fixed part; a search's cost per query grows with the index (fuller buckets, rows
#: out of the cache), as a power of n.
MODELS = {
    "task_s": ("rows per task", "linear"),
    "attach_s": ("rows", "linear"),
    "index_bytes": ("rows", "linear"),
    "task_peak_mb": ("rows per task", "linear"),
    "query_core_s": ("rows", "power"),
    "join_core_s_per_row": ("rows", "power"),
    "shuffle_bytes_per_row": ("rows", "power"),
}


def cores_of(run: dict[str, Any]) -> int:
    master = run["command"].split("--master", 1)[1].split()[0] if "--master" in run["command"] else "local[2]"
    inner = master[master.find("[") + 1:master.find("]")] if "[" in master else ""
    return int(inner) if inner.isdigit() else int(run["machine"]["nproc"])


def vector_costs(runs: list[dict[str, Any]], point: str) -> dict[str, list[tuple[float, float]]]:
    """Per measure of ``MODELS``, (size, value) at every size the runs hold."""
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in MODELS}
    for run in runs:
        cores = cores_of(run)
        for r in run["rows"]:
            n, t, extra = r["n"], r["time_s"], r["extra"]
            if r["method"] == ADD and t and "build_stage_s" in extra:
                rows = n / int(r["params"].split()[0])
                out["task_s"].append((rows, extra["scan_s"] + extra["build_stage_s"]))
                out["attach_s"].append((n, extra["driver_attach_s"]))
                out["index_bytes"].append((n, extra["index_bytes_per_row"] * n))
                if extra["worker_peak_mb"] > 200:  # a worker that ran the build (a fresh one reads ~90)
                    out["task_peak_mb"].append((rows, extra["worker_peak_mb"]))
            elif r["method"] == JOIN and r["params"] == point and t and r["section"] == "vectors":
                out["join_core_s_per_row"].append((n, t * cores / n))
            elif r["method"] == SHUFFLE and r["shuffle_mb"]:
                out["shuffle_bytes_per_row"].append((n, r["shuffle_mb"] * 2**20 / n))
            elif r["method"] == QUERY and t:
                queries = int(r["params"].split()[0].replace(",", ""))
                out["query_core_s"].append((n, t * cores / queries))
    return {k: sorted(v) for k, v in out.items()}


def check(costs: dict[str, list[tuple[float, float]]]) -> list[str]:
    """Fit on all sizes but the largest, predict the largest."""
    out = ["| measure | against | fitted on | predicted at | predicted | measured | error |",
           "|---|---|---|---|---|---|---|"]
    for name, points in costs.items():
        if len(points) < 2:
            continue
        against, kind = MODELS[name]
        fit = Fit.of(points[:-1], kind)
        n, measured = points[-1]
        predicted = fit(n)
        out.append(f"| {name} | {against} | {', '.join(f'{s:,}' for s in fit.sizes)} | {n:,.0f} |"
                   f" {predicted:.3g} | {measured:.3g} | {100 * (predicted - measured) / measured:+.0f} % |")
    return out


def human_bytes(b: float) -> str:
    if not math.isfinite(b):
        return "-"
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{b / 2**10:,.0f} KB"


def human_s(s: float) -> str:
    if not math.isfinite(s):
        return "-"
    if s >= 86400:
        return f"{s / 86400:,.1f} days"
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min" if s >= 60 else f"{s:,.0f} s"


def plan_vectors(costs: dict[str, list[tuple[float, float]]], targets: list[int], args: argparse.Namespace,
                 ) -> list[str]:
    fits = {k: Fit.of(v, MODELS[k][1]) for k, v in costs.items()}
    task_mb = args.memory_gb * 1024 / args.cores  # what one task of an executor may hold
    peak = fits["task_peak_mb"]
    rows_fit = (task_mb * 0.7 - peak.c) / peak.a if peak.a > 0 else args.max_rows_per_task
    rows_per_task = int(max(1e5, min(args.max_rows_per_task, rows_fit)))
    out = ["| target | index | rows per task | tasks | executors | build (tasks, then the driver's attach) |"
           " self-join, k=10 | shuffled join's shuffle | 1M queries |",
           "|---|---|---|---|---|---|---|---|---|"]
    for n in targets:
        tasks = math.ceil(n / rows_per_task)
        executors = max(1, min(args.max_executors, math.ceil(tasks / args.cores)))
        cores = executors * args.cores
        task_s = fits["task_s"](n / tasks)
        attach_s = fits["attach_s"](n)
        build_s = math.ceil(tasks / cores) * task_s + attach_s
        index_b = fits["index_bytes"](n)
        join_s = n * fits["join_core_s_per_row"](n) / cores
        query_s = 1e6 * fits["query_core_s"](n) / cores
        broadcast = index_b <= args.memory_gb * 2**30 / 2
        out.append(f"| {n:,} x 128 | {human_bytes(index_b)} | {n / tasks:,.0f} | {tasks:,} | {executors:,} x"
                   f" {args.cores} cores, {args.memory_gb} GB | {human_s(build_s)} ({human_s(task_s)} +"
                   f" {human_s(attach_s)}) | {human_s(join_s)}"
                   f" ({'broadcast' if broadcast else 'shuffled: the index exceeds half an executor'}) |"
                   f" {human_bytes(n * fits['shuffle_bytes_per_row'](n))} | {human_s(query_s)} |")
    fit_lines = [f"- {k} ({MODELS[k][0]}): {f.describe()} (sizes {', '.join(f'{s:,}' for s in f.sizes)})"
                 for k, f in fits.items() if f.sizes]
    return [*out, "", f"Rows per task: what keeps a task's measured peak ({peak.describe()} MB) within"
            f" 70 % of the {task_mb:,.0f} MB a task of an executor gets, at most {args.max_rows_per_task:,}.",
            "", "Fits (seconds, core-seconds, bytes, MB):", *fit_lines]


def plan_audio(audio: dict[str, Any], hours: list[float], args: argparse.Namespace,
               attach_s_per_byte: float) -> list[str]:
    """The extraction in tasks (core-seconds per hour of audio), then the driver's attach of the
    parts at the rate the vector builds' attach was measured at (bytes per second)."""
    rows = [r for r in audio["rows"] if r["method"].startswith("audiolsh spark index")]
    if not rows:
        return []
    big = max(rows, key=lambda r: r["hours"])
    core_s_per_hour = big["core_s_per_hour"]
    # the library at rest: Spark's holds its parts' segments beside the merged ones until the next
    # write collects them, so the bytes are those of the local build of the same folder
    local = [r for r in audio["rows"]
             if r["folder"] == big["folder"] and r["method"].startswith("audiolsh index")]
    bytes_per_hour = (local[0] if local else big)["library_bytes"] / big["hours"]
    out = ["| target | library | fingerprint hashes | executors | build (tasks, then the driver's attach) |",
           "|---|---|---|---|---|"]
    for h in hours:
        core_s = h * core_s_per_hour
        executors = max(1, math.ceil(core_s / (args.build_hours * 3600) / args.cores))
        tasks_s = core_s / (executors * args.cores)
        attach_s = h * bytes_per_hour * attach_s_per_byte
        out.append(f"| {h:,.0f} h of audio | {human_bytes(h * bytes_per_hour)} |"
                   f" {h * big['hashes_per_hour']:,.3g} | {executors:,} x {args.cores} cores |"
                   f" {human_s(tasks_s + attach_s)} ({human_s(tasks_s)} + {human_s(attach_s)}) |")
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
    ap.add_argument("--max-executors", type=int, default=256)
    ap.add_argument("--build-hours", type=float, default=1.0, help="audio: wall time the build may take")
    ap.add_argument("--max-rows-per-task", type=int, default=4_000_000)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.vectors]
    costs = vector_costs(runs, args.point)
    lines = ["Measured per-row costs (core-seconds, bytes; n rows):", ""]
    lines += [f"- {k} against {MODELS[k][0]}: " + ", ".join(f"{n:,.0f}: {v:.3g}" for n, v in pts)
              for k, pts in costs.items() if pts]
    lines += ["", "Check: fitted on the smaller sizes, predicting the largest:", "", *check(costs), ""]
    lines += ["Plan:", "", *plan_vectors(costs, [int(x) for x in args.targets.split(",")], args), ""]
    if args.audio:
        audio = json.loads(args.audio.read_text())
        fits = {k: Fit.of(v, MODELS[k][1]) for k, v in costs.items()}
        per_byte = fits["attach_s"].a / fits["index_bytes"].a
        hours = [float(x) for x in args.hours.split(",")]
        lines += ["Audio:", "", *plan_audio(audio, hours, args, per_byte), ""]
    print("\n".join(lines))
    if args.md:
        command = f"scale_plan.py {' '.join(argv or sys.argv[1:])}"
        args.md.write_text("\n".join([f"Command: `{command}`", "", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
