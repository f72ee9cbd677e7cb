"""Every interruption of a library's writer is recoverable (issue #19): a real ``audiolsh`` process
is stopped at a chosen point of creating a library or of removing a track and killed there
(SIGKILL), and the next command finds the library whole or finishes what the dead one left; two
first runs into one new location at once both succeed, one waiting for the other's lock.

The processes run the real CLI through a small script that wraps one method to print a marker
and stop there (until killed, or until the test creates a file saying go on); the test reads
the marker, so every kill lands at a known point, never after a guessed time.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from children import child_env

from audiolsh.audio import content_hash, synth
from audiolsh.library import Library, creation_interrupted, index_audio

DEADLINE_S = 120.0  # generous: a condition waited for, never a duration asserted
MODES = "fingerprint,rhythm,timbre,peaks"  # five indexes: fingerprint, rhythm, timbre, peaks, combined
N_MODES = 5

# argv: POINT GO_FILE ARGS...  -- runs `audiolsh ARGS` and stops at POINT:
#   create-mode:NAME  creating a library, NAME's storage made but its config not yet written
#   create-config     creating a library, every storage made, the library's config not written
#   remove:K          removing a track, after its catalogue commit and K modes' removals
#   add-batch         adding files, before the first batch is committed
#   waiting           (no stop) print a marker when it finds another writer holding the lock
# At the stop it prints {"at": POINT} and waits for GO_FILE to appear ("-": until killed).
WRITER = r"""
import json, logging, os, sys, time

from audiolsh.index.fingerprint import FingerprintIndex
from audiolsh.index import segments
from audiolsh.index.vector import Index
from audiolsh.library import core
from audiolsh.storage.embedded import EmbeddedStorage

point, go = sys.argv[1], sys.argv[2]

def stop():
    print(json.dumps({"at": point}), flush=True)
    while go == "-" or not os.path.exists(go):
        time.sleep(0.02)

if point.startswith("create-mode:"):
    name, made = point.split(":", 1)[1], segments.open_storage

    def open_then_stop(location, create=False, readonly=False):
        storage = made(location, create=create, readonly=readonly)
        if create and storage.config() is None and str(location).split("?")[-1].endswith(name):
            stop()
        return storage

    segments.open_storage = open_then_stop
elif point == "create-config":
    init = core.Library.__init__

    def init_then_stop(self, location, config, *, readonly=False, create=False):
        init(self, location, config, readonly=readonly, create=create)
        if create:
            stop()

    core.Library.__init__ = init_then_stop
elif point.startswith("remove:"):
    k, done = int(point.split(":")[1]), [0]
    for cls in (Index, FingerprintIndex):
        def remove_after_k(self, track_id, _remove=cls.remove_track):
            if done[0] == k:
                stop()
            done[0] += 1
            return _remove(self, track_id)
        cls.remove_track = remove_after_k
    writers = [EmbeddedStorage]
    try:
        from audiolsh.storage.redis import RedisStorage
        writers.append(RedisStorage)
    except ImportError:
        pass
    for cls in writers:
        def write_unless_k(self, _write=cls.write):
            if done[0] == k > 0 and self.location.split("?")[-1].endswith("tracks"):
                stop()  # every mode done, the catalogue's record of the removal not yet cleared
            return _write(self)
        cls.write = write_unless_k
elif point == "add-batch":
    add = core.Library.add_batch

    def stop_then_add(self, batch):
        stop()
        return add(self, batch)

    core.Library.add_batch = stop_then_add
elif point == "waiting":
    class Marker(logging.Handler):
        def emit(self, record):
            if "waiting for another writer" in record.getMessage():
                print(json.dumps({"at": "waiting"}), flush=True)
                logging.getLogger("audiolsh.storage").removeHandler(self)

    logging.getLogger("audiolsh.storage").addHandler(Marker())
    logging.getLogger("audiolsh.storage").setLevel(logging.INFO)
    logging.getLogger("audiolsh.storage").propagate = False
else:
    raise SystemExit(f"unknown point {point}")

from audiolsh.cli import cli

cli.main(args=sys.argv[3:], prog_name="audiolsh")
"""


class Writer:
    """The WRITER script as a process; its stdout lines arrive on a queue."""

    def __init__(self, point: str, go: Path | None, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, point, str(go) if go else "-", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def marker(self) -> dict[str, Any]:
        """The next marker it prints; fails when it ends without one."""
        while True:
            line = self.lines.get(timeout=DEADLINE_S)
            if line is None:
                self.proc.wait(30)
                assert self.proc.stderr is not None
                pytest.fail(f"ended ({self.proc.returncode}) without a marker: {self.proc.stderr.read()}")
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL
        self.close()

    def finish(self) -> tuple[int, str]:
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        code = self.proc.wait(DEADLINE_S)
        self.close()
        return code, err

    def close(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "audiolsh", *args], capture_output=True, text=True,
                          timeout=DEADLINE_S, env=child_env())


@pytest.fixture(scope="module")
def music(synth_tracks: Callable[..., list[Path]]) -> list[Path]:
    return synth_tracks(3, 12.0, 700)


def _short_lease(url: str) -> str:
    """A killed writer's Redis lock expires after 2 s, not 30."""
    return f"{url}&lease=2"


def _location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "directory":
        return str(tmp_path / "lib")
    return _short_lease(request.getfixturevalue("redis_url"))


@pytest.fixture(params=["directory", "redis"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _location(request.param, request, tmp_path)


def _holds(location: str, content_hash: str) -> list[str]:
    """The storages of a library that still hold rows of a track."""
    with Library.open(location, readonly=True) as lib:
        return [name for name in (*lib.indexes, "fingerprint") if content_hash in lib.mode_track_ids(name)]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["create-mode:rhythm", "create-config"])
def test_a_creation_killed_midway_is_named_and_finished_by_the_next_run(
        location: str, music: list[Path], point: str) -> None:
    files = [str(f) for f in music]
    writer = Writer(point, None, "index", *files, "--index", location, "--modes", MODES, "-j", "1")
    assert writer.marker() == {"at": point}
    writer.kill()

    assert creation_interrupted(location)
    info = _cli("info", "--index", location, "--format", "json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["state"] == "creation interrupted"
    other = _cli("clusters", "--index", location)
    assert other.returncode == 2 and "creation was interrupted" in other.stderr

    again = _cli("index", *files, "--index", location, "--modes", MODES, "-j", "1")
    assert again.returncode == 0, again.stderr
    assert "3 added" in again.stderr
    assert not creation_interrupted(location)
    info = _cli("info", "--index", location, "--format", "json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["n_tracks"] == 3 and data["modes"] == MODES.split(",")
    assert all(sub.get("n_items", 1) > 0 for sub in data["indexes"].values())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, music: list[Path]) -> Path:
    """A directory library of the music, copied by each test that changes it."""
    where = tmp_path_factory.mktemp("built") / "lib"
    with Library.create(where, modes=MODES.split(",")) as lib:
        index_audio(lib, music, workers=1)
    return where


def _library(location: str, built: Path, music: list[Path]) -> None:
    if "://" in location:
        with Library.create(location, modes=MODES.split(",")) as lib:
            index_audio(lib, music, workers=1)
    else:
        shutil.copytree(built, location)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "k"), [("directory", k) for k in (0, 1, 3, N_MODES)]
                         + [("redis", 2)])  # none, one, some and every mode; the drills kill at random
def test_a_remove_killed_after_any_number_of_modes_is_finished_by_the_next_writer(
        request: pytest.FixtureRequest, tmp_path: Path, built: Path, music: list[Path],
        backend: str, k: int) -> None:
    location = _location(backend, request, tmp_path)
    _library(location, built, music)
    with Library.open(location, readonly=True) as lib:
        gone = next(t for t in lib.tracks() if t.path == str(music[0]))
    assert len(_holds(location, gone.content_hash)) == N_MODES

    writer = Writer(f"remove:{k}", None, "remove", str(music[0]), "--index", location)
    assert writer.marker() == {"at": f"remove:{k}"}
    writer.kill()

    # The track is gone at once; its rows left in N_MODES - k modes are never an answer.
    assert len(_holds(location, gone.content_hash)) == N_MODES - k
    with Library.open(location, readonly=True) as lib:
        assert [t.path for t in lib.tracks()] == [str(f) for f in music[1:]]
        assert lib.info()["removals_unfinished"] == [str(music[0])]
    info = _cli("info", "--index", location)  # a long redis:// location folds the field's words
    assert info.returncode == 0 and "interrupted" in info.stdout, info.stderr
    info = _cli("info", "--index", location, "--format", "json")
    assert json.loads(info.stdout)["removals_unfinished"] == [str(music[0])], info.stderr

    # The next writer (here: the same remove again) finishes it and says so.
    again = _cli("remove", str(music[0]), "--index", location)
    assert again.returncode == 0, again.stderr
    assert "finishing an interrupted remove" in again.stderr
    assert _holds(location, gone.content_hash) == []
    with Library.open(location, readonly=True) as lib:
        assert "removals_unfinished" not in lib.info()
        assert len(lib) == 2
    # ... and the file indexes again as new.
    added = _cli("index", str(music[0]), "--index", location, "--modes", MODES, "-j", "1")
    assert added.returncode == 0 and "1 added" in added.stderr, added.stderr
    assert len(_holds(location, gone.content_hash)) == N_MODES


def test_any_writer_finishes_an_interrupted_remove(tmp_path: Path, built: Path, music: list[Path]) -> None:
    location = str(tmp_path / "lib")
    _library(location, built, music)
    writer = Writer("remove:1", None, "remove", str(music[1]), "--index", location)
    writer.marker()
    writer.kill()
    with Library.open(location) as lib:  # a writable open is a writer
        assert [t.path for t in lib.finished_removals] == [str(music[1])]
        gone = lib.finished_removals[0]
    assert _holds(location, gone.content_hash) == []
    with Library.open(location, readonly=True) as lib:
        assert "removals_unfinished" not in lib.info()


@pytest.mark.slow
def test_two_first_runs_at_once_both_succeed(location: str, music: list[Path], tmp_path: Path) -> None:
    files = [str(f) for f in music]
    go = tmp_path / "go"
    # The first holds the location's lock in the middle of creating the library ...
    first = Writer("create-config", go, "index", *files, "--index", location, "--modes", MODES, "-j", "1")
    assert first.marker() == {"at": "create-config"}
    # ... the second finds it held and waits (it says so) ...
    second = Writer("waiting", None, "index", *files, "--index", location, "--modes", MODES, "-j", "1")
    assert second.marker() == {"at": "waiting"}
    go.touch()  # ... until the first goes on.
    results = [first.finish(), second.finish()]
    assert [code for code, _ in results] == [0, 0], results
    reports = sorted(err.strip().splitlines()[-1].split(" in ")[0] for _, err in results)
    assert reports == ["0 added, 3 already indexed, 0 failed", "3 added, 0 already indexed, 0 failed"]
    with Library.open(location, readonly=True) as lib:
        assert sorted(t.path for t in lib.tracks()) == sorted(files)
        assert not lib.learned.missing()
        for name in (*lib.indexes, "fingerprint"):
            assert len(lib.mode_track_ids(name)) == 3, name


@pytest.mark.slow
def test_an_update_killed_between_its_removals_and_additions_is_finished_by_the_next(
        tmp_path: Path, music: list[Path]) -> None:
    """``update`` removes first (each removal durable on its own, as the remove tests above
    show), then adds in commits: killed before its first addition, it leaves a whole library,
    and the next ``update`` plans from what is there and finishes."""
    folder = tmp_path / "music"
    folder.mkdir()
    deleted, changed, kept = (Path(shutil.copy(f, folder / f.name)) for f in music)
    location = str(tmp_path / "lib")
    with Library.create(location, modes=["fingerprint", "timbre"]) as lib:  # a vector and a hash index
        index_audio(lib, [folder], workers=1)
        before = {t.path: t.content_hash for t in lib.tracks()}
    deleted.unlink()
    sf.write(changed, synth.music(duration_s=12.0, sr=22050, seed=800), 22050)
    new = folder / "new.wav"
    sf.write(new, synth.music(duration_s=12.0, sr=22050, seed=801), 22050)

    writer = Writer("add-batch", None, "update", str(folder), "--index", location, "-j", "1")
    assert writer.marker() == {"at": "add-batch"}
    writer.kill()
    with Library.open(location, readonly=True) as lib:
        # The deleted file's track and the changed file's old one are gone, nothing added yet.
        assert {t.path: t.content_hash for t in lib.tracks()} == {str(kept): before[str(kept)]}

    again = _cli("update", str(folder), "--index", location, "-j", "1")
    assert again.returncode == 0, again.stderr
    assert "2 added, 0 removed, 0 re-indexed, 1 unchanged, 0 failed" in again.stderr
    with Library.open(location, readonly=True) as lib:
        assert {t.path: t.content_hash for t in lib.tracks()} == {
            str(f): content_hash(f) for f in (changed, kept, new)}
        assert "removals_unfinished" not in lib.info()
        for name in (*lib.indexes, "fingerprint"):  # no rows of a removed track are left
            assert sorted(lib.mode_track_ids(name)) == sorted(content_hash(f) for f in (changed, kept, new))
