"""Excerpt retrieval (S2's protocol after Foote et al.): is another excerpt of my track nearest?

Per track of at least :func:`min_track_s` seconds, one 10-s query excerpt starts at
``query_offset_s`` (10 s) and ``k`` target excerpts follow every ``spacing_s`` (20 s): with
k = 2 the excerpts are [10, 20), [30, 40) and [50, 60) s. The targets of every track form the
collection; each query retrieves ``k`` excerpts and accuracy@k is the share of them that come
from the query's own track (with a 95 % bootstrap interval over the tracks, and, at track
level as ``similar`` answers, how often the query's own track comes first when each track is
placed by its best excerpt). Each method is run exactly (brute force) and through LSH over
several seeds (mean and spread), timed per query, on growing subsets of the tracks, and, for
the time-vs-size part, over every ``window_s`` window (hop ``dense_hop_s``) of every track.

Methods: S2's mel-band "beat spectrum", Foote's beat spectrum, the rhythm descriptor, timbre
(all four: standardised vectors, cosine, :class:`VectorLSH` with hyperplanes); the chroma vote
(S1: each query frame's nearest frames vote for their excerpt, votes divided by the excerpt's
frame count); MinHash over peak sets (S4, :class:`SetLSH`, ranked by exact Jaccard); and
combined (the library's ``Fusion``: rhythm and timbre normalised jointly, or without a learned
normalisation their two cosines, plus the peak sets' Jaccard, each z-scored with collection
statistics; LSH: the candidates of the combined vectors' LSH and of the peak sets' MinHash LSH,
re-ranked by the whole score, exact Jaccard included).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiolsh.audio import find_audio, load
from audiolsh.errors import AudiolshError, ParameterError
from audiolsh.evaluation.excerpt_methods import METHODS, VECTOR_MODES, Methods, window_ranges
from audiolsh.evaluation.excerpt_report import LABELS, targets_markdown, to_markdown, write_plots
from audiolsh.evaluation.metrics import bootstrap_ci
from audiolsh.features import normalisation as wccn
from audiolsh.features.excerpts import (
    ALL_MODES,
    ExcerptFeatures,
    excerpt_features,
)
from audiolsh.hashing import SetBatch, concat_sets
from audiolsh.parallel import Executor, LocalExecutor

logger = logging.getLogger(__name__)

__all__ = [
    "LABELS",
    "METHODS",
    "Corpus",
    "Methods",
    "evaluate_excerpts",
    "extract_corpus",
    "min_track_s",
    "protocol_offsets",
    "targets_markdown",
    "to_markdown",
    "track_ranks",
    "write_plots",
]

SR = 22050
WINDOW_S = 10.0
TIME_QUERIES = 40  # queries timed per size in the time-vs-size part


def protocol_offsets(k: int, *, query_offset_s: float = 10.0, spacing_s: float = 20.0) -> list[float]:
    """Start (s) of the query excerpt, then of the k targets: 10, 30, 50, ... for the defaults."""
    return [query_offset_s + j * spacing_s for j in range(k + 1)]


def min_track_s(k: int, *, window_s: float = WINDOW_S, **offsets: float) -> float:
    """Shortest track the protocol uses: 60 s, or long enough for every excerpt."""
    return max(60.0, protocol_offsets(k, **offsets)[-1] + window_s)


# --------------------------------------------------------------------------- extraction


@dataclass
class TrackFeatures:
    """What one worker returns for one file."""

    path: str
    duration_s: float
    excerpts: list[dict[str, ExcerptFeatures]]  # query, then targets
    dense: dict[str, ExcerptFeatures] | None
    error: str | None = None


def _extract_track(args: tuple[str, int, float, float | None]) -> TrackFeatures:
    path, k, window_s, dense_hop_s = args
    try:
        y, sr = load(path, sr=SR)
    except AudiolshError as exc:
        return TrackFeatures(path, 0.0, [], None, error=str(exc))
    duration_s = y.size / sr
    if duration_s < min_track_s(k, window_s=window_s):
        return TrackFeatures(path, duration_s, [], None, error="shorter than the protocol needs")
    excerpts = []
    for offset in protocol_offsets(k):
        start = round(offset * sr)
        clip = y[start : start + round(window_s * sr)]
        excerpts.append(excerpt_features(clip, sr, window_s=window_s, modes=ALL_MODES))
    dense = None
    if dense_hop_s:
        dense = excerpt_features(y, sr, window_s=window_s, hop_s=dense_hop_s, modes=ALL_MODES)
    return TrackFeatures(path, duration_s, excerpts, dense)


@dataclass
class Corpus:
    """Protocol excerpts (and dense windows) of every usable track, as flat arrays per mode.

    ``owner`` maps each excerpt to its track, ``role`` is 0 for the query and 1..k for targets.
    Chroma: ``chroma_frames[mode] `` rows with ``chroma_owner`` excerpt indices.
    """

    paths: list[str]
    skipped: list[tuple[str, str]]
    k: int
    owner: np.ndarray
    role: np.ndarray
    vectors: dict[str, np.ndarray]
    sets: SetBatch
    chroma: list[np.ndarray]
    dense_owner: np.ndarray | None = None
    dense_offsets_s: np.ndarray | None = None
    dense_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    dense_sets: SetBatch | None = None
    dense_chroma: list[np.ndarray] = field(default_factory=list)
    dense_hop_s: float | None = None
    total_s: float = 0.0


def extract_corpus(
    corpus_dir: str | os.PathLike[str],
    *,
    k: int = 2,
    window_s: float = WINDOW_S,
    dense_hop_s: float | None = 1.0,
    workers: int = 1,
    executor: Executor | None = None,
    on_track: Callable[[str, int], None] | None = None,
) -> Corpus:
    """Decode every audio file under ``corpus_dir`` once and extract the protocol's features.

    ``on_track(path, n_total)`` is called after each file (for a progress bar).
    """
    paths = [str(p) for p in find_audio([corpus_dir])]
    if not paths:
        raise ParameterError(f"no audio files under {os.fspath(corpus_dir)!r}")
    jobs = [(p, k, window_s, dense_hop_s) for p in paths]
    results: list[TrackFeatures] = []
    for r in (executor or LocalExecutor(workers)).map(_extract_track, jobs):
        results.append(r)
        if on_track:
            on_track(r.path, len(paths))
    good = [r for r in results if r.error is None]
    skipped = [(r.path, r.error or "") for r in results if r.error is not None]
    if len(good) < 2:
        raise ParameterError(
            f"{os.fspath(corpus_dir)}: only {len(good)} track(s) of at least {min_track_s(k):g} s; need 2"
        )
    owner = np.repeat(np.arange(len(good)), k + 1)
    role = np.tile(np.arange(k + 1), len(good))
    excerpts = [e for r in good for e in r.excerpts]
    corpus = Corpus(
        paths=[r.path for r in good], skipped=skipped, k=k, owner=owner, role=role,
        vectors={m: np.stack([e[m].X[0] for e in excerpts]) for m in VECTOR_MODES.values()},  # type: ignore[index]
        sets=concat_sets([e["peaks"].X for e in excerpts]),  # type: ignore[misc]
        chroma=[np.asarray(e["chroma"].X) for e in excerpts],
        total_s=float(sum(r.duration_s for r in good)),
    )
    if dense_hop_s:
        dense = [r.dense for r in good if r.dense is not None]
        corpus.dense_hop_s = dense_hop_s
        corpus.dense_owner = np.concatenate(
            [np.full(len(d["rhythm"]), i) for i, d in enumerate(dense)]
        )
        corpus.dense_offsets_s = np.concatenate([d["rhythm"].offsets_s for d in dense])
        corpus.dense_vectors = {
            m: np.concatenate([np.asarray(d[m].X) for d in dense]) for m in VECTOR_MODES.values()
        }
        corpus.dense_sets = concat_sets([d["peaks"].X for d in dense])  # type: ignore[misc]
        corpus.dense_chroma = [np.asarray(d["chroma"].X) for d in dense]
    return corpus


# --------------------------------------------------------------------------- protocol


def _hits(ids: np.ndarray, row_owner: np.ndarray, query_owner: np.ndarray) -> np.ndarray:
    """Per query, the share of its retrieved excerpts that come from its own track."""
    got = np.where(ids >= 0, row_owner[np.maximum(ids, 0)], -1)
    return np.mean(got == query_owner[:, None], axis=1)


def track_ranks(ids: np.ndarray, row_owner: np.ndarray, query_owner: np.ndarray) -> np.ndarray:
    """Per query, the rank (1 = first) of its own track among the distinct tracks of its ranked
    excerpts, each track placed by its best excerpt, as ``similar`` ranks tracks; 0 where the
    own track is not retrieved at all."""
    nq, n = ids.shape
    tracks = np.where(ids >= 0, row_owner[np.maximum(ids, 0)], -1)
    # A track's first appearance in each row: sort by (track, position), keep each track's first.
    order = np.argsort(tracks * (n + 1) + np.arange(n)[None, :], axis=1, kind="stable")
    t_sorted = np.take_along_axis(tracks, order, axis=1)
    first = np.ones((nq, n), bool)
    first[:, 1:] = t_sorted[:, 1:] != t_sorted[:, :-1]
    first &= t_sorted >= 0
    is_first = np.zeros((nq, n), bool)
    np.put_along_axis(is_first, order, first, axis=1)
    rank = np.cumsum(is_first, axis=1)
    own = is_first & (tracks == query_owner[:, None])
    return np.where(own.any(axis=1), rank[np.arange(nq), own.argmax(axis=1)], 0)


def _accuracy(ids: np.ndarray, row_owner: np.ndarray, query_owner: np.ndarray) -> float:
    return float(np.mean(_hits(ids, row_owner, query_owner)))


def _time_per_query(fn: Callable[[int], Any], n: int) -> float:
    """Mean seconds per query, queries one at a time (best of two passes)."""
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - t0) / max(n, 1))
    return best


def _subset(
    corpus: Corpus, tracks: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any], np.ndarray, np.ndarray]:
    """Collection (targets of ``tracks``) and queries (their query excerpts)."""
    keep = np.isin(corpus.owner, tracks)
    t_idx = np.flatnonzero(keep & (corpus.role > 0))
    q_idx = np.flatnonzero(keep & (corpus.role == 0))
    frames, first, stop = window_ranges([corpus.chroma[i] for i in t_idx])
    coll = {
        "vectors": {m: X[t_idx] for m, X in corpus.vectors.items()},
        "sets": corpus.sets.take(t_idx),
        "chroma": (frames, first, stop),
    }
    queries = {
        "vectors": {m: X[q_idx] for m, X in corpus.vectors.items()},
        "sets": corpus.sets.take(q_idx),
        "chroma": [corpus.chroma[i] for i in q_idx],
    }
    return coll, queries, corpus.owner[t_idx], corpus.owner[q_idx]


def _run(corpus: Corpus, tracks: np.ndarray, methods: Sequence[str], seeds: Sequence[int], *,
         timed: bool, normalisation: str = wccn.DEFAULT) -> dict[str, dict[str, Any]]:
    coll, queries, row_owner, q_owner = _subset(corpus, tracks)
    k = corpus.k
    qv, qs, qc = queries["vectors"], queries["sets"], queries["chroma"]
    out: dict[str, dict[str, Any]] = {}
    exact = Methods(coll["vectors"], coll["sets"], *coll["chroma"], seed=None, labels=row_owner,
                    methods=methods, normalisation=normalisation)
    for m in methods:
        ids = exact.search(m, qv, qs, qc, k, lsh=False)
        hits = _hits(ids, row_owner, q_owner)
        out[m] = {"exact": float(np.mean(hits)), "hits": hits, "lsh": []}
        if timed:
            out[m]["exact_ms"] = _ms_per_query(exact, m, qv, qs, qc, k, lsh=False)
            # Track level, as `similar` answers: where the query's own track comes among tracks.
            ranks = track_ranks(exact.search(m, qv, qs, qc, len(row_owner), lsh=False), row_owner, q_owner)
            out[m]["track_first"] = float(np.mean(ranks == 1))
            out[m]["track_mrr"] = float(np.mean(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)))
    for s_i, seed in enumerate(seeds):
        built = Methods(coll["vectors"], coll["sets"], *coll["chroma"], seed=seed, labels=row_owner,
                        methods=methods, normalisation=normalisation)
        for m in methods:
            ids = built.search(m, qv, qs, qc, k, lsh=True)
            out[m]["lsh"].append(_accuracy(ids, row_owner, q_owner))
            if timed and s_i == 0:
                out[m]["lsh_ms"] = _ms_per_query(built, m, qv, qs, qc, k, lsh=True)
    return out


def _ms_per_query(
    methods: Methods, m: str, qv: dict[str, np.ndarray], qs: SetBatch, qc: Sequence[np.ndarray], k: int,
    *, lsh: bool,
) -> float:
    """Milliseconds per query of one method, queries one at a time (best of two passes)."""
    singles = [({name: X[i : i + 1] for name, X in qv.items()}, qs.take(np.array([i])), qc[i : i + 1])
               for i in range(len(qs))]

    def one(i: int) -> None:
        methods.search(m, *singles[i], k, lsh=lsh)

    return 1e3 * _time_per_query(one, len(singles))


def _dense_timing(
    corpus: Corpus, sizes: Sequence[int], methods: Sequence[str], seed: int,
    on_step: Callable[[str], None] | None, normalisation: str = wccn.DEFAULT,
) -> list[dict[str, Any]]:
    """Time per query, exact vs LSH, over the first n dense windows of a seeded track order."""
    assert corpus.dense_owner is not None and corpus.dense_sets is not None
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(corpus.paths))
    # Windows in track order; the chroma frames of each window are its track's frames.
    rows = np.concatenate([np.flatnonzero(corpus.dense_owner == t) for t in order])
    n_total = len(rows)
    q_all = np.flatnonzero(corpus.role == 0)
    results = []
    for size in [s for s in sizes if s <= n_total] + ([n_total] if n_total not in sizes else []):
        sel = rows[:size]
        tracks_in = np.unique(corpus.dense_owner[sel])
        vectors = {m: X[sel] for m, X in corpus.dense_vectors.items()}
        sets = corpus.dense_sets.take(sel)
        frames, first, stop = _dense_chroma_ranges(corpus, sel)
        q_idx = q_all[np.isin(corpus.owner[q_all], tracks_in)][:TIME_QUERIES]
        qv = {m: X[q_idx] for m, X in corpus.vectors.items()}
        qs = corpus.sets.take(q_idx)
        qc = [corpus.chroma[i] for i in q_idx]
        labels = corpus.dense_owner[sel]
        exact = Methods(vectors, sets, frames, first, stop, seed=None, labels=labels, methods=methods,
                        normalisation=normalisation)
        lsh = Methods(vectors, sets, frames, first, stop, seed=seed, labels=labels, methods=methods,
                      normalisation=normalisation)
        per_method: dict[str, dict[str, float]] = {}
        row = {"n_excerpts": int(size), "n_tracks": len(tracks_in), "n_chroma_frames": len(frames),
               "n_queries": len(q_idx), "methods": per_method}
        for m in methods:
            ids_e = exact.search(m, qv, qs, qc, corpus.k, lsh=False)
            ids_l = lsh.search(m, qv, qs, qc, corpus.k, lsh=True)
            agree = float(np.mean(
                [len(set(a[a >= 0]) & set(b[b >= 0])) / corpus.k for a, b in zip(ids_e, ids_l)]
            ))
            t_e = _ms_per_query(exact, m, qv, qs, qc, corpus.k, lsh=False)
            t_l = _ms_per_query(lsh, m, qv, qs, qc, corpus.k, lsh=True)
            per_method[m] = {"exact_ms": t_e, "lsh_ms": t_l, "speedup": t_e / t_l, "recall_vs_exact": agree}
        results.append(row)
        if on_step:
            on_step(f"time vs size: {size} excerpts")
    return results


def _dense_chroma_ranges(corpus: Corpus, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chroma frames of the tracks of ``sel`` and each selected window's frame range."""
    assert corpus.dense_owner is not None and corpus.dense_offsets_s is not None and corpus.dense_hop_s
    tracks = list(dict.fromkeys(corpus.dense_owner[sel].tolist()))
    frame_s = 4000 / SR
    starts = np.cumsum([0] + [len(corpus.dense_chroma[t]) for t in tracks])
    base = dict(zip(tracks, starts[:-1]))
    frames = np.concatenate([corpus.dense_chroma[t] for t in tracks])
    first = np.array([base[t] for t in corpus.dense_owner[sel].tolist()]) + np.round(
        corpus.dense_offsets_s[sel] / frame_s).astype(np.int64)
    n_w = round(WINDOW_S / frame_s)
    return frames, first, np.minimum(first + n_w, len(frames))


def evaluate_excerpts(
    corpus: Corpus,
    *,
    seeds: int = 10,
    tracks_steps: Sequence[int] = (10, 20, 40),
    draws: int = 5,
    sizes: Sequence[int] = (1000, 3000, 10000),
    methods: Sequence[str] = METHODS,
    on_step: Callable[[str], None] | None = None,
    normalisation: str = wccn.DEFAULT,
) -> dict[str, Any]:
    """Run the protocol; return a JSON-ready dict (see :func:`to_markdown` for the layout).

    ``normalisation``: the learned within-track normalisation of the rhythm and timbre vectors
    (and so of the combined mode), as a library built with it applies; "none" for plain
    standardised cosine. The beat-spectrum baselines never use it.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ParameterError(f"unknown method(s) {unknown}: choose from {list(METHODS)}")
    seed_list = list(range(seeds))
    n_tracks = len(corpus.paths)
    all_tracks = np.arange(n_tracks)
    wccn.load(normalisation)  # an unknown name fails here, before any work
    main = _run(corpus, all_tracks, methods, seed_list, timed=True, normalisation=normalisation)
    if on_step:
        on_step("all tracks")
    summary = {}
    for m in methods:
        lsh = np.array(main[m]["lsh"])
        summary[m] = {
            "exact": main[m]["exact"], "exact_ci": list(bootstrap_ci(main[m]["hits"])),
            "exact_per_query": [round(float(h), 4) for h in main[m]["hits"]],
            "lsh_mean": float(lsh.mean()), "lsh_std": float(lsh.std()),
            "lsh_min": float(lsh.min()), "lsh_max": float(lsh.max()),
            "lsh_over_exact": float(lsh.mean() / main[m]["exact"]) if main[m]["exact"] else math.nan,
            "exact_ms": main[m]["exact_ms"], "lsh_ms": main[m]["lsh_ms"],
            "track_first": main[m]["track_first"], "track_mrr": main[m]["track_mrr"],
        }
    growth = []
    rng = np.random.default_rng(1234)
    for n in [s for s in tracks_steps if s < n_tracks] + [n_tracks]:
        acc_e: dict[str, list[float]] = {m: [] for m in methods}
        acc_l: dict[str, list[float]] = {m: [] for m in methods}
        for d in range(draws if n < n_tracks else 1):
            tracks = np.sort(rng.choice(n_tracks, n, replace=False)) if n < n_tracks else all_tracks
            res = main if n == n_tracks else _run(corpus, tracks, methods, [d], timed=False,
                                                         normalisation=normalisation)
            for m in methods:
                acc_e[m].append(res[m]["exact"])
                acc_l[m].append(float(np.mean(res[m]["lsh"])))
        growth.append({"n_tracks": n, "draws": draws if n < n_tracks else 1,
                       "exact": {m: float(np.mean(v)) for m, v in acc_e.items()},
                       "lsh": {m: float(np.mean(v)) for m, v in acc_l.items()}})
        if on_step:
            on_step(f"accuracy vs tracks: {n}")
    timing = (_dense_timing(corpus, sizes, methods, 0, on_step, normalisation)
              if corpus.dense_owner is not None else [])
    return {
        "protocol": {"k": corpus.k, "window_s": WINDOW_S, "offsets_s": protocol_offsets(corpus.k),
                     "min_track_s": min_track_s(corpus.k), "n_tracks": n_tracks,
                     "n_targets": int(np.sum(corpus.role > 0)), "n_skipped": len(corpus.skipped),
                     "corpus_hours": corpus.total_s / 3600, "seeds": seeds,
                     "dense_hop_s": corpus.dense_hop_s, "normalisation": normalisation,
                     "n_dense_windows": None if corpus.dense_owner is None else len(corpus.dense_owner)},
        "summary": summary,
        "growth": growth,
        "timing": timing,
        "skipped": [{"path": p, "reason": r} for p, r in corpus.skipped],
    }
