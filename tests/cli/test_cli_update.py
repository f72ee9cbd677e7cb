"""`audiolsh update FOLDER`: new files added, deleted files' tracks dropped, changed files indexed
again, the rest untouched; `--dry-run` changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import soundfile as sf
from click.testing import CliRunner

from audiolsh.audio import content_hash, synth
from audiolsh.cli import cli
from audiolsh.library import Library

SR = 22050


EVERY_FILE = {"AUDIOLSH_PROGRESS_EVERY": "0"}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def song(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth.music(duration_s=8.0, sr=SR, seed=seed), SR)
    return path


def catalogue(idx: Path) -> dict[str, str]:
    with Library.open(idx, readonly=True) as lib:
        return {t.path: t.content_hash for t in lib.tracks()}


def test_update_adds_drops_and_reindexes_only_under_its_folder(tmp_path: Path) -> None:
    """Every kind of change at once, in one library of one cheap mode (an index and two updates
    extract features: a few seconds)."""
    music, other, idx = tmp_path / "music", tmp_path / "other", tmp_path / "idx"
    keep, change, delete = song(music / "keep.wav", 1), song(music / "sub" / "change.wav", 2), \
        song(music / "delete.wav", 3)
    outside = song(other / "outside.wav", 4)
    code, _, err = run("index", str(music), str(outside), "--index", str(idx), "-j", "1", "--modes", "timbre")
    assert code == 0, err
    before = catalogue(idx)

    song(change, 5)  # same name, new content
    delete.unlink()
    outside.unlink()  # not under FOLDER: update leaves its track alone
    new = song(music / "sub" / "new.wav", 6)
    shutil.copy(keep, music / "copy-of-keep.wav")  # content the library holds: not indexed twice
    (music / "notes.txt").write_text("not audio")

    code, out, err = run("update", str(music), "--index", str(idx), "--dry-run", "--format", "json",
                         env=EVERY_FILE)
    assert code == 0, err
    hashed = [line.split(" files,")[0] for line in err.splitlines() if line.startswith("hashed ")]
    assert hashed == [f"hashed {n}/4" for n in range(1, 5)]  # the plan reads every file, and says so
    assert json.loads(out) == [{"action": "remove", "path": str(delete), "error": None},
                               {"action": "re-index", "path": str(change), "error": None},
                               {"action": "add", "path": str(new), "error": None}]
    assert "1 to add, 1 to remove, 1 to re-index, 2 unchanged" in err and "nothing changed" in err
    assert catalogue(idx) == before

    code, out, err = run("update", str(music), "--index", str(idx), "-j", "1", "--format", "jsonl",
                         env=EVERY_FILE)
    assert code == 0, err
    lines = err.splitlines()
    assert [line.split(" files,")[0] for line in lines if line.startswith(("hashed ", "indexed "))] == \
        [f"hashed {n}/4" for n in range(1, 5)] + ["indexed 1/2", "indexed 2/2"]  # the plan's hashes reused
    assert [json.loads(line) for line in out.splitlines()] == [
        {"action": "removed", "path": str(delete), "error": None},
        {"action": "re-indexed", "path": str(change), "error": None},
        {"action": "added", "path": str(new), "error": None}]
    assert "1 added, 1 removed, 1 re-indexed, 2 unchanged, 0 failed" in err
    assert catalogue(idx) == {str(keep): content_hash(keep), str(outside): before[str(outside)],
                              str(change): content_hash(change), str(new): content_hash(new)}

    code, out, err = run("update", str(music), "--index", str(idx), "-j", "1")
    assert code == 0 and out == "" and "0 added, 0 removed, 0 re-indexed, 4 unchanged" in err
    with Library.open(idx, readonly=True) as lib:  # named relative to the folder updated
        assert lib.names().relative(str(new)) == "sub/new.wav"
        keep_id = next(t.id for t in lib.tracks() if t.path == str(keep))

    # two targets naming one track remove it once
    code, out, err = run("remove", str(keep), str(keep_id), "--index", str(idx), "--format", "json")
    assert code == 0, err
    assert [r["path"] for r in json.loads(out)["removed"]] == [str(keep)] and str(keep) not in catalogue(idx)


def test_update_names_an_unreadable_file_and_goes_on(tmp_path: Path) -> None:
    music, idx = tmp_path / "music", tmp_path / "idx"
    song(music / "a.wav", 7)
    code, _, err = run("index", str(music), "--index", str(idx), "-j", "1", "--modes", "timbre")
    assert code == 0, err
    (music / "broken.wav").write_bytes(b"RIFF" + bytes(100))
    good = song(music / "b.wav", 8)
    code, out, err = run("update", str(music), "--index", str(idx), "-j", "1", "--format", "jsonl")
    assert code == 2
    assert "broken.wav" in err and "1 added, 0 removed, 0 re-indexed, 1 unchanged, 1 failed" in err
    rows = [json.loads(line) for line in out.splitlines()]  # failures too, as index gives them
    assert [(r["action"], Path(r["path"]).name) for r in rows] == [("added", "b.wav"),
                                                                   ("failed", "broken.wav")]
    assert "broken.wav" in rows[1]["error"] and rows[0]["error"] is None
    assert str(good) in catalogue(idx)
    code, _, err = run("update", str(tmp_path / "nowhere"), "--index", str(idx))
    assert code == 2 and "nowhere" in err and "does not exist" in err
