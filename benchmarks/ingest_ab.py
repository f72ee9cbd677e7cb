"""Ingest from WAV of several checkouts of the engine, alternating, on the same copies (issue #17).

    mkdir -p /tmp/base && git archive 7260278 src | tar -x -C /tmp/base   # any checkout's src/
    flock /tmp/audiolsh-bench.lock .venv/bin/python benchmarks/ingest_ab.py \\
        ~/.cache/audiolsh-corpus/dev --engine base=/tmp/base/src --engine today=src \\
        --tracks 30 --workers 2 --rounds 11 --work /tmp/ingest-ab --out ingest.json

Issue #17 asks that ingest speed and index bytes per hour not get worse than the engine's of
its time. Absolute speed is the machine's, so this compares engines on one machine in one run:
each run is a fresh process of one engine (``PYTHONPATH`` set to its ``src``) that times
``audiolsh.evaluation.identify.wav_ingest`` of the first ``--tracks`` audio files under the
corpus (path order) into a fresh index with ``--workers`` processes, after ingesting one track
untimed: in the same process (its kernels in memory, as a long ingest runs), or with
``--fresh`` in a process of its own (the kernels only in numba's disk cache, so the timed
process starts as ``audiolsh index`` does). The WAV copies (44.1 kHz, stereo, 16 bit, made
with ffmpeg by an untimed first run) are shared. Rounds visit the engines in turn, each round
in the reverse order of the one before, so a change of the machine's load hits all alike.
With ``--cli`` the timed run is instead the command a user types, ``audiolsh index --modes
fingerprint`` of the copies into a fresh library (its process start, the content hashes and
the commits included), after an untimed one-track index in another process; ``--cold`` empties
the page cache before each timed run (root), so the copies are read from the disk.
Prints, per engine, the median and range of x real time per core (audio seconds / wall seconds
/ workers), the median of its speed over the first engine's in the same round, x real time per
CPU second (this process and its workers), and index MB per hour.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import soundfile as sf

from audiolsh.audio import find_audio

# Runs inside the engine's interpreter: prints one JSON line.
_CHILD = r"""
import json, resource, sys
from pathlib import Path
import audiolsh
from audiolsh.evaluation.identify import wav_ingest
work, workers, mode, tracks = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
if mode in ("warm", "warm+time"):  # untimed: compile or load the kernels
    wav_ingest(tracks[:1], work / "warm", workers=1)
if mode in ("time", "warm+time"):
    def cpu():
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
    c0 = cpu()
    st = wav_ingest(tracks, work, workers=workers)
    print(json.dumps({"audio_s": st.audio_s, "wall_s": st.wall_s, "cpu_s": cpu() - c0,
                      "workers": st.workers, "index_bytes": st.index_bytes, "n_tracks": st.n_tracks,
                      "package": audiolsh.__file__}))
"""

# The CLI run: audiolsh's own entry point, saying first which package it imported.
_CLI = "import sys, audiolsh; print(audiolsh.__file__, flush=True); from audiolsh.cli import main; main()"


def _tracks(corpus: Path, n: int) -> list[str]:
    paths = [os.fspath(p) for p in find_audio([corpus])]  # sorted by path
    if len(paths) < n:
        raise SystemExit(f"{corpus}: {len(paths)} audio files, --tracks asks for {n}")
    return paths[:n]


def _engines(specs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for spec in specs:
        label, sep, src = spec.partition("=")
        if not sep or not label or not src:
            raise SystemExit(f"--engine wants LABEL=SRC_DIR, got {spec!r}")
        path = Path(src).resolve()
        if not (path / "audiolsh" / "__init__.py").is_file():
            raise SystemExit(f"--engine {label}: {path} holds no audiolsh package")
        if label in out:
            raise SystemExit(f"--engine {label} given twice")
        out[label] = path
    return out


def _child(src: Path, work: Path, workers: int, mode: str, tracks: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=os.fspath(src))
    proc = subprocess.run([sys.executable, "-c", _CHILD, os.fspath(work), str(workers), mode, *tracks],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the engine at {src} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def run_once(src: Path, work: Path, workers: int, tracks: list[str], *,
             fresh: bool = False) -> dict[str, Any]:
    """One timed ingest by the engine at ``src``, warmed up in its own process or (``fresh``) in
    another one before it."""
    if fresh:
        _child(src, work, workers, "warm", tracks)
    out = _child(src, work, workers, "time" if fresh else "warm+time", tracks)
    row: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if not Path(row["package"]).resolve().is_relative_to(src):
        raise SystemExit(f"--engine {src}: the run imported audiolsh from {row['package']} instead")
    return row


def _cli(src: Path, index: Path, workers: int, files: list[str]) -> str:
    """Run the engine's ``audiolsh index``; the package it imported.  Every file must be added."""
    if index.exists():
        shutil.rmtree(index)
    env = dict(os.environ, PYTHONPATH=os.fspath(src), AUDIOLSH_PROGRESS_EVERY="1000")
    cmd = [sys.executable, "-c", _CLI, "index", "--index", os.fspath(index), "--modes", "fingerprint",
           "-j", str(workers), "--format", "json", *files]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"`audiolsh index` of the engine at {src} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    package, _, summary = proc.stdout.partition("\n")
    added = json.loads(summary)["added"]
    if added != len(files):
        raise SystemExit(f"`audiolsh index` of the engine at {src} added {added} of {len(files)} files")
    return package


def drop_page_cache() -> None:
    """Empty the kernel's page cache (Linux, root): the next reads come from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as exc:
        raise SystemExit(f"--cold needs root on Linux to empty the page cache: {exc}") from None


def run_cli(src: Path, work: Path, workers: int, n_tracks: int, *, cold: bool = False) -> dict[str, Any]:
    """One timed ``audiolsh index --modes fingerprint`` of the first ``n_tracks`` WAV copies under
    ``work`` by the engine at ``src`` (a fresh process; an untimed one-track index in another
    one first; ``cold``: the page cache emptied before the timed one)."""
    copies = [os.fspath(work / "tracks" / f"t{i:04d}.wav") for i in range(n_tracks)]
    _cli(src, work / "cli-warm", 1, copies[:1])
    if cold:
        drop_page_cache()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    package = _cli(src, work / "cli", workers, copies)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not Path(package).resolve().is_relative_to(src):
        raise SystemExit(f"--engine {src}: the run imported audiolsh from {package} instead")
    audio_s = sum(sf.info(p).duration for p in copies)
    index_bytes = sum(f.stat().st_size for f in (work / "cli").rglob("*") if f.is_file())
    return {"audio_s": audio_s, "wall_s": wall, "workers": workers, "index_bytes": index_bytes,
            "cpu_s": (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), "n_tracks": len(copies),
            "package": package}


def _per_core(r: dict[str, Any]) -> float:
    return r["audio_s"] / (r["wall_s"] * r["workers"])


def summarise(rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, float | str]]:
    """Per engine: medians and ranges, and the median of its runs' speed over the first engine's
    in the same round (paired, so a change of load between rounds cancels)."""
    table: list[dict[str, float | str]] = []
    first = next(iter(rows.values()))
    for label, runs in rows.items():
        per_core = [_per_core(r) for r in runs]
        paired = statistics.median(x / _per_core(f) for x, f in zip(per_core, first))
        per_cpu = [r["audio_s"] / r["cpu_s"] for r in runs]
        mb_h = [r["index_bytes"] / 1e6 / (r["audio_s"] / 3600.0) for r in runs]
        table.append({"engine": label, "runs": len(runs), "x_core_median": statistics.median(per_core),
                      "x_core_min": min(per_core), "x_core_max": max(per_core), "paired": paired,
                      "x_cpu_median": statistics.median(per_cpu), "mb_per_hour": statistics.median(mb_h)})
    return table


def markdown(table: list[dict[str, float | str]]) -> str:
    lines = ["| engine | runs | x real time per core (median, range) | over the first engine, same round "
             "(median) | x real time per CPU second (median) | index MB per hour |", "|---" * 6 + "|"]
    for t in table:
        lines.append(f"| {t['engine']} | {t['runs']} | {t['x_core_median']:.0f} ({t['x_core_min']:.0f}-"
                     f"{t['x_core_max']:.0f}) | {t['paired']:.3f} | {t['x_cpu_median']:,.0f} "
                     f"| {t['mb_per_hour']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--engine", action="append", required=True, help="LABEL=SRC_DIR (repeatable)")
    ap.add_argument("--tracks", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--work", type=Path, required=True, help="folder for the WAV copies and the indexes")
    ap.add_argument("--fresh", action="store_true",
                    help="warm up in a process of its own: the timed one starts as `audiolsh index` does")
    ap.add_argument("--cli", action="store_true",
                    help="time `audiolsh index --modes fingerprint` of the copies, started as a user would")
    ap.add_argument("--cold", action="store_true",
                    help="with --cli: empty the page cache before each timed run (root): read from disk")
    ap.add_argument("--out", type=Path, help="write every run and the summary as JSON")
    a = ap.parse_args()
    if a.tracks < 2 or a.workers < 1 or a.rounds < 1:
        raise SystemExit("need --tracks >= 2, --workers >= 1, --rounds >= 1")
    if a.cold and not a.cli:
        raise SystemExit("--cold goes with --cli")
    engines = _engines(a.engine)
    tracks = _tracks(a.corpus, a.tracks)
    order = list(engines)
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label in order}
    run_once(engines[order[0]], a.work, a.workers, tracks)  # untimed: it makes the WAV copies
    for r in range(a.rounds):
        for label in order if r % 2 == 0 else order[::-1]:
            row = (run_cli(engines[label], a.work, a.workers, len(tracks), cold=a.cold) if a.cli
                   else run_once(engines[label], a.work, a.workers, tracks, fresh=a.fresh))
            rows[label].append(row)
            x = row["audio_s"] / (row["wall_s"] * row["workers"])
            print(f"round {r + 1}/{a.rounds} {label}: {x:.0f}x per core, wall {row['wall_s']:.2f} s",
                  file=sys.stderr, flush=True)
    table = summarise(rows)
    print(markdown(table))
    if a.out:
        a.out.write_text(json.dumps({"tracks": tracks, "workers": a.workers, "fresh": a.fresh, "cli": a.cli,
                                     "cold": a.cold, "runs": rows, "summary": table}, indent=1))


if __name__ == "__main__":
    main()
