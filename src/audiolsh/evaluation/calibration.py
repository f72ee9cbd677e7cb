"""Is audiolsh's confidence a probability?  Fit it, and check it, on the identification protocol.

Every clip audiolsh answers with a candidate (queried at ``min_confidence`` 0) is one example:
its confidence against whether the candidate is the clip's source (a negative clip's candidate
is always wrong).  :func:`calibration_summary` gives the expected calibration error and the
reliability table; :func:`fit_from_report` refits ``audiolsh.index.confidence`` from the
engine's quantities recorded per clip (``AudiolshSystem.info["candidates"]``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.evaluation.identify import Answer, Clip, IdentifyReport, checked_length_s, verified_overlaps
from audiolsh.evaluation.overlaps import OverlapCheck, verify_hits
from audiolsh.index import confidence as calibrated
from audiolsh.index import verification

__all__ = ["calibration_summary", "check_weak_negatives", "fit_from_report", "fit_verification",
           "load_report", "reliability_markdown", "reliability_png", "verification_examples",
           "weak_candidates"]


def _right(clips: Sequence[Clip], answers: Sequence[Answer]) -> tuple[np.ndarray, np.ndarray]:
    """(answered, right) per clip: a candidate was returned; it is the clip's source track."""
    answered = np.array([a.track is not None for a in answers], bool)
    right = np.array([a.track is not None and c.positive and a.track == c.source
                      for a, c in zip(answers, clips)], bool)
    return answered, right


def calibration_summary(clips: Sequence[Clip], answers: Sequence[Answer], n_bins: int = calibrated.N_BINS
                        ) -> dict[str, Any]:
    """ECE and reliability bins of the answered clips' scores read as probabilities."""
    answered, right = _right(clips, answers)
    conf = np.array([a.score for a in answers], np.float64)[answered]
    return {"n": int(answered.sum()), "n_unanswered": int((~answered).sum()),
            "ece": calibrated.expected_calibration_error(conf, right[answered], n_bins),
            "bins": calibrated.reliability(conf, right[answered], n_bins)}


def load_report(path: str | Path) -> IdentifyReport:
    """A report written by ``evaluate identify --out``, read back for refitting or checking
    (JSON nulls of the candidates' NaN turned back; the per-system results are not)."""
    data = json.loads(Path(path).read_text())
    fields = data["answers"]["fields"]
    answers = {name: [Answer(**dict(zip(fields, row))) for row in rows]
               for name, rows in data["answers"].items() if name != "fields"}
    for info in data["systems"].values():
        for key in ("candidates", "transforms", "verified"):
            if key in info:
                info[key] = [[math.nan if v is None else v for v in row] for row in info[key]]
    return IdentifyReport(data["corpus"], data["protocol"], [], data["machine"], data["skipped"],
                          data["systems"], [Clip(**c) for c in data["clips"]], answers,
                          overlap_ncc={name: v for name, v in data.get("overlap_ncc", {}).items()
                                       if isinstance(v, list)})  # older reports: "min_ncc", "rule"


def fit_from_report(report: IdentifyReport, system: str = "audiolsh", *,
                    budget: float | None = None) -> calibrated.Calibration:
    """A calibration fitted on ``system``'s candidates of every clip of ``report``; ``budget``:
    the default threshold from a false-match budget instead of the former operating point (lowered
    while the negatives add no false match)."""
    info = report.systems.get(system, {})
    # log10 p (NaN: no candidate), agreeing, query hashes, seconds, noise level, envelope z (NaN: none)
    rows = info.get("candidates")
    answers = report.answers.get(system)
    if rows is None or answers is None or len(rows) != len(report.clips):
        raise ParameterError(f"the report has no per-clip candidates of {system} to fit on")
    if any(len(r) != len(calibrated.FEATURES) for r in rows):
        raise ParameterError(f"the report's candidates of {system} predate the energy envelope; run"
                             " evaluate identify again to fit on them")
    _, right = _right(report.clips, answers)
    X = np.array(rows, np.float64).reshape(-1, len(calibrated.FEATURES))
    p = report.protocol
    meta = {"fitted_on": {"seed": p.get("seed"), "n_clips": int(np.isfinite(X[:, 0]).sum()),
                          "n_right": int(right.sum()), "conditions": p.get("conditions"),
                          "lengths_s": p.get("lengths_s"), "n_tracks": report.corpus.get("n_tracks")},
            "source_sha1": info.get("source_sha1"), "command": report.machine.get("command")}
    clean = np.array([c.positive and c.condition == "clean" for c in report.clips], bool)
    # A hit on a verified overlap (the reported track holds that audio) is no false match.
    ncc = report.overlap_ncc.get(system) or [math.nan] * len(report.clips)  # NaN or None: not checked
    overlap = verified_overlaps(report.clips, ncc)
    negative = np.array([not c.positive for c in report.clips], bool) & ~overlap
    return calibrated.fit(X[:, 0], X[:, 1], X[:, 2], X[:, 3], right, noise=X[:, 4], envelope_z=X[:, 5],
                          clean=clean if clean.any() else None,
                          negative=negative, budget=budget, meta=meta)


def weak_candidates(report: IdentifyReport, system: str = "audiolsh") -> tuple[np.ndarray, np.ndarray]:
    """(weak, confidence): which clips' candidates a query checks against the track's audio (under
    their calibration's default, at the track's own speed), and every candidate's confidence
    before that check (NaN: no candidate), from the engine's quantities recorded per clip."""
    info = report.systems.get(system, {})
    rows, transforms = info.get("candidates"), info.get("transforms")
    if rows is None or transforms is None or len(rows) != len(report.clips):
        raise ParameterError(f"the report has no per-clip candidates of {system}")
    X = np.array(rows, np.float64).reshape(-1, len(calibrated.FEATURES))
    T = np.array(transforms, np.float64).reshape(-1, 3)
    has = np.isfinite(X[:, 0])
    with_z = np.isfinite(X[:, 5])
    conf = np.full(len(X), np.nan)
    floor = np.full(len(X), np.nan)
    for sel, name in ((has & with_z, calibrated.DEFAULT), (has & ~with_z, calibrated.WITHOUT_ENVELOPE)):
        cal = calibrated.load(name)
        conf[sel] = cal.probability(*np.nan_to_num(X[sel]).T)
        floor[sel] = cal.default_min_confidence
    weak = has & (conf < floor) & np.all(T == 1.0, axis=1)
    return weak, conf


def check_weak_negatives(report: IdentifyReport, system: str = "audiolsh") -> int:
    """Run the protocol's overlap check (:func:`~audiolsh.evaluation.overlaps.verify_hits`) on every
    weak candidate of a negative clip that the run left unchecked (it checks only the hits that
    can count at its thresholds), in ``report.overlap_ncc``: a negative whose audio really is in the
    reported track is no wrong example. Returns how many were checked."""
    weak, _ = weak_candidates(report, system)
    answers = report.answers[system]
    ncc = np.array([math.nan if v is None else v for v in
                    (report.overlap_ncc.get(system) or [math.nan] * len(report.clips))], np.float64)
    todo = [i for i in np.flatnonzero(weak & np.isnan(ncc)) if not report.clips[i].positive
            and answers[i].track is not None and answers[i].offset_s is not None]
    if todo:
        clips = [report.clips[i] for i in todo]
        checks = [OverlapCheck(c.source, c.offset_s, checked_length_s(c), str(answers[i].track),
                               round(float(answers[i].offset_s or 0.0), 2)) for c, i in zip(clips, todo)]
        ncc[todo] = verify_hits(checks)
    report.overlap_ncc[system] = ncc.tolist()
    return len(todo)


def verification_examples(report: IdentifyReport, system: str = "audiolsh", *,
                          correlations: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The weak candidates of ``report`` that were checked, as the verification model is fitted
    on them: their confidence before the check, their correlation with the track
    (``correlations``, one per clip, NaN where not checked; default: as the run recorded them), the
    seconds compared and whether the candidate is the clip's track. Negatives verified to carry
    the reported track's audio are left out (that answer is right)."""
    weak, conf = weak_candidates(report, system)
    if correlations is None:
        recorded = report.systems.get(system, {}).get("verified")
        if recorded is None:
            raise ParameterError(f"the report has no correlations of {system}'s weak candidates"
                                 " (made before they were checked): give them")
        correlations = np.array([r[0] for r in recorded], np.float64)
    ncc = np.asarray(correlations, np.float64)
    seconds = np.array([min(c.length_s, verification.MAX_SECONDS) for c in report.clips])
    _, right = _right(report.clips, report.answers[system])
    checked = report.overlap_ncc.get(system) or [math.nan] * len(report.clips)
    overlap = verified_overlaps(report.clips, checked) & ~np.array([c.positive for c in report.clips], bool)
    use = weak & np.isfinite(ncc) & ~overlap
    return {"confidence": conf[use], "correlation": ncc[use], "seconds": seconds[use], "right": right[use]}


def fit_verification(reports: Sequence[IdentifyReport],
                     correlations: Sequence[np.ndarray | None] | None = None,
                     system: str = "audiolsh") -> verification.Verification:
    """The verification model fitted on the checked weak candidates of every report
    (:func:`verification_examples`)."""
    parts = [verification_examples(r, system, correlations=None if correlations is None else correlations[i])
             for i, r in enumerate(reports)]
    ex = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    meta = {"fitted_on": [{"seed": r.protocol.get("seed"), "n_checked": int(p["right"].size),
                           "n_right": int(p["right"].sum()), "conditions": r.protocol.get("conditions"),
                           "lengths_s": r.protocol.get("lengths_s"), "n_tracks": r.corpus.get("n_tracks"),
                           "command": r.machine.get("command")} for r, p in zip(reports, parts)]}
    return verification.fit(ex["confidence"], ex["correlation"], ex["seconds"], ex["right"], meta=meta)


def reliability_markdown(summary: dict[str, Any]) -> str:
    """The reliability table as markdown, with the ECE and counts above it."""
    head = (f"Expected calibration error {summary['ece']:.4f} over {summary['n']} answered clips"
            f" ({summary['n_unanswered']} with no candidate at all).\n\n")
    lines = ["| confidence | clips | mean confidence | share right |", "|---|---|---|---|"]
    for b in summary["bins"]:
        mean = "-" if not b["n"] else f"{b['confidence']:.3f}"
        acc = "-" if not b["n"] else f"{b['accuracy']:.3f}"
        lines.append(f"| {b['lo']:.1f}-{b['hi']:.1f} | {b['n']} | {mean} | {acc} |")
    return head + "\n".join(lines) + "\n"


def reliability_png(summary: dict[str, Any], path: str | Path, *, title: str = "") -> None:
    """The reliability diagram: share right against mean confidence per bin, bins' counts below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in summary["bins"] if b["n"]]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfect")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="audiolsh")
    ax.set_ylabel("share right")
    ax.set_title(title or f"ECE {summary['ece']:.3f}")
    ax.legend(loc="upper left")
    mids = [(b["lo"] + b["hi"]) / 2 for b in summary["bins"]]
    hist.bar(mids, [max(b["n"], 0) for b in summary["bins"]], width=0.09, color="0.5")
    hist.set_yscale("log")
    hist.set_xlabel("confidence")
    hist.set_ylabel("clips")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
