"""The JSON objects of one query, shared by the CLI's json/jsonl output and the REST API.

Both interfaces build their records here so that they cannot drift apart:

- identify: ``{"query", "match": null | {path, track_id, title, artist, offset_s, score,
  confidence, matched, speed, tempo, pitch, verified, also}, "reason"?, "elapsed_ms"}``;
  ``confidence`` is the probability that the track is right, ``matched`` false for a candidate
  below the default threshold (shown at a lower ``--min-confidence``), ``verified`` a weak
  candidate's waveform correlation with its track's file (null: not checked), ``also`` the other
  tracks holding the same audio, matched as surely (each as the match, without ``also``),
  ``reason`` why there is no (confident) match
- identify --segments: ``{"query", "segments": [{start_s, end_s, path, track_id, title, artist,
  offset_s, confidence, matched}]}``, one per stretch of the recording that one track plays
- similar: ``{"query", "match": null | {path, track_id, title, artist, ...}, "results":
  [{track_id, path, title, artist, score, rank, offset_s, query_offset_s, raw_score}],
  "reason"? (the command line's: why --worst has no track left), "elapsed_ms"}``; ``score`` in
  [0, 1] (``library.scale``), ``raw_score`` the mode's own value
- overlaps: ``{"a": {path, track_id, title, artist, offset_s, duration_s}, "b": {...},
  "length_s", "kind", "score", "confidence"}``, one per shared stretch
- a track described (``info --tracks``, the library page): ``track_record``
- vectors query (and ``spark query``): ``{"query", "results": [{id, distance}]}``
- clusters: ``{"cluster", "size", "members": [{track_id, path, distance}]}``, clusters numbered
  from 1 as the library page numbers its groups (a vector index's members: ``{id, item_id,
  distance}``, ``id`` being the item's key as in vectors query)

Every track is named by ``title`` (its tag, else the file name) and ``artist`` (its tag, else
null) beside its absolute ``path`` (``library.tags.record_fields``); the caller passes the
library whose catalogue holds the tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from audiolsh.index import Hit
from audiolsh.library.tags import record_fields
from audiolsh.query.clusters import Clustering
from audiolsh.query.identify import Identification
from audiolsh.query.overlaps import Overlap
from audiolsh.query.similar import SimilarTrack

__all__ = ["cluster_records", "identify_record", "match_record", "named", "overlap_record", "segment_record",
           "similar_record", "track_record", "vector_record", "vector_records"]


class Catalogue(Protocol):
    """What records need of a library: its tracks by id (for their tags)."""

    def track(self, track_id: int) -> Any: ...


def named(record: dict[str, Any], library: Catalogue | None) -> dict[str, Any]:
    """``record`` (with ``track_id`` and ``path``) with ``title`` and ``artist`` after both."""
    track = None if library is None else library.track(int(record["track_id"]))
    return _after(record, ("path", "track_id"), record_fields(track, str(record["path"])))


def track_record(track: Any) -> dict[str, Any]:
    """A catalogue track described: its row with every tag field after ``path``."""
    d = track.to_dict()
    return _after({"track_id": d.pop("id"), **d}, ("path",), record_fields(track, track.path, described=True))


def _after(record: dict[str, Any], keys: tuple[str, ...], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` inserted after the last of ``keys`` in ``record``."""
    order = list(record)
    at = max(order.index(k) for k in keys if k in record) + 1
    return {**{k: record[k] for k in order[:at]}, **fields,
            **{k: record[k] for k in order[at:]}}


def match_record(match: Identification | None, library: Catalogue | None = None) -> dict[str, Any] | None:
    """An identification as the records show it (rounded), or None for no match."""
    if match is None:
        return None
    return named({
        "path": match.path,
        "track_id": int(match.track_id),
        "offset_s": round(float(match.offset_s) + 0.0, 2),  # + 0.0: no "-0.0"
        "score": round(float(match.score), 3),
        "confidence": round(float(match.confidence), 3),
        "matched": bool(match.matched),
        "speed": round(float(match.speed), 4),
        "tempo": round(float(match.tempo), 4),
        "pitch": round(float(match.pitch), 4),
        "verified": None if match.verified is None else round(float(match.verified), 3),
        "also": [_without_also(match_record(a, library)) for a in match.also],
    }, library)


def _without_also(record: dict[str, Any] | None) -> dict[str, Any]:
    assert record is not None
    record.pop("also")
    return record


def identify_record(query: str, match: Identification | None, *, library: Catalogue | None = None,
                    elapsed_ms: float | None = None, reason: str | None = None) -> dict[str, Any]:
    """One clip's identification; ``reason`` (why no confident match) and ``elapsed_ms`` are
    added when given (the caller times it)."""
    record: dict[str, Any] = {"query": query, "match": match_record(match, library)}
    if reason is not None:
        record["reason"] = reason
    if elapsed_ms is not None:
        record["elapsed_ms"] = round(float(elapsed_ms), 1)
    return record


_NOT_IN_SEGMENTS = ("score", "speed", "tempo", "pitch", "verified", "also")


def segment_record(start_s: float, end_s: float, match: Identification, *,
                   offset_s: float = 0.0, library: Catalogue | None = None) -> dict[str, Any]:
    """One stretch of a long recording and the track playing in it (``offset_s``: where the
    analysed part starts in the recording, added to the stretch's times)."""
    m = match_record(match, library)
    assert m is not None
    return {"start_s": round(float(start_s) + offset_s, 2), "end_s": round(float(end_s) + offset_s, 2),
            **{key: v for key, v in m.items() if key not in _NOT_IN_SEGMENTS}}


def similar_record(query: str, results: Sequence[SimilarTrack], *, match: dict[str, Any] | None = None,
                   library: Catalogue | None = None, elapsed_ms: float | None = None) -> dict[str, Any]:
    """One clip's ranked similar (or least similar) tracks; ``match`` is the track the clip is
    cut from (``match_record``; for a stored track as the query, that track), which the results
    leave out unless asked to include it."""
    record: dict[str, Any] = {"query": query, "match": match,
                              "results": [named(r.to_dict(), library) for r in results]}
    if elapsed_ms is not None:
        record["elapsed_ms"] = round(float(elapsed_ms), 1)
    return record


def overlap_record(overlap: Overlap, library: Catalogue | None = None) -> dict[str, Any]:
    """One shared stretch: where it starts in each track (a has the lower track id), how long."""
    o = overlap

    def side(track_id: int, path: str, offset_s: float, duration_s: float) -> dict[str, Any]:
        return named({"path": path, "track_id": int(track_id), "offset_s": round(float(offset_s) + 0.0, 2),
                      "duration_s": round(float(duration_s), 2)}, library)

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


def vector_records(queries: Sequence[str], keys: Sequence[str | None],
                   distances: np.ndarray) -> list[dict[str, Any]]:
    """``vector_record`` of every query row from the keys of its answers (row-major, k a row;
    None: no answer, skipped; ``Index.keys`` of a query's ids) and their (queries, k) distances."""
    out = []
    for row, (query, dists) in enumerate(zip(queries, rounded(distances))):
        row_keys = keys[row * len(dists): (row + 1) * len(dists)]
        out.append({"query": query, "results": [
            {"id": key, "distance": d} for key, d in zip(row_keys, dists) if key is not None]})
    return out


def rounded_array(distances: np.ndarray) -> np.ndarray:
    """Distances rounded to 6 places, all at once: ``round``'s values but at exact half-way
    products (none in 10^6 random float32 or float64 distances), since the quotient of two
    exact doubles is the double nearest the decimal, as ``round`` returns."""
    return np.round(np.asarray(distances, np.float64), 6)


def rounded(distances: np.ndarray) -> list[list[float]]:
    """``rounded_array`` as lists of floats."""
    return rounded_array(distances).tolist()  # type: ignore[no-any-return]


def cluster_records(result: Clustering, *, library: bool) -> list[dict[str, Any]]:
    """The groups, numbered from 1, members nearest the centre first; a library's members are
    tracks, a vector index's are items."""
    def member(i: int) -> dict[str, Any]:
        ident = ({"track_id": int(result.ids[i]), "path": result.names[i]} if library
                 else {"id": result.names[i], "item_id": int(result.ids[i])})
        return {**ident, "distance": round(float(result.distances[i]), 4)}

    return [{"cluster": c + 1, "size": len(members), "members": [member(i) for i in members]}
            for c, members in enumerate(result.groups())]
