"""A library in Redis end to end (issue #14): the real ``audiolsh index`` builds it, two
long-lived reader processes query it, a writer is killed (``kill -9``) in the middle of its
commit at two chosen points, and the library stays whole: the readers answer as before, the
next writer takes the lock once the dead one's lease is over, deletes its leftovers and
commits, and both readers find the added tracks without a restart.

The writers are ``audiolsh index`` run in-process by a small script that wraps one method of
the real Redis backend to print a marker and stop there; the test reads the marker and sends
SIGKILL, so the kill lands at a known point of the commit protocol, not after a guessed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from children import child_env

from audiolsh.storage import join
from audiolsh.storage.redis import RedisStorage

SR = 22050
CLIP_S = 8.0
LEASE_S = 3  # the killed writers' lease (``?lease=``): how long their lock outlives them
DEADLINE_S = 60.0  # generous: a condition polled for, never a duration asserted

# A reader: opens the library once and answers queries, one JSON line in, one out, until its
# stdin closes.  Its records are the CLI's (identify_record, similar_record).
READER = r"""
import json, sys
from pathlib import Path

from audiolsh.audio import load
from audiolsh.library import SAMPLE_RATE, Library, analyse
from audiolsh.query.identify import identify
from audiolsh.query.nearest import nearest_passages
from audiolsh.query.records import identify_record, similar_record
from audiolsh.query.similar import similar

lib = Library.open(sys.argv[1], readonly=True)
stores = {"tracks": lib.catalogue, **{n: i.storage for n, i in lib.indexes.items()}}
if lib.fingerprint is not None:
    stores["fingerprint"] = lib.fingerprint.storage
print(json.dumps({"ready": sorted(stores)}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "versions":
        out = {name: st.version() for name, st in stores.items()}
    else:
        out = {"tracks": [[t.id, Path(t.path).name, t.content_hash] for t in lib.tracks()]}
        for clip in req["clips"]:
            y, sr = load(clip, sr=SAMPLE_RATE)
            q = analyse(y, sr, modes=lib.modes, window_s=lib.config.window_s, hop_s=lib.config.hop_s,
                        path=clip)
            out[Path(clip).name] = {
                "identify": identify_record(Path(clip).name, identify(lib, y, sr)),
                **{by: similar_record(Path(clip).name, similar(lib, q, by=by, k=3))
                   for by in ("rhythm", "timbre", "chroma", "peaks", "combined")},
                "nearest": [[p.track_id, p.offset_s, round(p.score, 5)]
                            for p in nearest_passages(lib, clip, k=3, duration_s=None)],
            }
    print(json.dumps(out), flush=True)
"""

# A writer killed at a chosen point: argv[1] names it, argv[2:] is the `audiolsh` command line.
#   exec: after a write's segment arrays are stored and its MULTI is queued, before the EXEC
#         (the first write that adds segments: a mode's attach);
#   lock: holding the catalogue's write lock (renewed), before writing anything under it (the
#         commit that lists the new tracks, after every mode committed them).
WRITER = r"""
import json, sys, time
from audiolsh.storage import redis as backend

point = sys.argv[1]

def stop_here(where):
    print(json.dumps(where), flush=True)
    while True:
        time.sleep(60)  # until the test's SIGKILL

if point == "exec":
    queue = backend.RedisWriter.queue

    def queue_then_stop(self, pipe):
        queue(self, pipe)
        if self.new_segments:
            stop_here({"prefix": self.st.prefix, "segments": sorted(self.new_segments)})

    backend.RedisWriter.queue = queue_then_stop
elif point == "lock":
    collect = backend.RedisStorage._collect_garbage

    def locked_then_stop(self):
        if self.prefix.endswith("/tracks"):
            stop_here({"prefix": self.prefix, "lock": self._r.get(self._key("lock")).decode()})
        collect(self)

    backend.RedisStorage._collect_garbage = locked_then_stop
else:
    raise SystemExit(f"unknown point {point}")

from audiolsh.cli import cli

cli.main(args=sys.argv[2:], prog_name="audiolsh")
"""


class Reader:
    """A reader process: JSON requests on its stdin, answers on its stdout."""

    def __init__(self, url: str, log: Path) -> None:
        self.log = log
        self._err = open(log, "w")  # closed in close()
        self.proc = subprocess.Popen([sys.executable, "-c", READER, url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, env=child_env())

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"reader {self.proc.pid} died: {self.log.read_text()}"
        return json.loads(line)

    def ask(self, request: dict[str, Any]) -> Any:
        self.send(request)
        return self.read()

    def close(self) -> None:
        _stop(self.proc)
        self._err.close()


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a child by its process id (kill after a timeout)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def ask_all(readers: list[Reader], request: dict[str, Any]) -> list[Any]:
    """The same request to every reader at once; their answers."""
    for r in readers:
        r.send(request)
    return [r.read() for r in readers]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "audiolsh", *args], capture_output=True, text=True,
                          timeout=300, env=child_env())
    assert done.returncode == 0, done.stderr
    return done


def _cli_started(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "audiolsh", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def _cut(track: Path, offset_s: float, out: Path) -> Path:
    y, sr = sf.read(track, dtype="float32")
    sf.write(out, y[int(offset_s * sr): int((offset_s + CLIP_S) * sr)], sr)
    return out


def _until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_S:g} s: {what}")
        time.sleep(0.05)


def _stores(url: str, names: list[str]) -> dict[str, RedisStorage]:
    """A handle on each of the library's storages that reads every version afresh."""
    return {n: RedisStorage(join(url, n) or "", version_ttl_s=0.0) for n in names}


def _settled(readers: list[Reader], stores: dict[str, RedisStorage]) -> None:
    """Wait until every reader's handles see the storages' current versions (a handle may
    answer from its version cache for half a second)."""
    now = {n: st.version() for n, st in stores.items()}
    _until("the readers see the last commits",
           lambda: all(a == now for a in ask_all(readers, {"op": "versions"})))


@contextlib.contextmanager
def _writer_stopped_at(point: str, url: str, files: list[Path], log: Path) -> Iterator[dict[str, Any]]:
    """Run `audiolsh index FILES` until it stops at ``point``; yield what it printed there;
    then SIGKILL it."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, point, "index", *map(str, files), "--index", url,
             "--workers", "1"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=child_env())
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, f"the writer ended before {point}: {log.read_text()}"
            yield json.loads(line)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            _stop(proc)


def _named(answer: dict[str, Any]) -> set[int]:
    """The track ids one clip's answers name."""
    match = answer["identify"]["match"]
    out = set() if match is None else {match["track_id"]}
    for by in ("rhythm", "timbre", "chroma", "peaks", "combined"):
        out |= {r["track_id"] for r in answer[by]["results"]}
    return out | {p[0] for p in answer["nearest"]}


def _keys_of(st: RedisStorage) -> tuple[set[str], set[str]]:
    """(segments with arrays stored, committed segments) of one storage."""
    return st.segment_keys(), {s.id for s in st.segments()}


@pytest.fixture
def processes() -> Iterator[list[Reader]]:
    readers: list[Reader] = []
    try:
        yield readers
    finally:
        for r in readers:
            r.close()


@pytest.mark.slow
def test_index_query_from_two_processes_kill_a_writer_mid_commit_and_reopen(
    tmp_path: Path, redis_url: str, synth_tracks: Callable[..., list[Path]],
    processes: list[Reader],
) -> None:
    music = synth_tracks(5, 16.0, 140)
    old, new = music[:3], music[3:]
    offsets = {f.name: 2.0 + i for i, f in enumerate(music)}
    sources = [old[1], *new]
    clips = [str(_cut(f, offsets[f.name], tmp_path / f"clip-{f.stem}.wav")) for f in sources]
    name_of = {Path(c).name: f.name for c, f in zip(clips, sources)}
    short_lease = f"{redis_url}&lease={LEASE_S}"

    # The real CLI builds the library; two reader processes open it and agree, and with the
    # one-shot `audiolsh identify`.
    _cli("index", *map(str, old), "--index", redis_url, "--workers", "1")
    one_shot = _cli_started("identify", clips[0], "--index", redis_url, "--format", "json")
    try:
        processes += [Reader(redis_url, tmp_path / f"reader{i}.log") for i in range(2)]
        ready = [r.read() for r in processes]  # each has opened the library
        assert ready[0] == ready[1]
        stores = _stores(redis_url, ready[0]["ready"])
        before = ask_all(processes, {"op": "query", "clips": clips})
        out, err = one_shot.communicate(timeout=300)
    finally:
        _stop(one_shot)
    assert one_shot.returncode == 0, err
    assert before[0] == before[1]
    answers = before[0]
    assert json.loads(out)[0]["match"] == answers[Path(clips[0]).name]["identify"]["match"]
    assert [t[1] for t in answers["tracks"]] == [f.name for f in old]
    for clip, track in name_of.items():
        match = answers[clip]["identify"]["match"]
        if track in {f.name for f in old}:
            assert match["path"].endswith(track) and abs(match["offset_s"] - offsets[track]) < 0.1
            assert answers[clip]["combined"]["results"][0]["path"].endswith(track)
        else:
            assert match is None or not match["path"].endswith(track)

    def query() -> list[Any]:
        """Both readers' answers once they see the last commits; they agree."""
        _settled(processes, stores)
        got = ask_all(processes, {"op": "query", "clips": clips})
        assert got[0] == got[1]
        return got

    # 1. A writer stopped after its segment arrays are stored, before the EXEC of that commit:
    #    meanwhile the readers answer as before, and so they do once it is killed there.
    with _writer_stopped_at("exec", short_lease, new, tmp_path / "writer-exec.log") as at_exec:
        killed = next(st for st in stores.values() if st.prefix == at_exec["prefix"])
        assert killed is not stores["tracks"]  # a mode's attach
        assert query() == before
    assert query() == before
    stored, committed = _keys_of(killed)
    assert set(at_exec["segments"]) <= stored - committed  # left over, referenced by nothing

    # 2. A writer stopped holding the catalogue's lock, before writing under it.  Before that it
    #    took every mode's lock (that of the writer killed above once its lease was over),
    #    deleted the killed writer's leftovers, and committed the new tracks to every mode.
    with _writer_stopped_at("lock", short_lease, new, tmp_path / "writer-lock.log") as at_lock:
        assert at_lock["prefix"] == stores["tracks"].prefix and at_lock["lock"]
        during = query()
    assert query() == during
    stored, committed = _keys_of(killed)
    assert stored == committed and not set(at_exec["segments"]) & stored
    listed = {t[2] for t in answers["tracks"]}
    for name, st in stores.items():
        unlisted = {t.content_hash for t in st.tracks()} - listed
        assert len(unlisted) == (0 if name == "tracks" else len(new)), name
    # Rows of tracks no catalogue lists are never named, and every answer is as before (the
    # per-second k-NN of `nearest` asks for more rows when unlisted ones fill its places).
    ids = {t[0] for t in answers["tracks"]}
    for a in during[0].values():
        assert isinstance(a, list) or _named(a) <= ids
    assert during[0] == answers

    # 3. The next `audiolsh index` waits out the dead writer's lease and commits; every storage
    #    holds exactly its committed segments; both readers find the new tracks, unrestarted.
    done = _cli("index", *map(str, new), "--index", redis_url, "--workers", "1")
    assert f"{len(new)} added" in done.stderr
    for name, st in stores.items():
        stored, committed = _keys_of(st)
        assert stored == committed, name

    def found_everywhere() -> bool:
        return all(len(a["tracks"]) == len(music)
                   for a in ask_all(processes, {"op": "query", "clips": clips[2:3]}))

    _until("both readers list the added tracks", found_everywhere)
    after = ask_all(processes, {"op": "query", "clips": clips})
    assert after[0] == after[1]
    assert [t[1] for t in after[0]["tracks"]] == [f.name for f in music]
    for clip, track in name_of.items():
        match = after[0][clip]["identify"]["match"]
        assert match["path"].endswith(track) and abs(match["offset_s"] - offsets[track]) < 0.1
        assert after[0][clip]["combined"]["results"][0]["path"].endswith(track)
    for st in stores.values():
        st.close()
