"""room_parts.py: the loud room's parts are the protocol's own, and the exhaustive oracle finds a
clip where it was cut from."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import room_parts as rp
from audiolsh.audio.synth import music
from audiolsh.evaluation.distortions import loud_room
from audiolsh.features.landmarks import FP_SR, magnitude_frames


def test_the_room_of_the_parts_is_the_protocols_loud_room() -> None:
    y = np.random.default_rng(0).standard_normal(rp.SR).astype(np.float32)
    parts = rp.parts(y, seed=7)
    assert list(parts) == ["clean", "room", "room, no talkers", "talkers, no room",
                           "room, talkers 5 dB quieter"]
    np.testing.assert_array_equal(parts["room"], loud_room(y, rp.SR, seed=7))
    assert all(z.shape == y.shape for z in parts.values())


@pytest.mark.parametrize("code", ["16:1:log", "8:3:sign"])
def test_the_oracle_names_the_track_and_offset_a_clip_was_cut_from(code: str) -> None:
    songs = [music(duration_s=20.0, sr=rp.SR, seed=s) for s in range(3)]
    oracle = rp.Oracle(rp.Code.parse(code), [magnitude_frames(rp._resample(y, rp.SR)) ** 2 for y in songs])
    start = round(7.3 * rp.SR)  # off the frame grid: the oracle tries each half frame
    track, offset_s, corr, z = oracle.answer(songs[1][start:start + 3 * rp.SR])
    assert track == 1
    assert abs(offset_s - 7.3) < 0.5 * 256 / FP_SR * (3 if code.endswith("sign") else 1) + 1e-6
    assert corr > 0.9 and z > 3


def test_the_table_counts_right_answers_above_every_negative_of_the_condition() -> None:
    def row(positive: bool, right: bool, score: float, cond: str = "room") -> dict[str, object]:
        return {"cond": cond, "positive": positive,
                "engine": {"right": right, "score": score, "named": score > 0.9},
                "o": {"right": right, "score": score, "z": 10 * score}}
    report = {"systems": ["engine", "o"], "rows": [
        row(True, True, 0.95), row(True, True, 0.5), row(True, False, 0.99),
        row(False, False, 0.6), row(False, False, 0.3)]}
    lines = rp.table(report).splitlines()
    assert lines[2] == "| room | 2 of 3 | 1 | 1 (0 of 2) | 2 of 3 | 1 / 1 |"
