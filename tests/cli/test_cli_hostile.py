"""Hostile inputs on the command line, run as a user runs it (a process with real stdout and a
timeout): what is not a regular file, names that are not UTF-8, garbage MP3 frames, a lying
header, dimension mismatches, and each kind of index refusing what is not its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library

SR = 22050
SRC = Path(__file__).resolve().parents[2] / "src"
CAFE = os.fsdecode(b"caf\xe9.wav")  # not UTF-8: a Latin-1 name
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="FIFOs, /dev and byte file names")


def run(*args: str, cwd: Path | None = None, timeout_s: float = 240.0) -> tuple[int, str, str]:
    """``audiolsh ARGS`` in a process of its own: a hang is a failure, not a stuck suite."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run([sys.executable, "-m", "audiolsh", *args], capture_output=True, cwd=cwd,
                              env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"audiolsh {' '.join(args)} still running after {timeout_s} s")
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


def one_line_each(err: str, *names: str) -> None:
    """Every name is on exactly one error line; no traceback, no decoder noise."""
    assert "Traceback" not in err and "[src/libmpg123" not in err and "bad frame" not in err, err
    for name in names:
        assert sum(name in line for line in err.splitlines()) == 1, (name, err)


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory, hostile: Any) -> Path:
    """Three synthesised tracks (one named in Latin-1 bytes), a FIFO, a garbage MP3 and an MP3
    whose header claims 81 days, in one folder."""
    root = tmp_path_factory.mktemp("hostile-music")
    for seed, name in enumerate(["a.wav", "b.flac", CAFE]):
        sf.write(os.fsencode(root / name), synth.music(duration_s=20.0, sr=SR, seed=seed + 11), SR)
    os.mkfifo(root / "pipe.wav")
    hostile.fake_mp3(root / "fake.mp3")
    hostile.lying_mp3(root / "liar.mp3", duration_s=12.0, seed=14)
    return root


@pytest.fixture(scope="module")
def library(music: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``audiolsh index`` of the folder, with a FIFO and /dev/zero given directly as well."""
    lib = tmp_path_factory.mktemp("hostile-lib") / "lib"
    fifo = music.parent / "given.npy.wav"
    os.mkfifo(fifo)
    code, _, err = run("index", str(music), str(fifo), "/dev/zero", "--index", str(lib), "-j", "1")
    return lib, err, str(code)


def test_index_refuses_non_files_and_garbage_in_one_line_and_indexes_the_rest(
    library: tuple[Path, str, str], music: Path
) -> None:
    lib, err, code = library
    assert code == "2", err
    one_line_each(err, "given.npy.wav", "/dev/zero", "pipe.wav", "fake.mp3")
    assert "not a regular file" in next(line for line in err.splitlines() if "given.npy.wav" in line)
    assert "skipped" in next(line for line in err.splitlines() if "pipe.wav" in line)
    assert "undecodable" in next(line for line in err.splitlines() if "fake.mp3" in line)
    assert "4 added" in err  # a, b, the Latin-1 name and the liar
    with Library.open(lib, readonly=True) as library_:
        tracks = {Path(t.path).name: t for t in library_.tracks()}
    assert set(tracks) == {"a.wav", "b.flac", "caf\\xe9.wav", "liar.mp3"}
    assert tracks["liar.mp3"].duration_s == pytest.approx(12.0, abs=0.1)  # decoded, not refused
    assert all(os.path.isabs(t.path) for t in tracks.values())


def test_identify_and_similar_show_a_latin1_name_escaped_and_refuse_the_rest(
    library: tuple[Path, str, str], music: Path, tmp_path: Path
) -> None:
    lib = library[0]
    y, _ = sf.read(os.fsencode(music / CAFE), dtype="float32")
    clip = tmp_path / os.fsdecode(b"extrait-\xe9.wav")
    sf.write(os.fsencode(clip), y[5 * SR: 13 * SR], SR)
    bad = [str(music / "pipe.wav"), "/dev/urandom", str(music / "fake.mp3")]
    for fmt in ("jsonl", "table", "csv"):
        code, out, err = run("identify", str(clip), *bad, "--index", str(lib), "--format", fmt)
        assert code == 2, err
        one_line_each(err, "pipe.wav", "/dev/urandom", "fake.mp3")
        assert "extrait-\\xe9.wav" in (json.loads(out)["query"] if fmt == "jsonl" else out)
    code, out, err = run("identify", str(clip), "--index", str(lib), "--format", "jsonl")
    record = json.loads(out)
    assert record["query"] == str(tmp_path / "extrait-\\xe9.wav")
    assert record["match"]["path"].endswith("caf\\xe9.wav")
    assert abs(record["match"]["offset_s"] - 5.0) < 0.5
    code, out, err = run("similar", str(clip), *bad, "--index", str(lib), "--format", "jsonl", "-k", "2")
    assert code == 2, err
    one_line_each(err, "pipe.wav", "/dev/urandom", "fake.mp3")
    record = json.loads(out)
    assert record["query"].endswith("extrait-\\xe9.wav")
    assert record["match"]["path"].endswith("caf\\xe9.wav")  # the clip's own track: its match
    code, out, err = run("identify", str(music / "liar.mp3"), "--index", str(lib), "--format", "jsonl")
    assert code == 0, err
    assert json.loads(out)["match"]["path"].endswith("liar.mp3")


def test_remove_finds_a_track_by_its_latin1_name(library: tuple[Path, str, str], music: Path,
                                                 tmp_path: Path) -> None:
    copy = tmp_path / "lib"
    code, _, err = run("index", str(music / CAFE), "--index", str(copy))
    assert code == 0, err
    code, _, err = run("remove", str(music / CAFE), "--index", str(copy))
    assert code == 0 and "removed" in err, err


# --------------------------------------------------------------------------- vectors


def test_vectors_refuse_non_files_and_name_the_file_of_a_wrong_dimension(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    good, wide = tmp_path / "good.npy", tmp_path / "wide.npy"
    np.save(good, rng.standard_normal((50, 8)).astype(np.float32))
    np.save(wide, rng.standard_normal((5, 12)).astype(np.float32))
    np.save(tmp_path / os.fsdecode(b"v\xe9.npy"), rng.standard_normal((5, 8)).astype(np.float32))
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    idx = tmp_path / "vec"
    code, _, err = run("vectors", "add", str(good), str(fifo), "/dev/zero", str(wide),
                       str(tmp_path / os.fsdecode(b"v\xe9.npy")), "--index", str(idx))
    assert code == 2, err
    one_line_each(err, "pipe.npy", "/dev/zero", "wide.npy")
    assert "not a regular file" in err and "v\\xe9.npy: added 5 vectors" in err
    assert "dimension 12" in next(line for line in err.splitlines() if "wide.npy" in line)
    for query in (fifo, wide):
        code, _, err = run("vectors", "query", str(query), "--index", str(idx))
        assert code == 2 and query.name in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------- kinds of index


def test_each_kind_of_index_refuses_the_other(library: tuple[Path, str, str], tmp_path: Path) -> None:
    lib = library[0]
    vec = tmp_path / "vectors.npy"
    np.save(vec, np.random.default_rng(1).standard_normal((20, 8)).astype(np.float32))
    def written() -> dict[Path, int]:  # a reader touches only SQLite's WAL and shared memory
        return {p: p.stat().st_mtime_ns for p in lib.rglob("*")
                if p.is_file() and not p.name.endswith(("-shm", "-wal"))}

    before = written()
    for where in (lib, lib / "embedding", lib / "rhythm"):
        code, _, err = run("vectors", "add", str(vec), "--index", str(where))
        assert code == 2 and "audiolsh index" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    code, _, err = run("tune", "--index", str(lib / "rhythm"))
    assert code == 2 and "music library" in err, err
    code, _, err = run("remove", "--keys", "x", "--index", str(lib / "embedding"))
    assert code == 2 and "music library" in err, err
    code, _, err = run("vectors", "query", str(vec), "--index", str(lib))
    assert code == 2 and "audiolsh nearest" in err, err
    assert written() == before
    assert not (lib / "manifest.json").exists()
    # and the other way: music into a vector index, or into a library's part
    vidx = tmp_path / "vidx"
    assert run("vectors", "add", str(vec), "--index", str(vidx))[0] == 0
    song = tmp_path / "song.wav"
    sf.write(song, synth.music(duration_s=8.0, sr=SR, seed=5), SR)
    code, _, err = run("index", str(song), "--index", str(vidx))
    assert code == 2 and "vectors add" in err and "vector index" in err, err
    code, _, err = run("index", str(song), "--index", str(lib / "embedding"))
    assert code == 2 and f"--index {lib}" in err, err


# --------------------------------------------------------------------------- random bytes, empty files


def test_random_bytes_named_mp3_are_refused_in_one_line_with_no_decoder_noise(
    library: tuple[Path, str, str], tmp_path: Path
) -> None:
    """libsndfile gives a ".mp3" it cannot identify to libmpg123, which writes its resync notes
    on descriptor 2 (the process's, captured here by the subprocess), then says "does not exist
    or is not a regular file (possibly a pipe?)" of a regular file."""
    lib = tmp_path / "lib"
    shutil.copytree(library[0], lib)
    noise = tmp_path / "noise-bytes.mp3"
    noise.write_bytes(np.random.default_rng(19).bytes(50_000))
    for args in (("identify", str(noise), "--format", "jsonl"),
                 ("similar", str(noise), "-k", "2", "--format", "jsonl"),
                 ("index", str(noise), "-j", "1")):
        code, _, err = run(*args, "--index", str(lib))
        assert code == 2, err
        for noise_text in ("MPEG-Header", "resync", "Note:", "possibly a pipe", "regular file"):
            assert noise_text not in err, (args[0], err)
        one_line_each(err, "noise-bytes.mp3")
        line = next(line for line in err.splitlines() if "noise-bytes.mp3" in line)
        assert "noise-bytes.mp3: not audio or unreadable: " in line, line


def test_index_names_each_empty_file_and_counts_no_copy_of_a_failed_file_as_indexed(
    library: tuple[Path, str, str], tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(library[0], lib)
    empties = [f"empty.{ext}" for ext in ("wav", "ogg", "mp3", "flac")]
    for name in empties:
        (tmp_path / name).write_bytes(b"")
    garbage = np.random.default_rng(5).bytes(20_000)
    copies = ["garbage-a.wav", "garbage-b.wav", "garbage-c.wav"]
    for name in copies:
        (tmp_path / name).write_bytes(garbage)
    files = [str(tmp_path / name) for name in empties + copies]
    code, _, err = run("index", *files, "-j", "1", "--index", str(lib))
    assert code == 2, err
    one_line_each(err, *empties, *copies)
    for name in empties:
        assert f"{name}: empty file" in next(line for line in err.splitlines() if name in line), err
    assert "0 added, 0 already indexed, 7 failed" in err, err


@pytest.mark.parametrize("args", [
    ["identify", "clip.wav", "--offset", "1e308"], ["identify", "clip.wav", "--offset", "1e15"],
    ["identify", "clip.wav", "--duration", "1e308"],
    ["identify", "clip.wav", "--segments", "--offset", "1e308"],
    ["similar", "clip.wav", "--duration", "1e308"], ["identify", "clip.wav", "--min-confidence", "nan"],
    ["index", "clip.wav", "--max-duration", "inf"], ["index", "clip.wav", "--max-duration", "nan"],
    ["update", ".", "--max-duration", "1e308"], ["overlaps", "--min-seconds", "1e308"],
    ["vectors", "query", "v.npy", "--recall", "nan"], ["identify", "clip.wav", "--threshold", "nan"],
    ["identify", "clip.wav", "--threshold", "5", "--method", "chroma-vote"],
    ["serve", "--max-analysis", "2"]])  # under the 3 s similarity takes: refused naming its own setting
def test_lengths_too_large_to_count_and_numbers_that_are_not_are_refused_up_front(
        tmp_path: Path, args: list[str]) -> None:
    """Lengths and offsets beyond any audio (they overflowed the frame counts: a traceback, or
    every file failing after an empty library was made) and NaN or infinity (which pass a range
    check) are a usage error naming the option, before anything is read or created."""
    code, _, err = run(*args, "--index", str(tmp_path / "idx"), cwd=tmp_path)
    assert code == 2 and "Traceback" not in err
    option = next(a for a in args if a.startswith("--") and a != "--segments")
    assert f"Invalid value for '{option}'" in err
    assert not (tmp_path / "idx").exists()
