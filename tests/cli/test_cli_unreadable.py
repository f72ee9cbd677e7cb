"""Folders that cannot be read, and folders without audio: each said in one line naming it,
exit status 2, and an update never drops the tracks of files it could not see.

Permissions are real: the commands run in a process for which they hold (root, which passes
them, runs the commands without the capabilities that let it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library

SR = 22050


def audiolsh(*args: str) -> subprocess.CompletedProcess[str]:
    """``audiolsh ARGS`` in a process that file permissions bind."""
    capped = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    done = subprocess.run([*capped, sys.executable, "-m", "audiolsh", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "AUDIOLSH_PROGRESS_EVERY": "0"})
    assert "Traceback" not in done.stderr, done.stderr
    return done


def song(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth.music(duration_s=8.0, sr=SR, seed=seed), SR)
    return path


@pytest.fixture
def locked() -> Iterator[list[Path]]:
    """Folders a test makes unreadable (mode 000), readable again after it."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        folder.chmod(0o755)


def lock(folder: Path, locked: list[Path]) -> None:
    folder.chmod(0)
    locked.append(folder)


def tracks(idx: Path) -> list[str]:
    with Library.open(idx, readonly=True) as lib:
        return sorted(Path(t.path).name for t in lib.tracks())


def test_update_keeps_the_tracks_of_a_folder_it_cannot_read(tmp_path: Path, locked: list[Path]) -> None:
    music, idx = tmp_path / "music", tmp_path / "idx"
    song(music / "album" / "a.wav", 1)
    song(music / "other" / "b.wav", 2)
    done = audiolsh("index", str(music), "--index", str(idx), "--modes", "fingerprint", "-j", "1")
    assert done.returncode == 0, done.stderr
    lock(music / "album", locked)
    for dry in (["--dry-run"], []):
        done = audiolsh("update", str(music), "--index", str(idx), "-j", "1", *dry)
        assert done.returncode == 2, done.stderr
        assert f"{music / 'album'}: cannot read this folder: Permission denied" in done.stderr
        assert "a.wav" not in done.stdout + done.stderr.replace(str(music / "album"), "")
    assert "0 added, 0 removed, 0 re-indexed, 1 unchanged, 1 failed" in done.stderr
    locked[0].chmod(0o755)
    assert tracks(idx) == ["a.wav", "b.wav"]


def test_index_names_a_folder_it_cannot_read_and_goes_on(tmp_path: Path, locked: list[Path]) -> None:
    music, idx = tmp_path / "music", tmp_path / "idx"
    song(music / "open" / "a.wav", 1)
    song(music / "shut" / "b.wav", 2)
    lock(music / "shut", locked)
    done = audiolsh("index", str(music), "--index", str(idx), "--modes", "fingerprint", "-j", "1")
    assert done.returncode == 2
    assert f"failed: {music / 'shut'}: cannot read this folder: Permission denied" in done.stderr
    assert "1 added, 0 already indexed, 1 failed" in done.stderr
    assert tracks(idx) == ["a.wav"]
    done = audiolsh("identify", str(music / "shut"), str(music / "open"), "--index", str(idx))
    assert done.returncode == 2
    assert f"{music / 'shut'}: cannot read this folder: Permission denied" in done.stderr
    assert "no audio files" not in done.stderr and "a.wav" in done.stdout  # the rest answered


def test_index_of_a_folder_without_audio_says_so_and_creates_nothing(tmp_path: Path) -> None:
    empty, notes, idx = tmp_path / "empty", tmp_path / "notes", tmp_path / "idx"
    empty.mkdir()
    notes.mkdir()
    (notes / "readme.txt").write_text("no music here\n")
    done = audiolsh("index", str(empty), str(notes), "--index", str(idx))
    assert done.returncode == 2
    assert done.stderr.count("no audio files in this folder") == 2 and str(notes) in done.stderr
    assert not idx.exists()
    song(tmp_path / "music" / "a.wav", 3)
    done = audiolsh("index", str(empty), str(tmp_path / "music"), "--index", str(idx), "--modes", "timbre")
    assert done.returncode == 2 and "1 added" in done.stderr and tracks(idx) == ["a.wav"]


@pytest.fixture
def library(tmp_path: Path) -> Path:
    idx = tmp_path / "idx"
    song(tmp_path / "music" / "a.wav", 4)
    done = audiolsh("index", str(tmp_path / "music"), "--index", str(idx), "--modes", "fingerprint")
    assert done.returncode == 0, done.stderr
    return idx


def test_a_library_in_a_folder_one_cannot_write_is_one_line(library: Path, locked: list[Path]) -> None:
    """SQLite keeps a -shm file beside a WAL catalogue, even to read it: a reader who may not
    create it gets one line saying so (it was a traceback)."""
    assert not list(library.rglob("*-shm"))  # closed cleanly: none left
    folders = [library, *(d for d in library.rglob("*") if d.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
        locked.append(folder)
    for args in (["info"], ["identify", str(library.parent / "music" / "a.wav")]):
        done = audiolsh(*args, "--index", str(library))
        assert done.returncode == 2
        assert "the catalogue cannot be opened" in done.stderr
        assert "write permission on the folder" in done.stderr


def test_a_damaged_catalogue_is_one_line(library: Path) -> None:
    catalogue = sorted(library.rglob("catalogue.sqlite"))[0]
    catalogue.write_bytes(catalogue.read_bytes()[:100] + bytes(4000))
    done = audiolsh("info", "--index", str(library))
    assert done.returncode == 2 and f"{catalogue.parent}: the catalogue is damaged" in done.stderr


def test_a_damaged_segment_is_one_line_naming_it(tmp_path: Path) -> None:
    rows = np.random.default_rng(5).standard_normal((300, 16)).astype(np.float32)
    np.save(tmp_path / "v.npy", rows)
    idx = tmp_path / "vidx"
    done = audiolsh("vectors", "add", str(tmp_path / "v.npy"), "--index", str(idx))
    assert done.returncode == 0, done.stderr
    (segment,) = (idx / "segments").iterdir()
    (segment / "members.npy").unlink()
    done = audiolsh("vectors", "query", str(tmp_path / "v.npy"), "--index", str(idx), "-k", "2")
    assert done.returncode == 2
    assert f"segment {segment.name} is damaged: its array 'members' (members.npy) is missing" in done.stderr
    (segment / "ids.npy").write_bytes(b"\x93NUMPY garbage")
    done = audiolsh("vectors", "query", str(tmp_path / "v.npy"), "--index", str(idx), "-k", "2")
    assert done.returncode == 2 and f"segment {segment.name} is damaged (ids.npy: " in done.stderr


def test_vectors_add_names_a_file_it_cannot_read_and_adds_the_rest(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    for name in ("secret", "good"):
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((50, 8)).astype(np.float32))
    (tmp_path / "secret.npy").chmod(0)
    idx = tmp_path / "vidx"
    done = audiolsh("vectors", "add", str(tmp_path / "secret.npy"), str(tmp_path / "good.npy"),
                    "--index", str(idx))
    assert done.returncode == 2 and "Usage" not in done.stderr
    assert "secret.npy" in done.stderr and "Permission denied" in done.stderr
    assert "good.npy: added 50 vectors" in done.stderr
    done = audiolsh("vectors", "query", str(tmp_path / "secret.npy"), "--index", str(idx))
    assert done.returncode == 2 and "Usage" not in done.stderr and "Permission denied" in done.stderr
