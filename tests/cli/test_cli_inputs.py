"""The inputs a user has: `-` (standard input), folders, `@list.txt` files and `--mic`, for
identify, similar, nearest, index and remove."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf
from click.testing import CliRunner

from audiolsh.audio import synth
from audiolsh.cli import cli, inputs
from audiolsh.library import Library

SR = 22050


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("music")
    (root / "album").mkdir()
    for seed, name in enumerate(("a.wav", "album/b.wav", "album/c.flac")):
        sf.write(root / name, synth.music(duration_s=20.0, sr=SR, seed=seed + 11), SR)
    (root / "album" / "cover.txt").write_text("not audio: a folder gives its audio files only")
    return root


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, music: Path) -> Path:
    idx = tmp_path_factory.mktemp("lib") / "idx"
    code, _, err = run("index", str(music), "--index", str(idx), "-j", "1",
                       "--modes", "fingerprint,embedding,timbre")  # what identify, nearest, similar use here
    assert code == 0, err
    return idx


def flac_bytes(music: Path, name: str, start_s: int, seconds: int) -> bytes:
    y, _ = sf.read(music / name, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, y[start_s * SR:(start_s + seconds) * SR], SR, format="FLAC")
    return buf.getvalue()


def test_identify_takes_stdin_a_folder_and_a_list_and_names_each_missing_input(
        tmp_path: Path, music: Path, indexed: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "clips.txt").write_text(
        f"# my clips\n\n{music / 'a.wav'}\n../gone.wav\n  {Path('..') / 'clip.wav'}  \n")
    y, _ = sf.read(music / "album" / "b.wav", dtype="float32")
    sf.write(tmp_path / "clip.wav", y[3 * SR:11 * SR], SR)
    code, out, err = run("identify", "-", f"@{lists / 'clips.txt'}", f"@{tmp_path / 'nolist.txt'}",
                         str(music / "album"), "--index", str(indexed), "--format", "jsonl",
                         stdin=flac_bytes(music, "album/c.flac", 6, 8))
    assert code == 2, err
    records = [json.loads(line) for line in out.splitlines()]
    # Arguments in the order given, a list's entries in its order, a folder's files sorted.
    assert [r["query"] for r in records] == [
        "-", str(music / "a.wav"), str(lists / ".." / "clip.wav"),
        str(music / "album" / "b.wav"), str(music / "album" / "c.flac")]
    assert [Path(r["match"]["path"]).name for r in records] == ["c.flac", "a.wav", "b.wav", "b.wav", "c.flac"]
    assert abs(records[0]["match"]["offset_s"] - 6.0) <= 0.5
    assert abs(records[2]["match"]["offset_s"] - 3.0) <= 0.5
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "gone.wav: no such file or folder (listed in" in lines[0] and "clips.txt" in lines[0]
    assert "nolist.txt: file not found" in lines[1]


def test_similar_and_nearest_read_stdin(music: Path, indexed: Path) -> None:
    clip = flac_bytes(music, "a.wav", 4, 10)
    code, out, err = run("similar", "-", "-k", "2", "--by", "timbre", "--index", str(indexed),
                         "--format", "jsonl", stdin=clip)
    assert code == 0, err
    record = json.loads(out)
    # the clip's own track is its match (and left out of the list)
    assert record["query"] == "-" and record["match"]["path"].endswith("a.wav")
    # The table names the clip as given, not the temporary file it was buffered to.
    code, out, err = run("nearest", "-", "-k", "1", "--index", str(indexed), stdin=clip)
    assert code == 0, err
    row = next(line for line in out.splitlines() if "a.wav" in line)
    assert row.startswith("│ -  ") and "stdin" not in out


def test_stdin_in_a_format_only_ffmpeg_reads(music: Path, indexed: Path) -> None:
    """AAC in ADTS frames, as ``ffmpeg ... -f adts -`` pipes it: libsndfile cannot read it, the
    decoder's ffmpeg fallback reads the buffered file."""
    import subprocess

    aac = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(music / "album" / "c.flac"),
                          "-ss", "5", "-t", "8", "-c:a", "aac", "-f", "adts", "-"],
                         capture_output=True, check=True).stdout
    code, out, err = run("identify", "-", "--index", str(indexed), "--format", "jsonl", stdin=aac)
    assert code == 0, err
    match = json.loads(out)["match"]
    assert match["path"].endswith("c.flac") and abs(match["offset_s"] - 5.0) <= 0.5


def test_stdin_that_is_not_audio_empty_or_too_large_is_one_line(
        monkeypatch: pytest.MonkeyPatch, music: Path, indexed: Path) -> None:
    code, out, err = run("identify", "-", str(music / "a.wav"), "--index", str(indexed),
                         "--format", "jsonl", stdin=b"not audio at all " * 100)
    assert code == 2 and len(out.splitlines()) == 1  # the batch goes on
    assert err.startswith("error: -: not audio or unreadable") and len(err.splitlines()) == 1
    assert "audiolsh-clip-" not in err  # the temporary file is not named
    code, _, err = run("identify", "-", "--index", str(indexed), stdin=b"")
    assert code == 2 and err.strip() == "error: -: nothing on standard input"
    monkeypatch.setattr(inputs, "MAX_STDIN_BYTES", 2**20)
    code, _, err = run("identify", "-", "--index", str(indexed), stdin=b"\0" * (2**20 + 1))
    assert code == 2 and err.strip().startswith("error: -: more than 1 MB on standard input")


def test_a_folder_without_audio_is_said(tmp_path: Path, indexed: Path) -> None:
    (tmp_path / "notes.txt").write_text("no audio here")
    code, out, err = run("similar", str(tmp_path), "--by", "timbre", "--index", str(indexed),
                         "--format", "json")
    assert code == 2 and out == ""  # only the error: no empty answer beside it
    assert err.strip() == f"error: {tmp_path}: no audio files in this folder"


def test_mic_without_sounddevice_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                      indexed: Path) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # what Python does for a missing package
    code, out, err = run("identify", "--mic", "5", "--index", str(indexed))
    assert code == 2 and out == ""
    assert err.strip() == f"error: {inputs.MIC_INSTALL}"


def test_mic_without_an_input_device_says_so(indexed: Path) -> None:
    """``make install`` installs audiolsh[mic] and PortAudio; CI and this machine have no
    microphone, so this runs the real sounddevice against the real (empty) device list."""
    import sounddevice as sd

    try:
        sd.query_devices(kind="input")
    except sd.PortAudioError:
        pass
    else:
        pytest.skip("this machine has an audio input device")
    code, out, err = run("identify", "--mic", "5", "--index", str(indexed))
    assert code == 2 and out == ""
    assert err.strip() == f"error: {inputs.NO_INPUT_DEVICE}"


def test_identify_needs_a_clip_or_the_mic(indexed: Path, tmp_path: Path) -> None:
    code, _, err = run("identify", "--index", str(indexed))
    assert code == 2 and "or --mic SECONDS" in err
    # A library that is not there is said before anything is recorded.
    code, _, err = run("identify", "--mic", "5", "--index", str(tmp_path / "none"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'none'}: no music library here;" \
        " create one with `audiolsh index`"


def test_index_and_remove_take_lists(tmp_path: Path, music: Path) -> None:
    idx = tmp_path / "idx"
    listed = tmp_path / "music.txt"
    listed.write_text(f"{music / 'a.wav'}\n# not this one\n# {music / 'album' / 'b.wav'}\n"
                      f"{music / 'album'}\nmissing.flac\n")
    code, _, err = run("index", f"@{listed}", "--index", str(idx), "-j", "1", "--modes", "timbre")
    assert code == 2  # the missing entry, said at once; the rest is indexed
    assert f"{tmp_path / 'missing.flac'}: no such file or folder (listed in {listed})" in err
    assert "3 added" in err
    code, _, err = run("index", str(tmp_path / "typo"), "--index", str(tmp_path / "new"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'typo'}: no such file or folder"
    assert not (tmp_path / "new").exists()  # nothing to index: no library made
    (tmp_path / "none.txt").write_text("# only a missing file\nmissing.flac\n")
    code, _, err = run("spark", "index", f"@{tmp_path / 'none.txt'}", "--index", str(tmp_path / "new"))
    assert code == 2 and "missing.flac: no such file or folder (listed in" in err  # before any Spark
    assert not (tmp_path / "new").exists()
    gone = tmp_path / "gone.txt"
    gone.write_text(f"{music / 'a.wav'}\n{music / 'album' / 'c.flac'}\n")
    code, _, err = run("remove", f"@{gone}", "--index", str(idx))
    assert code == 0, err
    with Library.open(idx, readonly=True) as lib:
        assert [Path(t.path).name for t in lib.tracks()] == ["b.wav"]
    code, _, err = run("remove", str(music / "album"), "--index", str(idx))  # a folder: its tracks
    assert code == 0 and f"removed {music / 'album' / 'b.wav'}" in err
    with Library.open(idx, readonly=True) as lib:
        assert len(lib) == 0
