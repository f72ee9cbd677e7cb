"""What is this: a clip identified against a library, with the method chosen.

``landmarks`` is the fingerprint engine (``audiolsh.index.fingerprint``).  The two seed methods are
kept for comparison, each with the offset check its original lacked: hits only count when
they agree on where in the track the clip starts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.ingest import analyse
from audiolsh.library import Library
from audiolsh.similarity import hit_arrays

log = logging.getLogger(__name__)

METHODS = ("landmarks", "chroma-vote", "minhash-peaks")
VOTE_BIN_S = 0.5
VOTES_PER_FRAME = 5
#: Share of query frames (chroma) or best Jaccard (peaks) needed to call it a match.
DEFAULT_THRESHOLDS = {"chroma-vote": 0.2, "minhash-peaks": 0.15}
METHOD_MODES = {"landmarks": "fingerprint", "chroma-vote": "chroma", "minhash-peaks": "peaks"}


@dataclass(frozen=True)
class Identification:
    track_id: int
    path: str
    offset_s: float
    score: float
    confidence: float
    speed: float = 1.0
    tempo: float = 1.0
    method: str = "landmarks"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_method(library: Library, method: str) -> None:
    if method not in METHODS:
        raise ParameterError(f"--method must be one of {list(METHODS)}, got {method!r}")
    mode = METHOD_MODES[method]
    if mode not in library.modes:
        raise ParameterError(
            f"{library.path}: the library was built without the {mode} mode that {method} needs"
        )


def identify(library: Library, y: np.ndarray, sr: int, *, method: str = "landmarks",
             threshold: float | None = None) -> Identification | None:
    """The track a clip comes from and where it starts in it, or None for no match."""
    check_method(library, method)
    if method == "landmarks":
        assert library.fingerprint is not None
        m = library.fingerprint.identify(y, sr, threshold=threshold)
        if m is None:
            return None
        lib_id = int(library.resolve_tracks("fingerprint", np.array([m.track_id]))[0])
        if lib_id < 0:
            return None  # a track removed, or not yet complete in every mode
        track = library.track(lib_id)
        return Identification(lib_id, track.path if track else m.path, float(m.offset_s),
                              float(m.score), float(m.confidence), float(m.speed),
                              float(m.tempo), method)
    cfg = library.config
    mode = METHOD_MODES[method]
    clip = analyse(y, sr, modes=(mode,), window_s=cfg.window_s, hop_s=cfg.hop_s)
    limit = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    if method == "chroma-vote":
        assert clip.chroma_frames is not None
        frames, q_times = clip.chroma_frames
        name, n_votes = "chroma_frames", VOTES_PER_FRAME
        data: Any = frames
    else:
        assert clip.peaks is not None
        data, q_times = library.peak_sets(clip.peaks[0]), clip.peaks[1]
        name, n_votes = "peaks", 10
    index = library.indexes[name]
    if len(q_times) == 0 or len(index) == 0:
        return None
    res = index.query(data, min(n_votes, len(index)))
    rows, tracks, offsets, dist = hit_arrays(library, name, res)
    keep = (tracks >= 0) & np.isfinite(offsets)
    if not keep.any():
        return None
    rows, tracks, offsets, dist = rows[keep], tracks[keep], offsets[keep], dist[keep]
    starts = offsets - np.asarray(q_times, np.float64)[rows]
    bin_s = VOTE_BIN_S if method == "chroma-vote" else cfg.hop_s
    bins = np.round(starts / bin_s).astype(np.int64)
    weight = np.ones(len(bins)) if method == "chroma-vote" else 1.0 - dist
    pairs, inverse = np.unique(np.stack([tracks, bins], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    votes = np.bincount(inverse, weights=weight)
    best = int(np.argmax(votes))
    in_best = inverse == best
    if method == "chroma-vote":
        # Each query frame counts once for the winning (track, start).
        confidence = len(np.unique(rows[in_best])) / len(q_times)
        score = float(votes[best])
    else:
        confidence = float(np.max(weight[in_best]))
        score = confidence
    if confidence < limit:
        return None
    track_id = int(pairs[best, 0])
    track = library.track(track_id)
    return Identification(track_id, track.path if track else "?",
                          round(float(np.median(starts[in_best])), 3), round(score, 4),
                          round(float(min(confidence, 1.0)), 4), method=method)
