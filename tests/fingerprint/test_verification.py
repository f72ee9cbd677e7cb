"""A weak candidate checked against its track's own audio file (audiolsh.index.verification)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from click.testing import CliRunner

from audiolsh.audio.align import correlate_with_track
from audiolsh.audio.synth import music, pink_noise
from audiolsh.cli import cli
from audiolsh.errors import AudioError, ParameterError
from audiolsh.features.landmarks import landmarks
from audiolsh.index import verification
from audiolsh.index.fingerprint import FingerprintIndex

SR = 16000
SONG_S = 40.0
INDEXED = (11, 12, 13, 14)
START_S = 12.3


def noisy(y: np.ndarray, snr_db: float, seed: int = 7) -> np.ndarray:
    """``y`` under pink noise at ``snr_db`` (power ratio over the clip)."""
    n = pink_noise(duration_s=len(y) / SR, sr=SR, seed=seed)[: len(y)]
    n = n / np.sqrt(np.mean(n**2)) * np.sqrt(np.mean(y**2)) * 10 ** (-snr_db / 20)
    return (y + n).astype(np.float32)


@pytest.fixture(scope="module")
def songs() -> dict[int, np.ndarray]:
    return {s: music(duration_s=SONG_S, sr=SR, seed=s) for s in (*INDEXED, 15)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, songs: dict[int, np.ndarray]) -> Path:
    root = tmp_path_factory.mktemp("tracks")
    for s in INDEXED:
        sf.write(root / f"song{s}.flac", songs[s], SR, format="FLAC")
    return root


def index_of(folder: Path, songs: dict[int, np.ndarray]) -> FingerprintIndex:
    idx = FingerprintIndex.create(None)
    with idx.session() as s:
        for i, seed in enumerate(INDEXED):
            y = songs[seed]
            s.add_track(str(folder / f"song{seed}.flac"), content_hash=f"h{i}", duration_s=len(y) / SR,
                        landmarks=landmarks(y, SR))
    return idx


def clip_of(songs: dict[int, np.ndarray], seed: int, snr_db: float, length_s: float = 3.0) -> np.ndarray:
    a = round(START_S * SR)
    return noisy(songs[seed][a : a + round(length_s * SR)], snr_db)


def test_a_weak_right_candidate_is_named_once_its_audio_agrees(folder: Path, songs: dict[int, np.ndarray]
                                                               ) -> None:
    """-12 dB pink noise over 3 s: the landmarks leave the right track under the threshold; its
    waveform correlates with the track's file at the offset, and that names it."""
    idx = index_of(folder, songs)
    clip = clip_of(songs, 12, -12.0)
    before = idx.assess(clip, SR, verify=False)
    after = idx.assess(clip, SR)
    assert before.best is not None and before.best.path.endswith("song12.flac")
    assert not before.best.matched and before.match is None and before.best.verified is None
    assert after.best is not None and after.best.path == before.best.path
    assert after.best.offset_s == before.best.offset_s == pytest.approx(START_S, abs=0.05)
    assert after.best.verified is not None and after.best.verified > 0.3
    assert after.best.confidence > before.best.confidence and after.best.matched
    assert after.match is after.best and after.reason is None
    assert after.best.to_dict()["verified"] == after.best.verified


def test_a_clip_of_unindexed_music_correlates_at_chance_and_stays_no_match(
    folder: Path, songs: dict[int, np.ndarray]
) -> None:
    idx = index_of(folder, songs)
    verdict = idx.assess(clip_of(songs, 15, 0.0), SR)
    assert verdict.best is not None and verdict.match is None
    assert verdict.best.verified is not None and abs(verdict.best.verified) < 0.2
    assert verdict.best.confidence < idx.default_min_confidence


def test_without_the_file_the_answer_is_the_landmarks_alone(
    tmp_path: Path, folder: Path, songs: dict[int, np.ndarray]
) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    idx = index_of(moved, songs)
    clip = clip_of(songs, 12, -12.0)
    (moved / "song12.flac").unlink()
    verdict = idx.assess(clip, SR)
    alone = idx.assess(clip, SR, verify=False)
    assert verdict.best is not None and alone.best is not None
    assert verdict.best.verified is None and verdict.best.confidence == alone.best.confidence
    assert verdict.match is None


def test_a_confident_answer_and_a_speed_change_are_not_checked(folder: Path, songs: dict[int, np.ndarray]
                                                                ) -> None:
    idx = index_of(folder, songs)
    clean = idx.assess(clip_of(songs, 11, 20.0), SR)
    assert clean.best is not None and clean.best.matched and clean.best.verified is None
    a = round(START_S * SR)
    faster = soxr.resample(songs[13][a : a + 6 * SR], SR * 1.05, SR).astype(np.float32)  # 5 % faster
    fast = idx.assess(noisy(faster, -6.0), SR, min_confidence=0.0)
    assert fast.best is not None and fast.best.speed != 1.0 and fast.best.verified is None


def test_correlation_finds_the_passage_and_names_an_unreadable_track(
    tmp_path: Path, songs: dict[int, np.ndarray]
) -> None:
    path = tmp_path / "t.wav"
    sf.write(path, songs[11], SR)
    a = round(START_S * SR)
    clip = songs[11][a : a + 3 * SR]
    assert correlate_with_track(clip, SR, path, START_S) > 0.95
    assert correlate_with_track(clip, SR, path, START_S + 0.3) > 0.95  # within the lag window
    assert correlate_with_track(clip, SR, path, START_S + 2.0) < 0.5  # outside it
    assert correlate_with_track(songs[12][a : a + 3 * SR], SR, path, START_S) < 0.2
    # 44.1 kHz clip against a 16 kHz file: both are compared at the check's own rate
    assert correlate_with_track(soxr.resample(clip, SR, 44100), 44100, path, START_S) > 0.95
    with pytest.raises(AudioError, match=r"gone\.wav"):
        correlate_with_track(clip, SR, tmp_path / "gone.wav", START_S)
    assert verification.correlation(clip, SR, str(tmp_path / "gone.wav"), START_S, (0.0, 3.0)) is None
    assert verification.correlation(clip, SR, str(path), START_S, (0.0, 0.2)) is None  # too short to tell
    # a file changed since it was indexed, now shorter than the offset: not checked, no error
    assert verification.correlation(clip, SR, str(path), SONG_S + 5.0, (0.0, 3.0)) is None


def test_the_window_compared_is_at_most_ten_seconds_around_the_agreeing_span() -> None:
    assert verification.window(3.0, 0.5, 2.5) == (0.0, 3.0)
    assert verification.window(60.0, 30.0, 34.0) == (27.0, 37.0)
    assert verification.window(60.0, 0.0, 2.0) == (0.0, 10.0)
    assert verification.window(60.0, 58.0, 60.0) == (50.0, 60.0)


def test_the_model_is_monotonic_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 400
    right = rng.random(n) < 0.3
    ncc = np.where(right, rng.uniform(0.25, 0.9, n), rng.uniform(-0.05, 0.25, n))
    conf = np.clip(np.where(right, rng.uniform(0.01, 0.8, n), rng.uniform(0.0, 0.3, n)), 0, 1)
    model = verification.fit(conf, ncc, np.full(n, 3.0), right)
    assert min(model.coef) >= 0.0
    p = model.probability(0.1, np.linspace(0, 1, 11), 3.0)
    assert np.all(np.diff(p) >= 0) and p[-1] > 0.9 and p[0] < 0.1
    path = tmp_path / "v.json"
    model.save(path)
    again = verification.Verification.from_json(json.loads(path.read_text()))
    assert again == model
    bad = {**model.to_json(), "features": ["x", "y"]}
    with pytest.raises(ParameterError, match="refit"):
        verification.Verification.from_json(bad)
    with pytest.raises(ParameterError, match="format version"):
        verification.Verification.from_json({**model.to_json(), "format_version": 99})
    with pytest.raises(ParameterError, match="right and wrong"):
        verification.fit(conf[:5], ncc[:5], np.full(5, 3.0), right[:5])


def test_the_shipped_model_names_what_correlates_and_not_what_does_not() -> None:
    """Whatever its refit, a weak candidate correlating as a clip of the passage does at 0 dB is
    named, and one correlating at the chance level of its length is not."""
    model = verification.load()
    assert min(model.coef) > 0.0 and model.meta.get("fitted_on")
    assert model.confidence(0.05, 0.5, 3.0) > 0.95
    assert model.confidence(0.05, 0.12, 3.0) < 0.2
    assert model.confidence(0.05, 0.08, 10.0) < 0.2


def test_identify_says_verified_and_no_verify_turns_it_off(
    tmp_path: Path, folder: Path, songs: dict[int, np.ndarray]
) -> None:
    idx = tmp_path / "lib"
    code = CliRunner().invoke(cli, ["index", str(folder), "--index", str(idx), "-j", "1",
                                    "--modes", "fingerprint"])
    assert code.exit_code == 0, code.stderr
    clip = tmp_path / "clip.wav"
    sf.write(clip, clip_of(songs, 12, -12.0), SR)
    other = tmp_path / "other.wav"
    sf.write(other, clip_of(songs, 15, 0.0), SR)
    res = CliRunner().invoke(cli, ["identify", str(clip), str(other), "--index", str(idx),
                                   "--format", "jsonl"])
    assert res.exit_code == 0, res.stderr
    named, unknown = (json.loads(line) for line in res.stdout.splitlines())
    assert named["match"]["path"].endswith("song12.flac") and named["match"]["matched"]
    assert named["match"]["verified"] > 0.3 and "reason" not in named
    assert unknown["match"] is None
    assert "checked against the track's audio there: correlation" in unknown["reason"]
    res = CliRunner().invoke(cli, ["identify", str(clip), "--index", str(idx), "--format", "jsonl",
                                   "--no-verify"])
    assert res.exit_code == 0, res.stderr
    alone = json.loads(res.stdout)
    assert alone["match"] is None and "below --min-confidence" in alone["reason"]
    assert "checked against" not in alone["reason"]
