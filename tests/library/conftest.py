"""The library tests' shared library: four songs and three drones in every vector and set mode,
built once for the session (the tests only read it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library, index_audio

SR = 22050
MODES = ("embedding", "rhythm", "timbre", "chroma", "peaks")


def _tone_track(seed: int, duration_s: float = 40.0) -> np.ndarray:
    """A steady drone family: few partials, no percussion (unlike synth.music)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * SR)) / SR
    f0 = rng.uniform(110, 220)
    y = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in (1, 2, 3))
    return (0.3 * y * (1 + 0.2 * np.sin(2 * np.pi * 0.2 * t))).astype(np.float32)


@pytest.fixture(scope="session")
def music_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("music")
    for seed in range(4):
        sf.write(root / f"song{seed}.wav", synth.music(duration_s=40.0, sr=SR, seed=seed + 10), SR)
    for seed in range(3):
        sf.write(root / f"drone{seed}.flac", _tone_track(seed), SR, format="FLAC")
    return root


@pytest.fixture(scope="session")
def lib_dir(tmp_path_factory: pytest.TempPathFactory, music_dir: Path) -> Path:
    where = tmp_path_factory.mktemp("lib") / "lib"
    with Library.create(where, modes=MODES) as lib:
        report = index_audio(lib, [music_dir], workers=1, commit_every=3)
        assert len(report.added) == 7 and not report.failed
    return where
