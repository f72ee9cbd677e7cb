"""The fingerprint query path of another checkout against this one, in one process (issue #17).

    python benchmarks/identify_ab.py --old /work/main/src --index /work/bench-out/id-scale/idx \
        --clips '/work/bench-out/id-scale/clips/clean_10s_neg_*.wav' --n 8

Opens the index once and answers every clip with both query paths in turn, clip by clip (so a
change of the machine's load hits both alike): the other checkout's ``_search`` (variant
hashing), ``_match_narrowed`` and ``HashTable.lookup_rows`` (with the diagonal pass they call)
against this one's.  Prints p50 / p95 / mean ms of each, their ratio, and how many clips get
the very same best candidate (track, offset, score, factors, confidence) at ``min_confidence``
0.  Each ``--clips`` pattern (repeatable) contributes its first ``--n`` files.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import sys
import time
from types import ModuleType

import numpy as np
import soundfile as sf

import audiolsh.index.fingerprint as fp
from audiolsh.search import fingerprint as sfp


def _load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="the other checkout's src folder")
    ap.add_argument("--index", required=True)
    ap.add_argument("--clips", action="append", required=True, help="glob of clip files (repeatable)")
    ap.add_argument("--n", type=int, default=8, help="clips per pattern")
    args = ap.parse_args()
    old_search = _load("old_search", f"{args.old}/audiolsh/search/fingerprint.py")
    old_landmarks = _load("old_landmarks", f"{args.old}/audiolsh/features/landmarks.py")
    old_index = _load("old_index", f"{args.old}/audiolsh/index/fingerprint.py")
    old_index.pair_peaks = old_landmarks.pair_peaks  # type: ignore[attr-defined]
    old_index.dense_diagonals = old_search.dense_diagonals  # type: ignore[attr-defined]
    this, other = fp.FingerprintIndex, old_index.FingerprintIndex
    paths = {"new": (this._search, this._match_narrowed, sfp.HashTable.lookup_rows),
             "old": (other._search, other._match_narrowed, old_search.HashTable.lookup_rows)}

    def use(which: str) -> None:
        this._search, this._match_narrowed, sfp.HashTable.lookup_rows = paths[which]  # type: ignore[method-assign]

    clips = [c for pattern in args.clips for c in sorted(glob.glob(pattern))[: args.n]]
    audio = [sf.read(c, dtype="float32") for c in clips]
    idx = fp.FingerprintIndex.open(args.index, readonly=True)
    for which in paths:  # the first query of each path: kernels and pages
        use(which)
        idx.identify(*audio[0])
    print("load before", open("/proc/loadavg").read().strip())
    ms: dict[str, list[float]] = {k: [] for k in paths}
    same = 0
    for clip, (y, sr) in zip(clips, audio):
        best = {}
        for which in paths:
            use(which)
            t = time.perf_counter()
            best[which] = idx.assess(y, sr, min_confidence=0).best
            ms[which].append((time.perf_counter() - t) * 1000)
        same += best["new"] == best["old"]
        if best["new"] != best["old"]:
            print(f"{clip}: new {best['new']} old {best['old']}")
    for which, v in ms.items():
        a = np.array(v)
        print(f"{which} p50 {np.percentile(a, 50):.1f} p95 {np.percentile(a, 95):.1f} mean {a.mean():.1f} ms")
    print(f"ratio of means old/new {np.mean(ms['old']) / np.mean(ms['new']):.2f}; "
          f"identical best candidates {same}/{len(clips)}")
    print("load after", open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
