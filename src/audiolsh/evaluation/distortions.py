"""Seeded distortions of a signal ``(y, sr)`` for the identification protocol.

Noise at a signal-to-noise ratio, lossy codecs (MP3, Opus), a telephone line, speed, tempo and
pitch changes, room reverb, a loud room's babble, and silence at either end: what a clip goes
through between a loudspeaker and a phone. Each function takes mono float32 ``y`` at ``sr`` Hz and
returns float32 at the same ``sr``; only :func:`speed` and :func:`tempo` change the length (by the
factor ``1 + percent / 100``). Random ones take a ``seed`` and give the same samples for the same
seed. Outputs are not peak-normalised (a noisy clip may exceed 1.0); the caller scales before
writing 16-bit files.

:data:`CONDITIONS` names the settings the protocol runs (``clean``, ``white10``, ``pink0``,
``mp3_32k``, ``phone``, ``speed+3``, ``speed-8``, ``stretch+8``, ``pitch-1``, ``room``,
``codec16k``, ``silence-head``, ...).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf
import soxr

from audiolsh.errors import AudiolshError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "CONDITIONS",
    "DEFAULT_CONDITIONS",
    "Condition",
    "add_pink_noise",
    "add_white_noise",
    "babble",
    "codec",
    "fit_length",
    "impulse_response",
    "loud_room",
    "mp3",
    "pitch_shift",
    "reverb",
    "silence",
    "speed",
    "telephone",
    "tempo",
]

PHONE_SR = 8000
SILENT_SHARE = 0.4
"""Share of a ``silence-head`` or ``silence-tail`` clip's length that is silence."""
_FFMPEG_TIMEOUT_S = 120.0


def _check_signal(y: np.ndarray, sr: int) -> np.ndarray:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer (Hz), got {sr!r}")
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be a non-empty mono signal of shape (n,), got shape {y.shape}")
    return y.astype(np.float32, copy=False)


def _power(y: np.ndarray) -> float:
    return float(np.mean(np.square(y, dtype=np.float64)))


def _mix_at_snr(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``y + g * noise`` with ``g`` such that ``10 log10(P(y) / P(g noise)) == snr_db``."""
    if not math.isfinite(snr_db):
        raise ParameterError(f"snr_db must be a finite number of dB, got {snr_db}")
    p_sig, p_noise = _power(y), _power(noise)
    if p_sig == 0.0:
        raise ParameterError("cannot add noise at an SNR to a silent signal (zero power)")
    gain = math.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (y.astype(np.float64) + gain * noise).astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise of ``n`` samples, zero mean, by shaping white noise's spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    scale = np.zeros(spectrum.size)
    scale[1:] = 1.0 / np.sqrt(np.arange(1, spectrum.size))
    return np.fft.irfft(spectrum * scale, n=n)


def add_white_noise(y: np.ndarray, sr: int, *, snr_db: float, seed: int) -> np.ndarray:
    """``y`` plus Gaussian white noise at ``snr_db`` dB (powers averaged over the whole signal)."""
    y = _check_signal(y, sr)
    return _mix_at_snr(y, np.random.default_rng(seed).standard_normal(y.size), snr_db)


def add_pink_noise(y: np.ndarray, sr: int, *, snr_db: float, seed: int) -> np.ndarray:
    """``y`` plus pink (1/f, -3 dB per octave) noise at ``snr_db`` dB: louder in the bass, like a crowd."""
    y = _check_signal(y, sr)
    return _mix_at_snr(y, _pink(y.size, np.random.default_rng(seed)), snr_db)


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded at the end to exactly ``n`` samples."""
    if y.size >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.size, dtype=y.dtype)])


def _run_ffmpeg(cmd: list[str], *, what: str, stdin: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudiolshError(f"ffmpeg failed to {what}: {exc}") from exc
    if proc.returncode != 0:
        reason = " ".join(proc.stderr.decode("utf-8", "replace").split())[-300:]
        raise AudiolshError(f"ffmpeg failed to {what} (exit {proc.returncode}): {reason}")
    return proc.stdout


_CODECS: dict[str, tuple[str, str]] = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg")}
"""Codec name -> (ffmpeg encoder, container suffix)."""


def codec(y: np.ndarray, sr: int, *, name: str = "mp3", bitrate_kbps: int = 32) -> np.ndarray:
    """Encode at a constant ``bitrate_kbps`` with ``name`` (``mp3``: LAME, ``opus``: libopus) and
    decode, through ffmpeg and temp files.

    Both containers record the encoder delay (the LAME header, Ogg Opus pre-skip) and ffmpeg trims
    it on decoding, so the result is aligned with ``y``; its length is then fitted to ``len(y)``.
    """
    y = _check_signal(y, sr)
    if name not in _CODECS:
        raise ParameterError(f"codec must be one of {', '.join(_CODECS)}, got {name!r}")
    if not (isinstance(bitrate_kbps, (int, np.integer)) and 6 <= bitrate_kbps <= 320):
        raise ParameterError(f"bitrate_kbps must be an integer in [6, 320], got {bitrate_kbps!r}")
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudiolshError(f"the {name} distortion needs the ffmpeg executable, which is not on PATH")
    encoder, suffix = _CODECS[name]
    with tempfile.TemporaryDirectory(prefix=f"audiolsh-{name}-") as tmp:
        wav, enc = Path(tmp) / "in.wav", Path(tmp) / f"out.{suffix}"
        sf.write(wav, y, sr, subtype="FLOAT")
        base = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        _run_ffmpeg([*base, "-i", os.fspath(wav), "-codec:a", encoder, "-b:a", f"{bitrate_kbps}k",
                     os.fspath(enc)], what=f"encode {name}")
        raw = _run_ffmpeg([*base, "-i", os.fspath(enc), "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"],
                          what=f"decode {name}")
    out = np.frombuffer(raw[: len(raw) - len(raw) % 4], dtype="<f4")
    logger.debug("%s %d kb/s: %d samples in, %d out", name, bitrate_kbps, y.size, out.size)
    return fit_length(out, y.size).astype(np.float32)


def mp3(y: np.ndarray, sr: int, *, bitrate_kbps: int = 32) -> np.ndarray:
    """MP3 (LAME, constant ``bitrate_kbps``) round trip: :func:`codec` with ``name="mp3"``."""
    if not (isinstance(bitrate_kbps, (int, np.integer)) and 8 <= bitrate_kbps <= 320):
        raise ParameterError(f"bitrate_kbps must be an integer in [8, 320], got {bitrate_kbps!r}")
    return codec(y, sr, name="mp3", bitrate_kbps=bitrate_kbps)


def telephone(
    y: np.ndarray,
    sr: int,
    *,
    seed: int,
    snr_db: float | None = 20.0,
    low_hz: float = 300.0,
    high_hz: float = 3400.0,
) -> np.ndarray:
    """A telephone line: resample to 8 kHz, add white line noise at ``snr_db`` (``None``: none),
    band-pass ``low_hz``-``high_hz`` (Butterworth, order 8, zero phase), resample back to ``sr``.

    The noise is added before the band-pass, so nothing outside the band survives.
    """
    y = _check_signal(y, sr)
    if not (0 < low_hz < high_hz < PHONE_SR / 2):
        raise ParameterError(f"need 0 < low_hz < high_hz < {PHONE_SR / 2:g} Hz, got {low_hz}, {high_hz}")
    y8 = soxr.resample(y, sr, PHONE_SR).astype(np.float64)
    sos = scipy.signal.butter(8, [low_hz, high_hz], btype="bandpass", fs=PHONE_SR, output="sos")
    if snr_db is not None:
        # SNR relative to what the line carries of the signal: the in-band part.
        in_band = scipy.signal.sosfiltfilt(sos, y8)
        noise = np.random.default_rng(seed).standard_normal(y8.size)
        y8 = _mix_at_snr(in_band, noise, snr_db).astype(np.float64)
    line = scipy.signal.sosfiltfilt(sos, y8)
    return fit_length(soxr.resample(line, PHONE_SR, sr).astype(np.float32), y.size)


def _factor(percent: float) -> float:
    if not (math.isfinite(percent) and -50.0 < percent < 100.0):
        raise ParameterError(f"percent must be in (-50, 100), got {percent}")
    return 1.0 + percent / 100.0


def speed(y: np.ndarray, sr: int, *, percent: float) -> np.ndarray:
    """Play ``percent`` % faster, pitch and tempo together (a turntable or tape speed change).

    Resampling: the output lasts ``len(y) / (1 + percent / 100)`` samples and every frequency
    is multiplied by ``1 + percent / 100``.
    """
    y = _check_signal(y, sr)
    return soxr.resample(y, sr * _factor(percent), sr).astype(np.float32)


def tempo(y: np.ndarray, sr: int, *, percent: float) -> np.ndarray:
    """Play ``percent`` % faster with the pitch kept (phase-vocoder time stretch, librosa).

    The output lasts about ``len(y) / (1 + percent / 100)`` samples; frequencies are unchanged.
    """
    import librosa  # slow to import: only when a tempo change is asked for

    y = _check_signal(y, sr)
    return np.asarray(librosa.effects.time_stretch(y, rate=_factor(percent)), dtype=np.float32)


def pitch_shift(y: np.ndarray, sr: int, *, semitones: float) -> np.ndarray:
    """Move every frequency by ``2 ** (semitones / 12)`` and keep the tempo and the length
    (librosa: phase-vocoder stretch, then soxr resampling)."""
    import librosa  # slow to import: only when a pitch shift is asked for

    y = _check_signal(y, sr)
    if not (math.isfinite(semitones) and abs(semitones) <= 12):
        raise ParameterError(f"semitones must be in [-12, 12], got {semitones}")
    out = librosa.effects.pitch_shift(y, sr=sr, n_steps=float(semitones), res_type="soxr_hq")
    return fit_length(np.asarray(out, dtype=np.float32), y.size)


def impulse_response(sr: int, *, rt60_s: float, seed: int, drr_db: float = 0.0) -> np.ndarray:
    """A synthetic room impulse response: a direct path then exponentially decaying noise.

    The tail's envelope falls 60 dB in ``rt60_s`` seconds (it is cut there) and starts 5 ms after
    the direct path; its energy is ``drr_db`` dB below the direct path's. Shape ``(n,)`` float64.
    """
    if not (math.isfinite(rt60_s) and 0.01 <= rt60_s <= 10.0):
        raise ParameterError(f"rt60_s must be in [0.01, 10] seconds, got {rt60_s}")
    if not math.isfinite(drr_db):
        raise ParameterError(f"drr_db must be a finite number of dB, got {drr_db}")
    n = max(2, round(rt60_s * sr))
    t = np.arange(n) / sr
    tail = np.random.default_rng(seed).standard_normal(n) * 10.0 ** (-3.0 * t / rt60_s)
    tail[: max(1, round(0.005 * sr))] = 0.0
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.sum(tail**2)))
    tail[0] = 1.0
    return tail


def reverb(y: np.ndarray, sr: int, *, seed: int, rt60_s: float = 0.4, drr_db: float = 0.0) -> np.ndarray:
    """Room reverb: ``y`` convolved with :func:`impulse_response` (FFT convolution), cut to
    ``len(y)`` and scaled back to the input's RMS."""
    y = _check_signal(y, sr)
    wet = scipy.signal.fftconvolve(y.astype(np.float64), impulse_response(sr, rt60_s=rt60_s, seed=seed,
                                                                          drr_db=drr_db))[: y.size]
    p_in, p_out = _power(y), float(np.mean(wet**2))
    if p_out > 0.0:
        wet *= math.sqrt(p_in / p_out)
    return wet.astype(np.float32)


_VOWELS_HZ = np.array([[730, 1090], [270, 2290], [530, 1840], [570, 840], [300, 870]], dtype=np.float64)
"""(F1, F2) of five vowels (a, i, e, o, u) of an adult voice, Hz."""


def _voice(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A speech-like voice: a sawtooth at a wandering pitch through two formants that change vowel
    every syllable, syllables of 0.1-0.35 s with pauses (zero mean, unit-free)."""
    smooth = max(1, round(0.25 * sr))
    drift = scipy.signal.fftconvolve(rng.standard_normal(n + smooth), np.hanning(smooth), mode="valid")[:n]
    drift /= float(np.max(np.abs(drift))) or 1.0
    f0 = rng.uniform(95.0, 240.0) * 2.0 ** (0.25 * drift)  # intonation within +-3 semitones
    source = scipy.signal.sawtooth(2 * np.pi * np.cumsum(f0) / sr)
    lengths = np.maximum(1, (rng.uniform(0.1, 0.35, size=n // round(0.1 * sr) + 2) * sr).astype(np.int64))
    syllable = np.repeat(np.arange(lengths.size), lengths)[:n]
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]])[syllable]
    phase = (np.arange(n) - start) / lengths[syllable]
    voiced = rng.random(lengths.size) < 0.8  # one syllable in five is a pause
    envelope = np.sin(np.pi * phase) ** 0.5 * voiced[syllable]
    vowel = rng.integers(0, len(_VOWELS_HZ), size=lengths.size)[syllable]
    out = np.zeros(n)
    for v, (f1, f2) in enumerate(_VOWELS_HZ):  # five filters per voice, each sample takes one
        sel = vowel == v
        if not sel.any():
            continue
        shaped = sum(scipy.signal.sosfilt(scipy.signal.butter(2, [f * 0.8, min(f * 1.25, sr / 2.1)],
                                                               btype="bandpass", fs=sr, output="sos"), source)
                     for f in (f1, f2))
        out[sel] = np.asarray(shaped)[sel]
    return out * envelope


def babble(n: int, sr: int, *, seed: int, n_voices: int = 6) -> np.ndarray:
    """``n`` samples of ``n_voices`` seeded speech-like voices talking at once (float64, unit RMS)."""
    if not (isinstance(n_voices, (int, np.integer)) and 1 <= n_voices <= 64):
        raise ParameterError(f"n_voices must be an integer in [1, 64], got {n_voices!r}")
    rng = np.random.default_rng(seed)
    mix = np.zeros(n)
    for _ in range(n_voices):
        v = _voice(n, sr, rng)
        mix += v / (math.sqrt(float(np.mean(v**2))) or 1.0) * rng.uniform(0.5, 1.0)
    return mix / (math.sqrt(float(np.mean(mix**2))) or 1.0)


def loud_room(y: np.ndarray, sr: int, *, seed: int, rt60_s: float = 0.6, snr_db: float = 5.0,
              n_voices: int = 6) -> np.ndarray:
    """A loud room: ``y`` with :func:`reverb`, plus :func:`babble` of ``n_voices`` reverberated in the
    same room, at ``snr_db`` dB (music to babble, both after the room)."""
    y = _check_signal(y, sr)
    seeds = np.random.SeedSequence(seed).generate_state(3)
    wet = reverb(y, sr, seed=int(seeds[0]), rt60_s=rt60_s)
    talk = babble(y.size, sr, seed=int(seeds[1]), n_voices=n_voices).astype(np.float32)
    talk = reverb(talk, sr, seed=int(seeds[2]), rt60_s=rt60_s, drr_db=-3.0)  # talkers are further away
    return _mix_at_snr(wet, talk, snr_db)


def silence(y: np.ndarray, sr: int, *, head_share: float = 0.0, tail_share: float = 0.0,
            ramp_s: float = 0.01) -> np.ndarray:
    """``y`` with its first ``head_share`` and last ``tail_share`` of samples silenced (a recording
    started before the music or left running after it); ``ramp_s`` fades at each edge so that the
    cut makes no click. The length, and the time of every kept sample, are unchanged."""
    y = _check_signal(y, sr)
    if not (0.0 <= head_share < 1.0 and 0.0 <= tail_share < 1.0 and head_share + tail_share < 1.0):
        raise ParameterError(f"need shares in [0, 1) summing below 1, got {head_share}, {tail_share}")
    n = y.size
    gain = np.ones(n)
    n_head, n_tail = round(head_share * n), round(tail_share * n)
    ramp = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, max(1, round(ramp_s * sr)), endpoint=False)) ** 2
    if n_head:
        gain[:n_head] = 0.0
        r = ramp[: n - n_head]
        gain[n_head : n_head + r.size] = r
    if n_tail:
        gain[n - n_tail :] = 0.0
        r = ramp[: n - n_tail][::-1]
        gain[n - n_tail - r.size : n - n_tail] = np.minimum(gain[n - n_tail - r.size : n - n_tail], r)
    return (y * gain).astype(np.float32)


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """A named distortion setting of the protocol.

    ``time_factor`` is how many seconds of the original a clip second holds (``1.03`` for a clip
    played 3 % fast): the protocol cuts ``length_s * time_factor`` seconds of the track.
    """

    name: str
    description: str
    fn: Callable[..., np.ndarray] | None = None
    params: tuple[tuple[str, float | str], ...] = ()
    seeded: bool = False
    time_factor: float = 1.0

    def __call__(self, y: np.ndarray, sr: int, *, seed: int) -> np.ndarray:
        """The distorted signal (``y`` itself for ``clean``)."""
        if self.fn is None:
            return _check_signal(y, sr)
        kwargs: dict[str, float | str] = dict(self.params)
        if self.seeded:
            kwargs["seed"] = seed
        return self.fn(y, sr, **kwargs)


def _registry() -> dict[str, Condition]:
    c = [
        Condition("clean", "no distortion"),
        Condition("white10", "white noise at 10 dB SNR", add_white_noise, (("snr_db", 10.0),), True),
        Condition("white0", "white noise at 0 dB SNR", add_white_noise, (("snr_db", 0.0),), True),
        Condition("pink10", "pink noise at 10 dB SNR", add_pink_noise, (("snr_db", 10.0),), True),
        Condition("pink0", "pink noise at 0 dB SNR", add_pink_noise, (("snr_db", 0.0),), True),
        Condition("mp3_32k", "MP3 at 32 kb/s (LAME via ffmpeg)", mp3, (("bitrate_kbps", 32),)),
        Condition("phone", "telephone: 8 kHz, 300-3400 Hz, white line noise at 20 dB SNR", telephone,
                  (("snr_db", 20.0),), True),
        Condition("reverb", "room reverb, RT60 0.4 s, direct-to-reverberant 0 dB", reverb,
                  (("rt60_s", 0.4), ("drr_db", 0.0)), True),
    ]
    for pct in (3.0, -3.0, 5.0, -5.0, 8.0, -8.0):
        c.append(Condition(f"speed{pct:+.0f}", f"speed {pct:+.0f} % (pitch and tempo, resampling)", speed,
                           (("percent", pct),), time_factor=1.0 + pct / 100.0))
    for pct in (4.0, -4.0):
        c.append(Condition(f"tempo{pct:+.0f}", f"tempo {pct:+.0f} % with pitch kept (phase vocoder)", tempo,
                           (("percent", pct),), time_factor=1.0 + pct / 100.0))
    for pct in (8.0, -8.0):  # the same function as tempo: the name for the wider setting
        c.append(Condition(f"stretch{pct:+.0f}", f"time-stretch {pct:+.0f} % with pitch kept (phase vocoder)",
                           tempo, (("percent", pct),), time_factor=1.0 + pct / 100.0))
    for st in (1.0, -1.0):
        c.append(Condition(f"pitch{st:+.0f}", f"pitch {st:+.0f} semitone with tempo kept (phase vocoder + "
                           "resampling)", pitch_shift, (("semitones", st),)))
    c += [
        Condition("room", "a loud room: reverb RT60 0.6 s and 6 talkers' babble at 5 dB SNR", loud_room,
                  (("rt60_s", 0.6), ("snr_db", 5.0)), True),
        Condition("codec16k", "Opus at 16 kb/s (libopus via ffmpeg)", codec,
                  (("name", "opus"), ("bitrate_kbps", 16))),
        Condition("silence-head", f"the first {SILENT_SHARE:.0%} of the clip is silence", silence,
                  (("head_share", SILENT_SHARE),)),
        Condition("silence-tail", f"the last {SILENT_SHARE:.0%} of the clip is silence", silence,
                  (("tail_share", SILENT_SHARE),)),
    ]
    return {x.name: x for x in c}


CONDITIONS: dict[str, Condition] = _registry()
"""Every named condition; :data:`DEFAULT_CONDITIONS` is the protocol's default selection."""

DEFAULT_CONDITIONS: tuple[str, ...] = (
    "clean", "white10", "pink0", "mp3_32k", "phone", "speed+3", "tempo+4", "reverb",
    "speed+5", "speed-5", "speed+8", "speed-8", "stretch+8", "stretch-8", "pitch+1", "pitch-1",
    "room", "codec16k", "silence-head", "silence-tail",
)
"""Protocol 2's eight original conditions and issue #17's wider ones."""
