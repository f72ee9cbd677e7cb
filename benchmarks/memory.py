"""Peak memory of ``audiolsh index``, ``identify`` and ``similar`` on long synthesised FLACs
(issue #19: bounded memory).

    python benchmarks/memory.py --src src --src /path/to/old/checkout/src --out memory.json
    python benchmarks/memory.py --cases 10min,1h --src src
    python benchmarks/memory.py --commands identify,segments,similar --src src

Each case is a FLAC written a minute at a time into a temporary folder (seeded synthesised
music, never held whole): 10 min, 1 h and 3 h of 44.1 kHz stereo, and 10 min of 8-channel
192 kHz.  Each ``--src`` (a package source folder: the code before and after a change) indexes
each file alone into a new library with ``-j 1``, under ``/usr/bin/time -v``; its "Maximum
resident set size" (the largest of the command and its worker) is the peak.  The query commands
(``identify``, ``identify --segments``, ``similar``) take each file as the clip against a small
library of three synthesised 30-s tracks.  A run that fails (a MemoryError, or over
``--timeout``) is reported with its last stderr line; a clip refused in one line (too long for a
query) is reported as refused, with its peak.  Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "10min": (600.0, 44100, 2),
    "1h": (3600.0, 44100, 2),
    "3h": (10800.0, 44100, 2),
    "10min-8ch-192k": (600.0, 192000, 8),
}


def write_flac(path: Path, duration_s: float, sr: int, channels: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from audiolsh.audio import synth

    synth.write_long_flac(path, duration_s=duration_s, sr=sr, channels=channels)


QUERIES = {
    "identify": ["identify"],
    "segments": ["identify", "--segments"],
    "similar": ["similar"],
}


def peak_run(src: str, argv: list[str], timeout_s: float) -> dict[str, object]:
    """Peak RSS (MB), wall time and outcome of ``audiolsh ARGV`` with the package at ``src``."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "audiolsh", *argv]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"peak_mb": None, "seconds": timeout_s, "ok": False, "note": "timeout"}
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and not ln.startswith("\t") and not ln.startswith("Command exited")]
    return {"peak_mb": int(peak.group(1)) / 1024 if peak else None, "seconds": time.perf_counter() - t0,
            "ok": proc.returncode == 0, "note": "" if proc.returncode == 0 else (lines[-1] if lines else "")}


def small_library(src: str, work: Path) -> Path:
    """A library of three synthesised 30-s tracks, built with the package at ``src``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import soundfile as sf

    from audiolsh.audio import synth

    music = Path(tempfile.mkdtemp(dir=work))
    for seed in range(3):
        sf.write(music / f"t{seed}.wav", synth.music(duration_s=30.0, sr=22050, seed=seed), 22050)
    lib = Path(tempfile.mkdtemp(dir=work)) / "lib"
    r = peak_run(src, ["index", str(music), "--index", str(lib), "-j", "1"], 600.0)
    if not r["ok"]:
        raise SystemExit(f"memory: building the query library failed: {r['note']}")
    return lib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", action="append", required=True, help="package source folder (repeatable)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--commands", default="index",
                    help=f"comma-separated, from index, {', '.join(QUERIES)}")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    ap.add_argument("--out", type=Path, help="write the rows as JSON")
    args = ap.parse_args()
    commands = args.commands.split(",")
    if unknown := set(commands) - {"index", *QUERIES}:
        raise SystemExit(f"memory: unknown --commands {sorted(unknown)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        libraries = {src: small_library(src, work) for src in args.src} if set(commands) - {"index"} else {}
        for name in args.cases.split(","):
            duration_s, sr, channels = CASES[name]
            audio = work / f"{name}.flac"
            write_flac(audio, duration_s, sr, channels)
            for command in commands:
                for src in args.src:
                    if command == "index":
                        lib = Path(tempfile.mkdtemp(dir=work)) / "lib"
                        argv = ["index", str(audio), "--index", str(lib), "-j", "1"]
                    else:
                        argv = [*QUERIES[command], str(audio), "--index", str(libraries[src])]
                    r = peak_run(src, argv, args.timeout)
                    rows.append({"case": name, "command": command, "src": src,
                                 "flac_mb": audio.stat().st_size / 2**20, **r})
                    print(f"{name:>15}  {command:<9} {src:<30} {r['peak_mb'] or float('nan'):8.0f} MB"
                          f" {r['seconds']:7.1f} s  {'ok' if r['ok'] else 'FAILED ' + str(r['note'])}",
                          flush=True)
            audio.unlink()
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
