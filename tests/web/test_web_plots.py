"""The page's plot data: a compact spectrogram image and the beat spectrum's main period."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from audiolsh.audio import synth
from audiolsh.web.plots import MAX_COLUMNS, query_plots, spectrogram_image

SR = 22050


@pytest.mark.parametrize("bpm", [70, 120, 150])
def test_strongest_period_of_a_click_track(bpm: float) -> None:
    beat = query_plots(synth.clicks(bpm=bpm, duration_s=10.0, sr=SR), SR)["beat_spectrum"]
    assert beat["peak_lag_s"] == pytest.approx(60.0 / bpm, abs=0.03)
    assert beat["tempo_bpm"] == pytest.approx(bpm, rel=0.05)  # what the page shows


def test_spectrogram_image_is_pooled_and_scaled() -> None:
    y = synth.chirp(200.0, 6000.0, duration_s=30.0, sr=SR)
    spec = query_plots(y, SR)["spectrogram"]
    image = np.frombuffer(base64.b64decode(spec["data"]), np.uint8).reshape(spec["n_mels"], spec["n_columns"])
    assert spec["n_mels"] == 64 and spec["n_columns"] <= MAX_COLUMNS
    assert image.max() == 255
    # A rising chirp: the loudest band climbs from the first columns to the last.
    loudest = image.argmax(axis=0)
    assert loudest[-5:].mean() > loudest[:5].mean() + 20


def test_spectrogram_image_of_few_frames_keeps_them_all() -> None:
    S = np.abs(np.random.default_rng(0).standard_normal((128, 7))) + 1e-3
    image = spectrogram_image(S)
    assert image.shape == (64, 7) and image.dtype == np.uint8
