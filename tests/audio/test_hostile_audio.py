"""Hostile audio inputs: what is not a regular file, names that are not UTF-8, garbage MP3 frames,
a header that lies about the length.  Every input is built here, in real formats."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import content_hash, find_audio, info, load
from audiolsh.audio.synth import music
from audiolsh.errors import AudioError

SR = 44100
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev are POSIX")


def finishes(work: Callable[[], Any], timeout_s: float = 20.0) -> BaseException | None:
    """Run ``work`` in a daemon thread: the exception it raised (None if none); fails the test
    if it does not return in time (a read blocked on a FIFO never does)."""
    box: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
            box.append(None)
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout_s)
    assert box, f"still running after {timeout_s} s: it blocked"
    return box[0]


# --------------------------------------------------------------------------- not regular files


@posix_only
@pytest.mark.parametrize("name", ["song.wav", "clip.mp3"])
def test_a_fifo_is_refused_at_once_by_load_hash_and_info(tmp_path: Path, name: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    for work in (lambda: load(fifo), lambda: content_hash(fifo), lambda: info(fifo)):
        exc = finishes(work)
        assert isinstance(exc, AudioError), exc
        assert "not a regular file" in str(exc) and name in str(exc)


@posix_only
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused(device: str) -> None:
    for work in (lambda: load(device), lambda: content_hash(device)):
        exc = finishes(work)
        assert isinstance(exc, AudioError) and "not a regular file" in str(exc), exc


@posix_only
def test_symlinks_are_followed_and_loops_refused(tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, music(duration_s=4.0, sr=SR, seed=1), SR)
    (tmp_path / "link.wav").symlink_to(song)
    assert load(tmp_path / "link.wav")[0].size > 0
    (tmp_path / "a.wav").symlink_to(tmp_path / "b.wav")
    (tmp_path / "b.wav").symlink_to(tmp_path / "a.wav")
    with pytest.raises(AudioError, match="symbolic link loop"):
        load(tmp_path / "a.wav")
    with pytest.raises(AudioError, match="symbolic link loop"):
        content_hash(tmp_path / "a.wav")


@posix_only
def test_folder_walks_skip_what_is_not_a_regular_file_with_a_message(tmp_path: Path) -> None:
    root = tmp_path / "music"
    root.mkdir()
    sf.write(root / "good.wav", music(duration_s=4.0, sr=SR, seed=1), SR)
    os.mkfifo(root / "pipe.wav")
    (root / "loop.flac").symlink_to(root / "loop.flac")
    (root / "gone.ogg").symlink_to(root / "nowhere.ogg")
    skipped: list[tuple[str, str]] = []
    found = find_audio([root], on_skip=lambda p, why: skipped.append((p.name, why)))
    assert found == [root / "good.wav"]
    assert sorted(skipped) == [("gone.ogg", "broken symbolic link"), ("loop.flac", "symbolic link loop"),
                               ("pipe.wav", "not a regular file: a FIFO (named pipe)")]
    # given directly, it is kept: reading it refuses it (one line, the batch goes on)
    assert find_audio([root / "pipe.wav", root / "loop.flac"]) == [root / "loop.flac", root / "pipe.wav"]


# --------------------------------------------------------------------------- names, garbage, lies


def test_a_name_that_is_not_utf8_loads_and_is_shown_escaped(tmp_path: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("macOS file names are always UTF-8")
    name = os.fsdecode(b"caf\xe9.wav")
    path = tmp_path / name
    sf.write(os.fsencode(path), music(duration_s=4.0, sr=SR, seed=1), SR)
    y, sr = load(path)
    assert y.size / sr == pytest.approx(4.0, abs=0.01)
    assert len(content_hash(path)) == 40
    (tmp_path / os.fsdecode(b"vide\xff.wav")).write_bytes(b"")
    with pytest.raises(AudioError) as err:
        load(tmp_path / os.fsdecode(b"vide\xff.wav"))
    message = str(err.value)
    assert "vide\\xff.wav: empty file" in message
    message.encode("utf-8")  # printable anywhere: no lone surrogate left


def test_garbage_mp3_frames_are_refused_in_one_line_and_silently(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: Any
) -> None:
    path = hostile.fake_mp3(tmp_path / "fake.mp3")
    with pytest.raises(AudioError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "undecodable" in message and "libmpg123" in message
    with pytest.raises(AudioError, match="undecodable"):
        load(path, sr=None, offset_s=1.0, duration_s=2.0)
    _, stderr = capfd.readouterr()
    assert "mpg123" not in stderr and "bad frame" not in stderr and "error" not in stderr
    # a real MP3 is not touched by the count
    y, sr = load(hostile.real_mp3(tmp_path / "song.mp3"), sr=None)
    assert sr == SR and y.size / sr == pytest.approx(6.0, abs=0.05)


def test_other_lines_written_to_stderr_during_a_decode_still_arrive(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from audiolsh.audio.decoder_noise import captured

    with captured() as noise:
        os.write(2, b"[src/libmpg123/layer3.c:f():1] error: bad frame\n")
        os.write(2, b"a log line of another thread\n")
    assert noise.errors() == ["bad frame"]
    assert capfd.readouterr().err == "a log line of another thread\n"


def test_a_lying_xing_header_is_decoded_for_what_it_holds(tmp_path: Path, hostile: Any) -> None:
    path = hostile.lying_mp3(tmp_path / "liar.mp3")
    assert info(path).duration_s > 80 * 86400  # the header's claim
    y, sr = load(path, sr=None, max_duration_s=3 * 3600.0)
    assert y.size / sr == pytest.approx(6.0, abs=0.05)
    with pytest.raises(AudioError, match="too long"):
        load(path, sr=None, max_duration_s=2.0)  # the limit still holds, on what is decoded


@pytest.mark.parametrize("name", ["noise.mp3", "NOISE.MP3"])
def test_random_bytes_named_mp3_are_refused_in_one_line_and_silently(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    """libsndfile hands a ".mp3" it cannot identify to libmpg123, whose resync notes go to
    descriptor 2, and then says the file "does not exist or is not a regular file"."""
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(7).bytes(50_000))
    for call in (lambda: load(path), lambda: info(path)):
        with pytest.raises(AudioError) as err:
            call()
        message = str(err.value)
        assert message.startswith(f"{path}: not audio or unreadable: ") and "\n" not in message
        assert "regular file" not in message and "pipe" not in message and "0x" not in message
    stderr = capfd.readouterr().err
    assert "MPEG-Header" not in stderr and "resync" not in stderr and "Note:" not in stderr, stderr
