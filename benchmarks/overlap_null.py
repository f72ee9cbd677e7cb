"""How well unrelated excerpts correlate: the null of the overlap check, per excerpt length.

    .venv/bin/python benchmarks/overlap_null.py ~/.cache/audiolsh-corpus/dev --lengths 1,2,3,5,10 \\
        --pairs 1000 --out null.json

Pairs of excerpts from tracks of different packages (which share no audio), at seeded random
offsets, checked as ``evaluate identify`` checks a hit on a clip of an unindexed track
(:func:`audiolsh.evaluation.overlaps.verify_hits`: band-passed waveforms, the best lag within
+-0.5 s).  Prints per length the median, the 99th and 99.9th percentiles and the largest
correlation, next to the threshold of that length
(:func:`~audiolsh.evaluation.overlaps.min_overlap_ncc`) and how many pairs reach it: the rule
should leave chance well below it at every length.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from audiolsh.audio import find_audio
from audiolsh.evaluation.identify import corpus_packages, track_duration_s
from audiolsh.evaluation.overlaps import OverlapCheck, min_overlap_ncc, verify_hits


def pairs(tracks: list[str], packages: dict[str, str], durations: dict[str, float], *, length_s: float,
          n: int, rng: np.random.Generator) -> list[OverlapCheck]:
    """``n`` checks of ``length_s``-s excerpts of two tracks of different packages."""
    long_enough = [t for t in tracks if durations[t] >= length_s + 2]
    if len({packages[t] for t in long_enough}) < 2:
        raise SystemExit(f"needs tracks of at least two packages longer than {length_s + 2:g} s")
    out: list[OverlapCheck] = []
    while len(out) < n:
        a, b = (long_enough[i] for i in rng.choice(len(long_enough), 2, replace=False))
        if packages[a] != packages[b]:
            out.append(OverlapCheck(a, float(rng.uniform(0.5, durations[a] - length_s - 1)), length_s,
                                    b, float(rng.uniform(1.0, durations[b] - length_s - 1))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path, help="a folder of packages (a subfolder each), e.g. the dev corpus")
    ap.add_argument("--lengths", default="1,2,3,5,10", help="excerpt lengths in seconds [1,2,3,5,10]")
    ap.add_argument("--pairs", type=int, default=1000, help="pairs per length [1000]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="every correlation, as JSON")
    args = ap.parse_args()
    tracks = [os.fspath(p) for p in find_audio([args.corpus])]
    packages = corpus_packages(args.corpus, tracks)
    durations = {t: track_duration_s(t) for t in tracks}
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[float]] = {}
    print("| length | pairs checked | median | 99th percentile | 99.9th | largest | threshold |"
          " at or above it |")
    print("|---|---|---|---|---|---|---|---|")
    for length_s in (float(x) for x in args.lengths.split(",")):
        ncc = verify_hits(pairs(tracks, packages, durations, length_s=length_s, n=args.pairs, rng=rng))
        rows[f"{length_s:g}"] = ncc.tolist()
        ok = ncc[np.isfinite(ncc)]
        q50, q99, q999 = np.quantile(ok, [0.5, 0.99, 0.999])
        need = float(min_overlap_ncc(length_s))
        print(f"| {length_s:g} s | {len(ok)} | {q50:.3f} | {q99:.3f} | {q999:.3f} | {ok.max():.3f} |"
              f" {need:.3f} | {int(np.sum(ok >= need))} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"pairs": args.pairs, "seed": args.seed, "ncc": rows}))


if __name__ == "__main__":
    main()
