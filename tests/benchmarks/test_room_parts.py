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


def test_recorded_talkers_are_the_given_recordings_mixed_like_the_synthetic_babble() -> None:
    t = np.arange(rp.SR // 2) / rp.SR
    tones = {440.0: [np.sin(2 * np.pi * 440.0 * t).astype(np.float32)],
             1250.0: [np.sin(2 * np.pi * 1250.0 * t).astype(np.float32) * 0.1]}
    speakers = list(tones.values())
    z = rp.recorded_babble(5 * rp.SR, seed=3, speakers=speakers)
    assert z.shape == (5 * rp.SR,) and z.dtype == np.float32
    assert np.sqrt(np.mean(z.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(z, rp.recorded_babble(5 * rp.SR, seed=3, speakers=speakers))
    assert not np.array_equal(z, rp.recorded_babble(5 * rp.SR, seed=4, speakers=speakers))
    spectrum = np.abs(np.fft.rfft(z))
    f = np.fft.rfftfreq(z.size, 1 / rp.SR)
    near = np.zeros(f.size, bool)
    for hz in tones:
        near |= np.abs(f - hz) < 30
    assert (spectrum[near] ** 2).sum() > 0.95 * (spectrum**2).sum()  # every talker speaks only its recordings


def test_six_talkers_are_six_speakers_where_there_are_six() -> None:
    t = np.arange(rp.SR // 2) / rp.SR
    tones = [300.0 + 200.0 * k for k in range(6)]  # a speaker is its tone (whole cycles in 0.5 s)
    speakers = [[np.sin(2 * np.pi * hz * t).astype(np.float32)] for hz in tones]
    for seed in range(5):
        z = rp.recorded_babble(4 * rp.SR, seed=seed, speakers=speakers, n_voices=6)
        spectrum = np.abs(np.fft.rfft(z)) ** 2
        f = np.fft.rfftfreq(z.size, 1 / rp.SR)
        share = [spectrum[np.abs(f - hz) < 20].sum() / spectrum.sum() for hz in tones]
        assert min(share) > 0.03, (seed, share)  # every speaker talks (a weight of 0.5-1 each)
    few = speakers[:2]  # fewer speakers than talkers: they talk again
    assert rp.recorded_babble(rp.SR, seed=0, speakers=few, n_voices=6).shape == (rp.SR,)


def test_recorded_talkers_add_two_conditions_and_leave_the_others_as_they_were() -> None:
    y = np.random.default_rng(1).standard_normal(rp.SR).astype(np.float32)
    speakers = [[np.random.default_rng(2).standard_normal(rp.SR // 3).astype(np.float32)]]
    plain, more = rp.parts(y, seed=5), rp.parts(y, seed=5, speakers=speakers)
    assert list(more) == [*plain, "room, recorded talkers", "recorded talkers, no room"]
    for cond, z in plain.items():
        np.testing.assert_array_equal(more[cond], z)
    assert not np.array_equal(more["room, recorded talkers"], more["room"])
    assert more["room, recorded talkers"].shape == y.shape


def test_speakers_are_the_folders_and_their_recordings_lose_their_silent_ends(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import soundfile as sf

    t = np.arange(rp.SR) / rp.SR
    word = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    quiet = np.zeros(rp.SR // 2, np.float32)
    for who, n in (("anna", 2), ("ben", 3)):
        (tmp_path / who).mkdir()
        for k in range(n):
            sf.write(tmp_path / who / f"p{k}.wav", np.concatenate([quiet, word, quiet]), rp.SR)
    sf.write(tmp_path / "anna" / "placeholder.wav", quiet, rp.SR)  # silent: skipped, said once
    (tmp_path / "empty").mkdir()
    speakers = rp.load_speakers(str(tmp_path))
    assert [len(s) for s in speakers] == [2, 3]
    said = capsys.readouterr().err
    assert "1 recordings skipped" in said and "placeholder.wav" in said and "2 speakers, 5 recordings" in said
    for said in speakers[0] + speakers[1]:  # the word, then a pause of 0.1-0.4 s
        voiced = np.flatnonzero(np.abs(said) > 0.01)
        assert voiced[0] < 0.1 * rp.SR and voiced[-1] - voiced[0] > 0.99 * rp.SR
        assert 0.1 * rp.SR <= said.size - voiced[-1] <= 0.5 * rp.SR  # trimmed to a frame, then the pause
    with pytest.raises(SystemExit, match="no folder of recordings"):
        rp.load_speakers(str(tmp_path / "empty"))
