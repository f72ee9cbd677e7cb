"""`serve` answers while the app is built behind it: /health says "starting", requests wait for
the app (or get 503 with Retry-After), a failed build is reported, not raised per request."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from audiolsh.errors import IndexFormatError
from audiolsh.web.settings import Settings
from audiolsh.web.startup import Startup


def _slow_build(release: threading.Event, lifespans: list[str]) -> Any:
    def build(settings: Settings) -> FastAPI:
        assert release.wait(60), "never released"

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            lifespans.append("up")
            yield
            lifespans.append("down")

        app = FastAPI(lifespan=lifespan)
        app.get("/health")(lambda: {"status": "ok"})
        app.get("/hello")(lambda: {"hello": settings.index_path})
        return app

    return build


def _wait_for(predicate: Any) -> None:
    event = threading.Event()
    for _ in range(6000):
        if predicate():
            return
        event.wait(0.01)
    raise AssertionError("condition not reached")


def test_health_answers_during_startup_and_requests_wait_for_the_app() -> None:
    release, lifespans, ready, said = threading.Event(), [], [], threading.Event()

    def on_ready(app: Any, seconds: float) -> None:
        ready.append(seconds)
        said.set()

    startup = Startup(Settings(index_path="music"), build=_slow_build(release, lifespans),
                      on_ready=on_ready)
    with TestClient(startup) as client, ThreadPoolExecutor(1) as pool:
        health = client.get("/health")
        assert health.status_code == 503 and health.headers["retry-after"] == "1"
        assert health.json()["status"] == "starting" and health.json()["workers"] == 2
        waiting = pool.submit(client.get, "/hello")
        _wait_for(lambda: startup.waiting == 1)
        assert not waiting.done()
        release.set()
        answer = waiting.result(timeout=60)
        assert answer.status_code == 200 and answer.json() == {"hello": "music"}
        assert client.get("/health").json() == {"status": "ok"}
        # on_ready runs in a thread after the app starts answering: wait for it, not for luck
        assert said.wait(60)
        assert lifespans == ["up"] and len(ready) == 1 and startup.failure is None
    assert lifespans == ["up", "down"]


def test_a_request_that_waits_too_long_gets_503_with_retry_after() -> None:
    release = threading.Event()
    startup = Startup(Settings(index_path="music", queue_timeout_s=0.01), build=_slow_build(release, []))
    try:
        with TestClient(startup) as client:
            answer = client.get("/hello")
            assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
            assert answer.json()["error"] == "busy" and "starting" in answer.json()["detail"]
            release.set()
    finally:
        release.set()


def test_a_library_that_cannot_be_opened_stops_the_start() -> None:
    failures: list[BaseException] = []

    def build(settings: Settings) -> Any:
        raise IndexFormatError(f"{settings.index_path}: no music library here")

    startup = Startup(Settings(index_path="nothing"), build=build, on_failure=failures.append)
    with TestClient(startup) as client:
        assert startup.settled.wait(60)
        answer = client.get("/api/tracks")
        assert answer.status_code == 503 and answer.json()["error"] == "library_unavailable"
    assert [str(e) for e in failures] == ["nothing: no music library here"]
    assert startup.failure is failures[0]


def test_the_real_app_is_served_once_built(web_corpus: Any) -> None:
    startup = Startup(Settings(index_path=str(web_corpus.library), warm_up=False))
    with TestClient(startup) as client:
        assert startup.settled.wait(120) and startup.failure is None
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/api/tracks").json()["total"] == 4


def test_the_server_reads_the_library_into_memory_after_startup(web_corpus: Any) -> None:
    """With ``page_in`` (the default) the index files are read once in the background after the
    warm-up; without it they are not."""
    from audiolsh.library import Library
    from audiolsh.web.app import create_app

    with Library.open(web_corpus.library, readonly=True) as library:
        files = library.mapped_files()
    assert any(f.name == "pos.npy" for f in files)
    assert not any(f.name.startswith("catalogue.sqlite") for f in files)  # its locks would go
    app = create_app(Settings(index_path=str(web_corpus.library), warm_up=False))
    service = app.state.service
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "ok"
        _wait_for(lambda: service.paged_in is not None)
        done = service.paged_in
        assert (done.files, done.skipped, done.stopped) == (len(files), None, False)
        assert done.bytes == sum(f.stat().st_size for f in files)
    app = create_app(Settings(index_path=str(web_corpus.library), warm_up=False, page_in=False))
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "ok"
    assert app.state.service.paged_in is None
    assert not any(t.name == "audiolsh-page-in" for t in threading.enumerate())
