"""``audiolsh serve`` accepts connections at once and builds the app behind them.

Importing the app's stack (FastAPI, numpy, numba, librosa), opening the library and the warm-up
query take seconds.  Meanwhile ``/health`` answers 503 ``"starting"`` with a Retry-After header,
and every other request waits for the app (up to ``settings.queue_timeout_s``, then 503 with
Retry-After), so a page opened during startup appears once it is ready.  A library that cannot
be opened stops the server, and ``run`` raises its error.  Imports no web framework itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from audiolsh import __version__
from audiolsh.web.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
STARTING = "starting: loading the library and warming up"

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def _create_app(settings: Settings) -> Any:
    from audiolsh.web.app import create_app

    return create_app(settings)


class Startup:
    """An ASGI app that stands in for the real one (``build(settings)``, a FastAPI app) while it
    is built in a thread and its lifespan (the warm-up) runs; then passes every request on.

    ``on_ready(app, seconds)`` runs in a thread once the app answers; ``on_failure(exc)`` when
    the build or the warm-up raised (``failure`` holds the exception).
    """

    def __init__(self, settings: Settings, *, build: Callable[[Settings], Any] = _create_app,
                 on_ready: Callable[[Any, float], None] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.settings = settings
        self.build = build
        self.on_ready = on_ready
        self.on_failure = on_failure
        self.app: Any = None
        self.failure: BaseException | None = None
        #: Set once the app answers or the build failed (for threads; requests use ``_settled``).
        self.settled = threading.Event()
        self.waiting = 0
        self._settled: anyio.Event | None = None
        self._stop: anyio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.app is None:
            if scope["type"] == "http" and scope.get("path") == "/health":
                await self._starting(send)
                return
            self.waiting += 1
            try:
                with anyio.move_on_after(self.settings.queue_timeout_s):
                    await self._wait()
            finally:
                self.waiting -= 1
            if self.app is None:
                if scope["type"] == "http":
                    await self._unavailable(send)
                else:  # a websocket: "try again later"
                    await send({"type": "websocket.close", "code": 1013})
                return
        await self.app(scope, receive, send)

    async def _wait(self) -> None:
        if self._settled is not None:
            await self._settled.wait()
        else:  # no lifespan (a server run without one): nothing will build the app
            await anyio.sleep_forever()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        self._settled, self._stop = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._start)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            self._stop.set()
            if self.app is None:
                tasks.cancel_scope.cancel()  # still building: the build thread is abandoned
        await send({"type": "lifespan.shutdown.complete"})

    async def _start(self) -> None:
        assert self._settled is not None and self._stop is not None
        t0 = time.perf_counter()
        try:
            app = await anyio.to_thread.run_sync(self.build, self.settings, abandon_on_cancel=True)
            async with app.router.lifespan_context(app):
                self.app = app
                self._settle()
                if self.on_ready is not None:
                    try:  # only a message: a server that started keeps serving
                        await anyio.to_thread.run_sync(self.on_ready, app, time.perf_counter() - t0)
                    except Exception as exc:
                        log.warning("serving, but could not say so: %s", exc)
                await self._stop.wait()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self.failure = exc
            self._settle()
            if self.on_failure is not None:
                self.on_failure(exc)

    def _settle(self) -> None:
        assert self._settled is not None
        self._settled.set()
        self.settled.set()

    async def _starting(self, send: Send) -> None:
        s = self.settings
        await _json(send, 503, {"status": "starting", "version": __version__, "workers": s.workers,
                                "busy": 0, "queued": self.waiting, "max_queue": s.max_queue,
                                "pid": os.getpid(), "detail": STARTING})

    async def _unavailable(self, send: Send) -> None:
        if self.failure is not None:
            await _json(send, 503, {"error": "library_unavailable",
                                    "detail": "the server could not open the library"}, retry=False)
            return
        await _json(send, 503, {"error": "busy", "detail": f"the server is still starting; {STARTING}",
                                "retry_after_s": RETRY_AFTER_S})


async def _json(send: Send, status: int, body: dict[str, Any], *, retry: bool = True) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if retry:
        headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def run(settings: Settings, *, on_ready: Callable[[Any, float], None] | None = None) -> None:
    """Serve on ``settings.host:port`` until stopped; raises the error that kept the app from
    starting (a missing library, a missing web package)."""
    import uvicorn

    startup = Startup(settings, on_ready=on_ready)
    # Warnings only: the command says when the app is ready, and a failed start is one line.
    config = uvicorn.Config(startup, host=settings.host, port=settings.port, log_level="warning",
                            server_header=False, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    startup.on_failure = lambda exc: setattr(server, "should_exit", True)
    server.run()
    if startup.failure is not None:
        raise startup.failure
