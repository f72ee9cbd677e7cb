"""A small library of synthesised tracks, built once for every web test."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library, index_audio

SR = 22050
TRACKS = {"alpha.wav": 501, "bravo.flac": 502, "charlie.ogg": 503, "delta.wav": 504}
OUTSIDER_SEED = 999
DURATION_S = 40.0


@dataclass(frozen=True)
class WebCorpus:
    library: Path
    music: Path
    outsider: Path
    ids: dict[str, int]  # file name -> library track id

    def audio(self, name: str) -> np.ndarray:
        y, _ = sf.read(self.music / name, dtype="float32")
        return np.asarray(y)

    def clip(self, name: str, *, offset_s: float = 12.0, duration_s: float = 10.0) -> bytes:
        """A WAV excerpt of one indexed track."""
        start = int(offset_s * SR)
        return self.wav(self.audio(name)[start: start + int(duration_s * SR)])

    def noisy_clip(self, name: str, *, offset_s: float, duration_s: float, snr_db: float, seed: int) -> bytes:
        """A WAV excerpt under pink noise at ``snr_db``, scaled so that the WAV does not clip it."""
        start = int(offset_s * SR)
        y = self.audio(name)[start: start + int(duration_s * SR)]
        noise = synth.pink_noise(duration_s=duration_s, sr=SR, seed=seed)[: len(y)]
        noisy = y + noise / np.sqrt(np.mean(noise**2)) * np.sqrt(np.mean(y**2)) * 10 ** (-snr_db / 20)
        return self.wav((noisy * (0.9 / np.max(np.abs(noisy)))).astype(np.float32))

    @staticmethod
    def wav(y: np.ndarray, sr: int = SR) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
        return buf.getvalue()


@pytest.fixture(scope="session")
def web_corpus(tmp_path_factory: pytest.TempPathFactory) -> WebCorpus:
    root = tmp_path_factory.mktemp("web-corpus")
    music = root / "music"
    music.mkdir()
    for name, seed in TRACKS.items():
        sf.write(music / name, synth.music(duration_s=DURATION_S, sr=SR, seed=seed), SR)
    outsider = root / "outsider.wav"
    sf.write(outsider, synth.music(duration_s=20.0, sr=SR, seed=OUTSIDER_SEED), SR)
    with Library.create(root / "library") as library:
        report = index_audio(library, [music], workers=1)
        assert not report.failed, report.failed
        ids = {Path(t.path).name: t.id for t in library.tracks()}
    assert set(ids) == set(TRACKS)
    return WebCorpus(root / "library", music, outsider, ids)


@dataclass(frozen=True)
class SameAudio:
    """A library holding one passage twice: a track and a compilation that starts 20 s earlier."""

    library: Path
    clip: Path  # 6 s of the track from 10 s
    where: dict[str, float]  # file name -> where the clip starts in it


@pytest.fixture(scope="session")
def same_audio(tmp_path_factory: pytest.TempPathFactory) -> SameAudio:
    root = tmp_path_factory.mktemp("same-audio")
    music = root / "music"
    music.mkdir()
    original = synth.music(duration_s=30.0, sr=SR, seed=611)
    sf.write(music / "original.wav", original, SR)
    intro = synth.music(duration_s=20.0, sr=SR, seed=612)
    sf.write(music / "compilation.wav", np.concatenate([intro, original]), SR)
    with Library.create(root / "library") as library:
        assert not index_audio(library, [music], workers=1).failed
    sf.write(root / "clip.wav", original[10 * SR: 16 * SR], SR)
    return SameAudio(root / "library", root / "clip.wav", {"original.wav": 10.0, "compilation.wav": 30.0})


@pytest.fixture(scope="module")
def client(web_corpus: WebCorpus) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    app = create_app(Settings(index_path=web_corpus.library, warm_up=False))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def free_port() -> int:
    """A loopback port no one listens on now (for a real `serve`)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
