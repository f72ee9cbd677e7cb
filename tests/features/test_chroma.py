"""Chroma frames as S1 uses them."""

from __future__ import annotations

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.features.chroma import chroma_frames

SR = 22050


def chord_progression(shift: int, *, chord_s: float = 1.0) -> np.ndarray:
    """C - F - G - Am with three harmonics per note, transposed by ``shift`` semitones."""
    chords = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (69, 72, 76)]
    t = np.arange(int(chord_s * SR)) / SR
    parts = []
    for chord in chords:
        x = np.zeros_like(t)
        for note in chord:
            f = 440.0 * 2 ** ((note + shift - 69) / 12)
            x += sum(np.sin(2 * np.pi * h * f * t) / h for h in (1, 2, 3))
        parts.append(x)
    y = np.concatenate(parts)
    return (0.2 * y / np.abs(y).max()).astype(np.float32)


def test_s1_framing() -> None:
    C = chroma_frames(chord_progression(0), SR)
    assert C.shape == (1 + 4 * SR // 4000, 12)
    assert C.dtype == np.float32
    np.testing.assert_allclose(C.max(axis=1), 1.0, rtol=1e-5)


def test_transposed_progression_moves_the_chroma() -> None:
    C0 = chroma_frames(chord_progression(0), SR)
    C2 = chroma_frames(chord_progression(2), SR)
    inner = slice(2, -2)
    # The C major chord's pitch classes are the strongest of its frames.
    assert set(np.argsort(C0[2])[-3:]) == {0, 4, 7}
    cos = lambda a, b: np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    assert np.mean(cos(C2[inner], C0[inner])) < 0.7
    assert np.mean(cos(C2[inner], np.roll(C0, 2, axis=1)[inner])) > 0.95


def test_precomputed_power_spectrogram_must_match_n_fft() -> None:
    with pytest.raises(ParameterError):
        chroma_frames(S=np.ones((1025, 10)), sr=SR)
