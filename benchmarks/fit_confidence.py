"""Fit audiolsh's confidence calibration on one run of the identification protocol, check it on another.

    audiolsh evaluate identify DEV --no-audfprint --lengths 1,2,3,5,10 --seed 1 --min-confidence 0 \\
        --out seed1.json
    audiolsh evaluate identify DEV --no-audfprint --lengths 1,2,3,5,10 --seed 2 --min-confidence 0 \\
        --out seed2.json
    .venv/bin/python benchmarks/fit_confidence.py seed1.json --check seed2.json \\
        --png docs/results/confidence_reliability.png

Fits on every clip of the first report (the engine's quantities recorded per clip, so no query
is run again), writes the calibration (default: the one the package ships), and reports the
expected calibration error and the reliability table of the fit applied to the second report's
clips (another split of the corpus, other excerpts and noises).  ``evaluate identify
--fit-confidence OUT`` does the fit in the same run as the queries.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np

from audiolsh.evaluation.calibration import (
    calibration_summary,
    fit_from_report,
    load_report,
    reliability_markdown,
    reliability_png,
)
from audiolsh.evaluation.identify import Answer, verified_overlaps
from audiolsh.index import confidence as calibrated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fit_report", type=Path, help="evaluate identify --out JSON to fit on")
    ap.add_argument("--out", type=Path, default=None, help="calibration JSON [default: the package's own]")
    ap.add_argument("--check", type=Path, default=None, help="another run's JSON to report on")
    ap.add_argument("--false-match-budget", type=float, default=None, metavar="SHARE",
                    help="default threshold: the lowest whose false matches on the fit's negatives stay"
                         f" within SHARE (e.g. {calibrated.FALSE_MATCH_BUDGET})"
                         " [default: the former operating point, lowered while no false match is added]")
    ap.add_argument("--png", type=Path, default=None, help="reliability diagram of the check")
    args = ap.parse_args()
    shipped = resources.files("audiolsh.features").joinpath("data", f"{calibrated.DEFAULT}.json")
    out = args.out or Path(str(shipped))
    report = load_report(args.fit_report)
    cal = fit_from_report(report, budget=args.false_match_budget)
    cal.save(out)
    print(f"fitted on {cal.meta['fitted_on']['n_clips']} candidates (seed {cal.meta['fitted_on']['seed']}),"
          f" written to {out}: default min confidence {cal.default_min_confidence:g},"
          f" about {cal.hashes_needed} hashes needed; coef {np.round(cal.coef, 3).tolist()},"
          f" intercept {cal.intercept:.3f}")
    for name, rep in (("fit", report), ("check", load_report(args.check) if args.check else None)):
        if rep is None:
            continue
        rows = np.array(rep.systems["audiolsh"]["candidates"], np.float64)
        has = np.isfinite(rows[:, 0])
        conf = np.zeros(len(rows))
        conf[has] = cal.probability(*rows[has].T)
        answers = [Answer(a.track, a.offset_s, float(c) if a.track else a.score)
                   for a, c in zip(rep.answers["audiolsh"], conf)]
        summary = calibration_summary(rep.clips, answers)
        print(f"\n{name}: seed {rep.protocol['seed']}, {rep.protocol['n_clips']} clips")
        print(reliability_markdown(summary))
        pos = np.array([c.positive for c in rep.clips])
        at = np.array([a.track is not None and s >= cal.default_min_confidence
                       for a, s in zip(answers, conf)])
        right = np.array([a.track == c.source and c.positive for a, c in zip(answers, rep.clips)])
        ncc = rep.overlap_ncc.get("audiolsh") or [np.nan] * len(rep.clips)
        overlap = verified_overlaps(rep.clips, ncc) & ~pos
        print(f"at the default {cal.default_min_confidence:g}: {int((at & right).sum())}/{int(pos.sum())}"
              f" right, {int((at & ~pos & ~overlap).sum())}/{int((~pos).sum())} false matches"
              f" (and {int((at & overlap).sum())} verified overlaps)")
        lengths = sorted({c.length_s for c in rep.clips})
        for length in lengths:
            sel = [i for i, c in enumerate(rep.clips) if c.length_s == length]
            part = calibration_summary([rep.clips[i] for i in sel], [answers[i] for i in sel])
            print(f"  {length:g}-s clips: ECE {part['ece']:.4f} over {part['n']}")
        if name == "check" and args.png:
            title = f"held-out seed {rep.protocol['seed']}: ECE {summary['ece']:.3f}"
            reliability_png(summary, args.png, title=title)
            print(f"reliability diagram: {args.png}")


if __name__ == "__main__":
    main()
