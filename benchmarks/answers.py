"""Record the answers of the audiolsh command line on a real corpus, and compare two recordings.

A refactor must not change what the CLI answers. ``record`` runs the CLI as subprocesses on a
music folder (index, identify, similar in every form, nearest, vector k-NN, info) and writes every
answer, without timings and with paths relative to the music folder, into one JSON file;
``compare`` tells how many answers of two recordings are identical and shows the first
differences (exit status 1 when anything differs beyond the tolerance).

    python benchmarks/answers.py record ~/.cache/audiolsh-corpus/dev --workdir /tmp/ans \\
        --out answers.json [--python .venv/bin/python] [--clips 40]
    python benchmarks/answers.py compare before.json after.json

Clips are excerpts of library tracks, chosen deterministically: the tracks from the sorted list
of the library's paths with a seeded generator, each with a duration of 5 or 10 s and an offset
from a small grid (the CLI takes one ``--offset``/``--duration`` per call, so clips sharing
both go to the CLI in one call). Track ids, ranks and vector ids are compared exactly;
scores, distances and offsets with a relative tolerance of 1e-4.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "audiolsh-answers/1"
SEED = 0
DURATIONS_S = (5.0, 10.0)
OFFSETS_S = (12.5, 37.25, 71.0)  # a small grid: clips sharing offset and duration share a call
K = 5
N_TRACK_QUERIES = 4
# similar: answer name -> extra options (every one with -k K)
SIMILAR = {
    "similar/rhythm": ["--by", "rhythm"],
    "similar/timbre": ["--by", "timbre"],
    "similar/chroma": ["--by", "chroma"],
    "similar/peaks": ["--by", "peaks"],
    "similar/combined": ["--by", "combined"],
    "similar/chroma-vote": ["--by", "chroma", "--method", "vote"],
    "similar/combined-worst": ["--by", "combined", "--worst"],
}
VECTOR_SHAPE = (20_000, 64)
N_VECTOR_QUERIES = 500
N_CENTRES = 64
VECTOR_K = 10
DROPPED_FIELDS = {"elapsed_ms", "location", "added_at", "created_at", "updated_at"}
EXACT_FIELDS = {"track_id", "id", "rank", "query", "path", "votes"}
REL_TOL = 1e-4
ABS_TOL = 1e-6  # below this two numbers are the same whatever their ratio (e.g. 0.0 and 1e-9)


@dataclass(frozen=True, order=True)
class Clip:
    path: str  # relative to the music folder
    offset_s: float
    duration_s: float

    @property
    def key(self) -> str:
        return f"{self.path}@{self.offset_s:g}+{self.duration_s:g}"


# ------------------------------------------------------------------------------------------ record


class Runner:
    """Runs ``PYTHON -m audiolsh ...`` and keeps the exit status and wall time of every call."""

    def __init__(self, python: str, music: Path, workdir: Path) -> None:
        self.python = python
        self.music = music
        self.workdir = workdir
        self.exit_status: dict[str, int] = {}
        self.seconds: dict[str, float] = defaultdict(float)

    def __call__(self, label: str, *args: str | Path, step: str) -> str:
        cmd = [self.python, "-m", "audiolsh", *map(str, args)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        self.seconds[step] += time.perf_counter() - t0
        self.exit_status[label] = proc.returncode
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            print(f"warning: {label}: exit status {proc.returncode}\n{tail}", file=sys.stderr)
        return proc.stdout

    def jsonl(self, label: str, *args: str | Path, step: str) -> list[dict[str, Any]]:
        out = self(label, *args, step=step)
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def relativise(obj: Any, music: Path, workdir: Path) -> Any:
    """Drop timing and location fields; paths under ``music`` become relative, under ``workdir``
    start with ``$WORKDIR/``."""
    if isinstance(obj, dict):
        return {k: relativise(v, music, workdir) for k, v in obj.items() if k not in DROPPED_FIELDS}
    if isinstance(obj, list):
        return [relativise(v, music, workdir) for v in obj]
    if isinstance(obj, str):
        for root, prefix in ((music, ""), (workdir, "$WORKDIR/")):
            if obj.startswith(f"{root}/"):
                return prefix + obj[len(str(root)) + 1:]
    return obj


def choose_clips(tracks: list[dict[str, Any]], n: int, seed: int) -> list[Clip]:
    """``n`` excerpts of distinct tracks (all tracks when fewer), seeded, from the sorted paths."""
    tracks = sorted(tracks, key=lambda t: t["path"])
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(tracks))[:n]
    clips = []
    for i in chosen:
        duration = float(rng.choice(DURATIONS_S))
        length = tracks[i]["duration_s"] or 0.0
        fits = [o for o in OFFSETS_S if o + duration <= length - 1.0] or [0.0]
        clips.append(Clip(tracks[i]["path"], float(rng.choice(fits)), duration))
    return sorted(clips)


def clustered_vectors(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Data and held-out queries from one seeded Gaussian mixture (float32)."""
    rng = np.random.default_rng(seed)
    n, dim = VECTOR_SHAPE
    centres = rng.standard_normal((N_CENTRES, dim)).astype(np.float32) * 3
    total = n + N_VECTOR_QUERIES
    X = centres[rng.integers(0, N_CENTRES, total)] + rng.standard_normal((total, dim)).astype(np.float32)
    return X[:n], X[n:]


def record(args: argparse.Namespace) -> int:
    music = args.music_dir.resolve()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lib = workdir / "lib"
    if not args.reuse_index:
        shutil.rmtree(lib, ignore_errors=True)
    run = Runner(args.python, music, workdir)
    answers: dict[str, dict[str, Any]] = defaultdict(dict)
    t_start = time.perf_counter()

    def rel(obj: Any) -> Any:
        return relativise(obj, music, workdir)

    # (a) index, then what the library holds
    print(f"indexing {music} into {lib} (-j {args.jobs})", file=sys.stderr)
    run("index", "index", music, "--index", lib, "-j", str(args.jobs), step="index")
    # --json: the spelling every version takes; a track's id is "track_id" since the records'
    # vocabulary reached info ("id" before), named one way so recordings of both compare.
    info = rel(json.loads(run("info", "info", "--index", lib, "--json", "--tracks", step="info")))
    info["tracks"] = [{"track_id": t.pop("id"), **t} if "id" in t else t for t in info["tracks"]]
    answers["info"]["library"] = info
    clips = choose_clips(info["tracks"], args.clips, args.seed)
    groups: dict[tuple[float, float], list[Clip]] = defaultdict(list)
    for clip in clips:
        groups[(clip.offset_s, clip.duration_s)].append(clip)
    print(f"{len(clips)} clips in {len(groups)} offset/duration groups", file=sys.stderr)

    def by_query(records: list[dict[str, Any]], group: list[Clip]) -> Iterator[tuple[str, Any]]:
        keys = {str(music / c.path): c.key for c in group}
        for r in records:
            yield keys[r["query"]], rel(r)

    # (b)-(d) identify, similar, nearest: one call per group and command
    for (offset, duration), group in sorted(groups.items()):
        paths = [music / c.path for c in group]
        where = ["--index", lib, "--offset", f"{offset:g}", "--duration", f"{duration:g}",
                 "--format", "jsonl"]
        tag = f"@{offset:g}+{duration:g}"
        print(f"clips {tag}: {len(group)}", file=sys.stderr)
        calls = {"identify": ["identify", *paths, *where]}
        calls |= {name: ["similar", *paths, *extra, "-k", str(K), *where] for name, extra in SIMILAR.items()}
        calls["nearest"] = ["nearest", *paths, "-k", str(K), *where]
        for name, cmd in calls.items():
            records = run.jsonl(f"{name} {tag}", *cmd, step=name.split("/")[0])
            answers[name].update(by_query(records, group))

    # (c) similar --track for a few tracks, chosen by path (ids are part of the answers)
    tracks = sorted(info["tracks"], key=lambda t: t["path"])
    rng = np.random.default_rng(args.seed + 1)
    picked = [tracks[i] for i in sorted(rng.choice(len(tracks), min(N_TRACK_QUERIES, len(tracks)),
                                                   replace=False))]
    ids = [x for t in picked for x in ("--track", str(t["track_id"]))]
    for name, extra in SIMILAR.items():
        records = run.jsonl(f"{name} --track", "similar", *ids, *extra, "-k", str(K), "--index", lib,
                            "--format", "jsonl", step="similar")
        answers[f"{name} --track"].update((f"track:{r['query']}", r) for r in map(rel, records))

    # (e) vector k-NN on seeded clustered data, cosine and euclidean, LSH and exact
    data, queries = clustered_vectors(args.seed)
    np.save(workdir / "vectors.npy", data)
    np.save(workdir / "queries.npy", queries)
    for metric in ("cosine", "euclidean"):
        vec = workdir / f"vec-{metric}"
        shutil.rmtree(vec, ignore_errors=True)
        run(f"vectors add {metric}", "vectors", "add", workdir / "vectors.npy", "--index", vec,
            "--metric", metric, step="vectors")
        for exact in ([], ["--exact"]):
            name = f"vectors/{metric}{'-exact' if exact else ''}"
            records = run.jsonl(name, "vectors", "query", workdir / "queries.npy", "--index", vec,
                                "-k", str(VECTOR_K), *exact, "--format", "jsonl", step="vectors")
            answers[name].update((str(r["query"]), r) for r in map(rel, records))

    answers["exit_status"] = dict(run.exit_status)
    total_s = time.perf_counter() - t_start
    out = {
        "format": FORMAT,
        "settings": {"seed": args.seed, "clips": args.clips, "k": K, "durations_s": DURATIONS_S,
                     "offsets_s": OFFSETS_S, "similar": SIMILAR, "vector_shape": VECTOR_SHAPE,
                     "vector_queries": N_VECTOR_QUERIES, "vector_k": VECTOR_K, "jobs": args.jobs},
        "clips": [asdict(c) for c in clips],
        "answers": {name: dict(sorted(recs.items())) for name, recs in sorted(answers.items())},
        # not compared: how long each step took
        "run": {"seconds": {k: round(v, 1) for k, v in run.seconds.items()}, "total_s": round(total_s, 1),
                "python": args.python, "pythonpath": os.environ.get("PYTHONPATH", "")},
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    counts = ", ".join(f"{name} {len(recs)}" for name, recs in out["answers"].items())
    print(f"{args.out}: {counts}; {total_s:.0f} s", file=sys.stderr)
    failed = [label for label, status in run.exit_status.items() if status != 0]
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------- compare


@dataclass
class Difference:
    where: str
    a: Any
    b: Any
    close: bool  # within the tolerance


def differences(a: Any, b: Any, where: str = "", field: str = "") -> Iterator[Difference]:
    """Every place where ``a`` and ``b`` differ; numbers of non-exact fields within the tolerance
    are reported with ``close=True``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            if k not in a or k not in b:
                yield Difference(f"{where}.{k}", a.get(k, "<missing>"), b.get(k, "<missing>"), False)
            else:
                yield from differences(a[k], b[k], f"{where}.{k}", k)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield Difference(f"{where} length", len(a), len(b), False)
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]", field)
    elif a == b and type(a) is type(b):
        return
    elif _is_number(a) and _is_number(b) and field not in EXACT_FIELDS and not (
            isinstance(a, int) and isinstance(b, int)):
        yield Difference(where, a, b, math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL))
    else:
        yield Difference(where, a, b, False)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def ranking(answer: Any) -> list[Any] | None:
    """The ranked track ids (vector ids, passage paths) of a similar/nearest/vectors answer."""
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        return None
    return [r.get("track_id", r.get("id", r.get("path"))) for r in answer["results"]]


def compare(args: argparse.Namespace) -> int:
    A, B = (json.loads(Path(p).read_text()) for p in (args.a, args.b))
    bad = False
    for part in ("format", "settings", "clips"):
        if A.get(part) != B.get(part):
            print(f"warning: the recordings differ in {part}: their answers are not comparable one to one")
            bad = True
    header = f"{'command':34} {'A':>6} {'B':>6} {'identical':>9} {'close':>6} {'differ':>6} {'missing':>7}"
    print(header)
    print("-" * len(header))
    details: list[str] = []
    for name in sorted(A["answers"].keys() | B["answers"].keys()):
        ra, rb = A["answers"].get(name, {}), B["answers"].get(name, {})
        same = close = differ = missing = 0
        for key in sorted(ra.keys() | rb.keys()):
            if key not in ra or key not in rb:
                missing += 1
                details.append(f"  {name} {key}: only in {'A' if key in ra else 'B'}")
                continue
            diffs = list(differences(ra[key], rb[key]))
            if not diffs:
                same += 1
            elif all(d.close for d in diffs):
                close += 1
            else:
                differ += 1
                if differ <= args.show:
                    details.append(f"  {name} {key}:")
                    if ranking(ra[key]) != ranking(rb[key]):
                        details.append(f"    ranking: {ranking(ra[key])} -> {ranking(rb[key])}")
                    shown = [d for d in diffs if not d.close][: args.fields]
                    details += [f"    {d.where}: {d.a!r} -> {d.b!r}" for d in shown]
                    if len(diffs) > len(shown):
                        details.append(f"    ... {len(diffs) - len(shown)} more")
        bad |= bool(differ or missing)
        flag = "  <-- differs" if differ or missing else ""
        print(f"{name:34} {len(ra):6} {len(rb):6} {same:9} {close:6} {differ:6} {missing:7}{flag}")
    if details:
        print(f"\nfirst differences (beyond a relative tolerance of {REL_TOL:g}; A -> B):")
        print("\n".join(details))
    print("\nidentical" if not bad else "\nDIFFERENT")
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="Run the CLI on MUSIC_DIR and write its answers to --out.")
    r.add_argument("music_dir", type=Path, metavar="MUSIC_DIR")
    r.add_argument("--workdir", type=Path, required=True, help="Library, vector indexes, .npy files.")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--python", default=sys.executable, help="Interpreter running `-m audiolsh`.")
    r.add_argument("--clips", type=int, default=40)
    r.add_argument("--seed", type=int, default=SEED)
    r.add_argument("-j", "--jobs", type=int, default=2, help="Indexing workers.")
    r.add_argument("--reuse-index", action="store_true",
                   help="Keep WORKDIR/lib if it exists (indexing then skips every file): for trying"
                        " the script, not for a recording.")
    c = sub.add_parser("compare", help="Compare two recordings; exit status 1 when they differ.")
    c.add_argument("a", type=Path, metavar="A.json")
    c.add_argument("b", type=Path, metavar="B.json")
    c.add_argument("--show", type=int, default=3, help="Differing answers shown per command.")
    c.add_argument("--fields", type=int, default=5, help="Differences shown per answer.")
    args = ap.parse_args()
    sys.exit(record(args) if args.command == "record" else compare(args))


if __name__ == "__main__":
    main()
