"""Settings of the web app: data with help text and documented defaults."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from audiolsh.errors import ParameterError
from audiolsh.web.admission import default_max_queue

MB = 1024 * 1024


def _doc(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs; every field but ``index_path`` has a default."""

    index_path: str = field(metadata=_doc(
        "Where the music library is (built by `audiolsh index`): a directory, memory://name, or"
        " redis://host:port/db?prefix=NAME (several servers may share one Redis library)."))
    host: str = field(default="127.0.0.1", metadata=_doc(
        "Address to listen on; loopback by default, so only this machine can connect."))
    port: int = field(default=8000, metadata=_doc("TCP port."))
    max_upload_bytes: int = field(default=50 * MB, metadata=_doc(
        "Largest upload accepted (bytes); a larger request is refused with 413 before it is read."))
    max_analysis_s: float = field(default=30.0, metadata=_doc(
        "Seconds of each upload decoded and analysed, from its start; the rest is ignored."))
    max_scan_s: float = field(default=600.0, metadata=_doc(
        "Seconds of each upload scanned for which track plays when (the segments timeline);"
        " similarity and the plots use the first max_analysis_s of them."))
    min_clip_s: float = field(default=3.0, metadata=_doc(
        "Shortest clip for similarity (s); shorter uploads are refused with 422 (identification"
        " takes any clip of 1 s or more)."))
    workers: int = field(default=2, metadata=_doc(
        "Queries analysed at once; each worker owns one read-only handle on the library."))
    max_queue: int = field(default_factory=default_max_queue, metadata=_doc(
        "Uploads that may wait for a worker; one more is refused at once with 503 'busy' and a"
        " Retry-After header, so latency stays bounded under load (default: twice the cores)."))
    queue_timeout_s: float = field(default=30.0, metadata=_doc(
        "How long a queued upload waits for a free worker before a 503 'busy'."))
    page_k: int = field(default=5, metadata=_doc(
        "Tracks in each most/least similar list of the page's default query."))
    cluster_by: str = field(default="timbre", metadata=_doc(
        "Feature the library page groups tracks by (timbre, rhythm, chroma or combined)."))
    n_clusters: int | None = field(default=None, metadata=_doc(
        "Groups on the library page; default: about sqrt(tracks / 2), from 2 to 8."))
    tmp_dir: Path | None = field(default=None, metadata=_doc(
        "Where uploads are spooled while decoded (private files, deleted after each request);"
        " default: the system's temporary directory."))
    warm_up: bool = field(default=True, metadata=_doc(
        "Run one synthetic query per worker at startup, so the first visitor waits no longer"
        " than the next."))
    page_in: bool = field(default=True, metadata=_doc(
        "After the warm-up, read the library's index files into memory in the background when"
        " they take at most three quarters of the free memory, so that queries after a reboot do"
        " not each wait on the disk."))

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_path", os.fspath(self.index_path))
        if self.tmp_dir is not None:
            object.__setattr__(self, "tmp_dir", Path(self.tmp_dir))
        checks = [
            ("port", 0 <= self.port <= 65535, "must be within 0..65535"),
            ("max_upload_bytes", self.max_upload_bytes >= 1, "must be >= 1"),
            ("max_analysis_s", math.isfinite(self.max_analysis_s) and self.max_analysis_s >= 1.0,
             "must be >= 1 s"),
            ("max_scan_s", math.isfinite(self.max_scan_s) and self.max_scan_s >= 1.0, "must be >= 1 s"),
            ("min_clip_s", 0.5 <= self.min_clip_s <= self.max_analysis_s,
             "must be within 0.5 s..max_analysis_s"),
            ("workers", 1 <= self.workers <= 64, "must be within 1..64"),
            ("max_queue", 0 <= self.max_queue <= 1024, "must be within 0..1024"),
            ("queue_timeout_s", self.queue_timeout_s > 0, "must be > 0"),
            ("page_k", 1 <= self.page_k <= 50, "must be within 1..50"),
            ("cluster_by", self.cluster_by in ("timbre", "rhythm", "chroma", "combined"),
             "must be timbre, rhythm, chroma or combined"),
            ("n_clusters", self.n_clusters is None or self.n_clusters >= 1, "must be >= 1"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise ParameterError(f"setting {name} {problem}, got {getattr(self, name)!r}")

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Every setting with its default and help text (for docs and `serve --help`)."""
        out = []
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if f.name == "index_path":
                default = None
            out.append({"name": f.name, "default": default, "help": f.metadata["help"]})
        return out
