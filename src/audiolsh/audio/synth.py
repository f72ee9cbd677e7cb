"""Deterministic test signals: tones, chirps, click tracks, noises and seeded synthetic songs.

Every function returns a mono float32 array of ``round(duration_s * sr)`` samples whose
absolute peak is at most ``amplitude``. Random signals take an explicit ``seed``.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial

import numpy as np

from audiolsh.errors import ParameterError

logger = logging.getLogger(__name__)

__all__ = ["chirp", "clicks", "music", "pink_noise", "tone", "white_noise", "write_long_flac"]


def _n_samples(duration_s: float, sr: int) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer (Hz), got {sr!r}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ParameterError(f"duration_s must be > 0 seconds, got {duration_s}")
    n = round(duration_s * sr)
    if n < 1:
        raise ParameterError(f"duration_s={duration_s} s at sr={sr} Hz gives no samples")
    return n


def _check_amplitude(amplitude: float) -> None:
    if not (math.isfinite(amplitude) and 0 < amplitude <= 1):
        raise ParameterError(f"amplitude must be in (0, 1], got {amplitude}")


def _check_freq(name: str, freq_hz: float, sr: int) -> None:
    if not (math.isfinite(freq_hz) and 0 < freq_hz < sr / 2):
        raise ParameterError(
            f"{name} must be in (0, {sr / 2:g}) Hz (below Nyquist at sr={sr}), got {freq_hz}"
        )


def _normalise(y: np.ndarray, amplitude: float) -> np.ndarray:
    peak = float(np.max(np.abs(y)))
    if peak > 0:
        y = y * (amplitude / peak)
    return y.astype(np.float32)


def tone(freq_hz: float, *, duration_s: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    """Pure sine tone.

    Parameters
    ----------
    freq_hz : float
        Frequency in Hz, below ``sr / 2``.
    duration_s : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    amplitude : float
        Peak amplitude in (0, 1].

    Returns
    -------
    np.ndarray
        float32, shape (round(duration_s * sr),), ``amplitude * sin(2 pi f t)``.
    """
    n = _n_samples(duration_s, sr)
    _check_freq("freq_hz", freq_hz, sr)
    _check_amplitude(amplitude)
    t = np.arange(n, dtype=np.float64) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def chirp(
    f0: float,
    f1: float,
    *,
    duration_s: float,
    sr: int,
    linear: bool = False,
    amplitude: float = 0.5,
) -> np.ndarray:
    """Sine sweep from ``f0`` to ``f1`` Hz.

    Parameters
    ----------
    f0, f1 : float
        Start and end frequencies in Hz, below ``sr / 2``.
    duration_s : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    linear : bool
        Linear sweep if True, exponential (constant octaves per second) if False, as in librosa.
    amplitude : float
        Peak amplitude in (0, 1].

    Returns
    -------
    np.ndarray
        float32, shape (round(duration_s * sr),).
    """
    n = _n_samples(duration_s, sr)
    _check_freq("f0", f0, sr)
    _check_freq("f1", f1, sr)
    _check_amplitude(amplitude)
    t = np.arange(n, dtype=np.float64) / sr
    if linear or f0 == f1:
        phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / duration_s * t**2)
    else:
        k = math.log(f1 / f0) / duration_s
        phase = 2 * np.pi * f0 * np.expm1(k * t) / k
    return (amplitude * np.sin(phase)).astype(np.float32)


def clicks(
    *,
    bpm: float,
    duration_s: float,
    sr: int,
    click_freq_hz: float = 1000.0,
    click_s: float = 0.03,
    amplitude: float = 0.5,
) -> np.ndarray:
    """Click track at a known tempo, first click at t = 0.

    Parameters
    ----------
    bpm : float
        Tempo in beats per minute; click ``k`` starts at ``k * 60 / bpm`` seconds.
    duration_s : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    click_freq_hz : float
        Pitch of each click (a sine burst with an exponential decay) in Hz.
    click_s : float
        Length of each click in seconds.
    amplitude : float
        Peak amplitude in (0, 1].

    Returns
    -------
    np.ndarray
        float32, shape (round(duration_s * sr),), silent between clicks.
    """
    n = _n_samples(duration_s, sr)
    if not (math.isfinite(bpm) and bpm > 0):
        raise ParameterError(f"bpm must be > 0, got {bpm}")
    _check_freq("click_freq_hz", click_freq_hz, sr)
    _check_amplitude(amplitude)
    if not (math.isfinite(click_s) and 0 < click_s < 60 / bpm):
        raise ParameterError(f"click_s must be in (0, {60 / bpm:g}) s at {bpm} bpm, got {click_s}")
    m = max(1, round(click_s * sr))
    tc = np.arange(m, dtype=np.float64) / sr
    click = amplitude * np.sin(2 * np.pi * click_freq_hz * tc) * np.exp(-tc / (click_s / 5))
    y = np.zeros(n, dtype=np.float64)
    starts = np.round(np.arange(0.0, duration_s, 60.0 / bpm) * sr).astype(np.int64)
    starts = starts[starts < n]
    idx = starts[:, None] + np.arange(m)[None, :]
    keep = idx < n
    y[idx[keep]] = np.broadcast_to(click, idx.shape)[keep]
    return y.astype(np.float32)


def white_noise(*, duration_s: float, sr: int, seed: int, amplitude: float = 0.5) -> np.ndarray:
    """Gaussian white noise scaled to a peak of ``amplitude``.

    Parameters
    ----------
    duration_s : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same samples.
    amplitude : float
        Peak amplitude in (0, 1].

    Returns
    -------
    np.ndarray
        float32, shape (round(duration_s * sr),).
    """
    n = _n_samples(duration_s, sr)
    _check_amplitude(amplitude)
    rng = np.random.default_rng(seed)
    return _normalise(rng.standard_normal(n), amplitude)


def pink_noise(*, duration_s: float, sr: int, seed: int, amplitude: float = 0.5) -> np.ndarray:
    """Pink (1/f power, -3 dB per octave) noise scaled to a peak of ``amplitude``.

    Parameters
    ----------
    duration_s : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    amplitude : float
        Peak amplitude in (0, 1].

    Returns
    -------
    np.ndarray
        float32, shape (round(duration_s * sr),), zero mean.
    """
    n = _n_samples(duration_s, sr)
    _check_amplitude(amplitude)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, d=1.0 / sr)
    scale = np.zeros_like(freqs)
    scale[1:] = 1.0 / np.sqrt(freqs[1:])
    y = np.fft.irfft(spectrum * scale, n=n)
    return _normalise(y, amplitude)


# --------------------------------------------------------------------------- synthetic songs

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _add(y: np.ndarray, start: int, sig: np.ndarray) -> None:
    """Add ``sig`` into ``y`` at sample ``start``, cropping at the end of ``y``."""
    if start >= y.size:
        return
    end = min(y.size, start + sig.size)
    y[start:end] += sig[: end - start]


def _harmonic_note(
    freq_hz: float,
    n: int,
    *,
    sr: int,
    n_harmonics: int,
    rolloff: float,
    attack_s: float,
    decay_s: float | None,
) -> np.ndarray:
    """A note with harmonics ``k`` of amplitude ``k ** -rolloff``, an attack and a decay."""
    t = np.arange(n, dtype=np.float64) / sr
    sig = np.zeros(n, dtype=np.float64)
    for k in range(1, n_harmonics + 1):
        if k * freq_hz >= sr / 2:
            break
        sig += np.sin(2 * np.pi * k * freq_hz * t) * k**-rolloff
    env = np.minimum(1.0, t / max(attack_s, 1.0 / sr))
    if decay_s is not None:
        env *= np.exp(-t / decay_s)
    release = min(n, int(0.02 * sr))  # 20 ms fade-out against clicks at the note end
    if release > 0:
        env[n - release :] *= np.linspace(1.0, 0.0, release)
    return sig * env


def music(*, duration_s: float, sr: int, seed: int, amplitude: float = 0.8) -> np.ndarray:
    """A seeded synthetic song: chords, bass, melody and drums at a seeded tempo and key.

    The seed draws the tempo (80-150 bpm), the key and mode, the timbres, the mix, a chord per bar,
    a melody (eighth notes with rests), and a 16-step drum pattern (kick, snare, hi-hat).
    Two seeds give clearly different songs; one seed always gives the same samples.

    Parameters
    ----------
    duration_s : float
        Duration in seconds.
    sr : int
        Sample rate in Hz.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    amplitude : float
        Peak amplitude in (0, 1].

    Returns
    -------
    np.ndarray
        float32, shape (round(duration_s * sr),), peak ``amplitude``.
    """
    n = _n_samples(duration_s, sr)
    _check_amplitude(amplitude)
    rng = np.random.default_rng(seed)

    bpm = float(rng.uniform(80, 150))
    beat = 60.0 / bpm
    bar = 4 * beat
    root = int(rng.integers(40, 58))  # E2..A3
    scale = _MAJOR if rng.random() < 0.5 else _MINOR
    pad_harm, pad_roll = int(rng.integers(3, 9)), float(rng.uniform(0.8, 2.0))
    mel_harm, mel_roll = int(rng.integers(2, 7)), float(rng.uniform(0.5, 1.5))
    mel_decay = float(rng.uniform(0.1, 0.4))
    mix = rng.uniform([0.2, 0.2, 0.2, 0.2], [0.5, 0.4, 0.5, 0.6])  # pad, bass, melody, drums
    drums = rng.random((3, 16)) < np.array([[0.35], [0.25], [0.6]])
    drums[0, 0] = True  # a kick on the downbeat
    logger.debug("music(seed=%s): %.1f bpm, root %d, %s", seed, bpm, root, scale)

    def degree(d: int) -> int:
        """Semitones above the root of scale degree ``d`` (may exceed one octave)."""
        return 12 * (d // 7) + scale[d % 7]

    pad = np.zeros(n)
    bass = np.zeros(n)
    melody = np.zeros(n)
    drum = np.zeros(n)
    n_bars = math.ceil(duration_s / bar)
    bar_n = round(bar * sr)
    beat_n = round(beat * sr)
    step_n = round(beat / 4 * sr)

    # Drum sounds, drawn once per song.
    tk = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 * tk + 60 * 0.04 * (1 - np.exp(-tk / 0.04)))) * np.exp(-tk / 0.1)
    ts = np.arange(int(0.15 * sr)) / sr
    snare = rng.standard_normal(ts.size) * np.exp(-ts / 0.05) * 0.6
    snare += 0.4 * np.sin(2 * np.pi * 190 * ts) * np.exp(-ts / 0.04)
    th = np.arange(int(0.05 * sr)) / sr
    hat = np.diff(rng.standard_normal(th.size + 1)) * np.exp(-th / 0.01) * 0.25

    pad_note = partial(_harmonic_note, sr=sr, n_harmonics=pad_harm, rolloff=pad_roll)
    mel_note = partial(_harmonic_note, sr=sr, n_harmonics=mel_harm, rolloff=mel_roll)
    bass_note = partial(_harmonic_note, sr=sr, n_harmonics=4, rolloff=1.5)
    for b in range(n_bars):
        start = round(b * bar * sr)
        chord = int(rng.integers(0, 7))
        for d in (chord, chord + 2, chord + 4):
            f = _midi_hz(root + 12 + degree(d))
            _add(pad, start, pad_note(f, bar_n, attack_s=0.05, decay_s=None))
        thump = bass_note(_midi_hz(root + degree(chord) % 12), beat_n, attack_s=0.01, decay_s=0.25)
        for q in range(4):
            _add(bass, start + q * beat_n, thump)
        for e in range(8):
            if rng.random() < 0.3:
                continue  # rest
            f = _midi_hz(root + 24 + degree(chord + int(rng.choice([0, 2, 4, 1, 3, 5, 7]))))
            note = mel_note(f, beat_n // 2, attack_s=0.005, decay_s=mel_decay)
            _add(melody, start + e * beat_n // 2, note)
        for s in range(16):
            pos = start + s * step_n
            if drums[0, s]:
                _add(drum, pos, kick)
            if drums[1, s]:
                _add(drum, pos, snare)
            if drums[2, s]:
                _add(drum, pos, hat)

    def unit(x: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(x)))
        return x / peak if peak > 0 else x

    y = mix[0] * unit(pad) + mix[1] * unit(bass) + mix[2] * unit(melody) + mix[3] * unit(drum)
    return _normalise(y, amplitude)


def write_long_flac(path: str | os.PathLike[str], *, duration_s: float, sr: int, channels: int,
                    seed: int = 5, silent: bool = False) -> None:
    """A long 16-bit FLAC, written a minute at a time (never held whole): :func:`music` of one
    minute repeated at a level that changes every minute, the same in every channel, or silence."""
    import soundfile as sf

    minute = np.zeros(60 * sr) if silent else music(duration_s=60.0, sr=sr, seed=seed)
    with sf.SoundFile(path, "w", sr, channels, subtype="PCM_16", format="FLAC") as f:
        left, k = round(duration_s * sr), 0
        while left > 0:
            x = minute[: min(left, len(minute))] * (0.6 + 0.3 * np.sin(k))
            f.write(np.repeat(x[:, None], channels, axis=1))
            left -= len(x)
            k += 1
