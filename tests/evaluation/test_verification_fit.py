"""Fitting the weak-candidate check (audiolsh.index.verification) from a protocol report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio.synth import music
from audiolsh.errors import ParameterError
from audiolsh.evaluation.calibration import (
    check_weak_negatives,
    fit_verification,
    load_report,
    verification_examples,
    weak_candidates,
)
from audiolsh.evaluation.identify import Answer, Clip, IdentifyReport

N = 600


def synthetic_report(rng: np.random.Generator) -> tuple[IdentifyReport, dict[str, np.ndarray]]:
    """Clips whose candidates are weak by their landmarks (chance score about 1), a fifth of them
    at another speed; right candidates correlate 0.3-0.9 with their track, wrong ones about 0.1;
    a few negatives are verified overlaps (their audio is in the track), correlating highly."""
    positive = rng.random(N) < 0.5
    right = positive & (rng.random(N) < 0.5)
    fast = rng.random(N) < 0.2
    overlap = ~positive & (rng.random(N) < 0.05)
    ncc = np.where(right | overlap, rng.uniform(0.3, 0.9, N), rng.normal(0.1, 0.04, N))
    ncc[fast] = math.nan  # not checked at another speed
    clips = [Clip(f"c{i}", f"c{i}.wav", f"t{i % 30}.ogg", bool(positive[i]), "pink0", 3.0, 1.0)
             for i in range(N)]
    answers = [Answer(c.source if right[i] else f"t{(i + 7) % 30}.ogg", 2.0, 0.01)
               for i, c in enumerate(clips)]
    rows = [[-float(c), 12.0, 1500.0, 3.0, 0.3, math.nan] for c in rng.uniform(0.5, 1.5, N)]
    transforms = [[1.04, 1.0, 1.0] if f else [1.0, 1.0, 1.0] for f in fast]
    verified = [[float(v), 3.0] for v in ncc]
    overlap_ncc = [0.9 if o else math.nan for o in overlap]
    info = {"candidates": rows, "transforms": transforms, "verified": verified}
    report = IdentifyReport({"n_tracks": 30}, {"seed": 3, "lengths_s": [3.0]}, [], {"command": "x"}, {},
                            {"audiolsh": info}, clips, {"audiolsh": answers},
                            overlap_ncc={"audiolsh": overlap_ncc})
    return report, {"right": right, "fast": fast, "overlap": overlap}


def test_the_fit_uses_checked_weak_candidates_and_leaves_out_verified_overlaps(tmp_path: Path) -> None:
    report, truth = synthetic_report(np.random.default_rng(5))
    weak, conf = weak_candidates(report)
    assert np.array_equal(weak, ~truth["fast"]) and np.all(conf < 0.5)
    ex = verification_examples(report)
    assert ex["right"].size == int((~truth["fast"] & ~truth["overlap"]).sum())
    assert ex["right"].sum() == int((truth["right"] & ~truth["fast"]).sum())
    model = fit_verification([report])
    assert model.coef[1] > 0 and model.meta["fitted_on"][0]["seed"] == 3
    assert model.confidence(0.01, 0.6, 3.0) > 0.95 and model.confidence(0.01, 0.1, 3.0) < 0.05
    # Read back from the report's JSON, the same fit.
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report.to_dict()).replace("NaN", "null"))
    assert fit_verification([load_report(path)]) == model
    # Left in, the overlaps (high correlation, "wrong") would weaken what a correlation says.
    blind = IdentifyReport(report.corpus, report.protocol, [], report.machine, {}, report.systems,
                           report.clips, report.answers, overlap_ncc={"audiolsh": [math.nan] * N})
    assert fit_verification([blind]).confidence(0.01, 0.6, 3.0) < model.confidence(0.01, 0.6, 3.0)
    del report.systems["audiolsh"]["verified"]
    with pytest.raises(ParameterError, match="made before they were checked"):
        fit_verification([report])


def test_weak_negatives_the_run_left_unchecked_get_the_overlap_check(tmp_path: Path) -> None:
    """A negative clip cut from a file that holds the reported track's audio is a verified overlap
    once checked; one of unrelated music is not."""
    sr = 16000
    track, other = music(duration_s=20.0, sr=sr, seed=1), music(duration_s=20.0, sr=sr, seed=2)
    for name, y in (("track.wav", track), ("copy.wav", track), ("other.wav", other)):
        sf.write(tmp_path / name, y, sr)
    clips = [Clip(f"n{i}", f"n{i}.wav", str(tmp_path / src), False, "clean", 3.0, 5.0)
             for i, src in enumerate(("copy.wav", "other.wav"))]
    answers = [Answer(str(tmp_path / "track.wav"), 5.0, 0.01) for _ in clips]
    info = {"candidates": [[-1.0, 12.0, 1500.0, 3.0, 0.3, math.nan]] * 2, "transforms": [[1.0, 1.0, 1.0]] * 2}
    report = IdentifyReport({}, {}, [], {}, {}, {"audiolsh": info}, clips, {"audiolsh": answers},
                            overlap_ncc={"audiolsh": [math.nan, math.nan]})
    assert check_weak_negatives(report) == 2
    copy_ncc, other_ncc = report.overlap_ncc["audiolsh"]
    assert copy_ncc > 0.95 and abs(other_ncc) < 0.2
    assert check_weak_negatives(report) == 0  # checked once
