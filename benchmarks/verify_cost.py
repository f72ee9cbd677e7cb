"""What checking weak candidates against their tracks' audio costs a query, in one process.

    python benchmarks/verify_cost.py --index fresh4/audiolsh/index \\
        --clips 'fresh4/clips/clean_3s_neg_*.wav' --clips 'fresh4/clips/pink0_3s_pos_*.wav' --n 28

Opens the index once and answers every clip both ways in turn, clip by clip (so a change of the
machine's load hits both alike): ``assess(verify=False)`` (the landmarks alone) and
``assess()`` (weak candidates checked against their files). Prints, per ``--clips`` pattern
(each contributes its first ``--n`` files), p50 / p95 / mean ms of each way, how many clips were
checked, and how many of them the check named.
"""

from __future__ import annotations

import argparse
import glob
import time

import numpy as np
import soundfile as sf

from audiolsh.index.fingerprint import FingerprintIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("--clips", action="append", required=True, help="glob of clip files (repeatable)")
    ap.add_argument("--n", type=int, default=20, help="clips per pattern")
    args = ap.parse_args()
    idx = FingerprintIndex.open(args.index, readonly=True)
    first = sorted(glob.glob(args.clips[0]))[:1]
    for c in first:  # warm-up: kernels, the calibration and the model read once
        y, sr = sf.read(c, dtype="float32")
        idx.assess(y, sr, min_confidence=0.0)
    print("| clips | n | landmarks alone p50 / p95 / mean ms | with the check p50 / p95 / mean ms |"
          " checked | named by the check |")
    print("|---|---|---|---|---|---|")
    for pattern in args.clips:
        paths = sorted(glob.glob(pattern))[: args.n]
        times: dict[bool, list[float]] = {False: [], True: []}
        checked = named = 0
        for i, path in enumerate(paths):
            y, sr = sf.read(path, dtype="float32")
            for verify in ((False, True) if i % 2 == 0 else (True, False)):
                t0 = time.perf_counter()
                v = idx.assess(y, sr, min_confidence=0.0, verify=verify)
                times[verify].append(1000 * (time.perf_counter() - t0))
                if verify and v.best is not None and v.best.verified is not None:
                    checked += 1
                    named += int(v.best.matched)
        cells = [f"{np.percentile(t, 50):.1f} / {np.percentile(t, 95):.1f} / {np.mean(t):.1f}"
                 for t in (times[False], times[True])]
        name = pattern.rsplit("/", 1)[-1]
        print(f"| `{name}` | {len(paths)} | {cells[0]} | {cells[1]} | {checked} | {named} |")
    idx.close()


if __name__ == "__main__":
    main()
