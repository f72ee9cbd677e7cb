"""Seeded distortions of a signal ``(y, sr)`` for the identification protocol.

Noise at a signal-to-noise ratio, an MP3 round trip, a telephone line, speed and tempo changes
and room reverb: what a clip goes through between a loudspeaker and a phone. Each function
takes mono float32 ``y`` at ``sr`` Hz and returns float32 at the same ``sr``; only :func:`speed`
and :func:`tempo` change the length (by the factor ``1 + percent / 100``). Random ones take a
``seed`` and give the same samples for the same seed. Outputs are not peak-normalised (a noisy
clip may exceed 1.0); the caller scales before writing 16-bit files.

:data:`CONDITIONS` names the settings the protocol runs (``clean``, ``white10``, ``pink0``,
``mp3_32k``, ``phone``, ``speed+3``, ``tempo+4``, ``reverb``, ...).
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
    "fit_length",
    "impulse_response",
    "mp3",
    "reverb",
    "speed",
    "telephone",
    "tempo",
]

PHONE_SR = 8000
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


def mp3(y: np.ndarray, sr: int, *, bitrate_kbps: int = 32) -> np.ndarray:
    """MP3 encode (LAME, constant ``bitrate_kbps``) and decode through ffmpeg and temp files.

    ffmpeg writes the encoder delay into the LAME header and trims it on decoding, so the
    result is aligned with ``y``; its length is then fitted to ``len(y)`` (the last frame's padding).
    """
    y = _check_signal(y, sr)
    if not (isinstance(bitrate_kbps, (int, np.integer)) and 8 <= bitrate_kbps <= 320):
        raise ParameterError(f"bitrate_kbps must be an integer in [8, 320], got {bitrate_kbps!r}")
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudiolshError("the mp3 distortion needs the ffmpeg executable, which is not on PATH")
    with tempfile.TemporaryDirectory(prefix="audiolsh-mp3-") as tmp:
        wav, enc = Path(tmp) / "in.wav", Path(tmp) / "out.mp3"
        sf.write(wav, y, sr, subtype="FLOAT")
        base = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        _run_ffmpeg([*base, "-i", os.fspath(wav), "-codec:a", "libmp3lame", "-b:a", f"{bitrate_kbps}k",
                     os.fspath(enc)], what="encode MP3")
        raw = _run_ffmpeg([*base, "-i", os.fspath(enc), "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"],
                          what="decode MP3")
    out = np.frombuffer(raw[: len(raw) - len(raw) % 4], dtype="<f4")
    logger.debug("mp3 %d kb/s: %d samples in, %d out", bitrate_kbps, y.size, out.size)
    return fit_length(out, y.size).astype(np.float32)


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
    params: tuple[tuple[str, float], ...] = ()
    seeded: bool = False
    time_factor: float = 1.0

    def __call__(self, y: np.ndarray, sr: int, *, seed: int) -> np.ndarray:
        """The distorted signal (``y`` itself for ``clean``)."""
        if self.fn is None:
            return _check_signal(y, sr)
        kwargs: dict[str, float] = dict(self.params)
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
    for pct in (3.0, -3.0):
        c.append(Condition(f"speed{pct:+.0f}", f"speed {pct:+.0f} % (pitch and tempo, resampling)", speed,
                           (("percent", pct),), time_factor=1.0 + pct / 100.0))
    for pct in (4.0, -4.0):
        c.append(Condition(f"tempo{pct:+.0f}", f"tempo {pct:+.0f} % with pitch kept (phase vocoder)", tempo,
                           (("percent", pct),), time_factor=1.0 + pct / 100.0))
    return {x.name: x for x in c}


CONDITIONS: dict[str, Condition] = _registry()
"""Every named condition; :data:`DEFAULT_CONDITIONS` is the protocol's default selection."""

DEFAULT_CONDITIONS: tuple[str, ...] = (
    "clean", "white10", "pink0", "mp3_32k", "phone", "speed+3", "tempo+4", "reverb",
)
