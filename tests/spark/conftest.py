"""One Spark session for the Spark tests: local[2], UI off, the driver on 127.0.0.1; stopped
at the end of the session.  Functions a test sends to the tasks are defined inside the test
(pickled by value: the workers cannot import test modules).  A small fingerprint library with
a planted passage and a duplicate for the overlaps tests."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library, index_audio

SR = 22050
FROM_S, LENGTH_S, INTO_S = 4.0, 10.0, 15.0


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from audiolsh.spark import spark_session, stop_session

    session = spark_session("local[2]", app="audiolsh-tests")
    try:
        yield session
    finally:
        stop_session(session)


@pytest.fixture(scope="session")
def planted_library(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A fingerprint library of five 30-s songs: b plays 10 s of a (from 4 s) at 15 s; c_copy is
    c as FLAC at 70 % gain; d shares nothing.  (path, from_s, into_s, length_s)"""
    root = tmp_path_factory.mktemp("songs")
    songs = {name: synth.music(duration_s=30.0, sr=SR, seed=seed)
             for name, seed in zip("abcd", (616, 617, 700, 701))}
    songs["b"][round(INTO_S * SR):round((INTO_S + LENGTH_S) * SR)] = \
        songs["a"][round(FROM_S * SR):round((FROM_S + LENGTH_S) * SR)]
    for name, y in songs.items():
        sf.write(root / f"{name}.wav", y, SR)
    sf.write(root / "c_copy.flac", 0.7 * songs["c"], SR, format="FLAC", subtype="PCM_16")
    where = tmp_path_factory.mktemp("lib") / "lib"
    with Library.create(where, modes=("fingerprint",)) as lib:
        report = index_audio(lib, [root], workers=1)
    assert len(report.added) == 5 and not report.failed
    return SimpleNamespace(path=where, from_s=FROM_S, into_s=INTO_S, length_s=LENGTH_S)
