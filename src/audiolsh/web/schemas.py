"""Response models: the OpenAPI schema of the REST API, and a check on every answer."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error: a short code, a message for people, and the offending fields if any."""

    error: str = Field(examples=["bad_audio"])
    detail: str = Field(examples=["clip.mp3: the audio is silent"])
    errors: list[dict[str, object]] | None = None


class OtherMatch(BaseModel):
    path: str
    track_id: int
    title: str = Field(description="The track's title tag, else its file name.")
    artist: str | None = Field(description="The track's artist tag; null when untagged.")
    offset_s: float = Field(description="Where in the track the clip starts (s).")
    score: float
    confidence: float = Field(ge=0.0, le=1.0, description="Probability that the track is right.")
    matched: bool = Field(description="The confidence reaches the default threshold; false: a weak"
                                      " candidate, shown because min_confidence was lowered.")
    speed: float = Field(description="Playback speed of the clip relative to the track.")
    tempo: float
    pitch: float = Field(description="Pitch shift of the clip relative to the track, tempo kept.")
    verified: float | None = Field(default=None, description=(
        "A weak candidate's waveform correlation with its track's audio file at the offset, which"
        " the confidence weighs; null when not checked (a confident answer, a speed change, the"
        " file unreadable by the server)."))


class Match(OtherMatch):
    also: list[OtherMatch] = Field(
        default_factory=list,
        description="Other tracks holding the same audio (a remaster, a compilation), matched at least"
                    " as surely as the threshold asks; most confident first.")


class TrackRef(BaseModel):
    """A library track as the query of ``similar --track`` (no identification behind it)."""

    path: str
    track_id: int
    title: str
    artist: str | None


class IdentifyRecord(BaseModel):
    """The same object as one line of ``audiolsh identify --format jsonl``."""

    query: str = Field(description="The upload's name (display only).")
    match: Match | None = Field(description="null when the clip is not in the library.")
    reason: str | None = Field(default=None, description=(
        "Why there is no (confident) match: too few landmarks, best candidate below min_confidence."))
    elapsed_ms: float


class SimilarResult(BaseModel):
    track_id: int
    path: str
    title: str = Field(description="The track's title tag, else its file name.")
    artist: str | None = Field(description="The track's artist tag; null when untagged.")
    score: float = Field(ge=0.0, le=1.0, description=(
        "The best (least similar: worst) passage pair's similarity as a percentile among passage"
        " pairs of different tracks of the library: 0.5 typical, 1 more alike than any sampled pair."))
    rank: int
    offset_s: float | None = Field(description="Start of the matching passage in the track (s).")
    query_offset_s: float | None = Field(default=None, description="Start of the passage in the clip (s).")
    raw_score: float | None = Field(default=None, description=(
        "The mode's own value of that pair: cosine (rhythm, timbre, chroma), Jaccard (peaks), sum of"
        " z-scores (combined), votes per frame (chroma vote)."))


class SimilarRecord(BaseModel):
    """The same object as one line of ``audiolsh similar --format jsonl``."""

    query: str
    track_id: int | None = Field(default=None, description="The query track (a query by track id).")
    match: Match | TrackRef | None = Field(default=None, description=(
        "The track the clip is cut from (identification), left out of the results unless include_self."))
    results: list[SimilarResult]
    elapsed_ms: float


class Segment(BaseModel):
    start_s: float = Field(description="Where the stretch starts in the upload (s).")
    end_s: float
    path: str
    track_id: int
    title: str = Field(description="The track's title tag, else its file name.")
    artist: str | None = Field(description="The track's artist tag; null when untagged.")
    offset_s: float = Field(description="Where in the track the stretch starts (s).")
    confidence: float = Field(ge=0.0, le=1.0)
    matched: bool


class SegmentsRecord(BaseModel):
    """The same object as one line of ``audiolsh identify --segments --format jsonl``."""

    query: str
    segments: list[Segment]
    elapsed_ms: float


class PageList(BaseModel):
    by: str
    worst: bool
    query: str
    match: Match | None = None
    results: list[SimilarResult]
    elapsed_ms: float | None = None
    error: str | None = None


class Spectrogram(BaseModel):
    n_mels: int
    n_columns: int
    duration_s: float
    fmax_hz: float
    db_range: float
    data: str = Field(description="uint8 image (n_mels rows, low bands first, n_columns each), base64.")


class BeatSpectrum(BaseModel):
    lag_step_s: float
    values: list[float]
    peak_lag_s: float | None
    tempo_bpm: float | None = Field(default=None, description="60 / peak_lag_s: the strongest period as beats"
                                                              " per minute.")


class Plots(BaseModel):
    spectrogram: Spectrogram
    beat_spectrum: BeatSpectrum
    elapsed_ms: float


class Analysis(BaseModel):
    """Everything the page shows for one upload."""

    query: str
    duration_s: float = Field(description="Seconds of the upload analysed.")
    scanned_s: float = Field(description="Seconds of the upload scanned for segments.")
    identify: IdentifyRecord | None
    segments: list[Segment] | None = Field(description="Which track plays when; null for uploads under"
                                                       " 20 s or without fingerprints.")
    similar: list[PageList]
    plots: Plots
    elapsed_ms: float


class TrackOut(BaseModel):
    track_id: int
    name: str = Field(description='"Artist - Title", else the path relative to the folder indexed.')
    path: str
    title: str = Field(description="The title tag, else the file name.")
    artist: str | None = Field(description="null when untagged, as album and year.")
    album: str | None
    year: int | None
    duration_s: float | None
    n_items: int
    added_at: float
    content_hash: str


class TrackPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[TrackOut]


class Health(BaseModel):
    status: str = Field(description='"ok"; "starting" (with 503 and Retry-After) while the server'
                                    ' opens the library and warms up; "unavailable" (with 503) while'
                                    " the library's storage cannot be reached")
    version: str
    workers: int = Field(description="Uploads analysed at once")
    busy: int = Field(description="Uploads being analysed now")
    queued: int = Field(0, description="Uploads waiting for a worker now")
    max_queue: int | None = Field(None, description="Uploads that may wait; one more is refused with 503")
    pid: int = Field(description="The id of the server process that answered: which one, when"
                                 " several serve the library (uvicorn --workers N)")
    n_tracks: int | None = Field(None, description="Tracks in the library (absent while it cannot be"
                                                   " read, or every handle is busy)")
    rows: dict[str, int] | None = Field(None, description="Rows per mode: excerpt windows (rhythm, timbre,"
                                                          " chroma, peaks), seconds (embedding), hashes"
                                                          " (fingerprint)")
    detail: str | None = None
