"""Everything one decode of a file yields, for every mode of a library (or a query clip)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from audiolsh.audio import load
from audiolsh.errors import AudiolshError, IndexFormatError
from audiolsh.features import logmel_embeddings
from audiolsh.features.windows import window_starts, window_stats
from audiolsh.files import shown
from audiolsh.hashing import SetBatch, as_sets
from audiolsh.storage.base import check_format_version

SAMPLE_RATE = 22050
MIN_DURATION_S = 3.0
MAX_DURATION_S = 3 * 3600.0
EXTRACTED_FORMAT = "audiolsh-extracted"
EXTRACTED_VERSION = 1


@dataclass(frozen=True)
class Extracted:
    """Everything one decode of a file yields, for every mode of a library."""

    path: str
    content_hash: str
    duration_s: float
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    chroma_frames: tuple[np.ndarray, np.ndarray] | None = None
    peaks: tuple[Any, np.ndarray] | None = None
    landmarks: Any = None
    #: the file's tags (``library.tags.read_tags``); a query clip has none
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def n_windows(self) -> int:
        for X, _ in self.vectors.values():
            return len(X)
        return 0

    def to_bytes(self) -> bytes:
        """An uncompressed .npz of the arrays, with a JSON header (never pickled): an extraction
        carried between processes (a Spark task and its driver) loads bit for bit the same."""
        arrays: dict[str, np.ndarray] = {}
        for name, (X, offsets) in self.vectors.items():
            arrays[f"vectors_{name}_X"], arrays[f"vectors_{name}_offsets"] = X, offsets
        if self.chroma_frames is not None:
            arrays["chroma_frames"], arrays["chroma_times"] = self.chroma_frames
        if self.peaks is not None:
            sets, offsets = self.peaks
            arrays |= {"peaks_indptr": sets.indptr, "peaks_elements": sets.elements, "peaks_offsets": offsets}
        if self.landmarks is not None:
            arrays["landmarks_hashes"] = self.landmarks.hashes
            arrays["landmarks_times"] = self.landmarks.times
            if self.landmarks.envelope is not None:
                arrays["landmarks_envelope"] = self.landmarks.envelope
        header = {"format": EXTRACTED_FORMAT, "format_version": EXTRACTED_VERSION, "path": self.path,
                  "content_hash": self.content_hash, "duration_s": self.duration_s,
                  "vectors": list(self.vectors), "tags": self.tags,
                  "landmarks_frame_s": None if self.landmarks is None else self.landmarks.frame_s}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        out = io.BytesIO()
        np.savez(out, allow_pickle=False, **{k: np.asarray(a) for k, a in arrays.items()})
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Extracted:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            header = json.loads(arrays.pop("header").tobytes())
        except (OSError, ValueError, KeyError) as exc:
            raise IndexFormatError(f"not a saved extraction ({exc})") from None
        if header.get("format") != EXTRACTED_FORMAT:
            raise IndexFormatError("not a saved extraction")
        check_format_version(header.get("path"), "extraction", header.get("format_version"),
                             newest=EXTRACTED_VERSION)
        vectors = {n: (arrays[f"vectors_{n}_X"], arrays[f"vectors_{n}_offsets"]) for n in header["vectors"]}
        chroma = (arrays["chroma_frames"], arrays["chroma_times"]) if "chroma_frames" in arrays else None
        peaks = None
        if "peaks_indptr" in arrays:
            peaks = (SetBatch(arrays["peaks_indptr"], arrays["peaks_elements"]), arrays["peaks_offsets"])
        landmarks = None
        if header["landmarks_frame_s"] is not None:
            from audiolsh.features.landmarks import Landmarks

            landmarks = Landmarks(arrays["landmarks_hashes"], arrays["landmarks_times"],
                                  header["landmarks_frame_s"], arrays.get("landmarks_envelope"))
        return cls(header["path"], header["content_hash"], header["duration_s"], vectors, chroma, peaks,
                   landmarks, dict(header.get("tags") or {}))


def embed_clip(
    path: str | os.PathLike[str], *, offset_s: float = 0.0, duration_s: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-second embeddings of a file (or an excerpt): (E, offsets_s, duration_s)."""
    y, sr = load(
        path, sr=SAMPLE_RATE, offset_s=offset_s, duration_s=duration_s,
        min_duration_s=1.0, max_duration_s=MAX_DURATION_S,
    )
    E, offsets = logmel_embeddings(y, sr=sr)
    return E, offsets + offset_s, len(y) / sr


def analyse(y: np.ndarray, sr: int, *, modes: Sequence[str], window_s: float, hop_s: float,
            path: str = "", content_hash: str = "") -> Extracted:
    """Extract every enabled mode from one decoded signal (a track, or a query clip)."""
    from audiolsh.features.excerpts import excerpt_features

    duration_s = len(y) / sr
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    chroma_frames = peaks = landmarks = None
    if "embedding" in modes:
        E, offsets = logmel_embeddings(y, sr=sr)
        vectors["embedding"] = (E, offsets)
    if "fingerprint" in modes:
        from audiolsh.features.landmarks import landmarks as extract_landmarks

        landmarks = extract_landmarks(y, sr)
    wanted = [m for m in ("rhythm", "timbre", "chroma", "peaks") if m in modes]
    if wanted:
        feats = excerpt_features(y, sr, window_s=window_s, hop_s=hop_s, modes=tuple(wanted))
        starts = window_starts(duration_s, window_s=window_s, hop_s=hop_s)
        for m in ("rhythm", "timbre"):
            if m in feats:
                vectors[m] = (np.asarray(feats[m].X, np.float32), np.asarray(feats[m].offsets_s))
                starts = vectors[m][1]
        if "chroma" in feats:
            frames = np.asarray(feats["chroma"].X, np.float32)
            times = np.asarray(feats["chroma"].offsets_s, np.float64)
            chroma_frames = (frames, times)
            vectors["chroma"] = (window_stats(frames, times, starts, window_s=window_s), starts)
        if "peaks" in feats:
            peaks = (as_sets(feats["peaks"].X),  # type: ignore[arg-type]
                     np.asarray(feats["peaks"].offsets_s))
    return Extracted(path, content_hash, duration_s, vectors, chroma_frames, peaks, landmarks)


def extract(path: str, digest: str, modes: Sequence[str], window_s: float, hop_s: float,
            max_duration_s: float | None = MAX_DURATION_S) -> Extracted:
    """A file's features for a library, streamed: the file is decoded and analysed block by
    block (:class:`~audiolsh.features.streaming.TrackAnalyser`), so memory does not grow with its
    length, channels or sample rate; the result equals :func:`analyse` of the whole signal within
    float tolerance.  BLAS runs on one thread here: a matrix product's last bits depend on how it
    is split between threads, and a builder's thread count does not (`audiolsh index` has one per
    core, a Spark executor one), so every builder extracts the same numbers and builds the same
    index."""
    from audiolsh.audio.stream import SignalStats, stream_blocks
    from audiolsh.features.streaming import TrackAnalyser
    from audiolsh.library.tags import read_tags

    with threadpool_limits(limits=1, user_api="blas"):
        analyser = TrackAnalyser(SAMPLE_RATE, modes=modes, window_s=window_s, hop_s=hop_s)
        stats = SignalStats(SAMPLE_RATE)
        for y in stream_blocks(path, sr=SAMPLE_RATE, min_duration_s=MIN_DURATION_S,
                               max_duration_s=max_duration_s, stats=stats):
            analyser.push(y)
        ex = _assemble(analyser.finish(), path=path, content_hash=digest, duration_s=stats.duration_s,
                       window_s=window_s, hop_s=hop_s)
    # Here, in the worker that decoded the file: mutagen reads only the file's tag blocks.
    return replace(ex, tags=read_tags(path))


def _assemble(parts: dict[str, Any], *, path: str, content_hash: str, duration_s: float,
              window_s: float, hop_s: float) -> Extracted:
    """An :class:`Extracted` from :meth:`TrackAnalyser.finish`'s parts, as :func:`analyse` builds it."""
    vectors = {m: (np.asarray(X, np.float32), np.asarray(o)) for m, (X, o) in parts["vectors"].items()}
    starts = window_starts(duration_s, window_s=window_s, hop_s=hop_s)
    for m in ("rhythm", "timbre"):
        if m in vectors:
            starts = vectors[m][1]
    chroma_frames = parts["chroma_frames"]
    if chroma_frames is not None:
        frames, times = np.asarray(chroma_frames[0], np.float32), np.asarray(chroma_frames[1], np.float64)
        chroma_frames = (frames, times)
        vectors["chroma"] = (window_stats(frames, times, starts, window_s=window_s), starts)
    peaks = None
    if parts["peaks"] is not None:
        sets, offsets = parts["peaks"]
        peaks = (as_sets(sets), np.asarray(offsets))
    ordered = {m: vectors[m] for m in ("embedding", "rhythm", "timbre", "chroma") if m in vectors}
    return Extracted(path, content_hash, duration_s, ordered, chroma_frames, peaks, parts["landmarks"])


def extract_safe(job: tuple[Any, ...]) -> Extracted | tuple[str, str]:
    """``extract`` of (path, digest, modes, window_s, hop_s[, max_duration_s]), or (path, message)
    for a bad file."""
    path = job[0]
    try:
        return extract(*job)
    except AudiolshError as exc:
        return (path, str(exc))
    except Exception as exc:  # a decoder crash must not stop the batch
        return (path, f"{shown(path)}: {type(exc).__name__}: {exc}")
