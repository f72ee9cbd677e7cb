"""Fit the model that checks a weak candidate against its track's audio, on one run of the
identification protocol; preview it on another.

    audiolsh evaluate identify DEV --no-audfprint --no-olaf --seed 1 --work-dir fresh1 --out seed1.json
    .venv/bin/python benchmarks/fit_verification.py seed1.json [more.json ...] --check seed4.json

Every clip whose best candidate is weak (under the calibration's default, at the track's own
speed) is one example: its confidence before the check, its waveform correlation with the
candidate's track at the candidate's offset, and whether the candidate is the clip's track
(negatives verified to carry the reported track's audio are left out: the protocol's overlap
check is run here on every weak negative the run left unchecked). Reports made before the
check existed have no correlations: they are computed here from the clips (paths as the report
gives them, relative to its folder) with the function the query uses. Writes the model (default:
the one the package ships). ``--check`` applies it to another run's weak candidates and prints
what the default threshold then names, per condition at each length; the figures to quote are
those of ``evaluate identify`` run again with the model shipped.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf

from audiolsh.evaluation.calibration import (
    calibration_summary,
    check_weak_negatives,
    fit_verification,
    load_report,
    weak_candidates,
)
from audiolsh.evaluation.identify import Answer, IdentifyReport, verified_overlaps
from audiolsh.index import confidence as calibrated
from audiolsh.index import verification


def correlations(report: IdentifyReport, folder: Path) -> np.ndarray:
    """Each weak candidate's correlation as a query measures it (recorded, or computed from the
    clip files when the report predates the check); NaN elsewhere."""
    recorded = report.systems["audiolsh"].get("verified")
    if recorded is not None:
        return np.array([r[0] for r in recorded], np.float64)
    weak, _ = weak_candidates(report)
    out = np.full(len(report.clips), np.nan)
    for i in np.flatnonzero(weak):
        clip, ans = report.clips[i], report.answers["audiolsh"][i]
        path = Path(clip.path) if Path(clip.path).is_absolute() else folder / clip.path
        y, sr = sf.read(path, dtype="float32")
        span = verification.window(len(y) / sr, 0.0, 0.0)
        assert ans.track is not None and ans.offset_s is not None
        c = verification.correlation(y, sr, ans.track, float(ans.offset_s), span)
        out[i] = math.nan if c is None else c
    return out


def preview(report: IdentifyReport, ncc: np.ndarray, model: verification.Verification) -> None:
    weak, before = weak_candidates(report)
    seconds = np.array([min(c.length_s, verification.MAX_SECONDS) for c in report.clips])
    after = before.copy()
    sel = weak & np.isfinite(ncc)
    after[sel] = model.probability(before[sel], ncc[sel], seconds[sel])
    default = calibrated.load().default_min_confidence
    answers = report.answers["audiolsh"]
    pos = np.array([c.positive for c in report.clips])
    right = np.array([a.track == c.source and c.positive for a, c in zip(answers, report.clips)])
    checked = report.overlap_ncc.get("audiolsh") or [math.nan] * len(pos)
    overlap = verified_overlaps(report.clips, checked) & ~pos
    for name, conf in (("before", before), ("after", after)):
        named = np.nan_to_num(conf, nan=-1.0) >= default
        scored = [Answer(a.track, a.offset_s, float(c) if a.track else a.score)
                  for a, c in zip(answers, np.nan_to_num(conf))]
        summary = calibration_summary(report.clips, scored)
        print(f"{name}: at the default {default:g} {int((named & right).sum())}/{int(pos.sum())} right,"
              f" {int((named & ~pos & ~overlap).sum())}/{int((~pos).sum())} false matches"
              f" ({int((named & overlap).sum())} verified overlaps); ECE {summary['ece']:.4f}")
        cells: dict[tuple[str, float], list[int]] = defaultdict(lambda: [0, 0])
        for c, n, r in zip(report.clips, named, right):
            if c.positive:
                cells[(c.condition, c.length_s)][0] += int(n and r)
                cells[(c.condition, c.length_s)][1] += 1
        low = sorted((k, v) for k, v in cells.items() if v[0] < v[1])
        print("  cells not all named: " + ", ".join(f"{k[0]} {k[1]:g}s {v[0]}/{v[1]}" for k, v in low))
    neg_ncc = ncc[sel & ~pos & ~overlap]
    pos_ncc = ncc[sel & right]
    print(f"checked {int(sel.sum())}: right candidates' correlation median {np.median(pos_ncc):.3f},"
          f" negatives' max {neg_ncc.max() if neg_ncc.size else math.nan:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fit_reports", type=Path, nargs="+", help="evaluate identify --out JSONs to fit on")
    ap.add_argument("--out", type=Path, default=None, help="model JSON [default: the package's own]")
    ap.add_argument("--check", type=Path, action="append", default=[],
                    help="another run's JSON to preview on (repeatable)")
    args = ap.parse_args()
    shipped = resources.files("audiolsh.features").joinpath("data", f"{verification.DEFAULT}.json")
    out = args.out or Path(str(shipped))
    reports = [load_report(p) for p in args.fit_reports]
    for r in reports:
        check_weak_negatives(r)
    nccs = [correlations(r, p.parent) for r, p in zip(reports, args.fit_reports)]
    model = fit_verification(reports, nccs)
    model.save(out)
    fitted = model.meta["fitted_on"]
    print(f"fitted on {sum(f['n_checked'] for f in fitted)} weak candidates (seeds"
          f" {sorted({f['seed'] for f in fitted})}, {sum(f['n_right'] for f in fitted)} right), written to"
          f" {out}: coef {np.round(model.coef, 3).tolist()}, intercept {model.intercept:.3f}")
    for r, ncc in zip(reports, nccs):
        print(f"\nfit: seed {r.protocol['seed']}, lengths {r.protocol['lengths_s']}")
        preview(r, ncc, model)
    for path in args.check:
        rep = load_report(path)
        check_weak_negatives(rep)
        print(f"\ncheck: seed {rep.protocol['seed']} ({path})")
        preview(rep, correlations(rep, path.parent), model)


if __name__ == "__main__":
    main()
