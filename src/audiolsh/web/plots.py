"""Plot data of a query for the page's canvases: a log-mel spectrogram and the beat spectrum.

The browser draws them from compact JSON (the spectrogram as base64 bytes), which is faster
than rendering images on the server and keeps the page free of a plotting library.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from audiolsh.features.beat_spectrum import beat_spectrum
from audiolsh.features.spectral import HOP_LENGTH, mel_power

DISPLAY_MELS = 64
MAX_COLUMNS = 480
DB_RANGE = 80.0
MAX_LAG_S = 4.0
MIN_PERIOD_S = 0.2


def spectrogram_image(S: np.ndarray, *, n_mels: int = DISPLAY_MELS,
                      max_columns: int = MAX_COLUMNS) -> np.ndarray:
    """Mel power (n_mels_in, n_frames) -> uint8 image (n_mels, <= max_columns), low bands first.

    Bands and frames are pooled by averaging power; 0..255 spans the top ``DB_RANGE`` dB.
    """
    S = np.asarray(S, dtype=np.float64)
    group = max(1, S.shape[0] // n_mels)
    S = S[: group * (S.shape[0] // group)].reshape(-1, group, S.shape[1]).mean(axis=1)
    step = max(1, -(-S.shape[1] // max_columns))
    starts = np.arange(0, S.shape[1], step)
    counts = np.diff(np.append(starts, S.shape[1]))
    P = np.add.reduceat(S, starts, axis=1) / counts
    dB = 10.0 * np.log10(np.maximum(P, 1e-10))
    scaled = (dB - (dB.max() - DB_RANGE)) * (255.0 / DB_RANGE)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def strongest_period(B: np.ndarray, *, lag_step_s: float, share: float = 0.5,
                     min_prominence: float = 0.005) -> float | None:
    """The lag (s) of the beat spectrum's main peak, or None when nothing repeats.

    Peaks are ranked by prominence (height above the surrounding valleys), which ignores the
    slow fall from lag 0.  Multiples of a period stand out as much as the period itself, so
    the earliest peak with at least ``share`` of the top prominence is taken.
    """
    from scipy.signal import find_peaks

    start = int(np.ceil(MIN_PERIOD_S / lag_step_s))
    peaks, props = find_peaks(np.asarray(B[start:], dtype=np.float64), prominence=min_prominence)
    if not len(peaks):
        return None
    prominence = props["prominences"]
    first = peaks[prominence >= share * prominence.max()][0]
    return float((start + first) * lag_step_s)


def query_plots(y: np.ndarray, sr: int) -> dict[str, Any]:
    """``{"spectrogram": {...}, "beat_spectrum": {...}}`` of a mono clip, JSON-ready."""
    S = mel_power(y, sr)
    image = spectrogram_image(S)
    B = beat_spectrum(S=S, sr=sr, max_lag_s=MAX_LAG_S)
    lag_step_s = HOP_LENGTH / sr
    peak_lag_s = strongest_period(B, lag_step_s=lag_step_s)
    return {
        "spectrogram": {
            "n_mels": int(image.shape[0]),
            "n_columns": int(image.shape[1]),
            "duration_s": round(len(y) / sr, 3),
            "fmax_hz": sr / 2,
            "db_range": DB_RANGE,
            "data": base64.b64encode(image.tobytes()).decode("ascii"),
        },
        "beat_spectrum": {
            "lag_step_s": round(lag_step_s, 6),
            "values": np.round(B.astype(np.float64), 4).tolist(),
            "peak_lag_s": None if peak_lag_s is None else round(peak_lag_s, 3),
            # The strongest period read as a beat: what a musician calls the tempo.
            "tempo_bpm": None if peak_lag_s is None else round(60.0 / peak_lag_s, 1),
        },
    }
