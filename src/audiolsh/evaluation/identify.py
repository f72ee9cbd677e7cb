"""Protocol 2, identification: clips of indexed and unindexed tracks, clean and distorted.

The corpus is split (seeded, by track family so that a remaster and its original fall on the same
side) into indexed tracks and unindexed ones; clips of each length are cut at seeded random
offsets (the same excerpt under every condition), distorted (:mod:`.distortions`) and written
once as 16-bit WAV, so every system answers the very same files. A positive clip (of an indexed
track) is right when the top-1 track is its source; its offset is right when also within
``OFFSET_TOLERANCE_S`` of where the clip starts in the original track. A match returned for a
negative clip (of an unindexed track) is checked against the audio it reports
(:mod:`.overlaps`): a verified overlap (the passage is reused in the reported track) is counted
apart; any other is a false match. A positive answered with another indexed track is checked the
same way: when that track carries the clip's audio at the reported offset (a remaster, a reused
passage) it is a verified same-audio answer, wrong for top-1 but counted apart, and top-1 is also
given with such answers counted right. Negatives come from packages with no indexed track as well as
from within the indexed tracks' packages.

Systems are adapters behind :class:`System`: ``build(track_paths, workdir)`` then
``identify_batch(clips)``. Each system names the thresholds on its answers' scores to report
(``thresholds``: label -> value): a fixed value (its default), or ``None`` for the smallest
threshold that keeps false matches at or below ``MAX_FALSE_MATCH_RATE`` over all negatives
(equal false-match rate). Adapters here: audiolsh's
:class:`AudiolshSystem` here and ``audiolsh.evaluation.audfprint.AudfprintSystem`` (the public
``audfprint.py``, run in batches through a subprocess; never imported, never copied).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from audiolsh.audio import info, load
from audiolsh.errors import AudiolshError, ParameterError
from audiolsh.evaluation.distortions import CONDITIONS, DEFAULT_CONDITIONS, fit_length
from audiolsh.evaluation.overlaps import (
    MIN_OVERLAP_NCC,
    OVERLAP_RULE,
    OverlapCheck,
    hits_to_check,
    is_overlap,
    verify_hits,
)
from audiolsh.index.verification import MAX_SECONDS
from audiolsh.parallel import Executor, LocalExecutor, thread_map, usable_cores

logger = logging.getLogger(__name__)

__all__ = [
    "CLIP_SR",
    "DEFAULT_LENGTHS_S",
    "MAX_FALSE_MATCH_RATE",
    "OFFSET_TOLERANCE_S",
    "Answer",
    "AudiolshSystem",
    "BuildStats",
    "Cell",
    "Clip",
    "ClipByClip",
    "IdentifyReport",
    "System",
    "SystemResult",
    "corpus_packages",
    "equal_fm_threshold",
    "jsonable",
    "make_clips",
    "query_times_ms",
    "rescore",
    "run_protocol",
    "score_system",
    "sources_sha1",
    "split_tracks",
    "track_duration_s",
    "track_family",
    "wav_ingest",
    "write_json",
]

CLIP_SR = 22050
"""Sample rate of the clip files (Hz)."""
DEFAULT_LENGTHS_S: tuple[float, ...] = (3.0, 5.0, 10.0)
OFFSET_TOLERANCE_S = 0.5
MAX_FALSE_MATCH_RATE = 0.01
MIN_CLIP_RMS = 1e-3
"""An excerpt quieter than this (-60 dBFS RMS) is redrawn: silence identifies nothing."""
_REDRAWS = 8
_CLIPS_VERSION = 2
"""Bumped when the same plan would make different clips (clip manifests of other versions are remade).
2: excerpts long enough for the widest speed change of any condition, whichever conditions are run."""
_SPAN_FACTOR = max(c.time_factor for c in CONDITIONS.values())
"""Excerpts hold ``length * _SPAN_FACTOR`` s of the original, so an excerpt (and its offset) does not
depend on the conditions run and clips of one condition can be reused by a run of others."""
_PEAK = 0.95

ProgressFn = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)``."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Clip:
    """A query file: ``length_s`` s of ``source`` from ``offset_s`` (original time) under ``condition``."""

    clip_id: str
    path: str
    source: str
    positive: bool
    condition: str
    length_s: float
    offset_s: float


def checked_length_s(clip: Clip) -> float:
    """Seconds of the original a clip holds: what its hit is checked over for an overlap."""
    return round(clip.length_s * CONDITIONS[clip.condition].time_factor, 3)


def verified_overlaps(clips: Sequence[Clip], ncc: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Which clips' answers are verified to carry their audio (``ncc`` from :func:`check_overlaps`),
    each against the threshold of its length."""
    x = np.array([math.nan if v is None else v for v in ncc], dtype=np.float64)
    return is_overlap(x, [checked_length_s(c) for c in clips])


@dataclass(frozen=True)
class Answer:
    """A system's answer to one clip: ``track`` None means no match; ``elapsed_s`` per clip if timed."""

    track: str | None
    offset_s: float | None
    score: float
    elapsed_s: float | None = None


@dataclass(frozen=True)
class BuildStats:
    """Index build of ``audio_s`` seconds of audio in ``wall_s`` seconds using ``workers`` processes."""

    n_tracks: int
    audio_s: float
    wall_s: float
    workers: int
    index_bytes: int

    @property
    def x_realtime_per_core(self) -> float:
        return self.audio_s / (self.wall_s * self.workers) if self.wall_s > 0 else math.nan

    @property
    def bytes_per_hour(self) -> float:
        return self.index_bytes / (self.audio_s / 3600.0) if self.audio_s > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "x_realtime_per_core": self.x_realtime_per_core,
                "bytes_per_hour": self.bytes_per_hour}


class System(Protocol):
    """An identification system under test."""

    name: str
    thresholds: Mapping[str, float | None]  # label -> fixed threshold, or None: at equal false matches

    def build(self, track_paths: Sequence[str], workdir: Path) -> BuildStats: ...

    def identify_batch(self, clips: Sequence[Clip], *, on_done: Callable[[int], None] | None = None
                       ) -> list[Answer]: ...


class ClipByClip:
    """Base for systems answering one clip at a time: ``identify(clip_wav_path, y, sr)``, timed per clip."""

    name = "system"
    thresholds: Mapping[str, float | None] = {"default": -math.inf}

    def identify(self, clip_wav_path: str, y: np.ndarray, sr: int) -> tuple[str | None, float | None, float]:
        raise NotImplementedError

    def identify_batch(self, clips: Sequence[Clip], *, on_done: Callable[[int], None] | None = None
                       ) -> list[Answer]:
        out = []
        for clip in clips:
            y, sr = sf.read(clip.path, dtype="float32")
            t0 = time.perf_counter()
            track, offset_s, score = self.identify(clip.path, y, sr)
            out.append(Answer(track, offset_s, float(score), time.perf_counter() - t0))
            if on_done:
                on_done(1)
        return out


# --------------------------------------------------------------------------- split and clips

_VARIANT = re.compile(
    r"[-_ .]+(enhanced|old|new|remaster(ed)?|remix|edit|extended|short|long|alt(ernate)?|version|"
    r"epic|loop|intro|v\d+)$"
)


def track_family(path: str | os.PathLike[str]) -> str:
    """Folder and file name without variant suffixes (``menu_enhanced`` -> ``menu``): tracks of one
    family may share audio, so they must fall on the same side of the split."""
    p = Path(path)
    stem = p.stem.lower()
    while True:
        shorter = _VARIANT.sub("", stem)
        if shorter == stem or not shorter:
            break
        stem = shorter
    return f"{p.parent.name.lower()}/{stem}"


def corpus_packages(corpus_dir: str | os.PathLike[str], tracks: Sequence[str]) -> dict[str, str]:
    """Track -> the package it came from: ``corpus_dir/manifest.csv`` (columns ``path``, relative to
    ``corpus_dir``, and ``package``) where it names the track, else the track's first folder below
    ``corpus_dir`` (the corpus fetch script puts each package in its own folder)."""
    root = Path(corpus_dir)
    listed: dict[str, str] = {}
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as fh:
            listed = {row["path"]: row["package"] for row in csv.DictReader(fh)
                      if row.get("path") and row.get("package")}
    out = {}
    for t in tracks:
        rel = Path(os.path.relpath(t, root))
        out[t] = listed.get(rel.as_posix()) or (rel.parts[0] if len(rel.parts) > 1 else "")
    return out


def _held_out(paths: Sequence[str], packages: Mapping[str, str], *, seed: int, budget: int) -> set[str]:
    """Whole packages, in seeded order, while their tracks fit in ``budget``; never every package."""
    sizes: dict[str, int] = {}
    for p in paths:
        sizes[packages.get(p, "")] = sizes.get(packages.get(p, ""), 0) + 1
    names = sorted(sizes)
    chosen: set[str] = set()
    for i in np.random.default_rng([seed, 17]).permutation(len(names)):
        if sizes[names[i]] <= budget and len(chosen) + 1 < len(names):
            chosen.add(names[i])
            budget -= sizes[names[i]]
    return chosen


def split_tracks(paths: Sequence[str], *, seed: int, indexed_fraction: float = 2 / 3,
                 packages: Mapping[str, str] | None = None, holdout_packages: Sequence[str] | None = None,
                 ) -> tuple[list[str], list[str]]:
    """Deterministic split into (indexed, unindexed), whole families at a time, sorted.

    With ``packages`` (track -> package), whole packages are held out first, so that negatives also
    come from packages with no indexed track: ``holdout_packages``, or by default packages in
    seeded order while they fit in 60 % of the unindexed share. The other tracks are split by family
    so that ``indexed_fraction`` of all tracks stay indexed.
    """
    if not 0 < indexed_fraction < 1:
        raise ParameterError(f"indexed_fraction must be in (0, 1), got {indexed_fraction}")
    held: set[str] = set()
    if packages is not None:
        if holdout_packages is None:
            budget = round(0.6 * (1 - indexed_fraction) * len(paths))
            held = _held_out(paths, packages, seed=seed, budget=budget)
        else:
            held = set(holdout_packages)
            unknown = held - {packages.get(p, "") for p in paths}
            if unknown:
                raise ParameterError(f"no track of package(s) {', '.join(sorted(unknown))} in the corpus")
    outside = [p for p in paths if packages is not None and packages.get(p, "") in held]
    families: dict[str, list[str]] = {}
    for p in sorted(set(paths) - set(outside)):
        families.setdefault(track_family(p), []).append(p)
    keys = sorted(families)
    order = np.random.default_rng(seed).permutation(len(keys))
    target = round(indexed_fraction * len(paths))
    indexed: list[str] = []
    unindexed: list[str] = list(outside)
    for i in order:
        members = families[keys[i]]
        (indexed if len(indexed) < target else unindexed).extend(members)
    if not indexed or not unindexed:
        raise ParameterError(f"{len(paths)} tracks cannot be split into indexed and unindexed ones")
    return sorted(indexed), sorted(unindexed)


def _clip_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


@dataclass(frozen=True)
class _TrackJob:
    track_index: int
    path: str
    positive: bool
    lengths_s: tuple[float, ...]
    conditions: tuple[str, ...]
    clips_per_track: int
    seed: int
    outdir: str
    made: frozenset[str] = frozenset()  # conditions whose files a compatible earlier run wrote


def track_duration_s(path: str) -> float:
    d = info(path).duration_s
    if not math.isfinite(d):
        y, sr = load(path, sr=8000)
        d = y.size / sr
    return float(d)


def _make_track_clips(job: _TrackJob) -> list[Clip]:
    """Every clip of one track: per length, ``clips_per_track`` excerpts, each under every condition."""
    duration_s = track_duration_s(job.path)
    clips: list[Clip] = []
    for li, length_s in enumerate(job.lengths_s):
        span_s = length_s * _SPAN_FACTOR + 0.05
        if duration_s < span_s + 0.1:
            logger.warning("%s: %.1f s is too short for %g-s clips; skipped", job.path, duration_s, length_s)
            continue
        for k in range(job.clips_per_track):
            rng = np.random.default_rng([job.seed, job.track_index, li, k])
            for _ in range(_REDRAWS):
                offset_s = round(float(rng.uniform(0.0, duration_s - span_s)), 3)
                try:
                    src, _ = load(job.path, sr=CLIP_SR, offset_s=offset_s, duration_s=span_s)
                except AudiolshError:  # silent excerpt
                    continue
                if np.sqrt(np.mean(np.square(src, dtype=np.float64))) >= MIN_CLIP_RMS:
                    break
            else:
                logger.warning("%s: no audible %.0f-s excerpt found; skipped", job.path, length_s)
                continue
            n_out = round(length_s * CLIP_SR)
            for name in job.conditions:
                safe = name.replace("+", "p").replace("-", "m")
                clip_id = f"{safe}_{length_s:g}s_{'pos' if job.positive else 'neg'}_{job.track_index:04d}_{k}"
                wav = Path(job.outdir) / f"{clip_id}.wav"
                if name not in job.made or not wav.exists():
                    cond = CONDITIONS[name]
                    n_in = min(src.size, round(length_s * cond.time_factor * CLIP_SR))
                    seed = _clip_seed(job.seed, job.track_index, li, k, zlib.crc32(name.encode()))
                    y = fit_length(cond(src[:n_in], CLIP_SR, seed=seed), n_out)
                    peak = float(np.max(np.abs(y)))
                    if peak > _PEAK:
                        y = y * (_PEAK / peak)
                    sf.write(wav, y, CLIP_SR, subtype="PCM_16")
                clips.append(Clip(clip_id, os.fspath(wav), job.path, job.positive, name, length_s, offset_s))
    return clips


def make_clips(
    positive_tracks: Sequence[str],
    negative_tracks: Sequence[str],
    outdir: Path,
    *,
    lengths_s: Sequence[float] = DEFAULT_LENGTHS_S,
    conditions: Sequence[str] = DEFAULT_CONDITIONS,
    clips_per_track: int = 1,
    seed: int = 0,
    workers: int = 1,
    executor: Executor | None = None,
    on_progress: ProgressFn | None = None,
) -> list[Clip]:
    """Write the clips of indexed (positive) and unindexed (negative) tracks as WAV under ``outdir``;
    reused if ``outdir/clips.json`` holds the same plan. A plan that differs only in its conditions
    reuses the clip files of the conditions already made and writes the others."""
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ParameterError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    if clips_per_track < 1 or not lengths_s or any(x <= 0 for x in lengths_s):
        raise ParameterError("need clips_per_track >= 1 and positive clip lengths")
    outdir.mkdir(parents=True, exist_ok=True)
    plan = {"positive_tracks": list(positive_tracks), "negative_tracks": list(negative_tracks),
            "lengths_s": [float(x) for x in lengths_s], "conditions": list(conditions),
            "clips_per_track": clips_per_track, "seed": seed, "clip_sr": CLIP_SR, "version": _CLIPS_VERSION}
    manifest = outdir / "clips.json"
    made: frozenset[str] = frozenset()
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved.get("plan") == plan and all(Path(c["path"]).exists() for c in saved["clips"]):
            logger.info("reusing %d clips in %s", len(saved["clips"]), outdir)
            return [Clip(**c) for c in saved["clips"]]
        if {**saved.get("plan", {}), "conditions": None} == {**plan, "conditions": None}:
            made = frozenset(saved.get("made_conditions", saved["plan"]["conditions"]))
            logger.info("reusing the clips of %s in %s", ", ".join(sorted(made & set(conditions))), outdir)
    tracks = [(p, True) for p in positive_tracks] + [(p, False) for p in negative_tracks]
    jobs = [_TrackJob(i, p, pos, tuple(float(x) for x in lengths_s), tuple(conditions), clips_per_track, seed,
                      os.fspath(outdir), made) for i, (p, pos) in enumerate(tracks)]
    clips: list[Clip] = []
    done = 0
    for part in (executor or LocalExecutor(workers)).map(_make_track_clips, jobs):
        clips.extend(part)
        done += 1
        on_progress and on_progress("clips", done, len(jobs))
    manifest.write_text(json.dumps({"plan": plan, "made_conditions": sorted(made | set(conditions)),
                                    "clips": [asdict(c) for c in clips]}))
    return clips


# --------------------------------------------------------------------------- scoring


def equal_fm_threshold(neg_scores: np.ndarray, n_neg: int, candidates: np.ndarray, *,
                       max_rate: float = MAX_FALSE_MATCH_RATE) -> float:
    """Smallest candidate threshold ``t`` such that at most ``max_rate * n_neg`` negatives
    answered with ``score >= t`` (``neg_scores``: scores of the negatives that were answered)."""
    if n_neg == 0:
        return -math.inf
    neg = np.sort(np.asarray(neg_scores, dtype=np.float64))
    cand = np.unique(np.concatenate([[-np.inf], np.asarray(candidates, dtype=np.float64), [np.inf]]))
    n_fm = neg.size - np.searchsorted(neg, cand, side="left")
    return float(cand[np.flatnonzero(n_fm <= max_rate * n_neg)[0]])


@dataclass(frozen=True)
class Cell:
    """Scores of one condition x length (rates are NaN when there is no clip to rate)."""

    condition: str
    length_s: float
    n_pos: int
    top1: float
    offset_acc: float
    n_neg: int
    n_false: int
    fm_rate: float
    n_overlap: int = 0  # matches on negatives verified to be in the reported track: not false
    n_same_audio: int = 0  # positives answered with another track verified to carry their audio
    top1_with_same_audio: float = math.nan  # top-1 counting those answers right


@dataclass
class SystemResult:
    """Everything measured for one system at one threshold."""

    name: str
    label: str
    threshold: float
    cells: list[Cell]
    overall: dict[str, float]
    build: BuildStats | None = None
    query_ms: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.name} ({self.label})"

    def cell(self, condition: str, length_s: float) -> Cell | None:
        return next((c for c in self.cells if c.condition == condition and c.length_s == length_s), None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "threshold": _finite(self.threshold),
                "overall": self.overall, "cells": [asdict(c) for c in self.cells],
                "build": self.build.to_dict() if self.build else None, "query_ms": self.query_ms}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _rate(num: int, den: int) -> float:
    return num / den if den else math.nan


def score_system(name: str, clips: Sequence[Clip], answers: Sequence[Answer], *, threshold: float | None,
                 label: str = "", max_false_match_rate: float = MAX_FALSE_MATCH_RATE,
                 overlap: np.ndarray | None = None, outside: np.ndarray | None = None) -> SystemResult:
    """Per condition x length: top-1, offset accuracy, false-match rate (see the module docstring).

    An answer counts as a match when it names a track and its score is ``>= threshold``;
    ``threshold=None`` picks the equal-false-match threshold (:func:`equal_fm_threshold`).
    ``overlap`` (per clip) marks the answers verified to carry the clip's audio in the reported
    track: on a negative, such a match is an overlap, not a false match (nor in the threshold's
    false matches); on a positive answered with another track, a same-audio answer, wrong for
    ``top1`` and counted right in ``top1_with_same_audio``. ``outside`` (per clip) marks negatives
    from packages with no indexed track, counted apart in ``overall``.
    """
    if len(clips) != len(answers):
        raise ParameterError(f"{len(clips)} clips but {len(answers)} answers")
    pos = np.array([c.positive for c in clips], dtype=bool)
    answered = np.array([a.track is not None for a in answers], dtype=bool)
    scores = np.array([a.score for a in answers], dtype=np.float64)
    verified = np.zeros(len(clips), dtype=bool) if overlap is None else np.asarray(overlap, dtype=bool)
    ov = verified & ~pos
    if threshold is None:
        threshold = _equal_fm(scores, answered, pos, ov, max_false_match_rate)
    answered &= scores >= threshold
    own = np.array([a.track == c.source for a, c in zip(answers, clips)], dtype=bool)
    right = answered & pos & own
    same_audio = answered & pos & ~own & verified
    on_time = right & np.array([a.offset_s is not None and abs(a.offset_s - c.offset_s) <= OFFSET_TOLERANCE_S
                                for a, c in zip(answers, clips)], dtype=bool)
    false = answered & ~pos & ~ov
    overlaps = answered & ov
    cond = np.array([c.condition for c in clips])
    length = np.array([c.length_s for c in clips])

    def counts(sel: np.ndarray) -> tuple[int, float, float, int, int, float, int, int, float]:
        n_pos, n_neg = int((sel & pos).sum()), int((sel & ~pos).sum())
        n_false, n_same = int((sel & false).sum()), int((sel & same_audio).sum())
        n_right = int((sel & right).sum())
        return (n_pos, _rate(n_right, n_pos), _rate(int((sel & on_time).sum()), n_pos),
                n_neg, n_false, _rate(n_false, n_neg), int((sel & overlaps).sum()),
                n_same, _rate(n_right + n_same, n_pos))

    cells = []
    for cname in dict.fromkeys(c.condition for c in clips):
        for ls in sorted(set(length.tolist())):
            sel = (cond == cname) & (length == ls)
            if sel.any():
                cells.append(Cell(str(cname), float(ls), *counts(sel)))
    keys = ("n_pos", "top1", "offset_acc", "n_neg", "n_false", "fm_rate", "n_overlap", "n_same_audio",
            "top1_with_same_audio")
    overall: dict[str, float] = dict(zip(keys, counts(np.ones(len(clips), dtype=bool))))
    if outside is not None:
        out = np.asarray(outside, dtype=bool) & ~pos
        overall |= {"n_neg_outside": int(out.sum()), "n_false_outside": int((out & false).sum()),
                    "n_overlap_outside": int((out & overlaps).sum())}
    return SystemResult(name, label, float(threshold), cells, overall)


def _equal_fm(scores: np.ndarray, answered: np.ndarray, pos: np.ndarray, overlap: np.ndarray,
              max_rate: float) -> float:
    """The equal-false-match threshold of these answers, verified overlaps left out."""
    return equal_fm_threshold(scores[~pos & answered & ~overlap], int((~pos).sum()), scores[answered],
                              max_rate=max_rate)


def check_overlaps(thresholds: Mapping[str, float | None], clips: Sequence[Clip], answers: Sequence[Answer],
                   *, cache: dict[tuple[Any, ...], float] | None = None,
                   max_false_match_rate: float = MAX_FALSE_MATCH_RATE) -> np.ndarray:
    """Per clip, the correlation of an answer with the audio it reports
    (:func:`audiolsh.evaluation.overlaps.verify_hits`), NaN where not checked.

    Checked: negatives' hits that can count at one of the ``thresholds`` the system is scored at
    (label -> value, None: equal false matches; see
    :func:`~audiolsh.evaluation.overlaps.hits_to_check`), then positives answered with another
    track at or above the lowest of those thresholds (the equal-false-match one once the negatives
    are checked). Not checked: right answers, no answer, answers with no offset. ``cache`` shares
    checks between systems."""
    cache = {} if cache is None else cache
    out = np.full(len(clips), np.nan)
    pos = np.array([c.positive for c in clips], dtype=bool)
    named = np.array([a.track is not None for a in answers], dtype=bool)
    placed = named & np.array([a.offset_s is not None for a in answers], dtype=bool)
    scores = np.array([a.score for a in answers], dtype=np.float64)
    hits = np.flatnonzero(placed & ~pos)

    def verify(idx: np.ndarray) -> np.ndarray:
        keys = []
        for i in idx:
            c, a = clips[i], answers[i]
            keys.append((c.source, c.offset_s, checked_length_s(c),
                         a.track, round(float(a.offset_s or 0.0), 2)))
        todo = list(dict.fromkeys(k for k in keys if k not in cache))
        if todo:
            ncc = verify_hits([OverlapCheck(*k) for k in todo])
            cache.update(zip(todo, ncc.tolist()))
        return np.array([cache[k] for k in keys])

    levels = list(thresholds.values())
    fixed = [t for t in levels if t is not None]
    if hits.size:
        out[hits] = hits_to_check(scores[hits], hits, fixed=fixed, equal_fm=None in levels,
                                  n_neg=int((~pos).sum()), max_rate=max_false_match_rate, verify=verify,
                                  length_s=[checked_length_s(clips[i]) for i in hits.tolist()])
    if None in levels:
        overlap = ~pos & verified_overlaps(clips, out)
        fixed.append(_equal_fm(scores, named, pos, overlap, max_false_match_rate))
    other = placed & pos & np.array([a.track != c.source for a, c in zip(answers, clips)], dtype=bool)
    wrong = np.flatnonzero(other & (scores >= min(fixed, default=math.inf)))
    if wrong.size:
        out[wrong] = verify(wrong)
    return out


def query_times_ms(clips: Sequence[Clip], answers: Sequence[Answer]) -> dict[str, Any]:
    """p50/p95/mean of the per-clip times of the longest clips (10 s by default)."""
    longest = max((c.length_s for c in clips), default=0.0)
    t = np.array([a.elapsed_s for a, c in zip(answers, clips)
                  if c.length_s == longest and a.elapsed_s is not None])
    if t.size == 0:
        return {"length_s": longest}
    return {"length_s": longest, "p50": float(np.percentile(t, 50) * 1e3),
            "p95": float(np.percentile(t, 95) * 1e3), "mean": float(t.mean() * 1e3), "n": int(t.size)}


# --------------------------------------------------------------------------- audiolsh


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _fingerprint_job(job: tuple[str, str, float, int]) -> tuple[str, str, float, Any]:
    """Worker: decode at the fingerprint rate, landmarks (the content hash came first, as in
    ``audiolsh index``)."""
    path, digest, density, fanout = job
    from audiolsh.features.landmarks import FP_SR, landmarks

    y, sr = load(path, sr=FP_SR)
    return path, digest, y.size / sr, landmarks(y, sr, density=density, fanout=fanout)


class AudiolshSystem(ClipByClip):
    """audiolsh's :class:`~audiolsh.index.fingerprint.FingerprintIndex`, built with ``workers`` processes.

    Queried with ``min_confidence=0`` so every best candidate comes back; its score is its
    calibrated confidence (the probability that it is right), reported at ``min_confidence``
    (default: the calibration's operating point) and at equal false matches.  The engine's
    quantities behind each confidence are kept in ``info["candidates"]`` (one row per clip:
    log10 p (NaN: no candidate), agreeing hashes, query hashes, seconds, noise level, envelope z
    (NaN: none compared)) for refitting it, and the candidate's speed, tempo and pitch in
    ``info["transforms"]`` (NaN: no candidate), so that evidence read at the candidate's
    alignment can be screened without answering every clip again.
    An existing ``index_dir`` is reused: tracks already in it are not added again (nor timed).
    """

    def __init__(self, *, name: str = "audiolsh", index_dir: Path | None = None, workers: int = 1,
                 min_confidence: float | None = None) -> None:
        self.name = name
        self.index_dir = index_dir
        self.workers = workers
        self.min_confidence = min_confidence
        self.thresholds: dict[str, float | None] = {"default": min_confidence, "equal FM": None}
        self.info: dict[str, Any] = {}
        self._index: Any = None

    def build(self, track_paths: Sequence[str], workdir: Path) -> BuildStats:
        import audiolsh.features.envelope
        import audiolsh.features.landmarks
        import audiolsh.index.fingerprint
        import audiolsh.search.fingerprint
        from audiolsh.index.fingerprint import FingerprintIndex

        modules = (audiolsh.index.fingerprint, audiolsh.features.landmarks, audiolsh.search.fingerprint,
                   audiolsh.features.envelope)
        source_sha1 = sources_sha1([m.__file__ or "" for m in modules])  # the version imported

        path = self.index_dir or workdir / "index"
        index = FingerprintIndex.open_or_create(path)
        self._index = index
        self.thresholds = {"default": index.default_min_confidence}
        if self.min_confidence is not None and self.min_confidence != index.default_min_confidence:
            self.thresholds[f"min confidence {self.min_confidence:g}"] = self.min_confidence
        self.thresholds["equal FM"] = None
        t0 = time.perf_counter()
        # Hashed once, in threads, as ``audiolsh index`` does (part of the time).
        digests = list(thread_map(_hash, track_paths, min(self.workers, usable_cores())))
        todo = [(p, d) for p, d in zip(track_paths, digests) if index.track_by_hash(d) is None]
        audio_s = 0.0
        with index.session() as s:
            if todo:
                args = (index.params.density, index.params.fanout)
                jobs = [(p, d, *args) for p, d in todo]
                for p, digest, dur_s, lm in LocalExecutor(self.workers).map(_fingerprint_job, jobs):
                    s.add_track(p, content_hash=digest, duration_s=dur_s, landmarks=lm)
                    audio_s += dur_s
        wall_s = time.perf_counter() - t0
        if not todo:
            logger.info("%s: every track already indexed; ingest not timed", path)
        info = index.info()
        self.info = {"params": info["params"], "n_hashes": info["n_hashes"], "source_sha1": source_sha1,
                     "calibration": index.calibration.to_json(), "candidates": [], "transforms": [],
                     "verified": []}
        return BuildStats(len(todo), audio_s, wall_s if todo else math.nan, self.workers,
                          _dir_bytes(Path(path)))

    def identify(self, clip_wav_path: str, y: np.ndarray, sr: int) -> tuple[str | None, float | None, float]:
        verdict = self._index.assess(y, sr, min_confidence=0.0)
        m = verdict.best
        self.info["candidates"].append([math.nan if m is None else float(m.log10_p),
                                        0.0 if m is None else float(m.score), verdict.n_query_hashes,
                                        len(y) / sr if m is None else m.clip_s,
                                        0.0 if m is None else m.noise,
                                        math.nan if m is None or m.envelope_z is None
                                        else m.envelope_z])
        self.info["transforms"].append([math.nan] * 3 if m is None else [m.speed, m.tempo, m.pitch])
        # a weak candidate's correlation with its track (NaN: not checked) over how many seconds
        self.info["verified"].append([math.nan if m is None or m.verified is None else m.verified,
                                      min(len(y) / sr, MAX_SECONDS)])
        if m is None:
            return None, None, -math.inf
        return m.path, m.offset_s, float(m.confidence)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


def sources_sha1(paths: Sequence[str | os.PathLike[str]]) -> str:
    """SHA-1 over source files: which version of a system was measured."""
    h = hashlib.sha1()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def _hash(path: str) -> str:
    from audiolsh.audio import content_hash

    return content_hash(path)


def wav_ingest(tracks: Sequence[str], workdir: Path, *, workers: int = 1) -> BuildStats:
    """Time audiolsh's ingest (into a fresh index) of 44.1-kHz stereo 16-bit WAV copies of ``tracks``;
    the copies are made once with ffmpeg, untimed."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudiolshError("timing ingest from WAV needs ffmpeg to make the copies; it is not on PATH")
    (workdir / "tracks").mkdir(parents=True, exist_ok=True)
    copies = []
    for i, p in enumerate(tracks):
        dst = workdir / "tracks" / f"t{i:04d}.wav"
        if not dst.exists():
            tmp = dst.with_suffix(".part.wav")
            cmd = [exe, "-nostdin", "-loglevel", "error", "-y", "-i", p, "-ar", "44100", "-ac", "2",
                   "-c:a", "pcm_s16le", os.fspath(tmp)]
            proc = subprocess.run(cmd, capture_output=True, check=False)
            if proc.returncode != 0:
                raise AudiolshError(f"{p}: ffmpeg cannot convert it to WAV: {proc.stderr.decode()[-200:]}")
            tmp.replace(dst)
        copies.append(os.fspath(dst))
    index_dir = workdir / "index"
    if index_dir.exists():
        shutil.rmtree(index_dir)
    system = AudiolshSystem(name="audiolsh (WAV)", index_dir=index_dir, workers=workers)
    try:
        return system.build(copies, workdir)
    finally:
        system.close()


# --------------------------------------------------------------------------- the run


def _subset(paths: Sequence[str], n: int | None, *, seed: int) -> list[str]:
    if n is None or n >= len(paths):
        return list(paths)
    if n < 1:
        raise ParameterError(f"need at least 1 track to cut clips from, got {n}")
    keep = np.sort(np.random.default_rng(seed).choice(len(paths), size=n, replace=False))
    return [paths[i] for i in keep]


def _counter(stage: str, total: int, on_progress: ProgressFn | None) -> Callable[[int], None]:
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(stage, done, total)

    return advance


@dataclass
class IdentifyReport:
    """The protocol's outcome: the split, one :class:`SystemResult` per system x threshold, and
    every clip with each system's raw answer to it (for looking into the misses)."""

    corpus: dict[str, Any]
    protocol: dict[str, Any]
    results: list[SystemResult]
    machine: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    clips: list[Clip] = field(default_factory=list)
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    overlap_ncc: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        fields = ("track", "offset_s", "score", "elapsed_s")
        return {"corpus": self.corpus, "protocol": self.protocol, "machine": self.machine,
                "skipped": self.skipped, "systems": self.systems,
                "results": [r.to_dict() for r in self.results],
                "clips": [asdict(c) for c in self.clips],
                "answers": {"fields": list(fields),
                            **{name: [[getattr(a, f) for f in fields] for a in answers]
                               for name, answers in self.answers.items()}},
                "overlap_ncc": dict(self.overlap_ncc)}  # the rule: protocol's min_overlap_ncc, overlap_rule


def run_protocol(
    corpus: Sequence[str],
    systems: Sequence[System],
    workdir: Path,
    *,
    lengths_s: Sequence[float] = DEFAULT_LENGTHS_S,
    conditions: Sequence[str] = DEFAULT_CONDITIONS,
    clips_per_track: int = 1,
    seed: int = 0,
    indexed_fraction: float = 2 / 3,
    positive_tracks: int | None = None,
    negative_tracks: int | None = None,
    packages: Mapping[str, str] | None = None,
    holdout_packages: Sequence[str] | None = None,
    workers: int = 1,
    on_progress: ProgressFn | None = None,
) -> IdentifyReport:
    """Split, write the clips, build and query every system, check its hits on negatives for
    overlaps, score each at each of its thresholds.

    Every indexed track is indexed; clips are cut from ``positive_tracks`` of them and from
    ``negative_tracks`` of the unindexed ones (seeded subsets; ``None``: all). ``packages`` and
    ``holdout_packages``: see :func:`split_tracks`.
    """
    indexed, unindexed = split_tracks(corpus, seed=seed, indexed_fraction=indexed_fraction, packages=packages,
                                      holdout_packages=holdout_packages)
    pkg = packages or {}
    indexed_packages = {pkg.get(p, "") for p in indexed}
    held_out = sorted({pkg.get(p, "") for p in unindexed} - indexed_packages) if packages else []
    logger.info("%d indexed, %d unindexed tracks", len(indexed), len(unindexed))
    pos_tracks = _subset(indexed, positive_tracks, seed=seed + 1)
    neg_tracks = _subset(unindexed, negative_tracks, seed=seed + 2)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    clips = make_clips(pos_tracks, neg_tracks, workdir / "clips", lengths_s=lengths_s, conditions=conditions,
                       clips_per_track=clips_per_track, seed=seed, workers=workers, on_progress=on_progress)
    clip_wall_s = time.perf_counter() - t0
    results: list[SystemResult] = []
    all_answers: dict[str, list[Answer]] = {}
    all_ncc: dict[str, list[float]] = {}
    checked: dict[tuple[Any, ...], float] = {}
    outside = np.array([not c.positive and pkg.get(c.source, "") in held_out for c in clips], dtype=bool)
    system_info: dict[str, dict[str, Any]] = {}
    for system in systems:
        stage = f"{system.name}: index"
        on_progress and on_progress(stage, 0, 1)
        sysdir = workdir / re.sub(r"[^A-Za-z0-9_.-]", "_", system.name)
        sysdir.mkdir(parents=True, exist_ok=True)
        build = system.build(indexed, sysdir)
        on_progress and on_progress(stage, 1, 1)
        advance = _counter(f"{system.name}: query", len(clips), on_progress)
        answers = system.identify_batch(clips, on_done=advance)
        all_answers[system.name] = answers
        system_info[system.name] = dict(getattr(system, "info", {}))
        times = {**query_times_ms(clips, answers), **getattr(system, "query_ms", {})}
        on_progress and on_progress(f"{system.name}: overlaps", 0, 1)
        ncc = check_overlaps(system.thresholds, clips, answers, cache=checked)
        on_progress and on_progress(f"{system.name}: overlaps", 1, 1)
        all_ncc[system.name] = ncc.tolist()
        verified = verified_overlaps(clips, ncc)
        for label, threshold in system.thresholds.items():
            r = score_system(system.name, clips, answers, threshold=threshold, label=label,
                             overlap=verified, outside=outside)
            r.build, r.query_ms = build, times
            results.append(r)
        getattr(system, "close", lambda: None)()
    machine = {"cpus": os.cpu_count(), "load_before": list(load_before), "load_after": list(os.getloadavg()),
               "python": sys.version.split()[0], "platform": platform.platform()}
    return IdentifyReport(
        corpus={"n_tracks": len(corpus), "n_indexed": len(indexed), "n_unindexed": len(unindexed),
                "n_positive_tracks": len(pos_tracks), "n_negative_tracks": len(neg_tracks),
                "held_out_packages": held_out, "n_negative_tracks_outside": sum(
                    pkg.get(p, "") in held_out for p in neg_tracks),
                "indexed": list(indexed), "unindexed": list(unindexed),
                "positive_tracks": pos_tracks, "negative_tracks": neg_tracks},
        protocol={"lengths_s": [float(x) for x in lengths_s], "conditions": list(conditions),
                  "clips_per_track": clips_per_track, "seed": seed, "n_clips": len(clips),
                  "n_pos": sum(c.positive for c in clips), "n_neg": sum(not c.positive for c in clips),
                  "offset_tolerance_s": OFFSET_TOLERANCE_S, "max_false_match_rate": MAX_FALSE_MATCH_RATE,
                  "min_overlap_ncc": MIN_OVERLAP_NCC, "overlap_rule": OVERLAP_RULE,
                  "clip_wall_s": clip_wall_s},
        results=results, machine=machine, systems=system_info, clips=clips, answers=all_answers,
        overlap_ncc=all_ncc)


def rescore(report: IdentifyReport, stored: Sequence[Mapping[str, Any]], *,
            corpus_dir: str | os.PathLike[str] | None = None,
            max_false_match_rate: float = MAX_FALSE_MATCH_RATE) -> IdentifyReport:
    """A stored report (``calibration.load_report``) scored again by this protocol: every system's
    answers checked anew against the audio they report and scored at the thresholds of ``stored``
    (the JSON's ``results``; label ``equal FM``: found again), keeping their build and query times.
    The answers are not asked again, so a newer scoring reads an older run. With ``corpus_dir``, the
    negatives of held-out packages are counted apart as in the run."""
    outside = None
    if corpus_dir is not None:
        held = set(report.corpus.get("held_out_packages", []))
        pkg = corpus_packages(corpus_dir, [c.source for c in report.clips])
        outside = np.array([not c.positive and pkg[c.source] in held for c in report.clips], dtype=bool)
    checked: dict[tuple[Any, ...], float] = {}
    results, all_ncc = [], {}
    for name, answers in report.answers.items():
        rows = [r for r in stored if r["name"] == name]
        thresholds: dict[str, float | None] = {
            r["label"]: None if r["label"] == "equal FM" else -math.inf if r["threshold"] is None
            else r["threshold"] for r in rows}
        ncc = check_overlaps(thresholds, report.clips, answers, cache=checked,
                             max_false_match_rate=max_false_match_rate)
        all_ncc[name] = ncc.tolist()
        verified = verified_overlaps(report.clips, ncc)
        for r in rows:
            res = score_system(name, report.clips, answers, threshold=thresholds[r["label"]],
                               label=r["label"], max_false_match_rate=max_false_match_rate,
                               overlap=verified, outside=outside)
            if b := r.get("build"):
                wall_s = math.nan if b["wall_s"] is None else float(b["wall_s"])  # JSON null: not timed
                res.build = BuildStats(int(b["n_tracks"]), float(b["audio_s"]), wall_s, int(b["workers"]),
                                       int(b["index_bytes"]))
            res.query_ms = r.get("query_ms") or {}
            results.append(res)
    protocol = {**report.protocol, "min_overlap_ncc": MIN_OVERLAP_NCC, "overlap_rule": OVERLAP_RULE}
    return IdentifyReport(report.corpus, protocol, results, report.machine, report.skipped,
                          report.systems, report.clips, report.answers, overlap_ncc=all_ncc)


def write_json(report: IdentifyReport, path: Path) -> None:
    """The report as indented JSON (NaN and infinities as null)."""
    path.write_text(json.dumps(jsonable(report.to_dict()), indent=1) + "\n")


def jsonable(x: Any) -> Any:
    """``x`` with numpy scalars as Python numbers and NaN and infinities as None."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
