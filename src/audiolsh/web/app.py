"""The app factory: ``create_app(settings)`` -> a FastAPI app serving the pages and the API.

No debug mode: an unexpected error is logged with its traceback and answered with a plain
JSON 500.  Request bodies are capped before they are read (``BodyLimit``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audiolsh import __version__
from audiolsh.errors import AudioError, AudiolshError, IndexFormatError, ParameterError, StorageUnavailable
from audiolsh.web import api, pages
from audiolsh.web.errors import WebError
from audiolsh.web.services import QueryService
from audiolsh.web.settings import Settings

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
#: Room for the multipart framing around the file itself.
MULTIPART_SLACK_BYTES = 64 * 1024
STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "upload_too_large",
                415: "unsupported_media_type", 422: "invalid_request", 503: "busy"}
UNAVAILABLE = "the library's storage cannot be reached right now; try again shortly"
RETRY_AFTER_S = 5
REDOC_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self';"
             " worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'")
#: Threads kept for requests that are never queued (health, the catalogue, pages).
CHEAP_THREADS = 16
DESCRIPTION = """\
Identify music clips and find similar tracks in an audiolsh library.

Uploads go in a multipart field named `file`; their content is decoded (never trusted by name
or type).  `POST /api/identify`, `POST /api/segments`, `POST /api/similar` and
`GET /api/tracks/{id}/similar` answer with the same JSON objects as `audiolsh identify`,
`identify --segments`, `similar` and `similar --track` with `--format jsonl`.  Every error is JSON:
`{"error": code, "detail": message}` with a 4xx status, or 503 with a `Retry-After` header: when
the analysis queue is full (`busy`; at most `workers` uploads are analysed at once and
`max_queue` more wait, the rest are refused at once), or while the library's storage, a Redis
server, cannot be reached (the app recovers by itself).  Health and the catalogue are never queued.
"""


def _error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length before reading,
    and by counting for chunked uploads."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"the upload is larger than the limit of {self.max_bytes / 1024 / 1024:g} MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + MULTIPART_SLACK_BYTES
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _error(400, "bad_request", "invalid Content-Length")(scope, receive, send)
                return
            if n > limit:
                await _error(413, "upload_too_large", self._too_large())(scope, receive, send)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException passes FastAPI's body parsing and reaches our handler.
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, counted, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                            (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> JSONResponse:
        if exc.retry_after_s is None:
            return _error(exc.status, exc.code, exc.message)
        response = _error(exc.status, exc.code, exc.message, retry_after_s=exc.retry_after_s)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in errors]
        file_errors = {e["type"] for e in errors if e["loc"][-1:] == ["file"]}
        sent = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if file_errors and sent != "multipart/form-data":
            return _error(415, "unsupported_media_type",
                          f"the body is {sent or 'of no stated type'}: send the audio as multipart/form-data"
                          " in a field named 'file'", errors=jsonable_encoder(errors))
        if "missing" in file_errors:
            detail = "no file was uploaded: send it in a multipart field named 'file'"
        elif file_errors:  # a text field, not a file
            detail = "the field 'file' holds text, not a file: upload the audio as a file (with a filename)"
        else:
            detail = "invalid request: " + "; ".join(parts)
        return _error(422, "invalid_request", detail, errors=jsonable_encoder(errors))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        response = _error(exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(AudiolshError)
    async def domain_error(request: Request, exc: AudiolshError) -> JSONResponse:
        if isinstance(exc, AudioError):
            return _error(422, "bad_audio", exc.problem)
        if isinstance(exc, ParameterError):
            return _error(422, "bad_parameter", str(exc))
        if isinstance(exc, StorageUnavailable):
            # One line in the log, no traceback: the pool has dropped the handle and the next
            # request tries again, so this heals itself once the storage is back.
            log.warning("storage unavailable: %s", exc)
            response = _error(503, "storage_unavailable", UNAVAILABLE)
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        if isinstance(exc, IndexFormatError):
            log.error("library unavailable: %s", exc)
            return _error(503, "library_unavailable", "the library cannot be read right now")
        log.exception("unexpected error", exc_info=exc)
        return _error(500, "internal_error", "internal error; the details are in the server log")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", "internal error; the details are in the server log")


def _docs_assets() -> Path:
    """Swagger UI's and ReDoc's files, shipped by the fastapi-offline package: the API docs work
    without internet (FastAPI's own pages load them from a CDN)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def create_app(settings: Settings) -> FastAPI:
    """The web app on the library at ``settings.index_path`` (opened read-only now: a library
    that is missing, or whose storage cannot be reached, raises here)."""
    service = QueryService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every admitted analysis holds a thread while it runs or waits: leave threads for the
        # cheap requests beyond them.
        limiter = anyio.to_thread.current_default_thread_limiter()
        analyses = settings.workers + settings.max_queue
        limiter.total_tokens = max(limiter.total_tokens, analyses + CHEAP_THREADS)
        if settings.warm_up:
            try:
                await anyio.to_thread.run_sync(service.warm_up)
            except StorageUnavailable as exc:  # it went away since the pool opened: serve 503s
                log.warning("warm-up skipped: %s", exc)
        reading = None
        if settings.page_in:
            reading = threading.Thread(target=service.page_in, name="audiolsh-page-in", daemon=True)
            reading.start()
        yield
        service.stop.set()
        if reading is not None:
            reading.join(timeout=5.0)
        service.close()

    app = FastAPI(title="audiolsh", version=__version__, description=DESCRIPTION, debug=False,
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service
    app.state.settings = settings
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)

    app.mount("/static/apidocs", StaticFiles(directory=_docs_assets()), name="apidocs")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="audiolsh API",
            swagger_js_url="/static/apidocs/swagger-ui-bundle.js",
            swagger_css_url="/static/apidocs/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url="/openapi.json", title="audiolsh API",
                              redoc_js_url="/static/apidocs/redoc.standalone.js",
                              redoc_favicon_url="/static/favicon.svg", with_google_fonts=False)
        # ReDoc's sidebar loads its maker's logo from a CDN: keep the page on this server.
        page.headers["Content-Security-Policy"] = REDOC_CSP
        return page

    app.include_router(api.router)
    app.include_router(pages.router)
    return app


def app_from_env() -> FastAPI:
    """``create_app`` on the library named by ``$AUDIOLSH_INDEX``, for uvicorn's own worker
    processes, each with its own handles (a Redis library is shared by all of them)::

        AUDIOLSH_INDEX='redis://127.0.0.1:6379/0?prefix=music' \\
            uvicorn --factory audiolsh.web.app:app_from_env --workers 4
    """
    import os

    from audiolsh.cli.options import INDEX_ENV

    location = os.environ.get(INDEX_ENV)
    if not location:
        raise ParameterError(f"set {INDEX_ENV} to the library's location (a directory or redis://...)")
    return create_app(Settings(index_path=location))
