#!/usr/bin/env python
"""Audio on Spark (issue #15): ``audiolsh index -j N`` against ``audiolsh spark index --master
local[N]`` on the same folders of real music, run as a user runs them (the CLI, each in a fresh
library), with what the scale plan needs per hour of audio: wall time and times real time,
library bytes per mode, fingerprint hashes, the largest peak resident memory of one process of
the command's tree (the CLI, and for Spark the JVM and its Python workers).

    python benchmarks/spark_audio.py ~/.cache/audiolsh-corpus/ci ~/.cache/audiolsh-corpus/dev \
        --out a.json --md a.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from knn import load_avg, machine


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_WRAP = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]);"
         " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
         " sys.exit(p.returncode)")


def run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, the largest peak resident MB of one process of the command's tree) of one
    CLI command, run under a fresh parent so that the peak is this command's alone."""
    cmd = [sys.executable, "-c", _WRAP, sys.executable, "-m", "audiolsh", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024


def info(location: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "audiolsh", "info", "--index", str(location), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(folder: Path, jobs: int, work: Path) -> list[dict[str, Any]]:
    rows = []
    for method, args in (
        (f"audiolsh spark index --master local[{jobs}]", ["spark", "index", "--master", f"local[{jobs}]"]),
        (f"audiolsh index -j {jobs}", ["index", "-j", str(jobs)]),
    ):
        location = work / f"{folder.name}-{method.split()[1]}.lib"
        seconds, peak_mb = run([*args, str(folder), "--index", str(location)])
        doc = info(location)
        hours = doc["duration_s"] / 3600
        modes = {m: folder_bytes(location / m) for m in doc["modes"]}
        fp = doc["indexes"]["fingerprint"]
        row = {"folder": str(folder), "method": method, "tracks": doc["n_tracks"], "hours": hours,
               "seconds": seconds, "x_real_time": doc["duration_s"] / seconds,
               "core_s_per_hour": seconds * jobs / hours, "library_bytes": folder_bytes(location),
               "mode_bytes_per_hour": {m: b / hours for m, b in modes.items()},
               "hashes_per_hour": fp["n_hashes"] / hours, "peak_rss_mb": peak_mb}
        rows.append(row)
        log(f"{folder.name}: {method}: {seconds:.1f} s for {hours:.2f} h"
            f" ({row['x_real_time']:.0f}x real time), {row['library_bytes'] / 2**20:.1f} MB")
        shutil.rmtree(location, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| folder | tracks | hours | method | time (s) | x real time | core-s per hour |"
           " library MB per hour | fingerprint hashes per hour | peak RSS (MB) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {Path(r['folder']).name} | {r['tracks']} | {r['hours']:.2f} | {r['method']} |"
                   f" {r['seconds']:.1f} | {r['x_real_time']:.0f} | {r['core_s_per_hour']:.0f} |"
                   f" {r['library_bytes'] / 2**20 / r['hours']:.2f} | {r['hashes_per_hour']:,.0f} |"
                   f" {r['peak_rss_mb']:.0f} |")
    by_mode = sorted({m for r in rows for m in r["mode_bytes_per_hour"]})
    out += ["", "| folder | method | " + " | ".join(f"{m} KB/h" for m in by_mode) + " |",
            "|---|---|" + "---|" * len(by_mode)]
    for r in rows:
        out.append(f"| {Path(r['folder']).name} | {r['method']} | "
                   + " | ".join(f"{r['mode_bytes_per_hour'].get(m, 0) / 1024:,.0f}" for m in by_mode) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="music folders, smallest first")
    ap.add_argument("--jobs", type=int, default=2, help="local -j and local[N]")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"command": " ".join(["spark_audio.py", *(argv or sys.argv[1:])]),
                              "machine": machine(), "load_avg_start": load_avg()}
    work = Path(tempfile.mkdtemp(prefix="audiolsh-spark-audio-"))
    rows: list[dict[str, Any]] = []
    try:
        for folder in args.folders:
            rows += measure(folder.expanduser(), args.jobs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.update(load_avg_end=load_avg(), rows=rows)
    lines = table(rows)
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    if args.md:
        args.md.write_text("\n".join([f"Command: `{report['command']}`", "",
                                      f"Machine: {report['machine']}; load {report['load_avg_start']} ->"
                                      f" {report['load_avg_end']}", "", *lines, ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
