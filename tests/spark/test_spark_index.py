"""`audiolsh spark index` makes the library `audiolsh index` makes of the same files, into a
directory and into Redis: the same tracks, learned state, tables and answers; a second run adds
nothing; a corrupt file is one line and the others go in."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from audiolsh.cli import cli
from audiolsh.library import Library

pytestmark = pytest.mark.spark

N_TRACKS = 5


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stderr


@pytest.fixture(scope="module")
def folder(synth_tracks: Callable[..., list[Path]]) -> Path:
    """Five synthesised tracks (one tagged) and, in the middle of them in path order, a corrupt file."""
    from mutagen.id3 import TIT2, TPE1
    from mutagen.wave import WAVE

    files = synth_tracks(N_TRACKS, 24.0, 110)
    tagged = WAVE(files[1])
    tagged.add_tags()
    tagged.tags.add(TPE1(encoding=3, text=["Ana"]))
    tagged.tags.add(TIT2(encoding=3, text=["Blue"]))
    tagged.save()
    bad = files[0].parent / "track2-corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + np.random.default_rng(5).bytes(4000))
    return files[0].parent


@pytest.fixture(scope="module")
def music(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if "corrupt" not in p.name)


@pytest.fixture(scope="module")
def reference(folder: Path, music: list[Path], tmp_path_factory: pytest.TempPathFactory,
              answers: Callable[..., list[object]]) -> tuple[Path, list[object]]:
    """`audiolsh index` of the folder, and its answers."""
    where = tmp_path_factory.mktemp("reference") / "lib"
    code, err = run("index", str(folder), "--index", str(where), "-j", "1")
    assert code == 2 and f"{N_TRACKS} added, 0 already indexed, 1 failed" in err, err
    with Library.open(where, readonly=True) as ref:
        return where, answers(ref, music)


def _spark_index(folder: Path, where: str) -> tuple[int, str]:
    return run("spark", "index", str(folder), "--index", where, "--master", "local[2]", "--partitions", "2")


def _same_library(ref: Library, built: Library) -> None:
    assert [(t.id, t.path, t.content_hash, t.meta) for t in ref.tracks()] == \
        [(t.id, t.path, t.content_hash, t.meta) for t in built.tracks()]  # tags read in the tasks
    assert ref.catalogue.config("roots") == built.catalogue.config("roots")
    assert ref.config.to_dict() == built.config.to_dict()  # learned from the same sample
    for name, index in ref.indexes.items():
        a, b = index._segments, built.indexes[name]._segments
        assert len(a) == len(b) == 1, name
        assert np.array_equal(a[0].ids, b[0].ids), name
        tables = b[0].searcher.tables_.arrays()
        for key, table in a[0].searcher.tables_.arrays().items():
            assert np.array_equal(table, tables[key]), (name, key)
    assert ref.fingerprint is not None and built.fingerprint is not None
    assert ref.fingerprint.info()["n_hashes"] == built.fingerprint.info()["n_hashes"]


def test_spark_index_into_a_directory_answers_as_audiolsh_index(
        spark: Any, tmp_path: Path, folder: Path, music: list[Path], reference: tuple[Path, list[object]],
        answers: Callable[..., list[object]]) -> None:
    where = tmp_path / "lib"
    code, err = _spark_index(folder, str(where))
    assert code == 2, err  # as `audiolsh index`: a file failed
    assert f"{N_TRACKS} added, 0 already indexed, 1 failed" in err, err
    bad_lines = [line for line in err.splitlines() if "track2-corrupt.wav" in line]
    assert len(bad_lines) == 1 and bad_lines[0].startswith("failed: "), err
    assert "stage " in err and "attaching 2 parts" in err, err
    (last,) = [line for line in err.splitlines() if f"/{N_TRACKS + 1} files extracted" in line][-1:]
    assert last.startswith(f"{N_TRACKS + 1}/{N_TRACKS + 1} files extracted, ") and "files/s" in last
    assert "x real time" in last

    ref_path, ref_answers = reference
    with Library.open(ref_path, readonly=True) as ref, Library.open(where, readonly=True) as built:
        _same_library(ref, built)
        tags = [t.meta["tags"] for t in built.tracks() if t.meta["tags"]]
        assert tags == [{"artist": "Ana", "title": "Blue"}]  # read in the tasks
        assert answers(built, music) == ref_answers

    # Resumable: a second run finds every file in the library and adds nothing.
    code, err = _spark_index(folder, str(where))
    assert code == 2 and f"0 added, {N_TRACKS} already indexed, 1 failed" in err, err
    with Library.open(where, readonly=True) as built:
        assert len(built) == N_TRACKS
        assert all(len(index._segments) == 1 for index in built.indexes.values())


def test_spark_index_into_redis_answers_as_audiolsh_index(
        spark: Any, redis_url: str, folder: Path, music: list[Path], reference: tuple[Path, list[object]],
        answers: Callable[..., list[object]]) -> None:
    code, err = _spark_index(folder, redis_url)
    assert code == 2 and f"{N_TRACKS} added, 0 already indexed, 1 failed" in err, err
    ref_path, ref_answers = reference
    with Library.open(ref_path, readonly=True) as ref, Library.open(redis_url, readonly=True) as built:
        _same_library(ref, built)
        assert answers(built, music) == ref_answers


def test_spark_index_reads_the_tags_of_a_format_6_library_as_index_does(
        spark: Any, tmp_path: Path, folder: Path, reference: tuple[Path, list[object]],
        format_6: Callable[[Path], None]) -> None:
    where = tmp_path / "old"
    shutil.copytree(reference[0], where)
    format_6(where)  # its tracks indexed before tags were read
    code, err = _spark_index(folder, str(where))
    said = f"0 added, {N_TRACKS} already indexed, tags read for {N_TRACKS} indexed before"
    assert code == 2 and said in err, err
    with Library.open(reference[0], readonly=True) as ref, Library.open(where, readonly=True) as built:
        assert [t.meta for t in built.tracks()] == [t.meta for t in ref.tracks()]  # read in the tasks
    code, err = _spark_index(folder, str(where))
    assert code == 2 and "tags read" not in err, err
