"""`audiolsh index` and `audiolsh nearest` on synthesised songs in real file formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiolsh.audio import synth
from audiolsh.cli import cli
from audiolsh.index import Index

SR = 22050


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("music")
    (root / "album").mkdir()
    formats = [("a.wav", "WAV", "PCM_16"), ("album/b.flac", "FLAC", "PCM_16"),
               ("album/c.ogg", "OGG", "VORBIS")]
    for seed, (name, fmt, subtype) in enumerate(formats):
        y = synth.music(duration_s=40.0, sr=SR, seed=seed + 1)
        sf.write(root / name, y, SR, format=fmt, subtype=subtype)
    (root / "notes.txt").write_text("not audio, and not an audio extension either")
    return root


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_index_then_nearest_finds_the_track_and_offset(tmp_path: Path, library: Path) -> None:
    idx = tmp_path / "idx"
    code, _, err = run("index", str(library), "--index", str(idx), "-j", "1")
    assert code == 0, err
    assert "3 added" in err
    y, _ = sf.read(library / "album" / "b.flac", dtype="float32")
    clip = tmp_path / "clip.wav"
    start_s = 12
    noise = synth.white_noise(duration_s=8.0, sr=SR, seed=3, amplitude=0.02)
    noisy = y[start_s * SR : (start_s + 8) * SR] + noise
    sf.write(clip, noisy, SR)
    code, out, err = run("nearest", str(clip), "--index", str(idx), "-k", "3", "--format", "jsonl")
    assert code == 0, err
    record = json.loads(out)
    best = record["results"][0]
    assert best["path"].endswith("album/b.flac")
    assert abs(best["offset_s"] - start_s) <= 1.0
    assert record["query"] == str(clip) and record["elapsed_ms"] > 0
    # --offset analyses a later part of the query file: the passage found moves with it.
    track = str(library / "album" / "b.flac")
    code, out, err = run("nearest", track, "--index", str(idx), "--offset", "20", "--duration", "8",
                         "--format", "jsonl")
    assert code == 0, err
    best = json.loads(out)["results"][0]
    assert best["path"] == track and best["offset_s"] == 20.0


def test_rerun_skips_indexed_files_and_bad_files_do_not_stop_the_batch(
    tmp_path: Path, library: Path
) -> None:
    idx = tmp_path / "idx"
    bad_dir = tmp_path / "more"
    bad_dir.mkdir()
    (bad_dir / "broken.mp3").write_bytes(b"\x00" * 10)
    (bad_dir / "empty.wav").write_bytes(b"")
    sf.write(bad_dir / "silent.wav", np.zeros(SR * 5, np.float32), SR)
    code, _, err = run("index", str(library), str(bad_dir), "--index", str(idx), "-j", "2")
    assert code == 2
    for name in ("broken.mp3", "empty.wav", "silent.wav"):
        assert name in err
    assert "Traceback" not in err
    with Index.open(idx) as index:
        assert len(index.tracks()) == 3
        n = len(index)
    code, _, err = run("index", str(library), "--index", str(idx))
    assert code == 0 and "0 added, 3 already indexed" in err
    with Index.open(idx) as index:
        assert len(index) == n
