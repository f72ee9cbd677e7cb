"""Identification as the fingerprint index grows to 10,000 hours (issue #17).

    python benchmarks/identify_scale.py grow  --index /work/bench-out/id-scale/idx --hours 1000
    python benchmarks/identify_scale.py query --index /work/bench-out/id-scale/idx --out q1k.json
    python benchmarks/identify_scale.py validate          # synthetic copies vs real resampled audio
    python benchmarks/identify_scale.py table q*.json     # the markdown table
    python benchmarks/identify_scale.py cold --index ... [--page-in]   # as root: an empty page cache

The dev corpus is split as protocol 2 splits it (``split_tracks``, seed 0): the indexed tracks
are the sources of the index, the others give negative clips.  ``grow`` extends the index at
``--index`` to ``--hours`` with hash-level copies of the indexed tracks' landmarks
(``audiolsh.evaluation.fingerprint_scale``: the method and its limits are in its docstring),
one segment per call, built out of core; the real tracks come first, so their clips stay
positives.  ``query`` opens the index in a fresh process (open time), identifies clips of 3, 5
and 10 s of the indexed tracks under a few protocol conditions and clips of the unindexed ones
(written once under ``--clips``), and reports query time per length, accuracy, the no-match
rate on negatives, index bytes per hour and the process's memory.  ``--compare-full N`` also
answers N clean or noisy positive clips with narrowing off (``max_matches=0``) and counts the
answers that differ.
Landmarks of the dev tracks are cached under ``--cache``.
``cold`` drops the page cache (root only), opens the index in a fresh process and answers
``--n-clips`` query clips in turn, with or without reading the index into memory in the
background (``audiolsh.storage.page_in``, as ``serve`` does), then, ``--second-at`` seconds
after the open, as many other clips: each query's time and major page faults.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audiolsh.evaluation import fingerprint_scale as fs
from audiolsh.evaluation.identify import OFFSET_TOLERANCE_S, make_clips, split_tracks
from audiolsh.index.fingerprint import FingerprintIndex

CORPUS = Path(os.environ.get("AUDIOLSH_CORPUS", os.path.expanduser("~/.cache/audiolsh-corpus"))) / "dev"
OUT = Path("/work/bench-out/id-scale")
CONDITIONS = ("clean", "white10", "mp3_32k", "speed+3", "reverb")
LENGTHS_S = (3.0, 5.0, 10.0)


def _tracks() -> list[str]:
    rows = list(csv.DictReader(open(CORPUS / "manifest.csv")))
    return [os.fspath(CORPUS / r["path"]) for r in rows]


def _sources(paths: list[str], cache: Path) -> list[fs.Source]:
    from audiolsh.audio import decode
    from audiolsh.features.landmarks import FP_SR, landmarks

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        f = cache / (Path(p).parent.name + "__" + Path(p).stem + ".npz")
        if f.exists() and "envelope" not in np.load(f).files:  # cached before the envelope
            f.unlink()
        if not f.exists():
            y, _ = decode.load(p, sr=FP_SR)
            lm = landmarks(y, FP_SR)
            np.savez(f, hashes=lm.hashes, times=lm.times, duration_s=len(y) / FP_SR, envelope=lm.envelope)
        z = np.load(f)
        out.append(fs.Source(p, z["hashes"], z["times"], float(z["duration_s"]), z["envelope"]))
    return out


def _rss() -> dict[str, float]:
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024  # MiB
    return fields


def _uptime() -> str:
    return open("/proc/loadavg").read().strip()


def grow(args: argparse.Namespace) -> None:
    indexed, _ = split_tracks(_tracks(), seed=0)
    sources = _sources(indexed, Path(args.cache))
    hours = args.hours or sum(s.duration_s for s in sources) / 3600  # 0: the real tracks alone
    t0 = time.perf_counter()
    idx = FingerprintIndex.open_or_create(args.index)

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 2000 == 0:
            print(f"  {stage} {done}/{total} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    added = fs.grow(idx, sources, hours=hours, workdir=Path(args.work), seed=args.seed,
                    on_progress=progress)
    info = idx.info()
    idx.close()
    print(json.dumps({"hours": info["duration_s"] / 3600, "added_tracks": added, "n_tracks": info["n_tracks"],
                      "n_hashes": info["n_hashes"], "n_segments": info["n_segments"],
                      "build_s": time.perf_counter() - t0,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "loadavg": _uptime()}))


def _clips(args: argparse.Namespace) -> list[Any]:
    indexed, unindexed = split_tracks(_tracks(), seed=0)
    step = max(1, math.ceil(len(indexed) / args.positive_tracks))
    return make_clips(indexed[::step], unindexed, Path(args.clips), lengths_s=LENGTHS_S,
                      conditions=CONDITIONS, clips_per_track=1, seed=0)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def query(args: argparse.Namespace) -> None:
    clips = _clips(args)
    audio = [sf.read(c.path, dtype="float32") for c in clips]
    t0 = time.perf_counter()
    idx = FingerprintIndex.open(args.index, readonly=True)
    n_tracks = len(idx)
    open_s = time.perf_counter() - t0
    info = idx.info()
    narrowed = 0
    inner = idx._match_narrowed

    def counting(*a: Any) -> Any:
        nonlocal narrowed
        narrowed += 1
        return inner(*a)

    idx._match_narrowed = counting  # type: ignore[method-assign]
    rows = []
    for c, (y, sr) in zip(clips, audio):
        t = time.perf_counter()
        m = idx.identify(y, sr)
        ms = (time.perf_counter() - t) * 1000
        right = (m is not None and c.positive and m.path == c.source
                 and abs(m.offset_s - c.offset_s) <= OFFSET_TOLERANCE_S)
        rows.append({"clip": c.clip_id, "source": c.source, "positive": c.positive,
                     "condition": c.condition,
                     "length_s": c.length_s, "ms": ms, "match": None if m is None else m.path,
                     "confidence": None if m is None else m.confidence,
                     "log10_p": None if m is None else m.log10_p, "right": bool(right)})
    differ = None
    if args.compare_full:
        # Clean and noisy positives: conclusive without the speed/tempo grid, which a full
        # lookup at this size would make minutes long.
        eligible = [i for i, c in enumerate(clips) if c.positive and c.condition in ("clean", "white10")]
        sample = eligible[:: max(1, len(eligible) // args.compare_full)][: args.compare_full]
        narrowed_answers = [idx.identify(*audio[i]) for i in sample]
        idx.params.max_matches = 0
        full_answers = [idx.identify(*audio[i]) for i in sample]
        idx.params.max_matches = fs_default_max_matches()
        differ = {"n": len(sample), "differ": sum(a != b for a, b in zip(narrowed_answers, full_answers))}
    report = {
        "index": args.index, "hours": info["duration_s"] / 3600, "n_tracks": n_tracks,
        "n_hashes": info["n_hashes"],
        "n_segments": info["n_segments"], "index_bytes_on_disk": _dir_bytes(Path(args.index)),
        "array_bytes": info["index_bytes"], "open_s": open_s, "first_query_ms": rows[0]["ms"],
        "narrowed_searches": narrowed, "rows": rows, "compare_full": differ, "memory_mib": _rss(),
        "loadavg": _uptime(),
    }
    report["bytes_per_hour"] = report["index_bytes_on_disk"] / report["hours"]
    report["summary"] = summarise(rows)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))


def cold(args: argparse.Namespace) -> None:
    import threading

    from audiolsh.storage.page_in import page_in

    every = _clips(args)
    step = max(2, len(every) // args.n_clips)
    # Every kind of clip in turn; the second pass's clips are others.
    first, second = every[::step][: args.n_clips], every[step // 2::step][: args.n_clips]
    clips = first + (second if args.second_at else [])
    audio = [sf.read(c.path, dtype="float32") for c in clips]
    if not args.keep_cache:
        os.sync()
        try:
            Path("/proc/sys/vm/drop_caches").write_text("1\n")
        except OSError as exc:
            raise SystemExit(f"cold: cannot drop the page cache ({exc}); run as root") from None
    t0 = time.perf_counter()
    idx = FingerprintIndex.open(args.index, readonly=True)
    open_s = time.perf_counter() - t0
    paged: dict[str, Any] = {}
    if args.page_in:
        def read() -> None:
            done = page_in(idx.storage.mapped_files())
            paged.update(bytes=done.bytes, seconds=done.seconds, skipped=done.skipped,
                         finished_at_s=time.perf_counter() - t0)

        threading.Thread(target=read, daemon=True).start()
    rows = []
    for k, (c, (y, sr)) in enumerate(zip(clips, audio)):
        if k == len(first):  # the second pass: clips no query of this process has touched
            time.sleep(max(0.0, args.second_at - (time.perf_counter() - t0)))
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        m = idx.identify(y, sr)
        ms = (time.perf_counter() - t) * 1000
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"clip": c.clip_id, "length_s": c.length_s, "positive": c.positive, "ms": ms,
                     "at_s": time.perf_counter() - t0, "major_faults": r1.ru_majflt - r0.ru_majflt,
                     "match": None if m is None else m.path, "pass": 1 + (k >= len(first))})
    report = {"index": args.index, "page_in": args.page_in, "open_s": open_s, "paged_in": paged,
              "rows": rows, "loadavg": _uptime()}
    Path(args.out).write_text(json.dumps(report, indent=1))
    summary: dict[str, Any] = {"page_in": args.page_in, "open_s": round(open_s, 2),
                               "first_ms": round(rows[0]["ms"]), "paged_in": paged}
    for p in (1, 2):
        for positive in (True, False):
            times = [r["ms"] for r in rows if r["pass"] == p and r["positive"] == positive]
            if times:
                summary[f"pass{p}_{'pos' if positive else 'neg'}"] = {
                    "n": len(times), "p50_ms": round(statistics.median(times)),
                    "mean_ms": round(statistics.mean(times)),
                    "major_faults": sum(r["major_faults"] for r in rows if r["pass"] == p
                                        and r["positive"] == positive)}
    print(json.dumps(summary))


def fs_default_max_matches() -> int:
    from audiolsh.index.fingerprint import FingerprintParams

    return FingerprintParams().max_matches


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for length in LENGTHS_S:
        pos = [r for r in rows if r["positive"] and r["length_s"] == length]
        neg = [r for r in rows if not r["positive"] and r["length_s"] == length]
        ms = [r["ms"] for r in pos]
        out[f"{length:g}s"] = {
            "p50_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)),
            "neg_p50_ms": statistics.median(r["ms"] for r in neg),
            "neg_p95_ms": float(np.percentile([r["ms"] for r in neg], 95)),
            "right": sum(r["right"] for r in pos), "n_pos": len(pos),
            "track_right": sum(r["match"] == r["source"] for r in pos),
            "false_matches": sum(r["match"] is not None for r in neg), "n_neg": len(neg),
            "per_condition": {c: sum(r["right"] for r in pos if r["condition"] == c) for c in CONDITIONS},
        }
    return out


def validate(args: argparse.Namespace) -> None:
    """The generator's copies against the same transformations of the audio (librosa's pitch
    shift and time stretch, then the landmarks), for a sample of indexed tracks: landmarks per
    second and how clumped a track's hashes are."""
    import librosa

    from audiolsh.audio import decode
    from audiolsh.features.landmarks import FP_SR, landmarks

    indexed, _ = split_tracks(_tracks(), seed=0)
    rows = []
    for i, p in enumerate(indexed[:: max(1, len(indexed) // args.n_tracks)][: args.n_tracks]):
        y, _ = decode.load(p, sr=FP_SR, duration_s=120.0)
        lm = landmarks(y, FP_SR)
        src = fs.Source(p, lm.hashes, lm.times, len(y) / FP_SR)
        for k in (1, 2):
            spec = fs.copy_spec(i, k, seed=0)
            shifted = librosa.effects.pitch_shift(y, sr=FP_SR, n_steps=12 * math.log2(spec.freq_ratio))
            yr = librosa.effects.time_stretch(shifted, rate=1 / spec.time_ratio)
            real_lm = landmarks(np.asarray(yr, np.float32), FP_SR)
            real = fs.Source(p, real_lm.hashes, real_lm.times, len(yr) / FP_SR)
            a, b = fs.copy_statistics(src, real), fs.copy_statistics(src, fs.synthetic_copy(src, spec))
            rows.append({"track": Path(p).name, "freq_ratio": spec.freq_ratio, "time_ratio": spec.time_ratio,
                         **{k: round(v, 3) for k, v in a.items()},
                         **{k.replace("copy", "synthetic"): round(v, 3)
                            for k, v in b.items() if "copy" in k}})
    keys = ("rate", "repeat", "single")
    print(f"{len(rows)} copies of {len(rows) // 2} tracks (first 120 s each); mean over them")
    print("| " + " | ".join(f"{k}: source | real copy | synthetic" for k in keys) + " |")
    print("|---|---|---|")
    print("| " + " | ".join(" / ".join(f"{np.mean([r[f'{k}_{t}'] for r in rows]):.2f}"
                                      for t in ("src", "copy", "synthetic")) for k in keys) + " |")
    Path(args.out).write_text(json.dumps(rows, indent=1))


def table(args: argparse.Namespace) -> None:
    reports = sorted((json.loads(Path(p).read_text()) for p in args.reports), key=lambda r: r["hours"])
    print("| hours | tracks | bytes/hour | open (s) | RSS (MiB) | 3-s p50/p95 (ms) | 5-s p50/p95 "
          "| 10-s p50/p95 | negatives 10-s p50/p95 | right track (and offset) 3/5/10 s "
          "| no match on negatives 3/5/10 s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in reports:
        s = r["summary"]
        times = [f"{s[k]['p50_ms']:.0f} / {s[k]['p95_ms']:.0f}" for k in ("3s", "5s", "10s")]
        neg_ms = s["10s"].get("neg_p95_ms")  # reports written before it have none
        times.append("-" if neg_ms is None else f"{s['10s']['neg_p50_ms']:.0f} / {neg_ms:.0f}")
        right = " / ".join(f"{s[k]['track_right']} ({s[k]['right']})/{s[k]['n_pos']}"
                           for k in ("3s", "5s", "10s"))
        neg = " / ".join(f"{s[k]['n_neg'] - s[k]['false_matches']}/{s[k]['n_neg']}"
                         for k in ("3s", "5s", "10s"))
        print(f"| {r['hours']:,.0f} | {r['n_tracks']:,} | {r['bytes_per_hour'] / 1e6:.2f} MB "
              f"| {r['open_s']:.2f} "
              f"| {r['memory_mib']['VmRSS']:.0f} (anon {r['memory_mib']['RssAnon']:.0f}) | "
              + " | ".join(times) + f" | {right} | {neg} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grow")
    g.add_argument("--index", required=True)
    g.add_argument("--hours", type=float, required=True)
    g.add_argument("--work", default=os.fspath(OUT / "work"))
    g.add_argument("--cache", default=os.fspath(OUT / "landmarks"))
    g.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("query")
    q.add_argument("--index", required=True)
    q.add_argument("--clips", default=os.fspath(OUT / "clips"))
    q.add_argument("--positive-tracks", type=int, default=28)
    q.add_argument("--compare-full", type=int, default=0)
    q.add_argument("--out", required=True)
    c = sub.add_parser("cold")
    c.add_argument("--index", required=True)
    c.add_argument("--clips", default=os.fspath(OUT / "clips"))
    c.add_argument("--positive-tracks", type=int, default=28)
    c.add_argument("--n-clips", type=int, default=100)
    c.add_argument("--page-in", action="store_true")
    c.add_argument("--second-at", type=float, default=0.0,
                   help="seconds after the open to answer as many other clips (0: none)")
    c.add_argument("--keep-cache", action="store_true", help="do not drop the page cache (a warm run)")
    c.add_argument("--out", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--n-tracks", type=int, default=8)
    v.add_argument("--out", default=os.fspath(OUT / "validate.json"))
    t = sub.add_parser("table")
    t.add_argument("reports", nargs="+")
    args = ap.parse_args()
    {"grow": grow, "query": query, "cold": cold, "validate": validate, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
