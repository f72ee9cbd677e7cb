"""Similarity features of a whole track, window by window, from one spectrogram.

:func:`excerpt_features` is what the indexer calls once per decoded file (in a worker
process): it computes the STFT, the mel spectrogram and the chroma STFT once, slices them into
windows of ``window_s`` seconds every ``hop_s`` seconds, and computes every requested
descriptor for all windows at once. Outputs are plain numpy arrays (or a :class:`SetBatch`
of numpy arrays), so they pickle cheaply back to the main process.

Modes, what X holds, and what the index does before hashing (:data:`NORMALISATION` and
:data:`METRICS`; the statistics come from :func:`fit_standardizer` over the collection, are
stored in the index and are applied to queries too; a query clip goes through this function):

- ``rhythm``: (n_windows, 282) float32, the :mod:`.rhythm` descriptor. Standardise with the
  collection mean/std, then the learned within-track normalisation (:mod:`.normalisation`),
  then cosine (hyperplane LSH).
- ``timbre``: (n_windows, 320) float32, MFCC means and stds (:mod:`.mfcc`, 40) followed by the
  delta spectral pattern (:mod:`.spectral_pattern`, 280). Standardise, then scale each of the
  two blocks to unit length (:data:`BLOCKS`), then the learned within-track normalisation;
  cosine.
- ``chroma``: (n_frames, 12) float32, the chroma frames of the whole track (hop 4000 samples,
  ``offsets_s`` = frame centres). Centre with the collection's mean chroma (no scaling), cosine;
  search frame by frame and let each query frame vote (S1).
- ``peaks``: SetBatch, one set of peak-pair ids per window. No normalisation; Jaccard through
  MinHash (same-track excerpts share few pairs: a threshold near 0.03 is needed).
- ``beat_spectrum`` (evaluation baseline): (n_windows, 172), Foote's beat spectrum at lags of
  23 ms .. 4 s (lag 0 dropped). Standardise, cosine.
- ``beat_spectrum_bands`` (evaluation baseline): (n_windows, 128), S2's band variant. Kept raw,
  as S2 compared it (cosine; centred hyperplanes).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import soxr

from audiolsh.errors import ParameterError
from audiolsh.features import beat_spectrum as bs
from audiolsh.features import chroma as ch
from audiolsh.features import mfcc, peaks, rhythm, spectral
from audiolsh.features import spectral_pattern as sp
from audiolsh.hashing.minhash import SetBatch

logger = logging.getLogger(__name__)

__all__ = [
    "ALL_MODES",
    "BASELINE_MODES",
    "BLOCKS",
    "METRICS",
    "MIN_CLIP_S",
    "MODES",
    "NORMALISATION",
    "ExcerptFeatures",
    "excerpt_features",
    "fit_standardizer",
    "standardize",
]

MODES = ("rhythm", "timbre", "chroma", "peaks")
BASELINE_MODES = ("beat_spectrum", "beat_spectrum_bands")
ALL_MODES = MODES + BASELINE_MODES
MIN_CLIP_S = 3.0
"""Shortest signal accepted: shorter clips hold too little rhythm to describe."""

NORMALISATION = {
    "rhythm": "standardize",
    "timbre": "standardize",
    "chroma": "center",
    "peaks": "none",
    "beat_spectrum": "standardize",
    "beat_spectrum_bands": "none",
}
"""What the index does to each mode's vectors before hashing (with collection statistics)."""

METRICS = {
    "rhythm": "cosine",
    "timbre": "cosine",
    "chroma": "cosine",
    "peaks": "jaccard",
    "beat_spectrum": "cosine",
    "beat_spectrum_bands": "cosine",
}

BLOCKS = {"timbre": (2 * mfcc.N_MFCC, sp.DIM)}
"""Modes whose vector joins blocks of different sizes: after standardising, each block is scaled
to unit length, so that the 280 values of the spectral pattern do not outweigh the 40 MFCC
statistics (the cosine becomes the mean of the blocks' cosines)."""

_CHUNK_WINDOWS = 48  # windows per batch for the (windows, mels, frames) descriptors


@dataclass(frozen=True)
class ExcerptFeatures:
    """One mode's features of a signal.

    X : (n, d) float32 array, or a SetBatch of n sets (mode "peaks").
    offsets_s : (n,) float64 start of each window in seconds (chroma: centre of each frame).
    window_s : length of each window in seconds (chroma: one frame hop).
    """

    X: np.ndarray | SetBatch
    offsets_s: np.ndarray
    window_s: float

    def __len__(self) -> int:
        return len(self.offsets_s)


def fit_standardizer(X: np.ndarray, *, scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of a collection's vectors (std 1 when ``scale`` is False).

    Dimensions that do not vary get std 1, so :func:`standardize` leaves them at 0.

    Returns
    -------
    mean, std : np.ndarray
        (d,) float32 each.
    """
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2 or len(A) == 0:
        raise ParameterError(f"expected a non-empty (n, d) array, got shape {A.shape}")
    mean = A.mean(axis=0)
    std = A.std(axis=0) if scale else np.ones(A.shape[1])
    std = np.where(std > 1e-8 * max(float(std.max()), 1e-30), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(
    X: np.ndarray, mean: np.ndarray, std: np.ndarray, blocks: tuple[int, ...] = ()
) -> np.ndarray:
    """(X - mean) / std as float32, the vectors the index hashes and searches; with ``blocks``
    (sizes summing to the dimension) each block of a row is then scaled to unit length.
    Standardising rows that are already standardised this way (``Z * std + mean``) gives them back.
    """
    Z = ((np.asarray(X, dtype=np.float32) - mean) / std).astype(np.float32)
    if blocks:
        if sum(blocks) != Z.shape[-1]:
            raise ParameterError(f"blocks {blocks} do not add up to the dimension {Z.shape[-1]}")
        edges = np.cumsum((0, *blocks))
        for a, b in itertools.pairwise(edges):
            norm = np.linalg.norm(Z[..., a:b], axis=-1, keepdims=True)
            Z[..., a:b] /= np.maximum(norm, 1e-12)
    return Z


def window_layout(
    duration_s: float, window_s: float, hop_s: float, fps: float, n_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Window offsets (s) and frame ranges [first, stop) of equal length; the window length."""
    if duration_s < window_s:
        offsets = np.zeros(1)
        win = duration_s
    else:
        n_windows = math.floor((duration_s - window_s) / hop_s + 1e-9) + 1
        offsets = np.arange(n_windows, dtype=np.float64) * hop_s
        win = window_s
    n_w = min(n_frames, max(2, round(win * fps)))
    first = np.minimum(np.round(offsets * fps).astype(np.int64), n_frames - n_w)
    return offsets, first, first + n_w, win


def _windows(M: np.ndarray, first: np.ndarray, n_w: int) -> np.ndarray:
    """(n_windows, rows, n_w) strided view of a (rows, n_frames) matrix's frame ranges."""
    view = np.lib.stride_tricks.sliding_window_view(M, n_w, axis=1)  # (rows, n_pos, n_w)
    return view[:, first].transpose(1, 0, 2)


def _chunked(fn, M: np.ndarray, first: np.ndarray, n_w: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    parts = [
        fn(np.ascontiguousarray(_windows(M, first[i : i + _CHUNK_WINDOWS], n_w)))
        for i in range(0, len(first), _CHUNK_WINDOWS)
    ]
    return np.concatenate(parts).astype(np.float32)


def excerpt_features(
    y: np.ndarray,
    sr: int,
    *,
    window_s: float = 10.0,
    hop_s: float = 5.0,
    modes: Iterable[str] = MODES,
) -> dict[str, ExcerptFeatures]:
    """Every requested similarity descriptor of a signal, window by window.

    Parameters
    ----------
    y : np.ndarray
        Mono float signal, at least :data:`MIN_CLIP_S` seconds. Resampled to 22,050 Hz first
        when ``sr`` differs, so descriptors of any file are comparable.
    sr : int
        Sample rate of ``y`` in Hz.
    window_s, hop_s : float
        Window length and step in seconds. Window ``i`` starts at ``i * hop_s``; only whole
        windows are returned, except that a signal shorter than ``window_s`` gives one window
        covering all of it.
    modes : iterable of str
        Any of :data:`ALL_MODES` (default :data:`MODES`).

    Returns
    -------
    dict
        mode -> :class:`ExcerptFeatures` (see the module docstring for shapes).

    Raises
    ------
    ParameterError
        An unknown mode, bad window parameters, or a signal that is too short or not finite.
    """
    modes = tuple(dict.fromkeys(modes))
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        raise ParameterError(f"unknown mode(s) {unknown}: choose from {list(ALL_MODES)}")
    if not (math.isfinite(window_s) and window_s >= MIN_CLIP_S):
        raise ParameterError(f"window_s must be >= {MIN_CLIP_S} s, got {window_s}")
    if not (math.isfinite(hop_s) and hop_s > 0):
        raise ParameterError(f"hop_s must be > 0 seconds, got {hop_s}")
    y = spectral.check_signal(y, sr, min_duration_s=MIN_CLIP_S)
    if sr != spectral.FEATURE_SR:
        y = np.asarray(soxr.resample(y, sr, spectral.FEATURE_SR, quality="HQ"), dtype=np.float32)
        sr = spectral.FEATURE_SR
    duration_s = y.size / sr
    out: dict[str, ExcerptFeatures] = {}

    if "chroma" in modes:
        C = ch.chroma_from_power(spectral.power_stft(y, n_fft=ch.CHROMA_N_FFT, hop_length=ch.CHROMA_HOP), sr)
        frame_s = ch.CHROMA_HOP / sr
        out["chroma"] = ExcerptFeatures(C, np.arange(len(C)) * frame_s, frame_s)

    if not set(modes) - {"chroma"}:
        return out
    fps = sr / spectral.HOP_LENGTH
    P = spectral.power_stft(y, n_fft=spectral.N_FFT, hop_length=spectral.HOP_LENGTH)
    n_frames = P.shape[1]
    offsets, first, stop, win = window_layout(duration_s, window_s, hop_s, fps, n_frames)
    n_w = int(stop[0] - first[0])
    if "peaks" in modes:
        frame_s = 1.0 / fps
        max_bin = int(peaks.FMAX_HZ * spectral.N_FFT / sr) + 1
        pk = peaks.find_peaks(P, frame_s=frame_s, max_bin=max_bin)
        elements, at = peaks.peak_elements(pk, frame_s=frame_s)
        out["peaks"] = ExcerptFeatures(peaks.window_sets(elements, at, first, stop), offsets, win)
    if not set(modes) & {"rhythm", "timbre", *BASELINE_MODES}:
        return out

    M = spectral.mel_basis(sr, spectral.N_FFT, spectral.N_MELS) @ P
    L = spectral.log_power(M)
    profiles = sp.block_profiles(sp.band_power(P, sr)) if "timbre" in modes else None
    del P
    if profiles is not None:
        X = np.concatenate([mfcc.window_stats(mfcc.mfcc_frames(L), first, stop),
                            sp.window_patterns(profiles, first, stop)], axis=1)
        out["timbre"] = ExcerptFeatures(X, offsets, win)
    if "rhythm" in modes:
        onsets = rhythm.onset_bands(L)
        X = rhythm.rhythm_descriptors(np.ascontiguousarray(_windows(onsets, first, n_w)), frame_s=1.0 / fps)
        out["rhythm"] = ExcerptFeatures(X, offsets, win)
    if "beat_spectrum" in modes:
        n_lags = bs.n_lags_for(4.0, sr=sr, hop_length=spectral.HOP_LENGTH)
        X = _chunked(lambda W: bs.beat_spectra(W, n_lags=n_lags)[:, 1:], L, first, n_w)
        out["beat_spectrum"] = ExcerptFeatures(X, offsets, win)
    if "beat_spectrum_bands" in modes:

        def s2(W: np.ndarray) -> np.ndarray:
            # librosa.power_to_db(S, ref=np.max) of each window: dB below its peak, floor -80 dB.
            W = np.maximum(W - W.max(axis=(1, 2), keepdims=True), -80.0)
            return bs.beat_spectra_bands(W)

        out["beat_spectrum_bands"] = ExcerptFeatures(_chunked(s2, L, first, n_w), offsets, win)
    logger.debug(
        "excerpt_features: %.1f s, %d windows of %.1f s, modes %s", duration_s, len(offsets), win, modes
    )
    return out
