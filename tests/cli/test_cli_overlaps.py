"""`audiolsh overlaps`: a passage shared by two synthesised songs, in every format; a location
that is no music library, or one without fingerprints, is one line and exit status 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiolsh.audio import synth
from audiolsh.cli import cli

SR = 22050


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 30-s songs; song1 plays 10 s of song0 (from 4 s) at 15 s.  (Seeds of songs in
    different keys: two songs that hold one chord next to the passage agree there too, and the
    stretch reported starts that much earlier.)"""
    root = tmp_path_factory.mktemp("songs")
    songs = [synth.music(duration_s=30.0, sr=SR, seed=seed) for seed in (616, 617, 700)]
    songs[1][15 * SR:25 * SR] = songs[0][4 * SR:14 * SR]
    for i, y in enumerate(songs):
        sf.write(root / f"song{i}.wav", y, SR)
    return root


@pytest.fixture(scope="module")
def library(music: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    idx = tmp_path_factory.mktemp("idx") / "lib"
    code, _, err = run("index", str(music), "--index", str(idx), "--modes", "fingerprint", "-j", "1")
    assert code == 0, err
    return idx


def test_overlaps_prints_the_shared_passage(library: Path, music: Path) -> None:
    code, out, err = run("overlaps", "--index", str(library), "--format", "jsonl")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 1, records
    r = records[0]
    assert set(r) == {"a", "b", "length_s", "kind", "score", "confidence"}
    assert set(r["a"]) == {"path", "track_id", "title", "artist", "offset_s", "duration_s"}
    assert r["a"]["artist"] is None and r["a"]["title"] == Path(r["a"]["path"]).name  # untagged
    by_name = {Path(r[side]["path"]).name: r[side] for side in "ab"}
    assert set(by_name) == {"song0.wav", "song1.wav"}
    assert by_name["song0.wav"]["offset_s"] == pytest.approx(4.0, abs=0.2)
    assert by_name["song1.wav"]["offset_s"] == pytest.approx(15.0, abs=0.2)
    assert r["length_s"] == pytest.approx(10.0, abs=1.0)
    assert r["kind"] == "passage" and r["confidence"] >= 0.999
    assert r["a"]["track_id"] < r["b"]["track_id"]
    assert "1 shared stretch" in err


def test_overlaps_in_csv_json_and_a_table(library: Path) -> None:
    code, out, err = run("overlaps", "--index", str(library), "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["kind"] == "passage"
    assert {Path(rows[0]["path_a"]).name, Path(rows[0]["path_b"]).name} == {"song0.wav", "song1.wav"}
    code, out, err = run("overlaps", "--index", str(library), "--format", "json")
    assert code == 0, err
    assert len(json.loads(out)) == 1
    code, out, err = run("overlaps", "--index", str(library))
    assert code == 0, err
    assert "song0.wav" in out and "song1.wav" in out
    code, out, err = run("overlaps", "--index", str(library), "--min-seconds", "15", "--format", "json")
    assert code == 0, err
    assert json.loads(out) == []


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_a_vector_index_or_a_missing_location_is_one_line_and_exit_2(tmp_path: Path) -> None:
    vectors = tmp_path / "emb.npy"
    np.save(vectors, np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32))
    code, _, err = run("vectors", "add", str(vectors), "--index", str(tmp_path / "vec"))
    assert code == 0, err
    code, out, err = run("overlaps", "--index", str(tmp_path / "vec"))
    assert code == 2 and not out
    assert "vector index" in _one_error_line(err)
    code, out, err = run("overlaps", "--index", str(tmp_path / "nothing-here"))
    assert code == 2 and not out
    assert "no music library" in _one_error_line(err)


def test_a_library_without_fingerprints_is_one_line_and_exit_2(music: Path, tmp_path: Path) -> None:
    idx = tmp_path / "timbre-only"
    code, _, err = run("index", str(music / "song0.wav"), "--index", str(idx), "--modes", "timbre", "-j", "1")
    assert code == 0, err
    code, out, err = run("overlaps", "--index", str(idx))
    assert code == 2 and not out
    assert "fingerprint" in _one_error_line(err)
