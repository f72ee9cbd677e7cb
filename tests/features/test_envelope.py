"""The band-energy envelope: block grid, packing, and agreement at an alignment under noise."""

from __future__ import annotations

import json
import subprocess
import sys

import librosa
import numpy as np
import pytest
import soxr

from audiolsh.audio.synth import music, pink_noise
from audiolsh.errors import ParameterError
from audiolsh.evaluation.distortions import loud_room
from audiolsh.features.envelope import (
    BLOCK_FRAMES,
    F_MAX,
    F_MIN,
    N_BANDS,
    agreement,
    band_power,
    block_changes,
    clip_changes,
    mel_bank,
    pack,
    unpack,
)
from audiolsh.features.landmarks import FP_SR, HOP_LENGTH, magnitude_frames
from audiolsh.features.spectral import mel_basis

TRACK_S = 60.0


def _power(y: np.ndarray) -> np.ndarray:
    return band_power(magnitude_frames(np.asarray(y, np.float32)))


@pytest.fixture(scope="module")
def track() -> np.ndarray:
    return music(duration_s=TRACK_S, sr=FP_SR, seed=21)


@pytest.fixture(scope="module")
def track_signs(track: np.ndarray) -> np.ndarray:
    return unpack(pack(block_changes(_power(track))))


def _clip_at(track: np.ndarray, frame: int, seconds: float) -> np.ndarray:
    start = frame * HOP_LENGTH
    return track[start : start + round(seconds * FP_SR)]


@pytest.mark.parametrize("frame", [300, 301, 302, 700])
def test_a_clip_pooled_from_its_phase_has_its_tracks_blocks(track: np.ndarray, frame: int) -> None:
    # A clip cut on the frame grid has the track's frames; skipping to the track's next block
    # boundary gives the track's block changes from the second block on.
    phase = -frame % BLOCK_FRAMES
    clip = block_changes(_power(_clip_at(track, frame, 5.0)), phase=phase)
    whole = block_changes(_power(track))
    j0 = (frame + phase) // BLOCK_FRAMES
    np.testing.assert_allclose(clip[1:], whole[j0 + 1 : j0 + len(clip)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frame", [300, 301, 302])
def test_an_unchanged_clip_on_the_track_grid_has_the_tracks_blocks(track: np.ndarray, frame: int) -> None:
    S = magnitude_frames(_clip_at(track, frame, 5.0))
    changes, at = clip_changes(S, offset_frames=float(frame))
    whole = block_changes(_power(track))
    assert at == -(-frame // BLOCK_FRAMES)  # the first block boundary at or after the clip's start
    np.testing.assert_allclose(changes[1:], whole[at + 1 : at + len(changes)], rtol=1e-4, atol=1e-4)


def _changed(track: np.ndarray, frame: int, seconds: float, speed: float, semitones: float) -> np.ndarray:
    """Magnitude frames of ``seconds`` of the track from ``frame``, played ``speed`` times faster
    (resampled) and pitch-shifted by ``semitones`` (tempo kept)."""
    y = _clip_at(track, frame, seconds * speed)
    if speed != 1.0:
        y = np.asarray(soxr.resample(y, FP_SR * speed, FP_SR), np.float32)
    if semitones:
        y = librosa.effects.pitch_shift(y, sr=FP_SR, n_steps=semitones)
    return magnitude_frames(np.asarray(y, np.float32))


@pytest.mark.parametrize("speed", [1.05, 0.92])
def test_a_clip_played_faster_or_slower_agrees_once_its_speed_is_undone(
    track: np.ndarray, track_signs: np.ndarray, speed: float
) -> None:
    S = _changed(track, 811, 10.0, speed, 0.0)
    z = {name: agreement(c[0], track_signs, at_block=c[1])[1] for name, c in {
        "undone": clip_changes(S, offset_frames=811.0, time_scale=speed, freq_scale=speed),
        "time only": clip_changes(S, offset_frames=811.0, time_scale=speed),
        "as is": clip_changes(S, offset_frames=811.0),
    }.items()}
    # 10 s drift 0.5-0.8 s out of line as is; the bands' frequencies matter less than the time
    assert z["undone"] > 5.0
    assert z["undone"] > z["as is"] + 3.0
    assert z["undone"] > z["time only"]


def test_a_pitch_shifted_clip_agrees_better_once_its_pitch_is_undone(
    track: np.ndarray, track_signs: np.ndarray
) -> None:
    S = _changed(track, 811, 10.0, 1.0, 1.0)
    undone = clip_changes(S, offset_frames=811.0, freq_scale=2 ** (1 / 12))
    as_is = clip_changes(S, offset_frames=811.0)
    z_undone = agreement(undone[0], track_signs, at_block=undone[1])[1]
    assert z_undone > 4.0
    assert z_undone > agreement(as_is[0], track_signs, at_block=as_is[1])[1]


def test_signs_survive_packing_one_byte_a_block() -> None:
    rng = np.random.default_rng(3)
    changes = rng.standard_normal((500, N_BANDS)).astype(np.float32)
    bits = pack(changes)
    assert bits.dtype == np.uint8 and bits.shape == (500,)
    np.testing.assert_array_equal(unpack(bits), np.where(changes > 0, 1.0, -1.0))


@pytest.mark.parametrize("noise", ["pink0", "room"])
def test_a_noisy_clip_agrees_with_its_track_at_its_offset_only(
    track: np.ndarray, track_signs: np.ndarray, noise: str
) -> None:
    frame = 811  # 25.95 s in
    clip = _clip_at(track, frame, 3.0)
    if noise == "pink0":
        n = pink_noise(duration_s=3.0, sr=FP_SR, seed=5)[: clip.size]
        y = clip + n * np.sqrt(np.mean(clip**2) / np.mean(n**2))  # 0 dB SNR
    else:
        y = loud_room(clip, FP_SR, seed=5)
    phase = -frame % BLOCK_FRAMES
    changes = block_changes(_power(y), phase=phase)
    at = (frame + phase) // BLOCK_FRAMES
    score, z = agreement(changes, track_signs, at_block=at)
    _, z_wrong = agreement(changes, track_signs, at_block=at + 100)
    other = unpack(pack(block_changes(_power(music(duration_s=TRACK_S, sr=FP_SR, seed=22)))))
    _, z_other = agreement(changes, other, at_block=at)
    assert score > 0
    # The seeded songs repeat their bars, so the null is wide: a clean clip reads 5-6 here.
    assert z > 3.0
    assert z > max(z_wrong, z_other) + 1.5


def test_agreement_of_nothing_is_zero(track_signs: np.ndarray) -> None:
    silent = np.zeros((31, N_BANDS), np.float32)
    assert agreement(silent, track_signs, at_block=10) == (0.0, 0.0)
    ones = np.ones((40, N_BANDS), np.float32)
    assert agreement(ones, track_signs, at_block=len(track_signs)) == (0.0, 0.0)


def test_a_clip_running_past_its_tracks_end_is_scored_on_what_overlaps(track_signs: np.ndarray) -> None:
    rng = np.random.default_rng(8)
    tail = track_signs[-20:] + 0.5 * rng.standard_normal((20, N_BANDS))  # the track's last 20 blocks
    clip = np.vstack([tail, rng.standard_normal((10, N_BANDS))]).astype(np.float32)
    _, z = agreement(clip, track_signs, at_block=len(track_signs) - 20)
    assert z > 4.0


def test_a_silent_stretch_of_a_track_gives_an_unrelated_clip_no_evidence() -> None:
    rng = np.random.default_rng(9)
    power = np.full((3000, N_BANDS), 1e-12, np.float32)  # 60 % of the track silent
    power[1800:] = rng.random((1200, N_BANDS)).astype(np.float32) + 0.1
    signs = unpack(pack(block_changes(power)))
    zs = [agreement(rng.standard_normal((31, N_BANDS)), signs, at_block=int(j))[1]
          for j in rng.integers(0, len(signs) - 31, size=50)]
    assert max(abs(z) for z in zs) < 6.0


def test_a_rising_clip_rises_by_its_time_scale_per_track_block() -> None:
    # Band power exp(2 r t) in clip frames: on its track's grid a block spans
    # BLOCK_FRAMES / time_scale clip frames, so every change is 2 r BLOCK_FRAMES / time_scale.
    r = 0.01
    S = np.exp(r * np.arange(200))[:, None] * np.ones((1, 257))
    for time_scale in (0.92, 1.0, 1.08):
        changes, at = clip_changes(S, offset_frames=10.3, time_scale=time_scale)
        np.testing.assert_allclose(changes[1:], 2 * r * BLOCK_FRAMES / time_scale, rtol=1e-3)
        start = 10.3 + (time_scale - 1) * 256 / 256  # frame centres: N_FFT / (2 HOP_LENGTH) = 1
        assert at == -(-np.ceil(start - 1e-6) // BLOCK_FRAMES)
    changes, at = clip_changes(S, offset_frames=-4.3)  # starts before its track: rows before frame 0 go
    assert at == 0 and len(changes) == (200 - 5) // BLOCK_FRAMES


def test_a_clip_shorter_than_a_block_has_no_changes() -> None:
    power = np.ones((BLOCK_FRAMES - 1, N_BANDS), np.float32)
    assert block_changes(power).shape == (0, N_BANDS)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: band_power(np.zeros((4, 100))), "magnitude frames"),
        (lambda: band_power(np.zeros((4, 257)), n_bands=0), "n_bands"),
        (lambda: block_changes(np.zeros((9, 8)), block=0), "block"),
        (lambda: block_changes(np.zeros((9, 8)), phase=3), "phase"),
        (lambda: pack(np.zeros((4, 9))), "pack takes"),
        (lambda: unpack(np.zeros(4, np.uint8), n_bands=9), "at most 8 bands"),
        (lambda: agreement(np.zeros((4, 8)), np.zeros((10, 7)), at_block=0), "same bands"),
        (lambda: band_power(np.zeros((4, 257)), freq_scale=3.0), "freq_scale"),
        (lambda: clip_changes(np.zeros((4, 257)), offset_frames=0.0, time_scale=0.0), "time_scale"),
        (lambda: clip_changes(np.zeros((4, 257)), offset_frames=float("nan")), "offset_frames"),
    ],
)
def test_wrong_parameters_are_refused_in_words(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match=message):
        call()


@pytest.mark.parametrize("freq_scale", [1.0, 0.92, 2 ** (-1 / 12), 1.05, 1.08])
@pytest.mark.parametrize("n_bands", [8, 16])
def test_the_bands_are_librosas_mel_filters(freq_scale: float, n_bands: int) -> None:
    sr = FP_SR / round(freq_scale, 6)
    ours = mel_bank(sr, n_bands)
    theirs = mel_basis(sr, 512, n_bands, fmax=F_MAX, fmin=F_MIN)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)
    assert (ours.max(axis=1) > 0).all()


def test_a_tracks_envelope_does_not_load_librosas_filters() -> None:
    """Every ingest worker fingerprints; librosa's filters would cost each half a second."""
    code = ("import json, sys, numpy as np\n"
            "from audiolsh.features.landmarks import landmarks\n"
            "lm = landmarks(np.random.default_rng(0).standard_normal(40000).astype(np.float32), 8000)\n"
            "sys.stdout.write(json.dumps([len(lm.envelope), sorted(m for m in sys.modules"
            " if m.startswith('librosa.'))]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    n_blocks, loaded = json.loads(done.stdout)
    assert n_blocks == (1 + (40000 - 512) // 256) // BLOCK_FRAMES
    assert not [m for m in loaded if m.startswith(("librosa.filters", "librosa.core"))]
