"""What is this: a clip identified against a library, with the method chosen.

``landmarks`` is the fingerprint engine (``audiolsh.index.fingerprint``).  The two seed methods are
kept for comparison, each with the offset check its original lacked: hits only count when
they agree on where in the track the clip starts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from audiolsh.errors import AudioError, ParameterError
from audiolsh.index.fingerprint import EMPTY_INDEX, Match
from audiolsh.library import Library, analyse
from audiolsh.query.hits import search

log = logging.getLogger(__name__)

METHODS = ("landmarks", "chroma-vote", "minhash-peaks")
MIN_CLIP_S = 1.0
"""The shortest clip identification searches: shorter is an error, anything longer gets an
answer (an honest no match, with its reason, when the evidence is too thin)."""
VOTE_BIN_S = 0.5
VOTES_PER_FRAME = 5
#: Share of query frames (chroma) or best Jaccard (peaks) needed to call it a match.
DEFAULT_THRESHOLDS = {"chroma-vote": 0.2, "minhash-peaks": 0.15}
#: The library mode each method searches.
METHOD_MODES = {"landmarks": "fingerprint", "chroma-vote": "chroma_frames", "minhash-peaks": "peaks"}
VOTES = {"chroma-vote": VOTES_PER_FRAME, "minhash-peaks": 10}


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
    #: the confidence reaches the default threshold (False: a weak candidate asked for)
    matched: bool = True
    #: > 1 when the clip is pitch-shifted up with tempo kept
    pitch: float = 1.0
    #: other tracks holding the same audio, matched as surely (a remaster, a compilation)
    also: tuple[Identification, ...] = ()
    #: a weak candidate's waveform correlation with its track's file (None: not checked)
    verified: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_method(library: Library, method: str) -> None:
    if method not in METHODS:
        raise ParameterError(f"--method must be one of {list(METHODS)}, got {method!r}")
    library.mode(METHOD_MODES[method])


def identify(library: Library, y: np.ndarray, sr: int, *, method: str = "landmarks",
             threshold: float | None = None, min_confidence: float | None = None,
             verify: bool = True) -> Identification | None:
    """The track a clip comes from and where it starts in it, or None for no match."""
    return identify_clip(library, y, sr, method=method, threshold=threshold, min_confidence=min_confidence,
                         verify=verify)[0]


def identify_clip(library: Library, y: np.ndarray, sr: int, *, method: str = "landmarks",
                  threshold: float | None = None, min_confidence: float | None = None,
                  name: str | os.PathLike[str] = "the clip", verify: bool = True,
                  ) -> tuple[Identification | None, str | None]:
    """:func:`identify` and, when it is no match (or a weak candidate), why.

    landmarks: ``min_confidence`` (or ``threshold``) is the calibrated probability below which a
    candidate is no match (default: the calibration's operating point; 0: always the best
    candidate); ``verify``: a weak candidate is checked against its track's audio file when
    this machine can read it (:mod:`audiolsh.index.verification`).  A clip in which no landmark is
    found raises AudioError naming ``name``.
    """
    check_method(library, method)
    if method == "landmarks":
        assert library.fingerprint is not None
        floor = threshold if min_confidence is None else min_confidence
        verdict = library.fingerprint.assess(y, sr, min_confidence=floor, verify=verify)
        if verdict.n_query_hashes == 0 and verdict.reason != EMPTY_INDEX:
            raise AudioError(name, "no landmarks found (silence, or no distinct sound): nothing to identify")
        m = verdict.match
        found = None if m is None else _in_library(library, m, method)
        reason = verdict.reason
        if found is not None and not found.matched:
            reason = (f"below threshold: confidence {found.confidence:.3f} <"
                      f" {library.fingerprint.default_min_confidence:g} (the default --min-confidence)")
        if reason is not None and verdict.best is not None and verdict.best.verified is not None:
            reason += f"; checked against the track's audio there: correlation {verdict.best.verified:.2f}"
        return found, reason
    return _seed_identify(library, y, sr, method, threshold if min_confidence is None else min_confidence)


def _seed_identify(library: Library, y: np.ndarray, sr: int, method: str,
                   threshold: float | None) -> tuple[Identification | None, str | None]:
    """A seed method's answer and, when it is none, why (``threshold``: the share of the clip's
    frames, or the similarity, below which the best candidate is no match; 0 shows it)."""
    cfg = library.config
    mode = library.mode(METHOD_MODES[method])
    clip = analyse(y, sr, modes=mode.needs, window_s=cfg.window_s, hop_s=cfg.hop_s)
    limit = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    data, q_times = mode.rows_of(library.state(), clip)
    n_items = len(library.index(mode.name))
    if n_items == 0:
        return None, EMPTY_INDEX
    if len(q_times) == 0:
        return None, f"the clip gave no {mode.name.replace('_', ' ')} to compare"
    hits = search(library, mode.name, data, min(VOTES[method], n_items))
    hits = hits.take((hits.tracks >= 0) & np.isfinite(hits.offsets))
    if not len(hits):
        return None, "no stored passage is near the clip's"
    rows, tracks, offsets, dist = hits.rows, hits.tracks, hits.offsets, hits.distances
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
        return None, f"best candidate below --threshold ({confidence:.3f} < {limit:g})"
    track_id = int(pairs[best, 0])
    track = library.track(track_id)
    return Identification(track_id, track.path if track else "?",
                          round(float(np.median(starts[in_best])), 3), round(score, 4),
                          round(float(min(confidence, 1.0)), 4), method=method), None


def _in_library(library: Library, m: Match, method: str = "landmarks") -> Identification | None:
    """A fingerprint match as the library names it (None: a track removed, or not yet complete
    in every mode)."""
    lib_id = int(library.resolve_tracks("fingerprint", np.array([m.track_id]))[0])
    if lib_id < 0:
        return None
    track = library.track(lib_id)
    also = tuple(a for a in (_in_library(library, o, method) for o in m.also) if a is not None)
    return Identification(lib_id, track.path if track else m.path, float(m.offset_s),
                          float(m.score), float(m.confidence), float(m.speed),
                          float(m.tempo), method, bool(m.matched), float(m.pitch), also, m.verified)


def identify_segments(library: Library, y: np.ndarray, sr: int, *, min_confidence: float | None = None
                      ) -> list[tuple[float, float, Identification]]:
    """Which library track plays when in a long recording: (start_s, end_s, identification)."""
    check_method(library, "landmarks")
    assert library.fingerprint is not None
    found = library.fingerprint.identify_segments(y, sr, min_confidence=min_confidence)
    return _named_segments(library, found)


def identify_segments_file(library: Library, path: str | os.PathLike[str], *, offset_s: float = 0.0,
                           duration_s: float | None = None, min_duration_s: float = 0.0,
                           max_duration_s: float | None = None, min_confidence: float | None = None,
                           ) -> list[tuple[float, float, Identification]]:
    """:func:`identify_segments` of a file, decoded and analysed as it streams: memory holds a
    block of audio and the recording's spectral peaks, not the recording (a radio hour, a DJ
    mix); times are from ``offset_s``."""
    from audiolsh.audio.stream import SignalStats, excerpt_blocks, stream_blocks
    from audiolsh.errors import AudioError
    from audiolsh.features.stream_peaks import Fingerprint
    from audiolsh.library.extract import SAMPLE_RATE

    check_method(library, "landmarks")
    fp = library.fingerprint
    assert fp is not None
    stream = Fingerprint(SAMPLE_RATE, density=fp.params.query_density, levels=True)
    stats = SignalStats(SAMPLE_RATE)
    blocks = stream_blocks(path, sr=SAMPLE_RATE, min_duration_s=min_duration_s,
                           max_duration_s=max_duration_s, stats=stats)
    pushed = 0
    for y in excerpt_blocks(blocks, sr=SAMPLE_RATE, offset_s=offset_s, duration_s=duration_s):
        stream.push(y)
        pushed += len(y)
    if not pushed:
        raise AudioError(path, f"the offset {offset_s:g} s is past the end ({stats.duration_s:.1f} s)")
    return _named_segments(library, fp.segments_of_peaks(stream.peaks(), min_confidence=min_confidence))


def _named_segments(library: Library, segments: Any) -> list[tuple[float, float, Identification]]:
    out = []
    for seg in segments:
        found = _in_library(library, seg.match)
        if found is not None:
            out.append((seg.start_s, seg.end_s, found))
    return out
