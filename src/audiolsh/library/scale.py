"""The score scale of ``similar``: every raw similarity as a percentile of the collection.

A track's raw score is the raw similarity of its best (or, for the least similar, its worst)
passage pair with the clip (``library.passages``): a cosine, a Jaccard or a fused sum of
z-scores, on scales that cannot be compared.  The score shown is the share of passage pairs of
*different* tracks of this collection that are less alike (ties count half), read from a
quantile table of ``N_PAIRS`` random such pairs per mode: 0.5 is a typical pair of unrelated
passages, 0.99 more alike than 99 % of them, and the same number means the same in every mode.
The chroma vote (no passages) is scaled the same way by its lift, the votes a track gets per
frame it holds over what chance gives it, against pseudo-queries of the collection's own
windows; its least-similar form counts votes of the negated frames, so its score is one minus
that percentile.

The tables are stored versioned (config ``score_scale`` of the catalogue) and sampled again by
a writer when the number of tracks changed by more than ``STALE_SHARE``; a library written
before it existed (or by another version, or by a run killed before storing it) has its scale
sampled on first use, in memory, and stored by its next write or ``index`` run.  The sampling
is seeded, so every handle computes the same scale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.features.scaling import pairs_of_different_tracks
from audiolsh.library.modes import modes_for
from audiolsh.library.passages import paired_raw, stored_passages, track_passages

if TYPE_CHECKING:
    from audiolsh.library.core import Library

log = logging.getLogger(__name__)

SCALE_CONFIG = "score_scale"
SCALE_FORMAT = "audiolsh-score-scale"
#: 1: quantiles at ``LEVELS`` of raw passage-pair similarity per mode, vote lifts
SCALE_VERSION = 1
N_PAIRS = 10_000
MIN_PAIRS = 2_000
#: Quantile levels, denser towards 0 and 1 where the answers of ``similar`` fall.
LEVELS = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, 257))
#: A writer samples the scale again when the track count moved by more than this share.
STALE_SHARE = 0.1
#: Nearest frames each query frame votes for (``similar --method vote``).
VOTES_PER_FRAME = 10
#: Pseudo-queries (one window of a track's chroma frames each) the vote is scaled with.
VOTE_QUERIES = 24
#: The modes scored by passage pairs.
PASSAGE_QUERIES = ("vector", "sets", "fused")
VOTE, VOTE_WORST = "vote", "vote_worst"


@dataclass(frozen=True)
class Table:
    """Quantiles (at ``LEVELS``) of one kind's raw values over ``n_pairs`` sampled pairs."""

    values: np.ndarray
    n_pairs: int

    @classmethod
    def fit(cls, raw: np.ndarray) -> Table:
        return cls(np.round(np.quantile(np.asarray(raw, np.float64), LEVELS), 6), len(raw))

    def percentile(self, raw: np.ndarray) -> np.ndarray:
        """Share of the sampled pairs below each raw value, ties counted half: piecewise linear
        between the quantiles, 0 below the lowest, 1 above the highest; non-decreasing."""
        x = np.asarray(raw, np.float64)
        u, first = np.unique(self.values, return_index=True)
        last = np.r_[first[1:] - 1, len(self.values) - 1]
        lo, hi = LEVELS[first], LEVELS[last]
        i = np.searchsorted(u, x, side="right") - 1  # the last quantile <= x
        at = np.clip(i, 0, len(u) - 1)
        nxt = np.clip(i + 1, 0, len(u) - 1)
        span = u[nxt] - u[at]
        frac = np.divide(x - u[at], span, out=np.zeros_like(x), where=span > 0)
        out = np.where(u[at] == x, (lo[at] + hi[at]) / 2, hi[at] + (lo[nxt] - hi[at]) * frac)
        out = np.where(i < 0, 0.0, np.where(x > u[-1], 1.0, out))
        return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class ScoreScale:
    """Every kind's table (mode names, ``vote``, ``vote_worst``) and the collection size."""

    n_tracks: int
    tables: dict[str, Table]

    def score(self, kind: str, raw: np.ndarray) -> np.ndarray:
        """Raw values of a kind on the [0, 1] scale; 0.5 where the library holds no pair to
        compare with (fewer than two passages)."""
        table = self.tables.get(kind)
        raw = np.asarray(raw, np.float64)
        return np.full(raw.shape, 0.5) if table is None else table.percentile(raw)

    def stale(self, n_tracks: int) -> bool:
        return abs(n_tracks - self.n_tracks) > STALE_SHARE * self.n_tracks

    def to_dict(self) -> dict[str, Any]:
        return {"format": SCALE_FORMAT, "format_version": SCALE_VERSION, "n_tracks": self.n_tracks,
                "n_levels": len(LEVELS), "kinds": {
                    k: {"values": t.values.tolist(), "n_pairs": t.n_pairs} for k, t in self.tables.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ScoreScale | None:
        """The stored scale, or None when there is none of this version (sampled again then)."""
        if (not data or data.get("format") != SCALE_FORMAT or data.get("format_version") != SCALE_VERSION
                or data.get("n_levels") != len(LEVELS)):
            return None
        return cls(int(data["n_tracks"]), {k: Table(np.asarray(t["values"], np.float64), int(t["n_pairs"]))
                                           for k, t in data["kinds"].items()})


def fit_scale(library: Library, *, n_pairs: int = N_PAIRS) -> ScoreScale:
    """Sample the scale of every similarity mode the library holds (seeded by its config)."""
    rng = np.random.default_rng(library.config.seed)
    tables: dict[str, Table] = {}
    for mode in modes_for(library.modes):
        if mode.query not in PASSAGE_QUERIES or (mode.query == "fused" and library.fusion is None):
            continue
        ids, tracks, offsets = track_passages(library, mode.name)
        # a small library has few distinct pairs: twenty draws a passage describe them
        n = min(n_pairs, max(MIN_PAIRS, 20 * len(ids)))
        a, b = pairs_of_different_tracks(tracks, n, rng) if len(ids) >= 2 else ((), ())
        if not len(a):
            continue
        used, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        passages = stored_passages(library, mode, ids[used], tracks[used], offsets[used])
        raw = paired_raw(library, mode, passages, inverse[: len(a)], passages, inverse[len(a):])
        tables[mode.name] = Table.fit(raw)
    if "chroma_frames" in library.indexes:
        tables.update(_fit_vote(library, rng))
    return ScoreScale(len(library), tables)


def vote_shares(hit_tracks: np.ndarray, tracks: np.ndarray, n_frames: np.ndarray) -> np.ndarray:
    """The vote's raw score of each of ``tracks`` (sorted library ids, holding ``n_frames``
    frames): the hits (one per vote) that fell on it per frame it holds."""
    at = np.clip(np.searchsorted(tracks, hit_tracks), 0, max(len(tracks) - 1, 0))
    on = tracks[at] == hit_tracks if len(tracks) else np.zeros(len(hit_tracks), bool)
    votes = np.bincount(at[on], minlength=len(tracks))
    return votes / np.maximum(n_frames, 1)


def vote_frames(library: Library) -> tuple[np.ndarray, np.ndarray, int]:
    """The vote's tracks (sorted library ids), the frames each holds, and the frames of the index."""
    held = library.mode_items("chroma_frames")
    known = np.array(sorted(t for t in held if t >= 0), np.int64)
    n_frames = np.array([held[t] for t in known.tolist()], np.int64)
    return known, n_frames, len(library.index("chroma_frames"))


def vote_lift(shares: np.ndarray, n_query_frames: Any, n_frames_total: int) -> np.ndarray:
    """Votes per frame over chance (``VOTES_PER_FRAME`` votes of each query frame spread over
    every frame of the collection): 1 is what an unrelated track gets on average."""
    return np.asarray(shares) * n_frames_total / (VOTES_PER_FRAME * np.maximum(n_query_frames, 1))


def _fit_vote(library: Library, rng: np.random.Generator) -> dict[str, Table]:
    """Vote lifts of every other track for pseudo-queries: one window of frames of a random
    track each, voted with as they are and negated (the least-similar vote), all in one search
    per direction."""
    name = "chroma_frames"
    index = library.index(name)
    ids, tracks, offsets = track_passages(library, name)
    known, n_frames, n_total = vote_frames(library)
    if len(known) < 2:
        return {}
    sources = rng.choice(known, min(VOTE_QUERIES, len(known)), replace=False)
    window_s = library.config.window_s
    chosen = []
    for source in sources.tolist():  # a few pseudo-queries: their frames are picked one by one
        own = tracks == source
        start = rng.uniform(offsets[own].min(), max(offsets[own].min(), offsets[own].max() - window_s))
        chosen.append(np.flatnonzero(own & (offsets >= start) & (offsets < start + window_s)))
    query_of = np.repeat(np.arange(len(sources)), [len(c) for c in chosen])
    frames = np.asarray(index.rows(ids[np.concatenate(chosen)]))
    n_query = np.bincount(query_of, minlength=len(sources))
    others = np.ones((len(sources), len(known)), bool)
    others[np.arange(len(sources)), np.searchsorted(known, sources)] = False
    out = {}
    for kind, sign in ((VOTE, 1.0), (VOTE_WORST, -1.0)):
        res = index.query(sign * frames, min(VOTES_PER_FRAME, n_total))
        rows, cols = np.nonzero(res.ids >= 0)
        hit = library.resolve_tracks(name, index.item_arrays(res.ids[rows, cols])[0])
        at = np.clip(np.searchsorted(known, hit), 0, len(known) - 1)
        ok = known[at] == hit
        votes = np.bincount(query_of[rows[ok]] * len(known) + at[ok], minlength=others.size)
        shares = votes.reshape(others.shape) / np.maximum(n_frames, 1)
        out[kind] = Table.fit(vote_lift(shares, n_query[:, None], n_total)[others])
    return out
