"""The web app on a library in Redis: the same answers as from a directory, 503 while the server
is down and recovery once it is back, several apps sharing one library, and uvicorn's worker
processes serving one.

Each test module owns a private redis-server on a unix socket in a temporary folder (not the
session one: the tests stop and restart it by its process id).  It persists with an AOF fsynced
on every write, so a ``kill -9`` and a restart keep the library.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library, index_audio

SR = 22050  # as the web corpus (tests/web/conftest.py)
DURATION_S = 40.0
PREFIX = "web"
NEW_TRACK = "echo.wav"
NEW_SEED = 505
VOLATILE = {"elapsed_ms", "added_at"}
QUERIES = [
    ("/api/identify", "charlie.ogg"),
    ("/api/similar?by=timbre&k=4", "bravo.flac"),
    ("/api/similar?by=combined&k=3", "alpha.wav"),
]


class RedisServer:
    """One redis-server on ``folder/redis.sock``; ``kill`` and ``start`` by process id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str) -> str:
        return f"unix://{self.socket}?prefix={prefix}"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed: `make system-deps` (or apt-get install redis-server)")
        import redis

        self.proc = subprocess.Popen(
            [server, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + 15
        try:
            while True:
                try:  # a restarted server answers LOADING (a ConnectionError) until its AOF is read
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start (exit code {self.proc.poll()})")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """``kill -9``: no shutdown save, the socket file left behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-web"))
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture(scope="module")
def redis_library(redis_server: RedisServer, web_corpus: Any) -> str:
    """The web corpus indexed into Redis, as ``web_corpus.library`` is into a directory."""
    url = redis_server.url(PREFIX)
    with Library.create(url) as library:
        report = index_audio(library, [web_corpus.music], workers=1)
        assert not report.failed, report.failed
        assert {Path(t.path).name: t.id for t in library.tracks()} == web_corpus.ids
    return url


def _client(location: str | Path) -> Any:
    from fastapi.testclient import TestClient

    from audiolsh.web.app import create_app
    from audiolsh.web.settings import Settings

    return TestClient(create_app(Settings(index_path=location, warm_up=False, workers=1)))


def _stable(value: Any) -> Any:
    """An answer without its timings and indexing times."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _answers(client: Any, corpus: Any) -> list[Any]:
    out = []
    r = client.get("/api/tracks")
    assert r.status_code == 200, r.text
    out.append(_stable(r.json()))
    for url, name in QUERIES:
        r = client.post(url, files={"file": ("clip.wav", corpus.clip(name))})
        assert r.status_code == 200, r.text
        out.append(_stable(r.json()))
    return out


def _until(what: str, check: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.05)


def _unavailable(r: Any) -> bool:
    return bool(r.status_code == 503 and r.json().get("error") == "storage_unavailable")


def test_redis_down_is_503_and_the_app_recovers(redis_server: RedisServer, redis_library: str,
                                                web_corpus: Any) -> None:
    with _client(web_corpus.library) as on_disk:
        expected = _answers(on_disk, web_corpus)
    assert expected[0]["total"] == len(web_corpus.ids)

    with _client(redis_library) as client:
        assert _answers(client, web_corpus) == expected
        r = client.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"

        redis_server.kill()
        clip = web_corpus.clip("charlie.ogg")
        # A handle may answer from its cache for the half second it trusts its version.
        for url, _ in QUERIES:
            _until(f"{url} answers 503", lambda url=url: _unavailable(
                client.post(url, files={"file": ("clip.wav", clip)})))
        _until("/api/tracks answers 503", lambda: _unavailable(client.get("/api/tracks")))
        r = client.get("/api/tracks")
        assert r.status_code == 503 and r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == {"error", "detail"} and "storage" in body["detail"]
        assert "retry-after" in r.headers
        r = client.get("/health")
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable" and r.json()["detail"]

        redis_server.start()  # the same socket; the AOF brings the library back
        _until("/api/tracks answers 200 again", lambda: client.get("/api/tracks").status_code == 200)
        assert _answers(client, web_corpus) == expected
        r = client.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"


def test_serve_with_redis_down_is_one_clear_line(tmp_path: Path, free_port: int) -> None:
    from click.testing import CliRunner

    import audiolsh.cli.web_cmds  # noqa: F401  (registers `serve`)
    from audiolsh.cli import cli

    url = f"unix://{tmp_path / 'absent.sock'}?prefix=x"
    result = CliRunner().invoke(cli, ["serve", "--index", url, "--no-warm-up", "--port", str(free_port)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0] and "absent.sock" in lines[0], result.output


def test_two_apps_share_one_library_and_see_a_new_track(redis_server: RedisServer, redis_library: str,
                                                        web_corpus: Any, tmp_path: Path) -> None:
    with _client(redis_library) as first, _client(redis_library) as second:
        answers = _answers(first, web_corpus)
        assert _answers(second, web_corpus) == answers
        n = answers[0]["total"]

        new = tmp_path / NEW_TRACK
        sf.write(new, synth.music(duration_s=DURATION_S, sr=SR, seed=NEW_SEED), SR)
        done = subprocess.run([sys.executable, "-m", "audiolsh", "index", str(new), "--index", redis_library,
                               "--workers", "1"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr

        y, _ = sf.read(new, dtype="float32")
        clip = web_corpus.wav(y[12 * SR: 22 * SR])
        for client in (first, second):
            _until("the new track is listed", lambda c=client: c.get("/api/tracks").json()["total"] == n + 1)
            names = [t["name"] for t in client.get("/api/tracks").json()["items"]]
            assert NEW_TRACK in names
            r = client.post("/api/similar?by=timbre&k=2", files={"file": ("clip.wav", clip)})
            assert r.status_code == 200, r.text
            assert Path(r.json()["match"]["path"]).name == NEW_TRACK  # the clip's own, left out
            assert NEW_TRACK not in [Path(x["path"]).name for x in r.json()["results"]]
        assert _answers(first, web_corpus) == _answers(second, web_corpus)


def test_the_pool_drops_a_handle_whose_storage_failed(web_corpus: Any) -> None:
    from audiolsh.errors import ParameterError, StorageUnavailable
    from audiolsh.web.pool import LibraryPool

    pool = LibraryPool(web_corpus.library, size=1)
    try:
        with pytest.raises(StorageUnavailable), pool.borrow() as first:
            raise StorageUnavailable("down")
        with pool.borrow() as second:
            assert second is not first and len(second) == len(web_corpus.ids)
        with pytest.raises(ParameterError), pool.borrow() as third:
            raise ParameterError("a bad query keeps its handle")
        with pool.borrow() as fourth:
            assert fourth is second and third is second
    finally:
        pool.close()


def test_app_from_env_for_uvicorn_workers(redis_library: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from audiolsh.errors import ParameterError
    from audiolsh.web.app import app_from_env

    monkeypatch.delenv("AUDIOLSH_INDEX", raising=False)
    with pytest.raises(ParameterError, match="AUDIOLSH_INDEX"):
        app_from_env()
    monkeypatch.setenv("AUDIOLSH_INDEX", redis_library)
    app = app_from_env()
    assert app.state.settings.index_path == redis_library
    with TestClient(app) as client:
        assert client.get("/api/tracks").status_code == 200


def _env(**extra: str) -> dict[str, str]:
    """The environment of a child process that imports this tree's audiolsh."""
    import os

    import audiolsh

    src = str(Path(audiolsh.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), **extra}


def _uvicorn(url: str, port: int, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``uvicorn --workers 2`` on the library at ``url``, answering on loopback; another port
    when a process took ``port`` between the test finding it free and uvicorn binding it."""
    import os
    import signal
    import socket

    import httpx

    for _ in range(5):
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "audiolsh.web.app:app_from_env", "--factory",
                 "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
                env=_env(AUDIOLSH_INDEX=url), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"

        def up_or_gone(proc: subprocess.Popen[bytes] = proc, base: str = base) -> bool:
            if proc.poll() is not None:
                return True
            # ours, not another test's server that took the port: uvicorn says it bound it
            if f"running on {base}" not in log_path.read_text().lower():
                return False
            try:
                return httpx.get(f"{base}/health", timeout=10).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            _until("uvicorn answers", up_or_gone, timeout_s=120)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)  # uvicorn and its workers
            raise
        if proc.poll() is None:
            return proc, base
        said = log_path.read_text()
        assert "address already in use" in said.lower(), said
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    pytest.fail("five ports found free were taken before uvicorn bound them")


def _one_connection(base: str, work: Callable[[Any], Any]) -> tuple[int, Any]:
    """``work(client)`` on one new keep-alive connection, so one uvicorn worker process answers
    it all; (that worker's pid from /health, before and after, and what ``work`` returned)."""
    import httpx

    with httpx.Client(base_url=base, timeout=120, limits=httpx.Limits(max_connections=1)) as c:
        pid = c.get("/health").json()["pid"]
        out = work(c)
        assert c.get("/health").json()["pid"] == pid, "the connection moved to another worker"
    return int(pid), out


@pytest.mark.slow
def test_uvicorn_workers_share_one_library_and_see_a_new_track(
        redis_server: RedisServer, web_corpus: Any, tmp_path: Path, free_port: int) -> None:
    url = redis_server.url("uvicorn")
    with Library.create(url) as library:
        report = index_audio(library, [web_corpus.music], workers=1)
        assert not report.failed, report.failed
        assert {Path(t.path).name: t.id for t in library.tracks()} == web_corpus.ids
    with _client(web_corpus.library) as on_disk:
        expected = _answers(on_disk, web_corpus)
    n = expected[0]["total"]
    assert n == len(web_corpus.ids)
    match = expected[1]["match"]
    assert Path(match["path"]).name == "charlie.ogg" and abs(match["offset_s"] - 12.0) < 0.1
    # similar names each clip's own track as its match (and leaves it out of the results)
    assert Path(expected[2]["match"]["path"]).name == "bravo.flac"
    assert Path(expected[3]["match"]["path"]).name == "alpha.wav"

    proc, base = _uvicorn(url, free_port, tmp_path / "uvicorn.log")
    try:
        # Rounds of every query, each round on a new connection (one worker), until both
        # workers answered and 18 queries were asked: every answer is the directory library's.
        answered: dict[int, int] = {}
        while len(answered) < 2 or sum(answered.values()) < 6:
            pid, got = _one_connection(base, lambda c: _answers(c, web_corpus))
            assert got == expected, f"worker {pid}"
            answered[pid] = answered.get(pid, 0) + 1
            assert len(answered) <= 2
            assert sum(answered.values()) < 200, f"one worker answers every connection: {answered}"

        # `audiolsh index` adds a track; both workers list it and find it, without a restart.
        new = tmp_path / "foxtrot.wav"
        sf.write(new, synth.music(duration_s=DURATION_S, sr=SR, seed=NEW_SEED + 1), SR)
        done = subprocess.run([sys.executable, "-m", "audiolsh", "index", str(new), "--index", url,
                               "--workers", "1"], capture_output=True, text=True, timeout=600, env=_env())
        assert done.returncode == 0, done.stderr
        y, _ = sf.read(new, dtype="float32")
        clip = web_corpus.wav(y[12 * SR: 22 * SR])

        def sees_it(c: Any) -> Any:
            if c.get("/api/tracks").json()["total"] != n + 1:
                return None
            found = c.post("/api/identify", files={"file": ("clip.wav", clip)}).json()["match"]
            like = c.post("/api/similar?by=timbre&k=2", files={"file": ("clip.wav", clip)}).json()
            return _stable([found, like, _answers(c, web_corpus)])

        seen: dict[int, Any] = {}
        deadline = time.monotonic() + 120
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"not every worker lists the new track: {sorted(seen)}"
            pid, got = _one_connection(base, sees_it)
            if got is not None:
                seen[pid] = got
            assert set(seen) <= set(answered)  # the same two workers: no restart
        for found, like, _ in seen.values():
            assert Path(found["path"]).name == new.name and abs(found["offset_s"] - 12.0) < 0.1
            assert Path(like["match"]["path"]).name == new.name  # similar's match: the clip's own
        first, second = seen.values()
        assert first == second
        assert first[2][0]["total"] == n + 1
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            import os
            import signal

            os.killpg(proc.pid, signal.SIGKILL)  # the session started for uvicorn and its workers
            proc.wait(10)
