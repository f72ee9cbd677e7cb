"""REST API routes: HTTP in, one ``QueryService`` call, JSON out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import Field

from audiolsh.web.downloads import AudioFile
from audiolsh.web.schemas import (
    Analysis,
    ErrorBody,
    Health,
    IdentifyRecord,
    SegmentsRecord,
    SimilarRecord,
    TrackPage,
)
from audiolsh.web.services import MAX_K, QueryService

router = APIRouter()

UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A malformed request body (broken multipart data)."},
    413: {"model": ErrorBody, "description": "The upload is larger than the server's limit."},
    415: {"model": ErrorBody, "description": "The body is not multipart/form-data."},
    422: {"model": ErrorBody, "description": "Not usable audio (empty, not audio, corrupt, silent,"
                                             " too short), or a bad parameter."},
    503: {"model": ErrorBody, "description": "Every worker stayed busy, or the library's storage cannot"
                                             " be reached right now; try again."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such track, or its file is gone."},
    422: {"model": ErrorBody, "description": "A bad parameter."},
    503: {"model": ErrorBody, "description": "Every worker stayed busy, or the library's storage cannot"
                                             " be reached right now; try again."},
}
PARAM_ERRORS: dict[int | str, dict[str, Any]] = {k: v for k, v in NOT_FOUND.items() if k != 404}
FileField = Annotated[UploadFile, File(description="An audio file or recording (any format ffmpeg decodes).")]
MAX_TRACK_ID = 2**31 - 1
MAX_PLAYLIST = 500
MAX_PAGE_K = 50  # as Settings.page_k
By = Annotated[Literal["combined", "rhythm", "timbre", "chroma", "peaks"], Query(
    description="The feature compared: combined (rhythm, timbre and peak pairs; the CLI's default),"
                " rhythm, timbre, chroma or peaks.")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many tracks.")]
Worst = Annotated[bool, Query(description="The least similar tracks of the whole library (not for peaks).")]
TrackId = Annotated[int, Path(ge=0, le=MAX_TRACK_ID)]
PlaylistId = Annotated[int, Field(ge=0, le=MAX_TRACK_ID)]  # checked as a path's track id is
MinConfidence = Annotated[float | None, Query(ge=0.0, le=1.0, description=(
    "Probability that the track is right below which the answer is no match (default: the"
    " calibrated operating point; 0: always the best candidate, with matched false when weak)."))]
UNAVAILABLE = "The library's storage (a Redis server) cannot be reached; it recovers by itself."


def get_service(request: Request) -> QueryService:
    service: QueryService = request.app.state.service
    return service


Service = Annotated[QueryService, Depends(get_service)]


# exclude_unset: a record's optional fields (title, artist, ...) appear only when it has them,
# exactly as in the CLI's records.
@router.post("/api/identify", response_model=IdentifyRecord, responses=UPLOAD_ERRORS, tags=["queries"],
             summary="Identify a clip", response_model_exclude_unset=True)
def identify(file: FileField, service: Service, min_confidence: MinConfidence = None) -> dict[str, Any]:
    """Which track the clip (1 s or more) comes from, where in it the clip starts, and the
    probability that this is right; ``match`` is null when the clip is not in the library, and
    ``reason`` says why."""
    return service.identify(file.file, file.filename, min_confidence=min_confidence)


@router.post("/api/segments", response_model=SegmentsRecord, responses=UPLOAD_ERRORS, tags=["queries"],
             summary="Which track plays when in a long upload", response_model_exclude_unset=True)
def segments(file: FileField, service: Service, min_confidence: MinConfidence = None) -> dict[str, Any]:
    """The stretches of the upload (up to the server's ``max_scan_s``) that library tracks play,
    each with where in its track it starts: ``audiolsh identify --segments``."""
    return service.segments(file.file, file.filename, min_confidence=min_confidence)


@router.post("/api/similar", response_model=SimilarRecord, responses=UPLOAD_ERRORS, tags=["queries"],
             summary="Tracks that sound like a clip", response_model_exclude_unset=True)
def similar(
    file: FileField,
    service: Service,
    by: By = "combined",
    k: K = 10,
    worst: Worst = False,
    include_self: Annotated[bool, Query(description="List the clip's own track too (the track"
                                                    " identification finds it in).")] = False,
) -> dict[str, Any]:
    """The k tracks most (or, with ``worst``, least) similar to the clip by one feature.  A track's
    ``score`` is its best (least similar: worst) passage pair with the clip as a percentile in
    [0, 1] among passage pairs of different tracks of the library; ``raw_score`` is the mode's own
    value.  The clip's own track is ``match`` and is left out unless ``include_self``."""
    return service.similar(file.file, file.filename, by=by, k=k, worst=worst, include_self=include_self)


@router.get("/api/tracks/{track_id}/similar", response_model=SimilarRecord, responses=NOT_FOUND,
            tags=["library"], summary="Tracks that sound like a library track",
            response_model_exclude_unset=True)
def track_similar(track_id: TrackId, service: Service, by: By = "combined", k: K = 10,
                  worst: Worst = False) -> dict[str, Any]:
    """``audiolsh similar --track ID``: the track's stored passages are the query, and the track
    itself is left out of the answer."""
    return service.track_similar(track_id, by=by, k=k, worst=worst)


@router.post("/api/analyse", response_model=Analysis, responses=UPLOAD_ERRORS, tags=["queries"],
             summary="Everything the page shows for a clip", response_model_exclude_unset=True)
def analyse(
    file: FileField,
    service: Service,
    k: Annotated[int | None, Query(ge=1, le=MAX_PAGE_K,
                                   description="Tracks per list (default: the server's).")
                 ] = None,
    include_self: Annotated[bool, Query(description="List the clip's own track in the lists too.")] = False,
    min_confidence: MinConfidence = None,
) -> dict[str, Any]:
    """Identification, which track plays when (uploads of 20 s or more), the most and least similar
    tracks by combined, rhythm, timbre, chroma and peaks (the clip's own track left out unless
    ``include_self``), and the clip's spectrogram and beat spectrum, from one decode."""
    return service.analyse(file.file, file.filename, k=k, include_self=include_self,
                           min_confidence=min_confidence)


@router.get("/api/tracks", response_model=TrackPage, responses=PARAM_ERRORS, tags=["library"],
            summary="The library's tracks, a page at a time")
def tracks(
    service: Service,
    offset: Annotated[int, Query(ge=0, le=MAX_TRACK_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    q: Annotated[str, Query(max_length=200, description="Part of the artist, title, album or file name"
                                                        " (case-insensitive).")] = "",
) -> dict[str, Any]:
    return service.tracks(offset=offset, limit=limit, q=q)


@router.head("/api/tracks/{track_id}/audio", include_in_schema=False)  # its length, before a player asks
@router.get("/api/tracks/{track_id}/audio", response_class=FileResponse,
            tags=["library"], summary="A track's audio file (supports range requests)",
            responses={200: {"content": {"audio/*": {}}, "description": "The audio file."},
                       206: {"content": {"audio/*": {}}, "description": "The ranges asked for."},
                       400: {"model": ErrorBody, "description": "A malformed Range header."},
                       416: {"model": ErrorBody, "description": "No range asked for lies in the file."},
                       **NOT_FOUND})
def track_audio(track_id: TrackId, service: Service) -> FileResponse:
    path, media_type = service.track_audio(track_id)
    return AudioFile(path, media_type=media_type)


@router.get("/api/playlist.m3u", response_class=Response, tags=["library"],
            summary="A playlist (extended M3U) of library tracks",
            responses={200: {"content": {"audio/x-mpegurl": {}}, "description": "The playlist."},
                       **NOT_FOUND})
def playlist(
    service: Service,
    ids: Annotated[list[PlaylistId], Query(min_length=1, max_length=MAX_PLAYLIST,
                                    description="Track ids, in playlist order (repeat: ids=3&ids=1).")],
    name: Annotated[str, Query(max_length=100, pattern=r"^[A-Za-z0-9 ._-]*$",
                               description="The downloaded file's name, without .m3u.")] = "audiolsh",
) -> Response:
    """The tracks as a playlist a music player opens: ``#EXTINF`` with each track's length and
    name ("Artist - Title" or the file name), then its path on the server's machine."""
    text = service.playlist(ids)
    filename = (name.strip() or "audiolsh") + ".m3u"
    return Response(text, media_type="audio/x-mpegurl; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/health", response_model=Health, tags=["service"], summary="Liveness",
            responses={503: {"model": Health, "description": UNAVAILABLE}})
def health(service: Service) -> Any:
    """Whether the server can answer queries; asks the library's storage (in a worker thread)."""
    body = service.health()
    if body["status"] != "ok":
        return JSONResponse(body, status_code=503)
    return body
