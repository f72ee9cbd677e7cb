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
from audiolsh.evaluation.identify import Answer, Clip, IdentifyReport, verified_overlaps
from audiolsh.index import confidence as calibrated

__all__ = ["calibration_summary", "fit_from_report", "load_report", "reliability_markdown", "reliability_png"]


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
        for key in ("candidates", "transforms"):
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
