"""An index and a music library in Redis answer as the same ones in a directory do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import load, synth
from audiolsh.index import Index
from audiolsh.library import Library, analyse, index_audio
from audiolsh.query.identify import identify
from audiolsh.query.similar import similar

SR = 22050


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("music")
    files = []
    for seed in range(4):
        path = root / f"track{seed}.wav"
        sf.write(path, synth.music(duration_s=20.0, sr=SR, seed=90 + seed), SR)
        files.append(path)
    return files


def _answers(lib: Library, files: list[Path]) -> list[object]:
    out: list[object] = []
    for i, f in enumerate(files):
        y, sr = load(f, sr=SR, offset_s=3.0 + i, duration_s=8.0)
        clip = analyse(y, sr, modes=lib.modes, window_s=lib.config.window_s, hop_s=lib.config.hop_s)
        for by in ("rhythm", "timbre", "chroma", "peaks", "combined"):
            out.append([(r.track_id, Path(r.path).name, round(r.score, 5), r.offset_s)
                        for r in similar(lib, clip, by=by, k=3)])
        m = identify(lib, y, sr)
        out.append(None if m is None else (m.track_id, round(m.offset_s, 2)))
    return out


@pytest.mark.slow
def test_a_library_in_redis_answers_as_one_in_a_directory(
    tmp_path: Path, music: list[Path], redis_url: str
) -> None:
    with Library.create(tmp_path / "lib") as lib:
        index_audio(lib, music[:3], workers=1)
        index_audio(lib, music[3:], workers=1)
        expected = _answers(lib, music)
    with Library.create(redis_url) as lib:
        index_audio(lib, music[:3], workers=1)
        index_audio(lib, music[3:], workers=1)
        assert _answers(lib, music) == expected
    with Library.open(redis_url, readonly=True) as again:
        assert len(again.tracks()) == len(music)
        assert _answers(again, music) == expected
    with pytest.raises(Exception, match="already exists"):
        Library.create(redis_url)


def test_a_vector_index_in_redis_answers_as_one_in_a_directory(tmp_path: Path, redis_url: str) -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((900, 16)).astype(np.float32)
    Q = X[:20] + 0.05 * rng.standard_normal((20, 16)).astype(np.float32)
    answers = []
    for where in (tmp_path / "idx", redis_url):
        with Index.create(where, metric="cosine", seed=3) as idx:
            for part in range(0, 900, 300):
                idx.add(X[part:part + 300], [f"x{i}" for i in range(part, part + 300)])
            assert idx.remove([f"x{i}" for i in range(0, 900, 7)]) > 0
            res = idx.query(Q, k=5)
            answers.append((res.ids.tolist(), np.round(res.distances, 5).tolist(),
                            [[h.key for h in row] for row in idx.hits(res)]))
        with Index.open(where, readonly=True) as again:
            res = again.query(Q, k=5)
            assert res.ids.tolist() == answers[-1][0]
    assert answers[0] == answers[1]
