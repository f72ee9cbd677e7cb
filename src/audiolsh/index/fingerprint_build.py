"""Fingerprint index parameters and the build of one segment: tracks laid end to end on one
frame timeline, their landmark hashes in a ``HashTable``.

``build_segment`` is pure, so a segment can be built in any process and attached to an index,
which numbers its tracks then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features.landmarks import (
    DENSITY,
    FANOUT,
    FP_SR,
    FRAME_S,
    HASH_BITS,
    HOP_LENGTH,
    N_FFT,
    QUERY_DENSITY,
    QUERY_FANOUT,
    QUERY_MARGIN,
    Landmarks,
)
from audiolsh.index.segments import SegmentBuild
from audiolsh.search.fingerprint import HashTable
from audiolsh.storage import SegmentInfo

FP_FORMAT = "audiolsh-fingerprint"
FP_FORMAT_VERSION = 5
"""Version of the fingerprint segments and config; bumped when either changes meaning.
2: peaks picked on a time-smoothed spectrogram (version-1 hashes no longer match queries).
3: peaks picked down to 47 Hz, the bass included (version-2 hashes no longer match queries).
4: each track's energy envelope beside its hashes (``envelope``, ``track_blocks``); version-3
segments are read as they are, their tracks without one (confidence as before for them).
5: a segment with a bucket per hash value keeps no low hash bits (``low`` empty; version 4 kept
a zero an entry, 1 byte in 5, in every segment of a hundred hours and more)."""
MIN_FORMAT_VERSION = 3
"""Oldest version this audiolsh reads; older indexes must be rebuilt."""
NO_LOW_BITS_VERSION = 5
"""The first version that reads a segment without low hash bits: an index of an older version
is raised to it when such a segment is written into it."""
POSTINGS_REF_HOURS = 8.0
"""Segment length up to which ``max_postings`` applies as it is (the length it was tuned at)."""
CANDIDATE_TRACKS = 4
"""Tracks a narrowed search (see ``FingerprintParams.max_matches``) verifies with every hash
(for a batch of speed/tempo variants: this many in all, at least 1 per variant)."""

@dataclass
class FingerprintParams:
    """Build-time (density, fanout) and query-time knobs of a fingerprint index.

    density, fanout : peaks per second and pairs per peak stored for each track
    query_density, query_fanout : the same for queries (denser, so noise costs fewer matches)
    tolerance : offsets (frames of 32 ms) within +- this count as agreeing
    dispersion : quasi-Poisson factor of the chance model (calibrated on unindexed clips)
    grid_dispersion : the same for speed/tempo variants, larger: a rescaled query can line up
        with the beat grid of a similar-sounding track, so chance agreement is clumpier there
    query_margin : queries also hash quantities this close to a rounding boundary both ways
    query_shifts : a query is analysed from this many start offsets a fraction of a hop apart
        and their landmarks united (1: once; the clip's frames fall anywhere within a hop of
        the track's), so more pairs come out as the index has them; the chance model pays
        for the extra hashes (each track's matches set its chance rate); the shipped
        calibration is fitted with the default
    retry_shifts : when the search of ``query_shifts`` analyses ends inconclusive (corrected
        chance probability above ``early_stop``), search again from this many sub-hop
        analyses and keep the more significant answer, both paying a factor 2 for the second
        look (never when at most ``query_shifts``); conclusive clips are searched once; the
        shipped calibration is fitted with the default
    query_dt_spread : queries also hash every pair with its time step this many frames longer
        and shorter (0: none; reverb delays one peak of a pair by a frame)
    max_postings : query hashes stored more often than this are not looked up (0: all); in a
        segment longer than ``POSTINGS_REF_HOURS`` the cap grows with its length, so it keeps
        skipping the same share of common hashes rather than nearly all of them
    max_matches : a query variant batch whose lookups would gather more matches than this
        (a large collection; from a few hours on, the batches of speed and pitch variants) is
        narrowed: its rarest hashes pick ``CANDIDATE_TRACKS`` tracks, which are then searched
        with every hash (0: never narrow)
    stage_one_matches : how many matches a narrowed search's rarest hashes gather per
        variant batch to pick its candidates (more: surer picks, slower)
    threshold : the former no-match threshold (1 - corrected chance probability), kept so that
        indexes made before calibrated confidence open; the default threshold is now the
        calibration's (``audiolsh.index.confidence``)
    speed_grid, tempo_grid, pitch_grid : factors tried when the unscaled query is not
        conclusive (pitch: frequencies scaled, tempo kept)
    near_change : variants changing nothing by more than this are tried before the others
    grid_margin : ``query_margin`` of the grid's variants (a factor between two grid points
        moves peaks by up to half a step)
    early_stop : stop trying variants once the corrected chance probability is below this
        (and the answer's offset does not drift, nor could the next grid point its way fit better)
    verify_margin, verify_fanout : an inconclusive best candidate is recounted against its own
        track alone, the query re-hashed at the candidate's refined transform (its offset drift
        folded into the time scale) with this margin and fanout (margin 0: no recount; fanout 0:
        ``query_fanout``); its corrected chance probability keeps the search's corrections
        (the shipped calibration is fitted with the default; another setting needs a refit)
    verify_tracks : how many distinct tracks, best first, an inconclusive search recounts so;
        the most significant recount wins, each paying for the recounts tried
    verify_pitch : factors around a pitch-shift candidate's (a clip between grid points) also
        recounted, the best kept, paid for the same way (empty: its grid point alone)
    background_weight : chance agreement is not spread evenly along a track (a held chord or a
        repeated figure draws matches at many alignments), so a recounted candidate's count is
        also judged against its track's agreement at the alignments around its own (about
        2.5 s either side): its chance rate is at least this share of that background's mean
        (0: the track's overall rate alone; the shipped calibration is fitted with the default)
    max_segments : merge segments beyond this many
    """

    density: float = DENSITY
    fanout: int = FANOUT
    query_density: float = QUERY_DENSITY
    query_fanout: int = QUERY_FANOUT
    query_margin: float = QUERY_MARGIN
    query_shifts: int = 1
    retry_shifts: int = 2
    query_dt_spread: int = 0
    tolerance: int = 2
    dispersion: float = 3.5
    grid_dispersion: float = 5.0
    threshold: float = 0.999
    speed_grid: list[float] = field(default_factory=lambda: [
        0.99, 1.01, 0.98, 1.02, 0.97, 1.03, 0.96, 1.04, 0.95, 1.05, 0.94, 1.06, 0.93, 1.07, 0.92, 1.08])
    tempo_grid: list[float] = field(default_factory=lambda: [0.98, 1.02, 0.96, 1.04, 0.94, 1.06, 0.92, 1.08])
    # A semitone each way (2 ** (1 / 12), 5.9 %): a grid step off by 0.4 % moves the top bins by one.
    pitch_grid: list[float] = field(default_factory=lambda: [0.98, 1.02, 0.96, 1.04, 0.9439, 1.0595])
    near_change: float = 0.04
    grid_margin: float = 0.1
    early_stop: float = 1e-6
    verify_margin: float = 0.3
    verify_fanout: int = 0
    verify_tracks: int = 1
    verify_pitch: list[float] = field(default_factory=list)
    background_weight: float = 0.25
    max_segments: int = 8
    max_postings: int = 48
    max_matches: int = 100_000
    stage_one_matches: int = 50_000

    def validate(self) -> FingerprintParams:
        grid = [*self.speed_grid, *self.tempo_grid, *self.pitch_grid]
        near = sum(abs(f - 1) <= self.near_change + 1e-9 for f in grid)
        checks = [
            ("density", self.density > 0), ("query_density", self.query_density > 0),
            ("fanout", isinstance(self.fanout, int) and 1 <= self.fanout <= 64),
            ("query_fanout", isinstance(self.query_fanout, int) and 1 <= self.query_fanout <= 64),
            ("query_margin", 0 <= self.query_margin < 0.5),
            ("query_shifts", isinstance(self.query_shifts, int) and 1 <= self.query_shifts <= 8),
            ("retry_shifts", isinstance(self.retry_shifts, int) and 0 <= self.retry_shifts <= 8),
            ("query_dt_spread", isinstance(self.query_dt_spread, int) and 0 <= self.query_dt_spread <= 2),
            ("grid_margin", 0 <= self.grid_margin < 0.5),
            ("tolerance", isinstance(self.tolerance, int) and 0 <= self.tolerance <= 16),
            ("dispersion", self.dispersion >= 1), ("grid_dispersion", self.grid_dispersion >= 1),
            ("threshold", 0 <= self.threshold <= 1),
            ("early_stop", 0 < self.early_stop < 1),
            ("verify_margin", 0 <= self.verify_margin < 0.5),
            ("verify_fanout", isinstance(self.verify_fanout, int) and 0 <= self.verify_fanout <= 64),
            ("verify_tracks", isinstance(self.verify_tracks, int) and 1 <= self.verify_tracks <= 16),
            ("verify_pitch", len(self.verify_pitch) <= 8
             and all(0.9 < f < 1.1 and f != 1 for f in self.verify_pitch)),
            ("background_weight", 0 <= self.background_weight <= 4),
            ("max_segments", isinstance(self.max_segments, int) and self.max_segments >= 1),
            ("max_postings", isinstance(self.max_postings, int) and self.max_postings >= 0),
            ("max_matches", isinstance(self.max_matches, int) and self.max_matches >= 0),
            ("stage_one_matches", isinstance(self.stage_one_matches, int) and self.stage_one_matches >= 1),
            ("speed_grid", all(0.5 < f < 2 and f != 1 for f in self.speed_grid)),
            ("tempo_grid", all(0.5 < f < 2 and f != 1 for f in self.tempo_grid)),
            ("pitch_grid", all(0.5 < f < 2 and f != 1 for f in self.pitch_grid)),
            ("near_change", 0 <= self.near_change < 1),
            ("grid", max(near, len(grid) - near) < 31),  # variants per stage: vote packs 5 bits
        ]
        for name, ok in checks:
            if not ok:
                value = getattr(self, name, None)
                raise ParameterError(f"fingerprint parameter {name} is out of range: {value!r}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FingerprintParams:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ParameterError(f"unknown fingerprint parameters {sorted(unknown)}")
        return cls(**data).validate()


def analysis() -> dict[str, Any]:
    return {"fp_sr": FP_SR, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "hash_bits": HASH_BITS}



def build_segment(tracks: Sequence[dict[str, Any]], marks: Sequence[Landmarks]) -> SegmentBuild:
    """One segment of tracks (``add_track`` fields: path, content_hash, duration_s, meta) and
    their landmarks: pure, so it can be built in any process and ``attach``-ed to an index,
    which numbers the tracks then."""
    frames = [
        max(math.ceil(t["duration_s"] / FRAME_S), int(lm.times.max()) + 1 if len(lm) else 0)
        for t, lm in zip(tracks, marks)
    ]
    info, arrays = lay_out(
        np.arange(len(tracks), dtype=np.int64), np.asarray(frames, np.int64),
        np.concatenate([lm.hashes for lm in marks]) if marks else np.zeros(0, np.uint32),
        np.concatenate([lm.times for lm in marks]).astype(np.int64) if marks else np.zeros(0, np.int64),
        np.repeat(np.arange(len(tracks)), [len(lm) for lm in marks]),
        [_NO_ENVELOPE if lm.envelope is None else lm.envelope for lm in marks],
    )
    rows = [{"path": t["path"], "content_hash": t["content_hash"], "duration_s": t["duration_s"],
             "kind": "audio", "meta": t.get("meta"), "n_items": len(lm)} for t, lm in zip(tracks, marks)]
    return SegmentBuild(info, arrays, rows)


_NO_ENVELOPE = np.zeros(0, np.uint8)


def lay_out(
    track_ids: np.ndarray, frames: np.ndarray, hashes: np.ndarray, times: np.ndarray, owner: np.ndarray,
    envelopes: Sequence[np.ndarray],
) -> tuple[SegmentInfo, dict[str, np.ndarray]]:
    """Lay tracks end to end and index their hashes; ``owner`` is each hash's row in track_ids;
    ``envelopes``: each track's energy envelope (empty: none), end to end too."""
    if len(envelopes) != len(track_ids):
        raise ParameterError(f"{len(envelopes)} envelopes for {len(track_ids)} tracks")
    starts = np.concatenate([[0], np.cumsum(frames)[:-1]]).astype(np.int64)
    end = int(frames.sum())
    if end >= 1 << 32:
        raise ParameterError(f"a fingerprint segment holds at most {1 << 32} frames, got {end}")
    pos = (starts[owner] + times).astype(np.uint32)
    hashes = np.asarray(hashes, np.uint32)
    if len(pos) > 1 and bool(np.any(pos[1:] < pos[:-1])):  # a merge: put each hash's entries in order
        order = np.argsort(pos, kind="stable")
        hashes, pos = hashes[order], pos[order]
    table = HashTable.build(hashes, pos, hash_bits=HASH_BITS)
    arrays = {
        **table.arrays(),
        "track_ids": np.asarray(track_ids, np.int64),
        "track_starts": starts,
        "track_frames": np.asarray(frames, np.int64),
        "track_hashes": np.bincount(owner, minlength=len(track_ids)).astype(np.int64),
        "envelope": (np.concatenate([np.asarray(e, np.uint8) for e in envelopes]) if len(envelopes)
                     else _NO_ENVELOPE),
        "track_blocks": np.array([len(e) for e in envelopes], np.int64),
    }
    return segment_info(len(hashes), table.high_bits, len(track_ids)), arrays


def segment_info(n_hashes: int, high_bits: int, n_tracks: int) -> SegmentInfo:
    """A new segment's info.  ``sorted_postings``: each hash's entries are in position order
    (segments of older versions may not be; their lookups then scan instead of bisecting)."""
    return SegmentInfo.new(
        n_items=n_hashes,
        config={"kind": FP_FORMAT, "format_version": FP_FORMAT_VERSION, "hash_bits": HASH_BITS,
                "high_bits": high_bits, "n_tracks": n_tracks, "sorted_postings": True},
    )
