"""An index and a music library in Redis, in either mode, answer as the same ones in a
directory do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from audiolsh.index import Index
from audiolsh.library import Library, index_audio

SR = 22050


@pytest.fixture(scope="module")
def music(synth_tracks: Callable[..., list[Path]]) -> list[Path]:
    return synth_tracks(4, 20.0, 90)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["shared", "remote"])
def test_a_library_in_redis_answers_as_one_in_a_directory(
    tmp_path: Path, music: list[Path], redis_url: str, answers: Callable[..., list[object]], mode: str,
) -> None:
    redis_url += f"&mode={mode}"
    with Library.create(tmp_path / "lib") as lib:
        index_audio(lib, music[:3], workers=1)
        index_audio(lib, music[3:], workers=1)
        expected = answers(lib, music)
    with Library.create(redis_url) as lib:
        index_audio(lib, music[:3], workers=1)
        index_audio(lib, music[3:], workers=1)
        assert answers(lib, music) == expected
    with Library.open(redis_url, readonly=True) as again:
        assert len(again.tracks()) == len(music)
        assert answers(again, music) == expected
    with pytest.raises(Exception, match="already exists"):
        Library.create(redis_url)


@pytest.mark.parametrize("mode", ["shared", "remote"])
def test_a_vector_index_in_redis_answers_as_one_in_a_directory(tmp_path: Path, redis_url: str,
                                                                mode: str) -> None:
    redis_url += f"&mode={mode}"
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
