"""Errors of the web layer, each with its HTTP status and a short machine-readable code.

Messages are written for the person at the page: what was wrong with *their* upload, never a
server path or a traceback.
"""

from __future__ import annotations

from audiolsh.errors import AudiolshError


class WebError(AudiolshError):
    """An error answered with ``status`` and ``{"error": code, "detail": message}``."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        self.message = message
        self.retry_after_s = retry_after_s  # sent as a Retry-After header (503)
        super().__init__(message)


class UploadTooLarge(WebError):
    status = 413
    code = "upload_too_large"


class BadUpload(WebError):
    """The upload is not usable audio: empty, not audio, corrupt, silent, too short."""

    status = 422
    code = "bad_audio"


class BadQuery(WebError):
    """A parameter the library cannot answer (a mode it was built without, ...)."""

    status = 422
    code = "bad_parameter"


class NotFound(WebError):
    status = 404
    code = "not_found"


class Busy(WebError):
    """The analysis queue is full, or every worker stayed busy for ``queue_timeout_s``."""

    status = 503
    code = "busy"
