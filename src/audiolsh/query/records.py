"""The JSON objects of one query, shared by the CLI's json/jsonl output and the REST API.

Both interfaces build their records here so that they cannot drift apart:

- identify: ``{"query", "match": null | {path, track_id, offset_s, score, confidence, speed,
  tempo}, "elapsed_ms"}``
- similar: ``{"query", "match": null | {path, track_id, ...}, "results": [{track_id, path,
  score, rank, offset_s, query_offset_s, raw_score}], "elapsed_ms"}``; ``score`` in [0, 1]
  (``library.scale``), ``raw_score`` the mode's own value
- overlaps: ``{"a": {path, track_id, offset_s, duration_s}, "b": {...}, "length_s", "kind",
  "score", "confidence"}``, one per shared stretch
- vectors query (and ``spark query``): ``{"query", "results": [{id, distance}]}``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audiolsh.index import Hit
from audiolsh.query.identify import Identification
from audiolsh.query.overlaps import Overlap
from audiolsh.query.similar import SimilarTrack

__all__ = ["identify_record", "match_record", "overlap_record", "similar_record", "vector_record"]


def match_record(match: Identification | None) -> dict[str, Any] | None:
    """An identification as the records show it (rounded), or None for no match."""
    if match is None:
        return None
    return {
        "path": match.path,
        "track_id": int(match.track_id),
        "offset_s": round(float(match.offset_s) + 0.0, 2),  # + 0.0: no "-0.0"
        "score": round(float(match.score), 3),
        "confidence": round(float(match.confidence), 3),
        "speed": round(float(match.speed), 4),
        "tempo": round(float(match.tempo), 4),
    }


def identify_record(query: str, match: Identification | None, *,
                    elapsed_ms: float | None = None) -> dict[str, Any]:
    """One clip's identification; ``elapsed_ms`` is added when given (the caller times it)."""
    record: dict[str, Any] = {"query": query, "match": match_record(match)}
    if elapsed_ms is not None:
        record["elapsed_ms"] = round(float(elapsed_ms), 1)
    return record


def similar_record(query: str, results: Sequence[SimilarTrack], *, match: dict[str, Any] | None = None,
                   elapsed_ms: float | None = None) -> dict[str, Any]:
    """One clip's ranked similar (or least similar) tracks; ``match`` is the track the clip is
    cut from (``match_record``; for a stored track as the query, that track), which the results
    leave out unless asked to include it."""
    record: dict[str, Any] = {"query": query, "match": match, "results": [r.to_dict() for r in results]}
    if elapsed_ms is not None:
        record["elapsed_ms"] = round(float(elapsed_ms), 1)
    return record


def overlap_record(overlap: Overlap) -> dict[str, Any]:
    """One shared stretch: where it starts in each track (a has the lower track id), how long."""
    o = overlap

    def side(track_id: int, path: str, offset_s: float, duration_s: float) -> dict[str, Any]:
        return {"path": path, "track_id": int(track_id), "offset_s": round(float(offset_s) + 0.0, 2),
                "duration_s": round(float(duration_s), 2)}

    return {
        "a": side(o.track_a, o.path_a, o.offset_a_s, o.duration_a_s),
        "b": side(o.track_b, o.path_b, o.offset_b_s, o.duration_b_s),
        "length_s": round(float(o.length_s), 2),
        "kind": o.kind,
        "score": int(o.score),
        "confidence": round(float(o.confidence), 3),
    }


def vector_record(query: str, hits: Sequence[Hit]) -> dict[str, Any]:
    """One query row's nearest items: their keys and distances (rounded to 6 places)."""
    return {"query": query, "results": [{"id": h.key, "distance": round(h.distance, 6)} for h in hits]}
