"""A track's audio file as a download: Starlette's range support, its errors in the API's JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import FileResponse
from starlette.types import Message, Receive, Scope, Send

RANGE_ERRORS = {400: "bad_range", 416: "range_not_satisfiable"}


class AudioFile(FileResponse):
    """``FileResponse`` (200, or 206 for the ranges asked for) whose refusals of a Range header
    are ``{"error", "detail"}`` JSON like the API's other errors (Starlette answers them in
    plain text), and which ignores a Range header of a unit other than bytes, as RFC 9110
    (14.2) asks, instead of refusing it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asked = Headers(scope=scope).get("range")
        if asked is not None and asked.partition("=")[0].strip().lower() != "bytes":
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]}
        refused: dict[str, Any] | None = None

        async def as_json(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] in RANGE_ERRORS:
                refused = dict(message)  # sent with the body, once its text is known
                return
            if refused is not None and message["type"] == "http.response.body":
                status = refused["status"]
                said = bytes(message.get("body", b"")).decode("utf-8", "replace").strip()
                detail = (f"Range {asked!r}: {said or 'no range asked for lies within the file'}")
                body = json.dumps({"error": RANGE_ERRORS[status], "detail": detail}).encode()
                kept = [(k, v) for k, v in refused["headers"]
                        if k.lower() not in (b"content-type", b"content-length")]
                await send({**refused, "headers": [*kept, (b"content-type", b"application/json"),
                                                   (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                refused = None
                return
            await send(message)

        await super().__call__(scope, receive, as_json)
