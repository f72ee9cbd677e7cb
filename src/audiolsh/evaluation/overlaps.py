"""Is a match on an "unindexed" clip false, or does the reported track really hold that audio?

Game soundtracks reuse passages across tracks, so a clip of an unindexed track may truly be in an
indexed one. Each such hit is checked on the clean audio: the excerpt the clip was cut from and the
reported track at the reported offset (both in original time, so speed, pitch and noise do not
matter), band-passed, and their normalised cross-correlation taken at the best lag within
``max_lag_s`` of the reported alignment. A hit whose correlation reaches :func:`min_overlap_ncc` of
its length is a verified overlap; the protocol reports those apart from false matches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from audiolsh.audio import load
from audiolsh.audio.align import MARGIN_S, MAX_LAG_S, VERIFY_SR, aligned_ncc, band
from audiolsh.errors import AudiolshError, ParameterError

logger = logging.getLogger(__name__)

__all__ = ["MIN_OVERLAP_NCC", "OVERLAP_RULE", "VERIFY_SR", "OverlapCheck", "aligned_ncc", "hits_to_check",
           "is_overlap", "min_overlap_ncc", "verify_hits"]

MIN_OVERLAP_NCC = 0.4
"""Correlation from which a hit of 1 s (or less) is a verified overlap; a longer one needs less
(:func:`min_overlap_ncc`). Repeats within a track reach 0.5-0.97."""
OVERLAP_RULE = f"{MIN_OVERLAP_NCC:g} / sqrt(seconds of audio checked) ({MIN_OVERLAP_NCC:g} up to 1 s)"
""":func:`min_overlap_ncc` in words, as reports record it."""


def min_overlap_ncc(length_s: ArrayLike) -> np.ndarray:
    """Correlation from which a hit of ``length_s`` seconds of audio (original time) is a verified
    overlap: :data:`MIN_OVERLAP_NCC` up to 1 s, then falling as ``1 / sqrt(length)``.

    Chance correlation of unrelated band-limited audio spreads as one over the square root of its
    independent samples, so a fixed threshold set on 1-s excerpts asks far more of a long one than
    chance gives it. Unrelated excerpts of the dev corpus (``benchmarks/overlap_null.py``, 3,000
    pairs of tracks of different packages per length) reach at most 0.395 / 0.254 / 0.197 /
    0.151 / 0.108 at 1 / 2 / 3 / 5 / 10 s, under 0.400 / 0.283 / 0.231 / 0.179 / 0.126 here."""
    return np.asarray(MIN_OVERLAP_NCC / np.sqrt(np.maximum(np.asarray(length_s, dtype=np.float64), 1.0)))


def is_overlap(ncc: ArrayLike, length_s: ArrayLike) -> np.ndarray:
    """Which hits are verified overlaps: ``ncc`` (NaN or None: not checked, so not one) against
    :func:`min_overlap_ncc` of each hit's ``length_s``."""
    x = np.asarray(ncc, dtype=np.float64)  # None becomes NaN
    with np.errstate(invalid="ignore"):
        return np.asarray(x >= min_overlap_ncc(length_s), dtype=bool)


@dataclass(frozen=True)
class OverlapCheck:
    """One hit to check: ``length_s`` s of ``source`` from ``source_offset_s`` against ``track`` from
    ``track_offset_s`` (original time on both sides)."""

    source: str
    source_offset_s: float
    length_s: float
    track: str
    track_offset_s: float


def verify_hits(checks: Sequence[OverlapCheck]) -> np.ndarray:
    """:func:`aligned_ncc` of every check, float64 array aligned with ``checks``.

    Both sides are decoded as excerpts (at :data:`VERIFY_SR`, band-passed, with a margin that the
    filter's edges fall into): a check costs two short decodes, so only the hits that can count are
    checked. An excerpt that cannot be decoded gives NaN (not verified) and a warning.
    """
    out = np.full(len(checks), np.nan)
    margin_s = MARGIN_S
    for i, c in enumerate(checks):
        if not (math.isfinite(c.track_offset_s) and math.isfinite(c.source_offset_s) and c.length_s > 0):
            raise ParameterError(f"cannot check an overlap at offset {c.track_offset_s} for {c.length_s} s")
        src_start = max(0.0, c.source_offset_s - margin_s)
        ref_start = max(0.0, c.track_offset_s - MAX_LAG_S - margin_s)
        try:
            src, _ = load(c.source, sr=VERIFY_SR, offset_s=src_start, duration_s=c.length_s + 2 * margin_s)
            ref, _ = load(c.track, sr=VERIFY_SR, offset_s=ref_start,
                          duration_s=c.length_s + 2 * (MAX_LAG_S + margin_s))
        except AudiolshError as exc:
            logger.warning("%s at %.1f s against %s at %.1f s: not checked: %s", c.source, c.source_offset_s,
                           c.track, c.track_offset_s, exc)
            continue
        a = round((c.source_offset_s - src_start) * VERIFY_SR)
        x = band(src, VERIFY_SR)[a : a + round(c.length_s * VERIFY_SR)]
        start = round((c.track_offset_s - ref_start) * VERIFY_SR)
        out[i] = aligned_ncc(x, band(ref, VERIFY_SR), start=start, max_lag=round(MAX_LAG_S * VERIFY_SR))
    return out


def hits_to_check(scores: np.ndarray, candidates: np.ndarray, *, fixed: Sequence[float], equal_fm: bool,
                  n_neg: int, max_rate: float, verify: Callable[[np.ndarray], np.ndarray],
                  length_s: ArrayLike = 1.0) -> np.ndarray:
    """Correlations of the negatives' hits that can count as matches, NaN for the others.

    ``scores``: one per negative hit (``candidates`` its indices, returned array aligned with
    them). Hits at or above the lowest ``fixed`` threshold are all checked; for the equal-false-match
    threshold (``equal_fm``), hits are checked from the highest score down until more than
    ``max_rate * n_neg`` of the checked ones are not overlaps: every hit above that threshold is
    then checked, whatever it turns out to be. ``verify(indices)`` returns their correlations;
    ``length_s`` (one, or one per hit) the lengths they are checked over.
    """
    out = np.full(scores.size, np.nan)
    need = np.broadcast_to(min_overlap_ncc(length_s), scores.shape)
    order = np.argsort(-scores, kind="stable")
    floor = min(fixed, default=math.inf)
    done = int(np.searchsorted(-scores[order], -floor, side="right"))
    if done:
        out[order[:done]] = verify(candidates[order[:done]])
    budget = math.floor(max_rate * n_neg)
    while equal_fm and done < order.size:
        if int(np.sum(~(out[order[:done]] >= need[order[:done]]))) > budget:
            break
        step = order[done : done + budget + 1]
        out[step] = verify(candidates[step])
        done += step.size
    return out
