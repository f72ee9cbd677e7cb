"""The two HTML pages: the query page and the library page (server-rendered, a little JS)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import jinja2
import markupsafe
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from audiolsh import __version__
from audiolsh.query.identify import MIN_CLIP_S
from audiolsh.web.api import get_service
from audiolsh.web.services import QueryService
from audiolsh.web.uploads import has_ffmpeg

HERE = Path(__file__).parent
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
))
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self';"
       " script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)
Service = Annotated[QueryService, Depends(get_service)]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _wbr(name: str) -> markupsafe.Markup:
    """A name that may wrap after _ and - as well as at spaces (file names may have no spaces)."""
    parts = re.split(r"(?<=[_\-])", str(name))
    return markupsafe.Markup("<wbr>").join(markupsafe.escape(p) for p in parts)


templates.env.filters["duration"] = _duration
templates.env.filters["wbr"] = _wbr


def _page(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, {"version": __version__, **context})
    response.headers["Content-Security-Policy"] = CSP
    return response


@router.get("/", response_class=HTMLResponse)
def query_page(request: Request, service: Service) -> HTMLResponse:
    s = service.settings
    return _page(request, "index.html", {
        "page": "query", "n_tracks": service.n_tracks(), "max_upload_mb": s.max_upload_bytes / 1024 / 1024,
        "max_analysis_s": s.max_analysis_s, "min_clip_s": s.min_clip_s, "min_id_clip_s": MIN_CLIP_S,
        "can_record": has_ffmpeg(),
        "max_scan_s": max(s.max_scan_s, s.max_analysis_s), "page_k": s.page_k,
        "k_choices": sorted({3, 5, 10, 20, s.page_k}),
    })


@router.get("/library", response_class=HTMLResponse)
def library_page(request: Request, service: Service,
                 q: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
    return _page(request, "library.html", {"page": "library", **service.overview(q=q)})
