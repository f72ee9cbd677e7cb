"""How fast the CLI starts and how much more a process's first query costs than the next (issue #16).

    python benchmarks/startup.py --src /path/to/old/checkout/src --src src --runs 5

Each ``--src`` (a package source folder: the code before and after a change) runs every case in
fresh processes ``--runs`` times, after one unrecorded run that fills its caches (numba's
kernels and Python's bytecode go to a folder of the benchmark's own per source, never into the
source tree): what a user's second call of the day sees.  Cases:

- ``--version``, ``--help``, ``index --help``: the whole process (s).
- ``identify``, ``similar``, ``nearest`` of three 10-s clips in one process: the first clip's and
  the second's ``elapsed_ms`` as the command reports it, and the whole process (s).
- ``api``: a fresh Python process imports audiolsh, opens the library (``Library.open``) and
  calls ``identify`` on each clip: the time of the import and open (s), of the first and of the
  second ``identify`` (ms).
- ``serve``: from the start of the process until it accepts a TCP connection, and until
  ``/health`` answers "ok" (s).
- ``vectors query``: five queries against 20,000 vectors of dimension 64, the time per query the
  command reports (ms).

The library is three seeded synthetic songs of 60 s (or ``--music DIR``: the audio files of a
folder, with clips cut from the first three), indexed once with the last ``--src``.  Prints a
table of median and min per case and source; ``--out`` writes every run as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SR = 44100
CLIP_S = 10.0
COMMANDS = ("identify", "similar", "nearest")


def _env(src: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AUDIOLSH_INDEX"}
    env.update(PYTHONPATH=str(Path(src).resolve()), NUMBA_CACHE_DIR=str(cache / "numba"),
               PYTHONPYCACHEPREFIX=str(cache / "pyc"))
    return env


def _audiolsh(src: str, cache: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "audiolsh", *args], capture_output=True, text=True,
                          env=_env(src, cache), timeout=900, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"audiolsh {' '.join(args)} ({src}) failed: {done.stderr[-2000:]}")
    return done, seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(src: str, cache: Path, library: Path) -> dict[str, float]:
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "audiolsh", "serve", "--index", str(library),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(src, cache))
    out: dict[str, float] = {}
    try:
        while "serve: ready (s)" not in out:
            if proc.poll() is not None:
                raise RuntimeError(f"serve ({src}) exited with {proc.returncode}")
            if time.perf_counter() - t0 > 300:
                raise RuntimeError(f"serve ({src}) not ready after 300 s")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    out.setdefault("serve: accepts (s)", time.perf_counter() - t0)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60) as r:
                    if json.load(r).get("status") == "ok":
                        out["serve: ready (s)"] = time.perf_counter() - t0
            except (OSError, urllib.error.URLError):
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return out


_API = """
import json, sys, time
t0 = time.perf_counter()
import soundfile as sf
from audiolsh.library import Library
from audiolsh.query.identify import identify
lib = Library.open(sys.argv[1], readonly=True)
t1 = time.perf_counter()
ms = []
for clip in sys.argv[2:]:
    y, sr = sf.read(clip, dtype="float32")
    t = time.perf_counter()
    identify(lib, y, sr)
    ms.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"open_s": t1 - t0, "ms": ms}))
"""


def _api_identify(src: str, cache: Path, library: Path, clips: list[str]) -> dict[str, float]:
    """The Python API in a fresh process: import and ``Library.open``, then ``identify`` of each
    clip (no warm-up of its own: what a script sees)."""
    done = subprocess.run([sys.executable, "-c", _API, str(library), *clips], capture_output=True, text=True,
                          env=_env(src, cache), timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the API identify ({src}) failed: {done.stderr[-2000:]}")
    got = json.loads(done.stdout)
    return {"api: import + Library.open (s)": got["open_s"], "api identify: first clip (ms)": got["ms"][0],
            "api identify: second clip (ms)": got["ms"][1]}


def _one_run(src: str, cache: Path, work: Path) -> dict[str, float]:
    library, clips = work / "library", [str(work / f"clip{i}.wav") for i in range(3)]
    out: dict[str, float] = {}
    for name, args in (("--version", ["--version"]), ("--help", ["--help"]),
                       ("index --help", ["index", "--help"])):
        out[f"{name} (s)"] = _audiolsh(src, cache, *args)[1]
    for command in COMMANDS:
        done, seconds = _audiolsh(src, cache, command, *clips, "--index", str(library), "--format", "json")
        elapsed = [r["elapsed_ms"] for r in json.loads(done.stdout)]
        out[f"{command}: first clip (ms)"] = elapsed[0]
        out[f"{command}: second clip (ms)"] = elapsed[1]
        out[f"{command}: 3 clips, whole process (s)"] = seconds
    out.update(_api_identify(src, cache, library, clips))
    out.update(_serve(src, cache, library))
    done, _ = _audiolsh(src, cache, "vectors", "query", str(work / "queries.npy"), "--index",
                        str(work / "vectors"), "-k", "10", "--format", "jsonl")
    each = re.search(r"\(([\d.]+) ms each", done.stderr)
    if each is None:
        raise RuntimeError(f"no time per query in {done.stderr!r}")
    out["vectors query: per query (ms)"] = float(each.group(1))
    return out


def _prepare(work: Path, src: str, cache: Path, music: Path | None) -> None:
    """The library, three clips cut from its tracks, and a vector index with five queries."""
    sys.path.insert(0, str(Path(src).resolve()))
    import numpy as np
    import soundfile as sf

    from audiolsh.audio import load, synth

    if music is None:
        music = work / "music"
        music.mkdir()
        for seed in range(3):
            sf.write(music / f"song{seed}.wav", synth.music(duration_s=60.0, sr=SR, seed=seed + 11), SR)
    tracks = sorted(p for p in music.iterdir() if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
    for i, track in enumerate(tracks[:3]):
        y, sr = load(track, sr=SR, offset_s=15.0 + 5 * i, duration_s=CLIP_S)
        sf.write(work / f"clip{i}.wav", y, sr)
    _audiolsh(src, cache, "index", str(music), "--index", str(work / "library"), "-j", "1")
    rng = np.random.default_rng(0)
    np.save(work / "vectors.npy", rng.standard_normal((20_000, 64)).astype(np.float32))
    np.save(work / "queries.npy", rng.standard_normal((5, 64)).astype(np.float32))
    _audiolsh(src, cache, "vectors", "add", str(work / "vectors.npy"), "--index", str(work / "vectors"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", action="append", required=True, help="package source folder (repeatable)")
    ap.add_argument("--runs", type=int, default=5, help="recorded runs per source")
    ap.add_argument("--music", type=Path, help="a folder of audio files instead of synthetic songs")
    ap.add_argument("--out", type=Path, help="write every run as JSON")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="audiolsh-startup-") as tmp:
        work = Path(tmp)
        caches = {src: work / f"cache{i}" for i, src in enumerate(args.src)}
        _prepare(work, args.src[-1], caches[args.src[-1]], args.music)
        for src in args.src:
            _one_run(src, caches[src], work)  # fills the caches: not recorded
        for run in range(args.runs):
            for src in args.src:  # interleaved: a change of the machine's load hits both alike
                rows += [{"src": src, "run": run, "case": case, "value": value}
                         for case, value in _one_run(src, caches[src], work).items()]
                print(f"run {run + 1}/{args.runs} of {src} done", file=sys.stderr, flush=True)
    cases = list(dict.fromkeys(str(r["case"]) for r in rows))
    print(f"load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}; {args.runs} runs")
    print(f"| case | {' | '.join(f'{s}: median | min' for s in args.src)} |")
    print(f"|---|{'---|---|' * len(args.src)}")
    for case in cases:
        cells = []
        for src in args.src:
            values = [float(r["value"]) for r in rows if r["case"] == case and r["src"] == src]  # type: ignore[arg-type]
            digits = 0 if "(ms)" in case and min(values) >= 10 else 2
            cells.append(f"{statistics.median(values):.{digits}f} | {min(values):.{digits}f}")
        print(f"| {case} | {' | '.join(cells)} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
