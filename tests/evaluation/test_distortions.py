"""Distortions do what their names say, measured on synthesised signals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from audiolsh.audio import synth
from audiolsh.errors import ParameterError
from audiolsh.evaluation import distortions as d

SR = 22050


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return synth.music(duration_s=6.0, sr=SR, seed=7)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2)))


def band_db(y: np.ndarray, sr: int, lo_hz: float, hi_hz: float) -> float:
    """Energy (dB) of ``y`` between ``lo_hz`` and ``hi_hz``."""
    spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(y.size, 1 / sr)
    return float(10 * np.log10(spec[(f >= lo_hz) & (f < hi_hz)].sum() + 1e-20))


def dominant_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.fft.rfftfreq(y.size, 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("fn", [d.add_white_noise, d.add_pink_noise])
@pytest.mark.parametrize("target", [0.0, 10.0, 25.0])
def test_noise_snr_is_the_requested_one(song: np.ndarray, fn, target: float) -> None:  # type: ignore[no-untyped-def]
    noisy = fn(song, SR, snr_db=target, seed=1)
    assert noisy.shape == song.shape and noisy.dtype == np.float32
    assert abs(snr_db(song, noisy) - target) < 0.5


def test_pink_noise_is_pink_and_white_is_white(song: np.ndarray) -> None:
    pink = d.add_pink_noise(song, SR, snr_db=-40.0, seed=2)  # nearly all noise
    white = d.add_white_noise(song, SR, snr_db=-40.0, seed=2)
    # Pink: equal energy per octave; white: energy grows with bandwidth (+3 dB per octave).
    pink_step = band_db(pink, SR, 4000, 8000) - band_db(pink, SR, 2000, 4000)
    white_step = band_db(white, SR, 4000, 8000) - band_db(white, SR, 2000, 4000)
    assert abs(pink_step) < 1.0
    assert abs(white_step - 3.0) < 1.0


def test_mp3_round_trip_keeps_length_and_alignment_and_changes_the_signal(song: np.ndarray) -> None:
    out = d.mp3(song, SR, bitrate_kbps=32)
    assert out.dtype == np.float32
    assert abs(out.size - song.size) <= 1152
    assert not np.allclose(out, song, atol=1e-3)
    # Lossy but aligned: the best cross-correlation lag is 0 and the error is well below the signal.
    xc = scipy.signal.correlate(out, song, mode="full", method="fft")
    assert abs(int(np.argmax(xc)) - (song.size - 1)) <= 2
    assert 5.0 < snr_db(song, out) < 40.0
    # 32 kb/s LAME cuts the top of the spectrum.
    assert band_db(out, SR, 8000, 11025) < band_db(song, SR, 8000, 11025) - 10


def test_phone_band_removes_energy_outside_300_3400_hz() -> None:
    rng = np.random.default_rng(0)
    wide = rng.standard_normal(4 * SR).astype(np.float32) * 0.1
    for snr in (None, 20.0):
        out = d.telephone(wide, SR, seed=3, snr_db=snr)
        assert out.shape == wide.shape
        inside = band_db(out, SR, 500, 3000) - band_db(wide, SR, 500, 3000)
        assert abs(inside) < 1.5  # the band passes (noise adds a little)
        assert band_db(out, SR, 20, 200) < band_db(wide, SR, 20, 200) - 30
        assert band_db(out, SR, 3800, 11025) < band_db(wide, SR, 3800, 11025) - 30


def test_phone_line_noise_is_added_at_the_snr() -> None:
    tone = synth.tone(1000.0, duration_s=3.0, sr=SR)
    quiet, noisy = d.telephone(tone, SR, seed=1, snr_db=None), d.telephone(tone, SR, seed=1, snr_db=10.0)
    # In-band noise of the 8 kHz line is band-passed too: measured SNR is a little above 10 dB.
    assert 10.0 < snr_db(quiet, noisy) < 13.0


@pytest.mark.parametrize("percent", [3.0, -3.0, 5.0, -5.0, 8.0, -8.0, 10.0])
def test_speed_changes_duration_and_pitch_by_the_factor(percent: float) -> None:
    y = synth.tone(440.0, duration_s=4.0, sr=SR)
    out = d.speed(y, SR, percent=percent)
    factor = 1 + percent / 100
    assert abs(out.size - y.size / factor) <= 2
    assert abs(dominant_hz(out, SR) - 440.0 * factor) < 2.0


@pytest.mark.parametrize(("name", "percent"), [("tempo+4", 4.0), ("tempo-4", -4.0), ("stretch+8", 8.0),
                                               ("stretch-8", -8.0)])
def test_tempo_changes_duration_but_keeps_the_pitch(name: str, percent: float) -> None:
    y = synth.tone(440.0, duration_s=4.0, sr=SR)
    out = d.CONDITIONS[name](y, SR, seed=0)
    factor = 1 + percent / 100
    assert abs(out.size - y.size / factor) <= 0.01 * y.size
    assert abs(dominant_hz(out, SR) - 440.0) < 2.0


@pytest.mark.parametrize(("name", "semitones"), [("pitch+1", 1.0), ("pitch-1", -1.0)])
def test_pitch_shift_moves_the_tone_by_a_semitone_and_keeps_the_duration(name: str, semitones: float) -> None:
    y = synth.tone(440.0, duration_s=4.0, sr=SR)
    out = d.CONDITIONS[name](y, SR, seed=0)
    assert out.size == y.size
    # A semitone is 26 Hz here; the FFT bin is 0.25 Hz.
    assert abs(dominant_hz(out, SR) - 440.0 * 2 ** (semitones / 12)) < 1.0
    # Tempo kept: a tone starting at 1 s still starts at 1 s.
    gated = np.concatenate([np.zeros(SR, dtype=np.float32), y[: 3 * SR]])
    onset = np.flatnonzero(np.abs(d.pitch_shift(gated, SR, semitones=semitones)) > 0.1)[0] / SR
    assert abs(onset - 1.0) < 0.05


@pytest.mark.parametrize(("name", "head"), [("silence-head", True), ("silence-tail", False)])
def test_silence_conditions_silence_the_stated_share_and_keep_the_rest(song: np.ndarray, name: str,
                                                                       head: bool) -> None:
    out = d.CONDITIONS[name](song, SR, seed=0)
    assert out.shape == song.shape
    n_silent = round(d.SILENT_SHARE * song.size)
    silent = out[:n_silent] if head else out[song.size - n_silent :]
    assert not silent.any()
    kept = slice(n_silent + SR // 50, None) if head else slice(None, song.size - n_silent - SR // 50)
    np.testing.assert_array_equal(out[kept], song[kept])  # past the 10-ms fade, untouched
    assert np.count_nonzero(out == 0) / song.size == pytest.approx(d.SILENT_SHARE, abs=0.01)


def test_codec16k_is_an_aligned_opus_round_trip_at_16_kbps(song: np.ndarray) -> None:
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("codec16k needs the ffmpeg executable, which is not on PATH")
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if "libopus" not in encoders:
        pytest.skip("codec16k needs ffmpeg built with libopus (ffmpeg -encoders lists no libopus)")
    out = d.CONDITIONS["codec16k"](song, SR, seed=0)
    assert out.shape == song.shape and out.dtype == np.float32
    xc = scipy.signal.correlate(out, song, mode="full", method="fft")
    assert abs(int(np.argmax(xc)) - (song.size - 1)) <= 2
    assert 3.0 < snr_db(song, out) < 30.0
    # The bit rate is the one asked for: 16 kb/s loses much more than 64 kb/s.
    assert snr_db(song, out) < snr_db(song, d.codec(song, SR, name="opus", bitrate_kbps=64)) - 6
    with pytest.raises(ParameterError, match="codec"):
        d.codec(song, SR, name="vorbis")


def test_babble_is_several_talkers_with_syllables_at_speech_rate() -> None:
    talk = d.babble(8 * SR, SR, seed=3, n_voices=1)
    assert talk.shape == (8 * SR,) and np.mean(talk**2) == pytest.approx(1.0)
    np.testing.assert_array_equal(talk, d.babble(8 * SR, SR, seed=3, n_voices=1))
    # Syllables: the 20-ms energy envelope is modulated mostly at 1-10 Hz, like speech, hardly above.
    env = np.sqrt(np.mean(talk[: talk.size // 441 * 441].reshape(-1, 441) ** 2, axis=1))
    mod = np.abs(np.fft.rfft(env - env.mean())) ** 2
    f = np.fft.rfftfreq(env.size, 441 / SR)
    assert mod[(f >= 1) & (f < 10)].sum() > 0.6 * mod.sum()
    assert mod[f >= 16].sum() < 0.05 * mod.sum()
    # Voices: most energy in the speech band; more talkers fill the pauses.
    assert band_db(talk, SR, 100, 4000) - band_db(talk, SR, 4000, 11025) > 10
    crowd = d.babble(8 * SR, SR, seed=3, n_voices=6)
    quiet = lambda y: np.mean(np.abs(y) < 0.05)  # noqa: E731
    assert quiet(crowd) < quiet(talk)


def test_loud_room_adds_babble_at_the_snr_to_the_reverberated_music(song: np.ndarray) -> None:
    out = d.loud_room(song, SR, seed=5, rt60_s=0.6, snr_db=5.0)
    seeds = np.random.SeedSequence(5).generate_state(3)
    wet = d.reverb(song, SR, seed=int(seeds[0]), rt60_s=0.6)
    assert out.shape == song.shape
    assert abs(snr_db(wet, out) - 5.0) < 0.1


def test_impulse_response_decays_60_db_in_rt60() -> None:
    ir = d.impulse_response(SR, rt60_s=0.4, seed=5)
    tail = ir[round(0.01 * SR):]
    # Schroeder backward integration: energy decay curve in dB, slope fitted between -5 and -35 dB.
    edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))
    t = np.arange(tail.size) / SR
    sel = (edc < -5) & (edc > -35)
    slope_db_per_s = np.polyfit(t[sel], edc[sel], 1)[0]
    assert abs(-60.0 / slope_db_per_s - 0.4) < 0.05


def test_reverb_lengthens_the_decay_and_keeps_length_and_level() -> None:
    burst = np.zeros(SR, dtype=np.float32)
    burst[: SR // 10] = synth.white_noise(duration_s=0.1, sr=SR, seed=1)
    out = d.reverb(burst, SR, seed=4, rt60_s=0.4)
    assert out.shape == burst.shape
    after = slice(round(0.2 * SR), round(0.3 * SR))  # 0.1-0.2 s after the burst ends
    assert np.sum(burst[after] ** 2) == 0.0
    level = 10 * np.log10(np.mean(out[after].astype(np.float64) ** 2) / np.mean(out[: SR // 10] ** 2))
    assert -40.0 < level < -5.0  # audible tail, decaying
    assert abs(np.mean(out**2) / np.mean(burst**2) - 1.0) < 1e-3


@pytest.mark.parametrize("name", sorted(d.CONDITIONS))
def test_conditions_are_deterministic_with_the_seed(song: np.ndarray, name: str) -> None:
    cond = d.CONDITIONS[name]
    a, b = cond(song, SR, seed=11), cond(song, SR, seed=11)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    assert abs(a.size - song.size / cond.time_factor) <= 0.01 * song.size
    if cond.seeded:
        assert not np.array_equal(a, cond(song, SR, seed=12))
    if name != "clean":
        assert not np.allclose(a[: min(a.size, song.size)], song[: min(a.size, song.size)], atol=1e-3)


def test_default_conditions_are_registered() -> None:
    assert set(d.DEFAULT_CONDITIONS) <= set(d.CONDITIONS)
    assert d.CONDITIONS["speed+3"].time_factor == pytest.approx(1.03)
    assert d.CONDITIONS["tempo+4"].time_factor == pytest.approx(1.04)


def test_bad_parameters_are_refused(song: np.ndarray) -> None:
    with pytest.raises(ParameterError, match="silent"):
        d.add_white_noise(np.zeros(100, dtype=np.float32), SR, snr_db=10.0, seed=0)
    with pytest.raises(ParameterError, match="percent"):
        d.speed(song, SR, percent=-80.0)
    with pytest.raises(ParameterError, match="mono"):
        d.reverb(np.zeros((2, 100), dtype=np.float32), SR, seed=0)
    with pytest.raises(ParameterError, match="bitrate"):
        d.mp3(song, SR, bitrate_kbps=1)
