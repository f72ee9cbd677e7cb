"""FingerprintIndex: identify short, distorted clips of indexed tracks by landmark hashes.

    with FingerprintIndex.create("fp.idx") as index:
        index.add("song.wav", y, sr)
        match = index.identify(clip, sr)        # Match or None (no match)

Tracks' landmarks live in immutable segments (see ``audiolsh.search.fingerprint.HashTable``),
each committed with its catalogue rows in one storage transaction; every ``session`` makes one
segment.  Removing a track deletes its catalogue row only: its hashes are filtered out at query
time and dropped when segments are compacted (too many segments, or too many dead hashes).

A query's peaks are found once; for clips played faster or slower (speed: pitch and tempo
together), time-stretched (tempo: pitch kept) or pitch-shifted (pitch: tempo kept) the peak
positions are rescaled over grids of factors before hashing, only when the unscaled attempt is
not already conclusive: first the changes up to ``near_change``, then the wider ones (also
when a conclusive answer drifts, or sits on the near stage's last grid point: a longer clip
changed more agrees with it on part of its length).
The answer is the (variant, track, offset) whose number of agreeing hashes is least likely to
happen by chance (corrected for every offset, track and variant searched); when that is not
conclusive it and the runners-up (``verify_tracks``) are recounted, each against its own track
at its refined transform (``verify_margin``, ``verify_pitch``), and the kept answer's count is
judged against its track's agreement at the alignments around its own as well as against the
track's overall rate (``background_weight``): a held chord or a repeated figure agrees at many
alignments, and one of them says little.
Its confidence is the calibrated probability that it names the right track
(``audiolsh.index.confidence``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.features.envelope import clip_z
from audiolsh.features.landmarks import (
    FP_SR,
    FRAME_S,
    HASH_BITS,
    Landmarks,
    Peaks,
    landmarks,
    noise_level,
    pair_peaks,
    pair_shifts,
    shifted_peaks,
    spectral_peaks,
)
from audiolsh.index import confidence as calibrated
from audiolsh.index import verification
from audiolsh.index.fingerprint_build import (
    CANDIDATE_TRACKS,
    FP_FORMAT,
    FP_FORMAT_VERSION,
    MIN_FORMAT_VERSION,
    NO_LOW_BITS_VERSION,
    POSTINGS_REF_HOURS,
    FingerprintParams,
    analysis,
    build_segment,
    lay_out,
)
from audiolsh.index.segments import SegmentBuild, SegmentedIndex
from audiolsh.search.fingerprint import HashTable, Votes, chance_log10, dense_diagonals, load_kernels, vote
from audiolsh.storage import SegmentInfo, Storage, Track
from audiolsh.storage.base import Writer, check_format_version

log = logging.getLogger(__name__)

__all__ = ["FP_FORMAT", "FP_FORMAT_VERSION", "FingerprintIndex", "FingerprintParams", "Match", "Segment",
           "Verdict", "build_segment"]

EMPTY_INDEX = "the index holds no track"
MAX_DRIFT = 0.006
"""An unscaled match whose offset drifts more than this (per frame) tries the speed/tempo grid."""
VERIFY_SLACK = 2
"""A recount at a refined transform looks for its alignment within +- this many frames."""
RUNNER_UP_SHARE = 0.1
"""Share of a recount's false-match budget the runners-up split (``verify_tracks`` > 1)."""
BACKGROUND_TILES = 15
"""Alignments around a recounted candidate's own, each side, in tiles of the tolerance's width:
the background its chance rate is judged against (``FingerprintParams.background_weight``)."""
RETRY_PASSES = 2
"""Searches an inconclusive clip gets with ``retry_shifts``: the factor its chance probability pays."""
ALSO_TRACKS = 3
"""Distinct tracks each search stage keeps: a clip whose audio is in several tracks (a remaster,
a compilation) names the others in ``Match.also``."""


@dataclass(frozen=True)
class Match:
    """One identification: the track, where the clip starts in it, and how sure we are.

    offset_s : position in the track (its own time) of the clip's first sample
    score : distinct hashes agreeing on the offset
    confidence : calibrated probability that the track is right (``audiolsh.index.confidence``)
    matched : the confidence reaches the default threshold (False: a weak candidate, shown
        only when asked for with a lower ``min_confidence``)
    speed : > 1 when the clip plays faster than the track (pitch and tempo together)
    tempo : > 1 when the clip is time-stretched faster with pitch kept
    pitch : > 1 when the clip is pitch-shifted up with tempo kept
    query_start_s, query_end_s : span of the clip (its own time) covered by agreeing hashes
    also : other tracks the clip matches on its own at least as surely as the threshold asks
        (the same audio in another file: a remaster, a compilation), most confident first;
        the match itself is the most confident of them all
    envelope_z : how well the clip's energy envelope agrees with the track's at the offset (a
        z-score against the track's other alignments, :func:`audiolsh.features.envelope.clip_z`),
        as the confidence weighs it; None when there was none to compare
    verified : a weak candidate's waveform correlation with its track's audio at the offset, as
        the confidence weighs it (:mod:`audiolsh.index.verification`); None when not checked (a
        confident answer, a speed change, the track's file unreadable here)
    """

    track_id: int
    path: str
    offset_s: float
    score: float
    confidence: float
    speed: float = 1.0
    tempo: float = 1.0
    n_query_hashes: int = 0
    query_start_s: float = 0.0
    query_end_s: float = 0.0
    log10_p: float = 0.0
    pitch: float = 1.0
    matched: bool = True
    clip_s: float = 0.0  # the seconds searched, as the confidence model sees them
    noise: float = 0.0  # how noise-like the clip is, as the confidence model sees it
    also: tuple[Match, ...] = ()
    envelope_z: float | None = None
    verified: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "track_id": self.track_id,
            "offset_s": self.offset_s,
            "score": self.score,
            "confidence": self.confidence,
            "matched": self.matched,
            "speed": self.speed,
            "tempo": self.tempo,
            "pitch": self.pitch,
            "also": [m.to_dict() for m in self.also],
            "verified": self.verified,
        }


@dataclass(frozen=True)
class Verdict:
    """One clip's answer: its best candidate whatever its confidence, the threshold it was held
    to, and (when it is no match) why, in the user's words."""

    best: Match | None
    min_confidence: float
    n_query_hashes: int
    reason: str | None = None

    @property
    def match(self) -> Match | None:
        """The best candidate when its confidence reaches ``min_confidence``, else None."""
        if self.best is None or self.best.confidence < self.min_confidence:
            return None
        return self.best


@dataclass(frozen=True)
class Segment:
    """A stretch ``[start_s, end_s)`` of a recording where ``match``'s track plays."""

    start_s: float
    end_s: float
    match: Match

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, **self.match.to_dict()}


@dataclass
class _Segment:
    info: SegmentInfo
    table: HashTable
    track_ids: np.ndarray  # int64 (n_tracks,)
    starts: np.ndarray  # int64 (n_tracks,), first frame of each track on the segment timeline
    frames: np.ndarray  # int64 (n_tracks,)
    per_track: np.ndarray  # int64 (n_tracks,), hashes stored for each track
    envelope: np.ndarray  # uint8, the tracks' energy envelopes end to end
    env_starts: np.ndarray  # int64 (n_tracks + 1,), each track's first block in envelope (0 blocks: none)
    sorted_postings: bool = False
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per track
    live_hashes: int = 0

    @property
    def n_live(self) -> int:
        return self.live_hashes

    @property
    def n_stored(self) -> int:
        return len(self.table)


class FingerprintSession:
    """Collects tracks and commits them as one segment in one transaction at exit."""

    def __init__(self, index: FingerprintIndex) -> None:
        self._index = index
        self._tracks: list[dict[str, Any]] = []
        self._landmarks: list[Landmarks] = []
        self.track_ids: list[int] = []

    def add_track(
        self, path: str | os.PathLike[str], *, content_hash: str, duration_s: float,
        landmarks: Landmarks, meta: dict[str, Any] | None = None,
    ) -> None:
        """Stage a track; raises ParameterError if its content is already indexed or staged."""
        path = os.fspath(path)
        if content_hash in self._index or any(t["content_hash"] == content_hash for t in self._tracks):
            raise ParameterError(f"{path}: already indexed (a track with content {content_hash} exists)")
        if not math.isclose(landmarks.frame_s, FRAME_S):
            raise ParameterError(
                f"{path}: landmarks with frame_s={landmarks.frame_s} do not fit this index ({FRAME_S})"
            )
        if not (duration_s >= 0 and math.isfinite(duration_s)):
            raise ParameterError(f"{path}: duration_s must be a finite number >= 0, got {duration_s!r}")
        self._tracks.append(
            {"path": path, "content_hash": content_hash, "duration_s": float(duration_s), "meta": meta}
        )
        self._landmarks.append(landmarks)

    def __len__(self) -> int:
        return len(self._tracks)


class FingerprintIndex(SegmentedIndex[_Segment]):
    """Open with ``FingerprintIndex.open(location)`` or make one with ``create(location, **params)``."""

    kind = "fingerprint"

    def __init__(
        self, storage: Storage, params: FingerprintParams, *, readonly: bool = False
    ) -> None:
        self.params = params
        self._live_ids = np.zeros(0, np.int64)
        self._live_frames = np.zeros(0, np.int64)
        super().__init__(storage, readonly=readonly)
        if len(self._live_ids):
            self._load_kernels()

    def _load_kernels(self) -> None:
        """Run every compiled kernel of a query once on a tiny input, with this index's array
        types: numba's first dispatch in a process sets numba up and loads the kernel from its
        cache (about a second in all), which would otherwise land on the first query."""
        y = np.random.default_rng(0).standard_normal(FP_SR // 2).astype(np.float32)
        lm = pair_peaks(spectral_peaks(y, FP_SR, density=self.params.query_density),
                        fanout=self.params.query_fanout, margin=self.params.query_margin)
        q, t = lm.hashes[:8], lm.times[:8].astype(np.int64)
        for seg in self._segments[:1] + [s for s in self._segments[1:] if s.table.low.dtype !=
                                         self._segments[0].table.low.dtype]:
            seg.table.lookup_tracks(q, seg.starts, seg.alive, max_postings=1)
            seg.table.posting_counts(q)
            seg.table.lookup_rows(q, seg.starts, seg.frames, np.zeros(1, np.int64), max_postings=1,
                                  sorted_postings=True)
            dense_diagonals(seg.table, q, t, np.zeros(len(q), np.int64), tolerance=self.params.tolerance,
                            max_postings=1)
        load_kernels()  # the lookups above may find nothing: what runs on their finds

    @classmethod
    def _new_config(cls, **params: Any) -> dict[str, Any]:
        p = FingerprintParams.from_dict(params)
        return {"kind": FP_FORMAT, "format_version": FP_FORMAT_VERSION, **analysis(), "params": asdict(p)}

    @classmethod
    def _from_config(cls, storage: Storage, data: dict[str, Any] | None, *,
                     readonly: bool) -> FingerprintIndex:
        return cls(storage, cls._check_config(data, storage.location), readonly=readonly)

    @staticmethod
    def _check_config(data: dict[str, Any] | None, path: str | os.PathLike[str]) -> FingerprintParams:
        if data is None:
            raise IndexFormatError(f"{path}: the index has no config (was its creation interrupted?)")
        if data.get("kind") != FP_FORMAT:
            raise IndexFormatError(f"{path}: not a fingerprint index")
        check_format_version(path, "fingerprint", data.get("format_version"), newest=FP_FORMAT_VERSION,
                             oldest=MIN_FORMAT_VERSION,
                             too_old="its landmarks are now picked differently (from 47 Hz);"
                                     " index the music again into a new directory")
        made = {k: data.get(k) for k in analysis()}
        if made != analysis():
            raise IndexFormatError(
                f"{path}: fingerprints were made with {made}, this audiolsh makes {analysis()}"
            )
        try:
            return FingerprintParams.from_dict(_upgrade_params(dict(data.get("params", {}))))
        except ParameterError as exc:
            raise IndexFormatError(f"{path}: bad fingerprint parameters ({exc})") from exc

    # state ------------------------------------------------------------------------------

    def _max_segments(self) -> int:
        return self.params.max_segments

    def _mark_live(self) -> None:
        live = np.array(sorted(t.id for t in self.storage.tracks()), dtype=np.int64)
        ids, frames = [], []
        for seg in self._segments:
            seg.alive = np.isin(seg.track_ids, live)
            seg.live_hashes = int(seg.per_track[seg.alive].sum())
            ids.append(seg.track_ids[seg.alive])
            frames.append(seg.frames[seg.alive])
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        all_frames = np.concatenate(frames) if frames else np.zeros(0, np.int64)
        order = np.argsort(all_ids)
        self._live_ids, self._live_frames = all_ids[order], all_frames[order]

    def _open_segment(self, info: SegmentInfo, arrays: dict[str, np.ndarray]) -> _Segment:
        if info.config.get("kind") != FP_FORMAT or info.config.get("hash_bits") != HASH_BITS:
            raise IndexFormatError(f"segment {info.id}: not a fingerprint segment of this format")
        check_format_version(f"segment {info.id}", "fingerprint segment",
                             info.config.get("format_version", 1), newest=FP_FORMAT_VERSION)
        table = HashTable.from_arrays(arrays, hash_bits=HASH_BITS)
        starts = np.asarray(arrays["track_starts"], np.int64)
        if "track_hashes" in arrays:
            per_track = np.asarray(arrays["track_hashes"], np.int64)
        else:  # segments of older versions: count once, reading every position
            tix = np.searchsorted(starts, table.pos.astype(np.int64), side="right") - 1
            per_track = np.bincount(tix, minlength=len(starts))
        # Version-3 segments have no envelope: each of their tracks has 0 blocks.
        blocks = np.asarray(arrays.get("track_blocks", np.zeros(len(starts), np.int64)), np.int64)
        envelope = np.asarray(arrays.get("envelope", np.zeros(0, np.uint8)), np.uint8)
        env_starts = np.concatenate([[0], np.cumsum(blocks)]).astype(np.int64)
        if len(per_track) != len(starts) or len(blocks) != len(starts) or env_starts[-1] != len(envelope):
            raise IndexFormatError(f"segment {info.id}: track arrays of different lengths")
        return _Segment(
            info, table, np.asarray(arrays["track_ids"], np.int64), starts,
            np.asarray(arrays["track_frames"], np.int64), per_track, envelope, env_starts,
            sorted_postings=bool(info.config.get("sorted_postings", False)),
        )

    def __len__(self) -> int:
        self._refresh()
        return len(self._live_ids)

    def __contains__(self, content_hash: object) -> bool:
        return isinstance(content_hash, str) and self.storage.track_by_hash(content_hash) is not None

    def tracks(self) -> list[Track]:
        return self.storage.tracks()

    def track_by_hash(self, content_hash: str) -> Track | None:
        return self.storage.track_by_hash(content_hash)

    def n_hashes(self) -> int:
        """Hashes of the live tracks (counted per segment as it loads: cheap)."""
        self._refresh()
        return sum(s.live_hashes for s in self._segments)

    def info(self) -> dict[str, Any]:
        n_live = self.n_hashes()
        tracks = self.storage.tracks()
        duration = float(sum(t.duration_s or 0.0 for t in tracks))
        index_bytes = sum(
            s.table.nbytes + s.track_ids.nbytes + s.starts.nbytes + s.frames.nbytes + s.envelope.nbytes
            + s.env_starts.nbytes for s in self._segments
        )
        n_stored = sum(len(s.table) for s in self._segments)
        no_envelope = sum(int(np.sum((np.diff(s.env_starts) == 0) & s.alive)) for s in self._segments)
        return {
            "location": self.storage.location,
            "format_version": FP_FORMAT_VERSION,
            "n_tracks": len(tracks),
            "n_hashes": n_live,
            "n_dead_hashes": n_stored - n_live,
            "n_tracks_without_envelope": no_envelope,
            "n_segments": len(self._segments),
            "index_bytes": int(index_bytes),
            "duration_s": duration,
            "bytes_per_hour": index_bytes / (duration / 3600) if duration > 0 else 0.0,
            "hashes_per_s": n_live / duration if duration > 0 else 0.0,
            "analysis": analysis(),
            "params": asdict(self.params),
        }

    def track_frames(self) -> tuple[np.ndarray, np.ndarray]:
        """The live tracks' ids (sorted) and their lengths in frames of ``FRAME_S``, int64 each."""
        self._refresh()
        return self._live_ids.copy(), self._live_frames.copy()

    def landmark_chunks(self, n_chunks: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every live landmark as (track ids int64, anchor frames int64, hashes uint32), in
        ``n_chunks`` consecutive ranges of hash value: all entries of one hash value come in one
        chunk, so a join by hash can run chunk by chunk (or partition by partition)."""
        self._refresh()
        segments = list(self._segments)  # one state for every chunk
        for chunk in range(_check_chunks(n_chunks)):
            yield _landmarks(segments, *_hash_range(chunk, n_chunks))

    def landmark_chunk(self, chunk: int, n_chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk ``chunk`` of ``landmark_chunks(n_chunks)`` alone (a task reads its own)."""
        if not (isinstance(chunk, int) and 0 <= chunk < _check_chunks(n_chunks)):
            raise ParameterError(f"chunk must be an integer in [0, {n_chunks}), got {chunk!r}")
        self._refresh()
        return _landmarks(list(self._segments), *_hash_range(chunk, n_chunks))

    # writing ----------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[FingerprintSession]:
        """``with index.session() as s: s.add_track(...)``: one segment, one commit at exit."""
        self._check_writable()
        s = FingerprintSession(self)
        yield s
        if len(s):
            s.track_ids = self._commit(s)

    def add(
        self, path: str | os.PathLike[str], y: np.ndarray, sr: float, *,
        content_hash: str | None = None, meta: dict[str, Any] | None = None,
    ) -> int:
        """Fingerprint ``y`` (mono, any ``sr``) and commit it as one track; returns its id."""
        y = np.asarray(y)
        if content_hash is None:
            digest = hashlib.sha1(np.ascontiguousarray(y, np.float32).tobytes()).hexdigest()
            content_hash = f"pcm-sha1:{digest}"
        lm = landmarks(y, sr, density=self.params.density, fanout=self.params.fanout)
        with self.session() as s:
            s.add_track(path, content_hash=content_hash, duration_s=len(y) / sr, landmarks=lm, meta=meta)
        return s.track_ids[0]

    def _commit(self, s: FingerprintSession) -> list[int]:
        return self.attach([build_segment(s._tracks, s._landmarks)])[0]

    def _config_for(self, info: SegmentInfo) -> dict[str, Any] | None:
        # An audiolsh that reads version 4 at most would open such an index and fail on the
        # segment's arrays; with the index's version raised it says "upgrade audiolsh".
        if info.config.get("high_bits") != HASH_BITS:
            return None
        stored = self.storage.config()
        if stored is None or stored.get("format_version", 0) >= NO_LOW_BITS_VERSION:
            return None
        return {**stored, "format_version": NO_LOW_BITS_VERSION}

    def _bind(self, w: Writer, build: SegmentBuild, track_ids: list[int]) -> dict[str, np.ndarray]:
        # Built elsewhere with the tracks' local numbers 0..n-1; the ids exist only now.
        local = np.asarray(build.arrays["track_ids"], np.int64)
        return {**build.arrays, "track_ids": np.asarray(track_ids, np.int64)[local]}

    def remove_track(self, track_id: int) -> None:
        """Remove a track now; its hashes are skipped at query time until compaction drops them."""
        self._check_writable()
        if self.storage.track(track_id) is None:
            raise ParameterError(f"no track with id {track_id}")
        with self.storage.write() as w:
            w.remove_track(track_id)
        self._after_write()

    def _merge(self, chosen: Sequence[_Segment]) -> SegmentBuild | None:
        # Tracks in id order: a merge of many segments gives what one build of them would.
        tids, frames, hashes, times, owner, envelopes = [], [], [], [], [], []
        base = 0
        for seg in chosen:
            tix = np.searchsorted(seg.starts, seg.table.pos.astype(np.int64), side="right") - 1
            keep = seg.alive[tix]
            remap = np.cumsum(seg.alive) - 1 + base
            hashes.append(seg.table.hashes()[keep])
            times.append(seg.table.pos[keep].astype(np.int64) - seg.starts[tix[keep]])
            owner.append(remap[tix[keep]])
            tids.append(seg.track_ids[seg.alive])
            frames.append(seg.frames[seg.alive])
            envelopes += [seg.envelope[seg.env_starts[r]:seg.env_starts[r + 1]]
                          for r in np.flatnonzero(seg.alive)]
            base += int(seg.alive.sum())
        if not base:
            return None
        track_ids = np.concatenate(tids)
        order = np.argsort(track_ids, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        info, arrays = lay_out(track_ids[order], np.concatenate(frames)[order], np.concatenate(hashes),
                                np.concatenate(times), rank[np.concatenate(owner)],
                                [envelopes[i] for i in order])
        return SegmentBuild(info, arrays)

    # queries ----------------------------------------------------------------------------

    def _variants(self, search_speed: bool) -> list[tuple[float, float, float]]:
        """(speed, tempo, pitch) triples: the unscaled query first, then the grids."""
        out = [(1.0, 1.0, 1.0)]
        if search_speed:
            p = self.params
            out += [(float(s), 1.0, 1.0) for s in p.speed_grid]
            out += [(1.0, float(t), 1.0) for t in p.tempo_grid]
            out += [(1.0, 1.0, float(f)) for f in p.pitch_grid]
        return out

    def _stages(self, variants: list[tuple[float, float, float]]) -> list[tuple[list[int], float]]:
        """The variants tried in turn (the unscaled query, changes up to ``near_change``, the
        rest), each stage with the factor its chance probability is multiplied by.

        A union bound over stages: stage k gets a share w_k of the false-match budget
        (sum 1) and tests n_k variants, so its factor is n_k / w_k.  The unscaled query keeps
        the share it had before the far stage existed (1 / (1 + n_near)); near and far split
        the rest, so adding far variants costs the common cases nothing.
        """
        near = self.params.near_change
        stage1 = [g for g in range(1, len(variants)) if max(abs(x - 1) for x in variants[g]) <= near + 1e-9]
        stage2 = [g for g in range(1, len(variants)) if g not in stage1]
        w0 = 1.0 / (1 + len(stage1))
        rest = [s for s in (stage1, stage2) if s]
        out = [([0], 1.0 / w0 if rest else 1.0)]
        out += [(s, len(s) * len(rest) / (1.0 - w0)) for s in rest]
        return out

    def _posting_cap(self, seg: _Segment) -> int:
        """``max_postings`` for a segment: grows with its length past ``POSTINGS_REF_HOURS``."""
        cap = self.params.max_postings
        if cap <= 0:
            return 0
        ref_frames = POSTINGS_REF_HOURS * 3600 / FRAME_S
        return max(cap, int(cap * float(seg.frames.sum()) / ref_frames))

    def _match_hashes(
        self, hashes: np.ndarray, q_times: np.ndarray, q_group: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Look ``hashes`` up in every segment: (query index, track id, track frame) per match;
        narrowed to a few candidate tracks when they would gather over ``max_matches``."""
        caps = [self._posting_cap(seg) for seg in self._segments]
        if self.params.max_matches > 0:
            counts = [seg.table.posting_counts(hashes) for seg in self._segments]
            capped = [np.where((c <= cap) | (cap <= 0), c, 0) for c, cap in zip(counts, caps)]
            if sum(int(c.sum()) for c in capped) > self.params.max_matches:
                return self._match_narrowed(hashes, q_times, q_group, capped, caps)
        found = [seg.table.lookup_tracks(hashes, seg.starts, seg.alive, max_postings=cap)
                 for seg, cap in zip(self._segments, caps)]
        return self._gathered(found)

    def _match_narrowed(
        self, hashes: np.ndarray, q_times: np.ndarray, q_group: np.ndarray,
        counts: list[np.ndarray], caps: list[int],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Two stages whose cost does not grow with the collection: each variant's rarest
        hashes (the most informative, the cheapest) find the densest diagonals (clip starts),
        whose tracks are the candidates; every hash of the variant is then looked up in its
        candidate tracks alone, so each candidate gets exactly the matches (and the chance
        model) a full lookup would give it."""
        total = np.sum(counts, axis=0)
        groups = np.unique(q_group)
        per_group = max(1, CANDIDATE_TRACKS // len(groups))
        budget = self.params.stage_one_matches
        sel = _rarest(total, q_group, budget)
        found: list[tuple[int, int, int, int]] = []  # (-count, segment, group, track row)
        middle = int(q_times.max()) // 2 if len(q_times) else 0
        for i, (seg, cap) in enumerate(zip(self._segments, caps)):
            grp, diag, count = dense_diagonals(seg.table, hashes[sel], q_times[sel], q_group[sel],
                                             tolerance=self.params.tolerance, max_postings=cap)
            rows = np.searchsorted(seg.starts, diag + middle, side="right") - 1
            rows = np.clip(rows, 0, len(seg.starts) - 1)
            ok = seg.alive[rows]
            found += zip((-count[ok]).tolist(), [i] * int(ok.sum()), grp[ok].tolist(), rows[ok].tolist())
        chosen: dict[int, list[tuple[int, int]]] = {}
        for _, i, g, row in sorted(found):
            picks = chosen.setdefault(g, [])
            if len(picks) < per_group and (i, row) not in picks:
                picks.append((i, row))
        out = []
        members = {g: np.flatnonzero(q_group == g) for g in chosen}
        for i, (seg, cap) in enumerate(zip(self._segments, caps)):
            for g, picks in chosen.items():
                rows = np.array(sorted(r for s, r in picks if s == i), np.int64)
                if not len(rows):
                    continue
                mine = members[g]
                qidx, tix, frame = seg.table.lookup_rows(
                    hashes[mine], seg.starts, seg.frames, rows, max_postings=cap,
                    sorted_postings=seg.sorted_postings)
                out.append((mine[qidx], seg.track_ids[tix], frame))
        if not out:
            z = np.zeros(0, np.int64)
            return z, z, z
        return tuple(np.concatenate(x) for x in zip(*out))  # type: ignore[return-value]

    def _gathered(
        self, found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-segment (query index, track row, frame) as one (query index, track id, frame)."""
        parts = [(q, seg.track_ids[t], f) for seg, (q, t, f) in zip(self._segments, found) if len(q)]
        if not parts:
            z = np.zeros(0, np.int64)
            return z, z, z
        return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]

    def _query_peaks(self, y: np.ndarray, sr: float, shifts: int = 0, *,
                     spectrum: bool = False) -> list[Peaks]:
        """A query's peaks at ``query_density``, from ``shifts`` (0: ``query_shifts``) sub-hop
        start offsets (``spectrum``: the first with its magnitude frames)."""
        shifts = shifts or self.params.query_shifts
        return shifted_peaks(y, sr, density=self.params.query_density, shifts=shifts, levels=True,
                             spectrum=spectrum)

    def _retried(
        self, peaks: list[Peaks], again: Callable[[], list[Peaks]] | None, *, search_speed: bool,
        others: list[tuple[Votes, float, tuple[float, float, float]]] | None = None,
    ) -> tuple[Votes | None, float, tuple[float, float, float], int]:
        """:meth:`_search` of ``peaks``; when it is inconclusive and ``retry_shifts`` exceeds
        ``query_shifts``, :meth:`_search` of ``again()`` (the clip's ``retry_shifts`` analyses)
        too, the more significant answer kept.  Both answers were looked at, so the kept one
        pays a factor ``RETRY_PASSES``: a negative gains nothing from the second look but its
        own luck.  ``others``: filled as :meth:`_search` fills it, for the answer kept."""
        first: list[tuple[Votes, float, tuple[float, float, float]]] = []
        found = self._search(peaks, search_speed=search_speed, others=first)
        p = self.params
        if again is None or p.retry_shifts <= p.query_shifts or found[1] < math.log10(p.early_stop):
            if others is not None:
                others[:] = first
            return found
        second_others: list[tuple[Votes, float, tuple[float, float, float]]] = []
        second = self._search(again(), search_speed=search_speed, others=second_others)
        if second[0] is not None and (found[0] is None or second[1] < found[1]):
            found, first = second, second_others
        if others is not None:
            others[:] = [(v, lp + math.log10(RETRY_PASSES), t) for v, lp, t in first]
        v, log_p, transform, n_hashes = found
        return v, log_p + math.log10(RETRY_PASSES), transform, n_hashes

    def _search(
        self, peaks: list[Peaks], *, search_speed: bool,
        others: list[tuple[Votes, float, tuple[float, float, float]]] | None = None,
    ) -> tuple[Votes | None, float, tuple[float, float, float], int]:
        """Best votes over the variants of a query's peaks (one entry per sub-hop shift, their
        landmarks united): (votes, corrected log10 p, (speed, tempo, pitch), n hashes).
        ``others`` (when given) gets the best votes of the other tracks seen, with their
        corrected log10 p and transform."""
        variants = self._variants(search_speed)
        q_frames = peaks[0].n_frames
        width = 2 * self.params.tolerance + 1
        log_cells = math.log10(max(float(np.sum(self._live_frames + q_frames)) / width, 1.0))
        best: tuple[Votes | None, float, tuple[float, float, float], int] = (None, 0.0, (1.0, 1.0, 1.0), 0)
        n_hashes = 0
        # The best few tracks over every stage, for the recount: track -> (votes, corrected
        # log10 p, transform, the corrections it paid).
        pool: dict[int, tuple[Votes, float, tuple[float, float, float], float]] = {}
        searched: set[int] = set()
        for batch, factor in self._stages(variants):
            # Every variant of the stage hashed in one pass; groups numbered within the stage
            # (vote packs them in a few bits).
            scales = [(s * t, 1.0 / (s * f)) for s, t, f in (variants[g] for g in batch)]
            margins = [self.params.query_margin if g == 0 else self.params.grid_margin for g in batch]
            hashes, q_times, q_group = pair_shifts(
                peaks, np.array(scales), fanout=self.params.query_fanout, margins=np.array(margins),
                dt_spread=self.params.query_dt_spread)
            if batch == [0]:
                n_hashes = len(hashes)
            qidx, tids, tframes = self._match_hashes(hashes, q_times, q_group)
            top = vote(
                qidx, q_times, q_group, hashes, tids, tframes,
                track_frames=(self._live_ids, self._live_frames), q_frames=q_frames,
                tolerance=self.params.tolerance,
                dispersion=self.params.dispersion if batch == [0] else self.params.grid_dispersion,
                n_tracks=max(self.params.verify_tracks, ALSO_TRACKS),
            )
            corrections = log_cells + math.log10(factor)
            for rank, v in enumerate(top):
                v = replace(v, group=batch[v.group])
                log_p = v.log10_p + log_cells + math.log10(factor)
                if v.track_id not in pool or log_p < pool[v.track_id][1]:
                    pool[v.track_id] = (v, log_p, variants[v.group], corrections)
                if rank == 0 and (best[0] is None or log_p < best[1]):
                    best = (v, log_p, variants[v.group], n_hashes)
            v0 = best[0]
            searched.update(batch)
            # Stop once the answer is conclusive and fits its variant: its offset does not drift,
            # and the grid goes no further its way (a clip played 5 % slower also agrees,
            # conclusively at 10 s, with the 4 % grid point that ends the near stage).
            if (v0 is not None and best[1] < math.log10(self.params.early_stop)
                    and abs(v0.drift) < MAX_DRIFT and not _on_edge(best[2], variants, searched)):
                break
        inconclusive = best[1] >= math.log10(self.params.early_stop)
        if self.params.verify_margin > 0 and best[0] is not None and inconclusive:
            first = best[0].track_id
            tried = sorted(pool.values(), key=lambda c: (c[1], c[0].track_id != first))
            best = self._verified(peaks, best, tried[: self.params.verify_tracks])
        if others is not None and best[0] is not None:
            answer = best[0].track_id
            others[:] = sorted(((v, lp, t) for v, lp, t, _ in pool.values() if v.track_id != answer),
                               key=lambda c: c[1])
        return best

    def _verified(
        self, peaks: list[Peaks], found: tuple[Votes | None, float, tuple[float, float, float], int],
        candidates: list[tuple[Votes, float, tuple[float, float, float], float]],
    ) -> tuple[Votes | None, float, tuple[float, float, float], int]:
        """The best few ``candidates`` of an inconclusive search recounted, each against its own
        track at its own transforms (see :meth:`_recount`); the most significant recount is kept
        when it beats ``found``.  Each recount pays again the corrections its search paid (the
        offsets of every track, its stage's factor) and a weighted union bound over the recounts
        tried (transforms times alignments): the best candidate keeps most of the budget, the
        runners-up split ``RUNNER_UP_SHARE``, so they win only on much stronger evidence."""
        plans = [(v, corrections, self._transforms(v, transform))
                 for v, _, transform, corrections in candidates]
        tries = [len(t) * (2 * VERIFY_SLACK + 1) for _, _, t in plans]
        share = RUNNER_UP_SHARE if len(plans) > 1 else 0.0
        factors = [tries[0] / (1.0 - share)] + [sum(tries[1:]) / max(share, 1e-12)] * (len(plans) - 1)
        out = found
        # (chance rate, background rate) of the kept answer's track, from its recount; the
        # search's own answer takes its track's first recount's (the same track, first in plans)
        rates: tuple[float, float] | None = None
        for i, ((v, corrections, transforms), factor) in enumerate(zip(plans, factors)):
            for transform in transforms:
                recount = self._recount(peaks, v, transform)
                if recount is None:
                    continue
                count, offset, lam, raw, background = recount
                if i == 0 and rates is None:
                    rates = (lam, background)
                lp = raw + (corrections + math.log10(factor))
                if lp < out[1]:
                    out = (replace(v, count=count, offset=offset, log10_p=lp - corrections, lam=lam),
                           lp, transform, found[3])
                    rates = (lam, background)
        return self._judged_on_background(out, rates)

    def _judged_on_background(
        self, found: tuple[Votes | None, float, tuple[float, float, float], int],
        rates: tuple[float, float] | None,
    ) -> tuple[Votes | None, float, tuple[float, float, float], int]:
        """``found`` with its chance probability taken at a rate of at least ``background_weight``
        times the agreement its track shows around the alignment (never more significant)."""
        v, log_p, transform, n_hashes = found
        w = self.params.background_weight
        if v is None or rates is None or w <= 0:
            return found
        lam, background = rates
        if w * background <= lam:
            return found
        base, local = chance_log10(np.array([v.count, v.count]), np.array([lam, w * background]),
                                   dispersion=self._dispersion(transform)).tolist()
        extra = max(local - base, 0.0)
        return replace(v, log10_p=v.log10_p + extra), log_p + extra, transform, n_hashes

    def _dispersion(self, transform: tuple[float, float, float]) -> float:
        """The chance model's dispersion for an answer at ``transform`` (grid variants: clumpier)."""
        return self.params.dispersion if transform == (1.0, 1.0, 1.0) else self.params.grid_dispersion

    def _transforms(
        self, v: Votes, transform: tuple[float, float, float]
    ) -> list[tuple[float, float, float]]:
        """Where a candidate is recounted: its transform, the speed or tempo refined by the
        offset drift (a clip between two grid points, 1 % at most); a pitch shift's neighbours
        ``verify_pitch`` too (its drift says nothing of frequency)."""
        speed, tempo, pitch = transform
        # Speed moves time and frequency together, tempo time alone; a pitch shift or an
        # unscaled match keeps its grid point (their drift is noise at these lengths).
        rate = 1.0 + float(np.clip(v.drift, -0.01, 0.01))
        if speed != 1.0:
            speed *= rate
        elif tempo != 1.0:
            tempo *= rate
        out = [(speed, tempo, pitch)]
        if pitch != 1.0:
            out += [(speed, tempo, pitch * f) for f in self.params.verify_pitch]
        return out

    def _recount(
        self, peaks: list[Peaks], v: Votes, transform: tuple[float, float, float]
    ) -> tuple[int, int, float, float, float] | None:
        """``v`` recounted against its own track alone: the query re-hashed at ``transform``
        with the wider ``verify_margin``, looked up in that one track, and the distinct hashes
        agreeing within a few frames of its offset counted.  (count, offset, chance rate,
        uncorrected log10 p, background: the mean count of the ``2 BACKGROUND_TILES``
        alignments around it); None when the track is gone."""
        p = self.params
        speed, tempo, pitch = transform
        q_hashes, q_times, _ = pair_shifts(peaks, np.array([[speed * tempo, 1.0 / (speed * pitch)]]),
                                           fanout=p.verify_fanout or p.query_fanout,
                                           margins=np.array([p.verify_margin]), dt_spread=p.query_dt_spread)
        q_times = q_times.astype(np.int64)
        offsets, hashes, lam = [], [], 0.0
        for seg, cap in zip(self._segments, (self._posting_cap(seg) for seg in self._segments)):
            rows = np.flatnonzero((seg.track_ids == v.track_id) & seg.alive)
            if not len(rows):
                continue
            qidx, _, frame = seg.table.lookup_rows(q_hashes, seg.starts, seg.frames, rows, max_postings=cap,
                                                   sorted_postings=seg.sorted_postings)
            offsets.append(frame - q_times[qidx])
            hashes.append(q_hashes[qidx])
            lam += len(qidx) * (2 * p.tolerance + 1) / float(seg.frames[rows[0]] + peaks[0].n_frames)
        if not offsets:
            return None
        off, h = np.concatenate(offsets), np.concatenate(hashes)
        # The refined scale may move the alignment by a frame or two: the best nearby window.
        centres = v.offset + np.arange(-VERIFY_SLACK, VERIFY_SLACK + 1)
        counts = [len(np.unique(h[np.abs(off - c) <= p.tolerance])) for c in centres.tolist()]
        k = int(np.argmax(counts))
        lp = float(chance_log10(np.array([counts[k]]), np.array([lam]),
                                dispersion=self._dispersion(transform))[0])
        return counts[k], int(centres[k]), lam, lp, _background(off - centres[k], h, p.tolerance)

    @property
    def calibration(self) -> calibrated.Calibration:
        return calibrated.load()

    @staticmethod
    def _calibration_for(envelope_z: float | None) -> calibrated.Calibration:
        """The calibration of a candidate: with its envelope's evidence, or the fit made without."""
        return calibrated.load(calibrated.DEFAULT if envelope_z is not None else calibrated.WITHOUT_ENVELOPE)

    def _envelope_z(self, track_id: int, offset: int, transform: tuple[float, float, float],
                    spectrum: np.ndarray | None) -> float | None:
        """:func:`~audiolsh.features.envelope.clip_z` of a clip's magnitude frames against
        ``track_id``'s envelope, the clip's first frame on the track's frame ``offset``; None
        without the frames or the envelope (a track of a version-3 segment)."""
        if spectrum is None or not len(spectrum):
            return None
        for seg in self._segments:
            rows = np.flatnonzero((seg.track_ids == track_id) & seg.alive)
            if not len(rows):
                continue
            a, b = seg.env_starts[rows[0]], seg.env_starts[rows[0] + 1]
            if b <= a:
                return None
            speed, tempo, pitch = transform
            return clip_z(spectrum, seg.envelope[a:b], offset_frames=float(offset), time_scale=speed * tempo,
                          freq_scale=speed * pitch)
        return None

    def _scored(self, found: tuple[Votes, float, tuple[float, float, float], int], q_frames: int,
                noise: float, spectrum: np.ndarray | None) -> tuple[float, float | None]:
        """A candidate's calibrated confidence and its envelope z (None: not compared)."""
        v, log_p, transform, n_hashes = found
        z = self._envelope_z(v.track_id, v.offset, transform, spectrum)
        cal = self._calibration_for(z)
        return cal.confidence(log_p, v.count, n_hashes, q_frames * FRAME_S, noise, 0.0 if z is None else z), z

    @property
    def default_min_confidence(self) -> float:
        """The no-match threshold when none is given: the calibration's default."""
        return self.calibration.default_min_confidence

    def _candidate(
        self, found: tuple[Votes | None, float, tuple[float, float, float], int], q_frames: int,
        noise: float, spectrum: np.ndarray | None = None, scored: tuple[float, float | None] | None = None,
    ) -> Match | None:
        """The best candidate of a search, with its calibrated confidence (None: no vote at all);
        ``noise``: the clip's :func:`~audiolsh.features.landmarks.noise_level`; ``spectrum``: its
        magnitude frames, to compare its energy envelope with the track's; ``scored``: its
        :meth:`_scored` when already known."""
        v, log_p, (speed, tempo, pitch), n_hashes = found
        if v is None:
            return None
        track = self.storage.track(v.track_id)
        if track is None:  # removed since the refresh
            return None
        confidence, z = scored or self._scored((v, log_p, (speed, tempo, pitch), n_hashes), q_frames, noise,
                                               spectrum)
        cal = self._calibration_for(z)
        scale = speed * tempo
        return Match(
            track_id=v.track_id, path=track.path, offset_s=v.offset * FRAME_S, score=float(v.count),
            confidence=confidence, speed=speed, tempo=tempo, pitch=pitch, n_query_hashes=n_hashes,
            query_start_s=v.q_first / scale * FRAME_S, query_end_s=(v.q_last + 1) / scale * FRAME_S,
            log10_p=log_p, matched=confidence >= cal.default_min_confidence, clip_s=q_frames * FRAME_S,
            noise=noise, envelope_z=z,
        )

    def _verdict(self, best: Match | None, n_hashes: int, min_confidence: float | None) -> Verdict:
        cal = self.calibration if best is None else self._calibration_for(best.envelope_z)
        floor = cal.default_min_confidence if min_confidence is None else min_confidence
        reason = None
        if best is None or best.confidence < floor:
            if n_hashes < cal.hashes_needed:
                reason = (f"too few landmarks: {n_hashes} hashes, about {cal.hashes_needed} needed"
                          " for a confident match")
            elif best is None:
                reason = "no hash of the clip agrees with an indexed track"
            else:
                reason = f"best candidate below --min-confidence ({best.confidence:.3f} < {floor:g})"
        return Verdict(best, floor, n_hashes, reason)

    def assess(
        self, y: np.ndarray, sr: float, *, min_confidence: float | None = None, search_speed: bool = True,
        verify: bool = True,
    ) -> Verdict:
        """A clip's best candidate, whether it is a match at ``min_confidence`` (default: the
        calibration's), and the reason when it is not.  ``verify``: a weak candidate is checked
        against its track's audio when its file can be read (:mod:`audiolsh.index.verification`)."""
        self._refresh()
        if not len(self._live_ids):
            return Verdict(None, 1.0, 0, EMPTY_INDEX)
        peaks = self._query_peaks(y, sr, spectrum=True)
        others: list[tuple[Votes, float, tuple[float, float, float]]] = []
        found = self._retried(peaks, lambda: self._query_peaks(y, sr, self.params.retry_shifts),
                              search_speed=search_speed, others=others)
        noise = noise_level(peaks[0])
        spectrum = peaks[0].spectrum
        best = self._candidate(found, peaks[0].n_frames, noise, spectrum)
        if best is not None and others:
            best = self._most_confident(best, others, found[3], peaks[0].n_frames, noise, min_confidence,
                                        spectrum)
        if best is not None and verify:
            best = self._checked_against_audio(best, y, sr)
        return self._verdict(best, found[3], min_confidence)

    def _checked_against_audio(self, m: Match, y: np.ndarray, sr: float) -> Match:
        """A weak candidate at the track's own speed, its confidence given its waveform
        correlation with the track's file there (unchanged when the file cannot be read)."""
        if m.matched or not verification.checkable(m.speed, m.tempo, m.pitch):
            return m
        span = verification.window(len(y) / sr, m.query_start_s, m.query_end_s)
        ncc = verification.correlation(y, sr, m.path, m.offset_s, span)
        if ncc is None:
            return m
        confidence = verification.load().confidence(m.confidence, ncc, span[1] - span[0])
        cal = self._calibration_for(m.envelope_z)
        return replace(m, confidence=confidence, matched=confidence >= cal.default_min_confidence,
                       verified=round(ncc, 4))

    def _most_confident(
        self, best: Match, others: list[tuple[Votes, float, tuple[float, float, float]]], n_hashes: int,
        q_frames: int, noise: float, min_confidence: float | None, spectrum: np.ndarray | None = None,
    ) -> Match:
        """``best`` or, when another track the clip matches on its own is surer by its landmarks
        (the same audio in a second file: the exact copy agreeing on more hashes than a remaster
        the search put first), that track; the others that match are listed in ``also``.
        Only tracks at the threshold asked for and never below the default are considered,
        so a low --min-confidence does not list every weak candidate."""
        def floor(z: float | None) -> float:  # each candidate's own calibration's default
            return max(self._calibration_for(z).default_min_confidence, min_confidence or 0.0)

        clip_s = q_frames * FRAME_S
        alone, full = calibrated.load(calibrated.WITHOUT_ENVELOPE), calibrated.load(calibrated.DEFAULT)
        sure = []
        for v, lp, t in others:  # scored before any catalogue read
            # Most others cannot reach the threshold even with the best envelope: not compared.
            if (full.confidence(lp, v.count, n_hashes, clip_s, noise, calibrated.ENVELOPE_Z_CAP) < floor(0.0)
                    and alone.confidence(lp, v.count, n_hashes, clip_s, noise) < floor(None)):
                continue
            scored = self._scored((v, lp, t, n_hashes), q_frames, noise, spectrum)
            if scored[0] >= floor(scored[1]):
                sure.append(((v, lp, t, n_hashes), scored))
        also = [m for c, scored in sure
                if (m := self._candidate(c, q_frames, noise, spectrum, scored)) is not None]
        if not also:
            return best
        # Ranked by their landmarks' evidence alone: the envelope cannot tell copies of the same
        # audio apart (a loop's repeat lowers its z).  Stable: a tie keeps the search's pick.
        ranked = sorted([best, *also], key=lambda m: -alone.confidence(m.log10_p, m.score, m.n_query_hashes,
                                                                       m.clip_s, m.noise))
        return replace(ranked[0], also=tuple(m for m in ranked[1:] if m.confidence >= floor(m.envelope_z)))

    def identify(
        self, y: np.ndarray, sr: float, *, min_confidence: float | None = None, search_speed: bool = True,
        threshold: float | None = None,
    ) -> Match | None:
        """The track a clip (mono ``y`` at ``sr``) comes from, or None when the evidence is weak
        (``threshold``: the earlier name of ``min_confidence``)."""
        floor = threshold if min_confidence is None else min_confidence
        return self.assess(y, sr, min_confidence=floor, search_speed=search_speed).match

    def identify_segments(
        self, y: np.ndarray, sr: float, *, window_s: float = 10.0, hop_s: float = 5.0,
        min_confidence: float | None = None, search_speed: bool = True, max_gap_s: float = 1.0,
    ) -> list[Segment]:
        """Which track plays when in a long recording, from overlapping windows of it.

        Consecutive windows matching the same track at a consistent alignment (within
        ``max_gap_s``) merge into one Segment, spanning the hashes that agreed.  With
        ``retry_shifts`` an inconclusive window is searched again from that many analyses of
        the recording (made at the first such window).
        """
        again: list[list[Peaks]] = []

        def retry_peaks() -> list[Peaks]:
            if not again:
                again.append(self._query_peaks(y, sr, self.params.retry_shifts))
            return again[0]

        return self._windowed(self._query_peaks(y, sr), retry_peaks,
                              window_s=window_s, hop_s=hop_s, min_confidence=min_confidence,
                              search_speed=search_speed, max_gap_s=max_gap_s)

    def segments_of_peaks(
        self, peaks: Peaks | list[Peaks], *, window_s: float = 10.0, hop_s: float = 5.0,
        min_confidence: float | None = None, search_speed: bool = True, max_gap_s: float = 1.0,
    ) -> list[Segment]:
        """:meth:`identify_segments` of a recording's spectral peaks at ``params.query_density``
        (picked while it streams, so a recording of hours is never held whole; a list: those of
        each sub-hop shift, as :meth:`_query_peaks` gives them).  No window is searched again
        (``retry_shifts``): a stream's peaks are of one analysis."""
        shifts = [peaks] if isinstance(peaks, Peaks) else list(peaks)
        return self._windowed(shifts, None, window_s=window_s, hop_s=hop_s, min_confidence=min_confidence,
                              search_speed=search_speed, max_gap_s=max_gap_s)

    def _windowed(
        self, shifts: list[Peaks], again: Callable[[], list[Peaks]] | None, *, window_s: float,
        hop_s: float, min_confidence: float | None, search_speed: bool, max_gap_s: float,
    ) -> list[Segment]:
        """:meth:`segments_of_peaks`; an inconclusive window is searched again in the same
        window of ``again()``, the recording's ``retry_shifts`` analyses (None: never)."""
        if not (window_s > 0 and hop_s > 0):
            raise ParameterError(f"window_s and hop_s must be positive, got {window_s!r}, {hop_s!r}")
        self._refresh()
        if not len(self._live_ids):
            return []
        win = max(1, round(window_s / FRAME_S))
        hop = max(1, round(hop_s / FRAME_S))
        n_frames = shifts[0].n_frames
        starts = range(0, max(n_frames - win, 0) + 1, hop)
        runs: list[tuple[float, float, float, Match]] = []  # start_s, end_s, origin_s, match
        for start in starts:
            span = min(win, n_frames - start)
            sub = [p.window(start, span) for p in shifts]
            retry = None if again is None else partial(_windows, again, start, span)
            others: list[tuple[Votes, float, tuple[float, float, float]]] = []
            found = self._retried(sub, retry, search_speed=search_speed, others=others)
            noise = noise_level(sub[0])
            best = self._candidate(found, sub[0].n_frames, noise)
            if best is not None and others:  # the track a clip of this window would name
                best = replace(self._most_confident(best, others, found[3], sub[0].n_frames, noise,
                                                    min_confidence), also=())
            m = self._verdict(best, found[3], min_confidence).match
            if m is None:
                continue
            w0 = start * FRAME_S
            rate = m.speed * m.tempo
            origin = m.offset_s - w0 * rate  # track time at recording time 0
            begin, end = w0 + m.query_start_s, w0 + m.query_end_s
            if runs:
                b0, e0, o0, m0 = runs[-1]
                if m0.track_id == m.track_id and abs(origin - o0) <= max_gap_s and begin <= e0 + max_gap_s:
                    keep, o_keep = (m0, o0) if m0.confidence >= m.confidence else (m, origin)
                    runs[-1] = (min(b0, begin), max(e0, end), o_keep,
                                replace(keep, score=m0.score + m.score))
                    continue
            runs.append((begin, end, origin, m))
        return [
            Segment(b, e, replace(m, offset_s=o + b * m.speed * m.tempo)) for b, e, o, m in runs
        ]


_OLD_GRIDS = {"speed_grid": [0.99, 1.01, 0.98, 1.02, 0.97, 1.03], "tempo_grid": [0.98, 1.02, 0.96, 1.04]}
"""The default grids stored by indexes made before the pitch grid existed."""


_OLD_MAX_MATCHES = 400_000
"""The default ``max_matches`` stored by indexes made before ``stage_one_matches`` existed."""
_OLD_STAGE_ONE_SHARE = 8
"""Those indexes' first stage gathered ``max_matches / _OLD_STAGE_ONE_SHARE`` matches."""


def _upgrade_params(params: dict[str, Any]) -> dict[str, Any]:
    """Migrate query-time settings on open (the hashes are alike): an index made before the
    pitch grid that kept the default grids of its day searches today's wider defaults; one
    made before ``stage_one_matches`` keeps the first stage its ``max_matches`` gave, and if
    that was the default of its day it narrows from today's default."""
    if "pitch_grid" not in params:
        for name, old in _OLD_GRIDS.items():
            if params.get(name) == old:
                del params[name]
    if "stage_one_matches" not in params and "max_matches" in params:
        old = params["max_matches"]
        if isinstance(old, int) and old > 0:
            params["stage_one_matches"] = max(1, old // _OLD_STAGE_ONE_SHARE)
        if old == _OLD_MAX_MATCHES:
            del params["max_matches"]
    return params


def _on_edge(transform: tuple[float, float, float], variants: list[tuple[float, float, float]],
             searched: set[int]) -> bool:
    """Whether the next grid point beyond ``transform``, of its kind (speed, tempo or pitch) and
    in its direction, is yet to be searched."""
    for k, f in enumerate(transform):
        if f != 1.0:
            ahead = [g for g, v in enumerate(variants)
                     if v[k] != 1.0 and (v[k] - 1.0) * (f - 1.0) > 0 and abs(v[k] - 1.0) > abs(f - 1.0)]
            return bool(ahead) and min(ahead, key=lambda g: abs(variants[g][k] - 1.0)) not in searched
    return False


def _background(d: np.ndarray, h: np.ndarray, tolerance: int) -> float:
    """Mean distinct hashes agreeing per tile of ``2 tolerance + 1`` alignments, over
    ``BACKGROUND_TILES`` tiles each side of alignment 0 beyond a gap that keeps the candidate's
    own window and its neighbours out; ``d`` the matches' alignments relative to it, ``h``
    their hashes."""
    width = 2 * tolerance + 1
    gap = 2 * tolerance + 2
    side = np.abs(d) - gap
    tile = side // width
    ok = (side >= 0) & (tile < BACKGROUND_TILES)
    tile = tile[ok] + BACKGROUND_TILES * (d[ok] < 0)
    pairs = np.unique(tile.astype(np.int64) << HASH_BITS | h[ok].astype(np.int64))
    return len(pairs) / (2 * BACKGROUND_TILES)


def _windows(shifts: Callable[[], list[Peaks]], start: int, n_frames: int) -> list[Peaks]:
    """:meth:`Peaks.window` of each of ``shifts()``."""
    return [p.window(start, n_frames) for p in shifts()]


def _rarest(total: np.ndarray, q_group: np.ndarray, budget: int) -> np.ndarray:
    """Each group's hashes with postings, rarest first (ties in query order), while their
    postings add up to ``budget`` (at least one a group): their indices, sorted."""
    live = np.flatnonzero(total > 0)
    # One stable sort of (group, postings) packed in an int64: twice as fast as a lexsort.
    key = q_group[live].astype(np.int64) * (int(total.max(initial=0)) + 1) + total[live]
    order = live[np.argsort(key, kind="stable")]
    g = q_group[order]
    head = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]])) if len(order) else np.zeros(0, np.int64)
    cum = np.cumsum(total[order])
    before = np.repeat(cum[head] - total[order[head]], np.diff(np.append(head, len(order))))
    keep = cum - before <= budget
    keep[head] = True
    return np.sort(order[keep])


def _first_entry(table: HashTable, h: int) -> int:
    """Index of the first entry of ``table`` whose hash is >= ``h`` (len(table) past the end)."""
    if h >= 1 << table.hash_bits:
        return len(table)
    bucket = h >> table.low_bits
    a, b = int(table.indptr[bucket]), int(table.indptr[bucket + 1])
    low = h & ((1 << table.low_bits) - 1)
    return a + int(np.searchsorted(table.low_of(a, b), low, side="left"))


def _check_chunks(n_chunks: int) -> int:
    if not (isinstance(n_chunks, int) and n_chunks >= 1):
        raise ParameterError(f"n_chunks must be a positive integer, got {n_chunks!r}")
    return n_chunks


def _hash_range(chunk: int, n_chunks: int) -> tuple[int, int]:
    """[h0, h1): the hash values of chunk ``chunk`` of ``n_chunks``."""
    return (chunk << HASH_BITS) // n_chunks, ((chunk + 1) << HASH_BITS) // n_chunks


def _landmarks(segments: list[_Segment], h0: int, h1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The live landmarks of ``segments`` with hash values in [h0, h1): (track ids int64,
    anchor frames int64, hashes uint32)."""
    tids, frames, hashes = [], [], []
    for seg in segments:
        table = seg.table
        e0, e1 = _first_entry(table, h0), _first_entry(table, h1)
        if e0 == e1:
            continue
        pos = table.pos[e0:e1].astype(np.int64)
        tix = np.searchsorted(seg.starts, pos, side="right") - 1
        keep = seg.alive[tix]
        bucket = np.searchsorted(table.indptr, np.arange(e0, e1), side="right") - 1
        high = bucket.astype(np.uint32) << np.uint32(table.low_bits)
        h = high | table.low_of(e0, e1)
        tids.append(seg.track_ids[tix[keep]])
        frames.append(pos[keep] - seg.starts[tix[keep]])
        hashes.append(h[keep])
    if tids:
        return np.concatenate(tids), np.concatenate(frames), np.concatenate(hashes)
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint32)
