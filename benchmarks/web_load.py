"""Bounded load on the web API over loopback: concurrent clients posting clips, latency and errors.

    # against a running server (loopback only)
    python benchmarks/web_load.py --url http://127.0.0.1:8000 --corpus ~/.cache/audiolsh-corpus/ci
    # or start `audiolsh serve` on a free loopback port for the run, and stop it after
    python benchmarks/web_load.py --serve /tmp/web-ci-lib --corpus ~/.cache/audiolsh-corpus/ci

Clips of ``--clip-s`` seconds are cut at seeded random offsets from the corpus files and sent
as WAV; ``--clients`` threads each send ``--requests`` requests one after the other on one
keep-alive connection.  The run is bounded in count and in time (``--max-duration-s``) and
talks to loopback addresses only.  It reports p50/p95/p99/max latency, errors and, for
identify, how many answers named the clip's own file.
"""

from __future__ import annotations

import argparse
import http.client
import io
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf

from audiolsh.audio import find_audio, info, load

SR = 22050


@dataclass(frozen=True)
class Clip:
    name: str
    source: str  # file name of the track it was cut from
    wav: bytes


@dataclass(frozen=True)
class Outcome:
    latency_ms: float
    status: int  # 0: no answer (connection error, timeout)
    correct: bool | None
    server_ms: float | None
    error: str = ""


def loopback_only(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"--url must be http://HOST:PORT, got {url!r}")
    host = parts.hostname
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"refusing {host}: this load script only targets loopback addresses")
    return host, parts.port or 80


def make_clips(corpus: Path, *, n_clips: int, clip_s: float, seed: int) -> list[Clip]:
    files = [p for p in find_audio([corpus])]
    if not files:
        raise SystemExit(f"no audio files under {corpus}")
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n_clips):
        path = files[i % len(files)]
        total_s = info(path).duration_s
        offset_s = float(rng.uniform(0.0, max(0.0, total_s - clip_s - 1.0))) if np.isfinite(total_s) else 0.0
        y, sr = load(path, sr=SR, offset_s=offset_s, duration_s=clip_s)
        buf = io.BytesIO()
        sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
        clips.append(Clip(f"clip{i:03d}.wav", path.name, buf.getvalue()))
    return clips


def multipart(clip: Clip) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{clip.name}\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    return head + clip.wav + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def judge(endpoint: str, clip: Clip, body: dict[str, Any]) -> bool | None:
    if endpoint == "identify":
        match = body.get("match")
        return match is not None and Path(match["path"]).name == clip.source
    if endpoint == "similar":
        results = body.get("results") or []
        return bool(results) and Path(results[0]["path"]).name == clip.source
    return None


def client(host: str, port: int, path: str, endpoint: str, clips: list[Clip], start: int, n: int,
           deadline: float, timeout_s: float) -> list[Outcome]:
    out: list[Outcome] = []
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    for r in range(n):
        if time.monotonic() > deadline:
            break
        clip = clips[(start + r) % len(clips)]
        body, ctype = multipart(clip)
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": ctype})
            resp = conn.getresponse()
            data = resp.read()
            ms = (time.perf_counter() - t0) * 1e3
            if resp.status != 200:
                out.append(Outcome(ms, resp.status, None, None, data[:200].decode("utf-8", "replace")))
                continue
            answer = json.loads(data)
            out.append(Outcome(ms, 200, judge(endpoint, clip, answer), answer.get("elapsed_ms")))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            ms = (time.perf_counter() - t0) * 1e3
            out.append(Outcome(ms, 0, None, None, f"{type(exc).__name__}: {exc}"))
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    conn.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(host: str, port: int, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"no healthy server at {host}:{port} after {timeout_s:g} s")


def start_server(index: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    code = "import audiolsh.cli.web_cmds; from audiolsh.cli import main; main()"
    cmd = [sys.executable, "-c", code, "serve", "--index", str(index), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=10)


def summarise(outcomes: list[Outcome], wall_s: float, args: argparse.Namespace) -> dict[str, Any]:
    ok = [o for o in outcomes if o.status == 200]
    lat = np.array([o.latency_ms for o in ok]) if ok else np.zeros(0)
    server = np.array([o.server_ms for o in ok if o.server_ms is not None])
    judged = [o.correct for o in ok if o.correct is not None]
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.status != 200:
            key = str(o.status) if o.status else o.error.split(":")[0]
            errors[key] = errors.get(key, 0) + 1

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 1) if len(a) else None

    return {
        "endpoint": args.endpoint, "clients": args.clients, "requests_per_client": args.requests,
        "clip_s": args.clip_s, "sent": len(outcomes), "ok": len(ok), "errors": sum(errors.values()),
        "errors_by_kind": errors, "wall_s": round(wall_s, 1),
        "throughput_rps": round(len(ok) / wall_s, 2) if wall_s > 0 else None,
        "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99),
                       "max": round(float(lat.max()), 1) if len(lat) else None},
        "server_elapsed_ms_p50": pct(server, 50),
        "correct": None if not judged else round(sum(judged) / len(judged), 4),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="A running server (loopback only), e.g. http://127.0.0.1:8000")
    where.add_argument("--serve", type=Path, metavar="INDEX", help="Start `audiolsh serve` on this library.")
    ap.add_argument("--corpus", type=Path, required=True, help="Folder of audio files to cut clips from.")
    ap.add_argument("--endpoint", choices=["identify", "similar"], default="identify")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50, help="Requests per client.")
    ap.add_argument("--clip-s", type=float, default=10.0)
    ap.add_argument("--n-clips", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2, help="Server workers (with --serve).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-s", type=float, default=60.0, help="Per request.")
    ap.add_argument("--max-duration-s", type=float, default=900.0, help="Stop sending after this long.")
    ap.add_argument("--json", type=Path, help="Write the summary here too.")
    args = ap.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.requests <= 10_000):
        raise SystemExit("--clients must be 1..200 and --requests 1..10000")

    clips = make_clips(args.corpus, n_clips=args.n_clips, clip_s=args.clip_s, seed=args.seed)
    print(f"{len(clips)} clips of {args.clip_s:g} s from {args.corpus}", file=sys.stderr)
    proc = None
    if args.serve is not None:
        host, port = "127.0.0.1", free_port()
        proc = start_server(args.serve, port, args.workers)
    else:
        host, port = loopback_only(args.url)
    try:
        wait_healthy(host, port, proc, timeout_s=180.0)
        path = "/api/identify" if args.endpoint == "identify" else "/api/similar?by=combined&k=5"
        deadline = time.monotonic() + args.max_duration_s
        print(f"{args.clients} clients x {args.requests} {args.endpoint} requests on {host}:{port}",
              file=sys.stderr)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as ex:
            futures = [ex.submit(client, host, port, path, args.endpoint, clips, c * args.requests,
                                 args.requests, deadline, args.timeout_s) for c in range(args.clients)]
            outcomes = [o for f in futures for o in f.result()]
        wall_s = time.perf_counter() - t0
    finally:
        if proc is not None:
            stop_server(proc)
    summary = summarise(outcomes, wall_s, args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    lat = summary["latency_ms"]
    print(f"\n| {args.endpoint} | {args.clients} x {args.requests} | {summary['ok']}/{summary['sent']} | "
          f"{summary['errors']} | {lat['p50']} | {lat['p95']} | {lat['p99']} | {summary['throughput_rps']} | "
          f"{summary['correct']} |", file=sys.stderr)


if __name__ == "__main__":
    main()
