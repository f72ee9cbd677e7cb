"""The band-energy envelope: evidence of another kind than the landmarks, compared at an alignment.

A landmark needs two spectral peaks to survive, so a loud room or 0 dB noise leaves a clip few of
them.  The envelope is the rhythm of the energy instead: the fingerprint's magnitude frames
(``audiolsh.features.landmarks``: 8 kHz, 32-ms hop) summed into ``N_BANDS`` mel bands, pooled
over blocks of ``BLOCK_FRAMES`` frames, and per band the change of log energy from one block to
the next.  A track keeps only the signs (one bit a band and block: :func:`pack`), a clip keeps
the values; :func:`agreement` scores a clip against a track at an alignment as a z-score
against the same clip slid along the whole track, so a track whose envelope agrees with
anything (a drone, a held chord) gains nothing.  Reverb smears an envelope but keeps its rises,
and babble adds its own changes without removing the music's where the music is loud.

``benchmarks/dense_evidence.py`` measures what this adds to the calibrated confidence
(``docs/results/identify.md``, session 22); the index keeps each track's
:func:`track_envelope` beside its hashes and the calibrated confidence weighs a candidate's
:func:`clip_z`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.fft

from audiolsh.errors import ParameterError
from audiolsh.features.landmarks import FP_SR, HOP_LENGTH, N_FFT

__all__ = [
    "BLOCK_FRAMES", "LAG_BLOCKS", "N_BANDS", "agreement", "band_power", "block_changes", "clip_changes",
    "clip_z", "pack", "track_envelope", "unpack",
]

N_BANDS = 8
"""Mel bands: 8 fit one byte a block and keep most of what 16 give."""
BLOCK_FRAMES = 3
"""Frames per block (96 ms): longer blocks lose most of a 3-s clip's evidence."""
LAG_BLOCKS = 2
"""A clip is compared within this many blocks (about 0.2 s) of its alignment each way: the
landmarks' offset is to a frame, and a time-scaled clip's block grid is coarser."""
F_MIN, F_MAX = 50.0, 3800.0
"""The bands span the landmarks' band (47 Hz to 3.6 kHz) and a little more."""
_FLOOR = 1e-10
_MAD_SIGMA = 1.4826
"""MAD to standard deviation for a normal distribution."""


def _check_bands(n_bands: int) -> None:
    if not (isinstance(n_bands, (int, np.integer)) and 1 <= n_bands <= 64):
        raise ParameterError(f"n_bands must be an integer in [1, 64], got {n_bands!r}")


def _hz_to_mel(f: float | np.ndarray) -> np.ndarray:
    """Slaney's mel scale (as librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0),
                    f / (200.0 / 3.0))


def _mel_to_hz(m: float | np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3.0))


@lru_cache(maxsize=64)
def mel_bank(sr: float, n_bands: int) -> np.ndarray:
    """The mel filter bank of the envelope's bands over the ``N_FFT`` bins of a signal at ``sr``
    Hz (fractional: the bands read off a signal whose frequencies are scaled), float32
    (n_bands, N_FFT // 2 + 1): librosa's ``filters.mel(fmin=F_MIN, fmax=F_MAX)`` (Slaney's scale,
    area-normalised triangles; equal to it, tested), written out because importing librosa's
    filters takes half a second, which every ingest worker would pay; a band past Nyquist is
    empty."""
    bins = np.arange(N_FFT // 2 + 1) * (sr / N_FFT)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), n_bands + 2))
    ramps = edges[:, None] - bins[None, :]
    width = np.diff(edges)
    rise = -ramps[:-2] / width[:-1, None]
    fall = ramps[2:] / width[1:, None]
    fb = np.maximum(0.0, np.minimum(rise, fall)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return fb.astype(np.float32)


def band_power(S: np.ndarray, n_bands: int = N_BANDS, *, freq_scale: float = 1.0) -> np.ndarray:
    """Power per mel band of magnitude frames ``S`` (n_frames, N_FFT // 2 + 1), as
    :func:`audiolsh.features.landmarks.magnitude_frames` gives them: float32 (n_frames, n_bands).
    ``freq_scale``: the signal's frequencies are this many times its track's (a clip played
    faster or pitch-shifted up), and the bands are the track's."""
    _check_bands(n_bands)
    if not (math.isfinite(freq_scale) and 0.5 <= freq_scale <= 2.0):
        raise ParameterError(f"freq_scale must be in [0.5, 2], got {freq_scale!r}")
    S = np.asarray(S, np.float32)
    if S.ndim != 2 or S.shape[1] != N_FFT // 2 + 1:
        raise ParameterError(f"magnitude frames must have shape (n, {N_FFT // 2 + 1}), got {S.shape}")
    # The track's bands at each bin's frequency / freq_scale: a sample rate freq_scale times lower.
    # Above a scale of 1.05 the top band lies partly past the clip's Nyquist and loses power or
    # is empty (its change is then 0: no evidence either way).
    fb = mel_bank(FP_SR / round(float(freq_scale), 6), n_bands)
    # einsum, not a matrix product: OpenBLAS would start its threads on a long track, and in a
    # pool of ingest workers they fight over the cores (a seventh slower at 2 workers on 2 cores)
    return np.einsum("ij,kj->ik", S * S, fb, optimize=False)  # type: ignore[no-any-return]


def block_changes(power: np.ndarray, *, block: int = BLOCK_FRAMES, phase: int = 0) -> np.ndarray:
    """Change of log band energy from each block of ``block`` frames to the next, float32
    (n_blocks, bands); the first block's is 0 (it packs as "fell" on a track's side).  ``phase``
    frames are skipped first, so that a clip starting ``phase`` frames before a block boundary
    of its track pools on the track's blocks (block j of the result is then the track's block
    (offset + phase) / block + j)."""
    if not (isinstance(block, (int, np.integer)) and block >= 1):
        raise ParameterError(f"block must be a positive number of frames, got {block!r}")
    if not (isinstance(phase, (int, np.integer)) and 0 <= phase < block):
        raise ParameterError(f"phase must be in [0, {block}), got {phase!r}")
    P = np.asarray(power, np.float32)[phase:]
    n = len(P) // block
    if n == 0:
        return np.zeros((0, P.shape[1]), np.float32)
    L = np.log(P[: n * block].reshape(n, block, -1).mean(axis=1, dtype=np.float64) + _FLOOR)
    return np.diff(L, axis=0, prepend=L[:1]).astype(np.float32)


def clip_changes(
    S: np.ndarray, *, offset_frames: float, time_scale: float = 1.0, freq_scale: float = 1.0,
    n_bands: int = N_BANDS, block: int = BLOCK_FRAMES,
) -> tuple[np.ndarray, int]:
    """A clip's :func:`block_changes` on its track's block grid, and the track block its first
    row lies on.

    S : the clip's magnitude frames; offset_frames : the track frame (fractional) at the clip's
    first sample; time_scale : track frames per clip frame (a clip played or stretched faster:
    speed x tempo); freq_scale : the clip's frequencies over the track's (speed x pitch).  The
    clip's band power is read at each of its track's frames (linear interpolation, frame centres
    matched), so that a changed clip pools as its track did; rows before the track's first frame
    are dropped."""
    if not (math.isfinite(time_scale) and 0.5 <= time_scale <= 2.0):
        raise ParameterError(f"time_scale must be in [0.5, 2], got {time_scale!r}")
    if not (math.isfinite(offset_frames) and offset_frames > -1e9):
        raise ParameterError(f"offset_frames must be a finite frame, got {offset_frames!r}")
    P = band_power(S, n_bands, freq_scale=freq_scale).astype(np.float64)
    # Frames are not centred: clip frame i's centre lies on track frame
    # offset + i * time_scale + (time_scale - 1) * N_FFT / (2 * HOP_LENGTH).
    start = offset_frames + (time_scale - 1.0) * N_FFT / (2 * HOP_LENGTH)
    first = math.ceil(start - 1e-6)
    n = math.floor((len(P) - 1) * time_scale - (first - start) + 1e-6) + 1 if len(P) else 0
    pos = (first + np.arange(max(n, 0)) - start) / time_scale
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(P) - 1)
    w = (pos - i0)[:, None]
    rows = P[i0] * (1.0 - w) + P[np.minimum(i0 + 1, len(P) - 1)] * w
    skip = max(0, -first)  # a clip that starts before its track: its rows before frame 0 are dropped
    rows, first = rows[skip:], first + skip
    phase = -first % block
    return block_changes(rows, block=block, phase=phase), (first + phase) // block


def pack(changes: np.ndarray) -> np.ndarray:
    """The signs of ``changes`` (n_blocks, bands <= 8), one byte a block: bit b set where band b
    rose.  uint8 (n_blocks,)."""
    C = np.asarray(changes)
    if C.ndim != 2 or not 1 <= C.shape[1] <= 8:
        raise ParameterError(f"pack takes (n, 1..8) changes, got shape {C.shape}")
    weights = (1 << np.arange(C.shape[1])).astype(np.uint8)
    return ((C > 0).astype(np.uint8) * weights).sum(axis=1, dtype=np.uint8)  # type: ignore[no-any-return]


def unpack(bits: np.ndarray, n_bands: int = N_BANDS) -> np.ndarray:
    """:func:`pack`'s bytes back to signs, +1 (rose) or -1, float32 (n_blocks, n_bands)."""
    _check_bands(n_bands)
    if n_bands > 8:
        raise ParameterError(f"a byte holds at most 8 bands, got {n_bands}")
    b = np.asarray(bits, np.uint8)[:, None] >> np.arange(n_bands, dtype=np.uint8)
    return ((b & 1).astype(np.float32) * 2.0 - 1.0)  # type: ignore[no-any-return]


def agreement(clip: np.ndarray, track_signs: np.ndarray, *, at_block: int, lag_blocks: int = 2
              ) -> tuple[float, float]:
    """How well a clip's :func:`block_changes` agree with a track's signs (:func:`unpack`) when
    the clip's first block lies on the track's block ``at_block`` (± ``lag_blocks``).

    Returns (score, z): the best mean over the clip's blocks of its unit change rows dotted with
    the track's signs over sqrt(bands), and that score as a z-score against the clip at every
    alignment inside the track (median and MAD, the MAD no less than half what random signs
    would give, so a silent stretch of a track cannot make a z of nothing).  A clip running past
    the track's end is cut there.  (0, 0) when the clip has no change or does not fit."""
    X = np.asarray(clip, np.float64)
    Y = np.asarray(track_signs, np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1]:
        raise ParameterError(f"clip and track must have the same bands, got {X.shape} and {Y.shape}")
    if not (isinstance(lag_blocks, (int, np.integer)) and lag_blocks >= 0):
        raise ParameterError(f"lag_blocks must be an integer >= 0, got {lag_blocks!r}")
    if not isinstance(at_block, (int, np.integer)):
        raise ParameterError(f"at_block must be an integer, got {at_block!r}")
    X = X[: max(0, len(Y) - max(int(at_block), 0))]
    T, N = len(X), len(Y)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if T == 0 or N < T or not np.any(norms > 0):
        return 0.0, 0.0
    X = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    Y = Y / math.sqrt(Y.shape[1])
    # s[j] = mean over t of X[t] . Y[t + j], every alignment at once: a correlation per band,
    # summed over bands before the inverse transform (no wrap-around below N + T - 1 points)
    n = scipy.fft.next_fast_len(N + T - 1, real=True)
    cross = (scipy.fft.rfft(Y, n, axis=0) * np.conj(scipy.fft.rfft(X, n, axis=0))).sum(axis=1)
    s = scipy.fft.irfft(cross, n)[: N - T + 1] / T
    lo, hi = max(0, at_block - lag_blocks), min(len(s), at_block + lag_blocks + 1)
    if hi <= lo:
        return 0.0, 0.0
    score = float(np.max(s[lo:hi]))
    med = float(np.median(s))
    # Random signs spread s by 1 / sqrt(T * bands).
    mad = max(_MAD_SIGMA * float(np.median(np.abs(s - med))), 0.5 / math.sqrt(T * Y.shape[1]))
    return score, (score - med) / mad


def track_envelope(power: np.ndarray) -> np.ndarray:
    """What an index keeps of a track: the packed signs of its :func:`block_changes` (one byte a
    block of ``BLOCK_FRAMES`` frames), from its :func:`band_power`.  uint8 (n_blocks,)."""
    return pack(block_changes(power))


def clip_z(
    S: np.ndarray, envelope: np.ndarray, *, offset_frames: float, time_scale: float = 1.0,
    freq_scale: float = 1.0,
) -> float:
    """:func:`agreement`'s z of a clip's magnitude frames ``S`` with a track's
    :func:`track_envelope` when the clip starts at the track's frame ``offset_frames``, changed
    by ``time_scale`` and ``freq_scale`` (see :func:`clip_changes`)."""
    changes, at = clip_changes(S, offset_frames=offset_frames, time_scale=time_scale, freq_scale=freq_scale)
    return agreement(changes, unpack(envelope), at_block=at, lag_blocks=LAG_BLOCKS)[1]
