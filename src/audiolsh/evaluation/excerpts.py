"""Excerpt retrieval (S2's protocol after Foote et al.): is another excerpt of my track nearest?

Per track of at least :func:`min_track_s` seconds, one 10-s query excerpt starts at
``query_offset_s`` (10 s) and ``k`` target excerpts follow every ``spacing_s`` (20 s): with
k = 2 the excerpts are [10, 20), [30, 40) and [50, 60) s. The targets of every track form the
collection; each query retrieves ``k`` excerpts and accuracy@k is the share of them that come
from the query's own track. Each method is run exactly (brute force) and through LSH over
several seeds (mean and spread), timed per query, on growing subsets of the tracks, and, for
the time-vs-size part, over every ``window_s`` window (hop ``dense_hop_s``) of every track.

Methods: S2's mel-band "beat spectrum", Foote's beat spectrum, the rhythm descriptor, timbre
(all four: standardised vectors, cosine, :class:`VectorLSH` with hyperplanes); the chroma vote
(S1: each query frame's nearest frames vote for their excerpt, votes divided by the excerpt's
frame count); MinHash over peak sets (S4, :class:`SetLSH`, ranked by exact Jaccard); and
combined (rhythm + timbre + peaks, each similarity z-scored with collection statistics and
summed; LSH: the union of the rhythm and timbre LSH candidate lists, re-ranked by the summed
score, exact Jaccard of the peak sets included).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.audio import find_audio, load
from audiolsh.errors import AudiolshError, ParameterError
from audiolsh.features.excerpts import (
    ALL_MODES,
    NORMALISATION,
    ExcerptFeatures,
    excerpt_features,
    fit_standardizer,
    standardize,
)
from audiolsh.hashing import HyperplaneLSH, MinHashLSH, SetBatch, concat_sets
from audiolsh.hashing.hyperplane import needs_centering
from audiolsh.index import auto_whiten
from audiolsh.library import COMBINED_VECTORS, Fusion
from audiolsh.search import BruteForce, SetLSH, VectorLSH
from audiolsh.search.brute import jaccard_rows

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "Corpus",
    "Methods",
    "evaluate_excerpts",
    "extract_corpus",
    "min_track_s",
    "protocol_offsets",
    "targets_markdown",
    "to_markdown",
    "write_plots",
]

SR = 22050
WINDOW_S = 10.0
METHODS = ("s2_bands", "beat_spectrum", "rhythm", "timbre", "chroma_vote", "peaks_minhash", "combined")
VECTOR_MODES = {"s2_bands": "beat_spectrum_bands", "beat_spectrum": "beat_spectrum", "rhythm": "rhythm",
                "timbre": "timbre"}
VECTOR_NORMALISATION = {name: NORMALISATION[mode] for name, mode in VECTOR_MODES.items()}
COMBINED = ("rhythm", "timbre", "peaks_minhash")  # the library's combined mode, COMBINED_PARTS
CHROMA_NEIGHBOURS = 5  # nearest frames each query frame votes for
MINHASH_PERM = 128
# Same-track excerpts share few peak pairs (Jaccard 0.02-0.2), so every band is one row (a
# candidate shares one of 128 min-hashes), and candidates are ranked by how many they share
# (collision counting) before the best MINHASH_CANDIDATES are re-ranked by exact Jaccard.
MINHASH_BANDS = 128
MINHASH_CANDIDATES = 100
VECTOR_RERANK = 200  # candidates measured exactly, nearest by Hamming distance of their codes
COMBINED_CANDIDATES = 80  # from the combined vectors' LSH, before the fused re-rank
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
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for r in pool.map(_extract_track, jobs):
                results.append(r)
                if on_track:
                    on_track(r.path, len(paths))
    else:
        for job in jobs:
            results.append(_extract_track(job))
            if on_track:
                on_track(job[0], len(paths))
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


# --------------------------------------------------------------------------- methods


def _lsh_bits(n: int, *, per_bucket: int = 8) -> int:
    """Bits per table so that a bucket holds about ``per_bucket`` rows."""
    return int(np.clip(round(math.log2(max(n, 2) / per_bucket)), 3, 16))


class _VectorMethod:
    """Standardised vectors, cosine; exact brute force or hyperplane LSH."""

    def __init__(self, X: np.ndarray, normalisation: str, seed: int | None, *, n_tables: int = 8) -> None:
        if normalisation == "standardize":
            self.mean, self.std = fit_standardizer(X)
        else:
            self.mean, self.std = np.zeros(X.shape[1], np.float32), np.ones(X.shape[1], np.float32)
        Z = standardize(X, self.mean, self.std)
        self.exact = BruteForce("cosine").fit(Z)
        self.lsh: VectorLSH | None = None
        if seed is not None:
            # The index's own "auto" rule: partially whitened planes when plain ones crowd the rows.
            n_bits, center = _lsh_bits(len(Z)), needs_centering(Z)
            whiten = auto_whiten(Z, n_bits=n_bits, seed=seed, center=center)
            family = HyperplaneLSH(Z.shape[1], n_tables=n_tables, n_bits=n_bits, seed=seed,
                                   center=center or whiten > 0, whiten=whiten)
            self.lsh = VectorLSH(family, metric="cosine", n_probes=4 * n_tables,
                                 n_rerank=VECTOR_RERANK).fit(Z)

    def prepare(self, Q: np.ndarray) -> np.ndarray:
        return standardize(Q, self.mean, self.std)

    def search(self, Q: np.ndarray, k: int, *, lsh: bool) -> np.ndarray:
        Qz = self.prepare(Q)
        return (self.lsh.search(Qz, k) if lsh and self.lsh else self.exact.search(Qz, k)).ids

    def similarity(self, Q: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
        """Cosine similarity of each query with the given rows (nq, m), or with every row (None)."""
        Qz = _unit(self.prepare(Q))
        if ids is None:
            return (Qz @ self.exact.vectors_.T).astype(np.float64)
        rows = self.exact.vectors_[np.maximum(ids, 0)]
        return np.where(ids >= 0, np.einsum("qmd,qd->qm", rows, Qz), -np.inf)


def _unit(A: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(A, axis=1, keepdims=True)
    return (A / np.where(n > 0, n, 1.0)).astype(np.float32)


class _PeaksMethod:
    """MinHash over peak-pair sets; exact Jaccard brute force or :class:`SetLSH`."""

    def __init__(self, sets: SetBatch, seed: int | None) -> None:
        self.sets = sets
        self.exact = BruteForce("jaccard").fit(sets)
        self.lsh: SetLSH | None = None
        if seed is not None:
            family = MinHashLSH(num_perm=MINHASH_PERM, n_bands=MINHASH_BANDS, n_rows=1, seed=seed)
            self.lsh = SetLSH(family, n_candidates=MINHASH_CANDIDATES).fit(sets)

    def search(self, Q: SetBatch, k: int, *, lsh: bool) -> np.ndarray:
        return (self.lsh.search(Q, k) if lsh and self.lsh else self.exact.search(Q, k)).ids

    def similarity(self, Q: SetBatch, ids: np.ndarray | None) -> np.ndarray:
        """Jaccard similarity of each query with the given rows (nq, m), -inf where ids < 0;
        with every row for None."""
        if ids is None:
            ids = np.tile(np.arange(len(self.sets)), (len(Q), 1))
        return jaccard_rows(Q, self.sets, ids)


class _ChromaVote:
    """S1's vote: each query frame's nearest frames vote for their window; divided by frame count.

    Windows are ``[first, stop)`` frame ranges of the stacked frames (they may overlap).
    """

    def __init__(self, frames: np.ndarray, first: np.ndarray, stop: np.ndarray, seed: int | None) -> None:
        self.mean, self.std = fit_standardizer(frames, scale=False)
        Z = standardize(frames, self.mean, self.std)
        self.first, self.stop = first, stop
        self.n_frames = len(Z)
        self.exact = BruteForce("cosine").fit(Z)
        self.lsh: VectorLSH | None = None
        if seed is not None:
            family = HyperplaneLSH(12, n_tables=8, n_bits=_lsh_bits(len(Z), per_bucket=32), seed=seed,
                                   center=False)
            self.lsh = VectorLSH(family, metric="cosine", n_probes=16).fit(Z)

    def scores(self, Q: np.ndarray, *, lsh: bool) -> np.ndarray:
        """Vote share of every window for one query excerpt's frames (n_windows,)."""
        Qz = standardize(Q, self.mean, self.std)
        searcher = self.lsh if lsh and self.lsh else self.exact
        nb = searcher.search(Qz, CHROMA_NEIGHBOURS)
        ids = nb.ids[nb.ids >= 0]
        votes = np.bincount(ids, minlength=self.n_frames).astype(np.float64)
        sims = np.bincount(ids, weights=1.0 - nb.distances[nb.ids >= 0], minlength=self.n_frames)
        cv = np.concatenate([[0.0], np.cumsum(votes)])
        cs = np.concatenate([[0.0], np.cumsum(sims)])
        count = (self.stop - self.first).astype(np.float64)
        share = (cv[self.stop] - cv[self.first]) / count
        tie = (cs[self.stop] - cs[self.first]) / count  # ties of the vote broken by similarity
        return share + 1e-6 * tie / max(1.0, float(tie.max(initial=0.0)))

    def search(self, Qs: Sequence[np.ndarray], k: int, *, lsh: bool) -> np.ndarray:
        out = np.full((len(Qs), k), -1, np.int64)
        for i, Q in enumerate(Qs):
            s = self.scores(Q, lsh=lsh)
            top = np.argsort(-s, kind="stable")[:k]
            out[i, : len(top)] = top
        return out


def _window_ranges(chroma: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = np.array([len(c) for c in chroma])
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.concatenate(list(chroma)), first, first + sizes


class Methods:
    """Every method built over one collection (with one LSH seed, or exact only)."""

    def __init__(
        self,
        vectors: dict[str, np.ndarray],
        sets: SetBatch,
        chroma_frames: np.ndarray,
        chroma_first: np.ndarray,
        chroma_stop: np.ndarray,
        *,
        seed: int | None,
        methods: Sequence[str] = METHODS,
    ) -> None:
        self.methods = tuple(methods)
        self.vec = {
            name: _VectorMethod(vectors[mode], VECTOR_NORMALISATION[name], seed)
            for name, mode in VECTOR_MODES.items()
            if name in self.methods or (name in COMBINED and "combined" in self.methods)
        }
        need_peaks = "peaks_minhash" in self.methods or "combined" in self.methods
        self.peaks = _PeaksMethod(sets, seed) if need_peaks else None
        self.chroma = None
        if "chroma_vote" in self.methods:
            self.chroma = _ChromaVote(chroma_frames, chroma_first, chroma_stop, seed)
        if "combined" in self.methods:
            self._fit_fusion(vectors, sets, seed)

    def _fit_fusion(self, vectors: dict[str, np.ndarray], sets: SetBatch, seed: int | None) -> None:
        """The library's fusion (``audiolsh.library.Fusion``) fitted on this collection, and an
        index of the combined vectors (rhythm and timbre blocks) for its LSH candidates."""
        prepared = {p: self.vec[p].prepare(vectors[VECTOR_MODES[p]]) for p in COMBINED_VECTORS}
        self.fusion = Fusion.fit(prepared, sets)
        C = self.fusion.combine([prepared[p] for p in COMBINED_VECTORS])
        self.combined = _VectorMethod(C, "none", seed)

    def _fused(self, qv: dict[str, np.ndarray], qs: SetBatch, ids: np.ndarray | None) -> np.ndarray:
        """Fused scores with the given rows, or with every row (None)."""
        assert self.peaks is not None
        Qc = self.fusion.combine([self.vec[p].prepare(qv[VECTOR_MODES[p]]) for p in COMBINED_VECTORS])
        score = self.fusion.score(self.combined.similarity(Qc, ids), self.peaks.similarity(qs, ids))
        return score if ids is None else np.where(ids >= 0, score, -np.inf)

    def search(
        self, method: str, qv: dict[str, np.ndarray], qs: SetBatch, qc: Sequence[np.ndarray], k: int,
        *, lsh: bool,
    ) -> np.ndarray:
        """(nq, k) ids of the collection rows retrieved for the queries (-1 padded)."""
        if method in VECTOR_MODES:
            return self.vec[method].search(qv[VECTOR_MODES[method]], k, lsh=lsh)
        if method == "peaks_minhash":
            assert self.peaks is not None
            return self.peaks.search(qs, k, lsh=lsh)
        if method == "chroma_vote":
            assert self.chroma is not None
            return self.chroma.search(qc, k, lsh=lsh)
        if method == "combined":
            return self._search_combined(qv, qs, k, lsh=lsh)
        raise ParameterError(f"unknown method {method!r}: choose from {list(METHODS)}")

    def _search_combined(self, qv: dict[str, np.ndarray], qs: SetBatch, k: int, *, lsh: bool) -> np.ndarray:
        assert self.peaks is not None
        nq = len(qs)
        if lsh:
            # Candidates from the combined (rhythm + timbre) vectors' LSH, as the library finds
            # them: same-track excerpts share so few peak pairs (Jaccard 0.02-0.2) that MinHash
            # bands low enough to catch them admit about half of the collection. The peaks count
            # in the exact fused re-rank.
            Qc = self.fusion.combine([self.vec[p].prepare(qv[VECTOR_MODES[p]]) for p in COMBINED_VECTORS])
            cand = self.combined.search(Qc, max(COMBINED_CANDIDATES, 10 * k), lsh=True)
        else:
            cand = np.tile(np.arange(len(self.peaks.sets)), (nq, 1))
        score = self._fused(qv, qs, None if not lsh else cand)
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(cand, order, axis=1)
        ids[np.take_along_axis(score, order, axis=1) == -np.inf] = -1
        return ids


# --------------------------------------------------------------------------- protocol


def _accuracy(ids: np.ndarray, row_owner: np.ndarray, query_owner: np.ndarray) -> float:
    got = np.where(ids >= 0, row_owner[np.maximum(ids, 0)], -1)
    return float(np.mean(got == query_owner[:, None]))


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
    frames, first, stop = _window_ranges([corpus.chroma[i] for i in t_idx])
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
         timed: bool) -> dict[str, dict[str, Any]]:
    coll, queries, row_owner, q_owner = _subset(corpus, tracks)
    k = corpus.k
    qv, qs, qc = queries["vectors"], queries["sets"], queries["chroma"]
    out: dict[str, dict[str, Any]] = {}
    exact = Methods(coll["vectors"], coll["sets"], *coll["chroma"], seed=None, methods=methods)
    for m in methods:
        ids = exact.search(m, qv, qs, qc, k, lsh=False)
        out[m] = {"exact": _accuracy(ids, row_owner, q_owner), "lsh": []}
        if timed:
            out[m]["exact_ms"] = _ms_per_query(exact, m, qv, qs, qc, k, lsh=False)
    for s_i, seed in enumerate(seeds):
        built = Methods(coll["vectors"], coll["sets"], *coll["chroma"], seed=seed, methods=methods)
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
    on_step: Callable[[str], None] | None,
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
        exact = Methods(vectors, sets, frames, first, stop, seed=None, methods=methods)
        lsh = Methods(vectors, sets, frames, first, stop, seed=seed, methods=methods)
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
) -> dict[str, Any]:
    """Run the protocol; return a JSON-ready dict (see :func:`to_markdown` for the layout)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ParameterError(f"unknown method(s) {unknown}: choose from {list(METHODS)}")
    seed_list = list(range(seeds))
    n_tracks = len(corpus.paths)
    all_tracks = np.arange(n_tracks)
    main = _run(corpus, all_tracks, methods, seed_list, timed=True)
    if on_step:
        on_step("all tracks")
    summary = {}
    for m in methods:
        lsh = np.array(main[m]["lsh"])
        summary[m] = {
            "exact": main[m]["exact"], "lsh_mean": float(lsh.mean()), "lsh_std": float(lsh.std()),
            "lsh_min": float(lsh.min()), "lsh_max": float(lsh.max()),
            "lsh_over_exact": float(lsh.mean() / main[m]["exact"]) if main[m]["exact"] else math.nan,
            "exact_ms": main[m]["exact_ms"], "lsh_ms": main[m]["lsh_ms"],
        }
    growth = []
    rng = np.random.default_rng(1234)
    for n in [s for s in tracks_steps if s < n_tracks] + [n_tracks]:
        acc_e: dict[str, list[float]] = {m: [] for m in methods}
        acc_l: dict[str, list[float]] = {m: [] for m in methods}
        for d in range(draws if n < n_tracks else 1):
            tracks = np.sort(rng.choice(n_tracks, n, replace=False)) if n < n_tracks else all_tracks
            res = main if n == n_tracks else _run(corpus, tracks, methods, [d], timed=False)
            for m in methods:
                acc_e[m].append(res[m]["exact"])
                acc_l[m].append(float(np.mean(res[m]["lsh"])))
        growth.append({"n_tracks": n, "draws": draws if n < n_tracks else 1,
                       "exact": {m: float(np.mean(v)) for m, v in acc_e.items()},
                       "lsh": {m: float(np.mean(v)) for m, v in acc_l.items()}})
        if on_step:
            on_step(f"accuracy vs tracks: {n}")
    timing = _dense_timing(corpus, sizes, methods, 0, on_step) if corpus.dense_owner is not None else []
    return {
        "protocol": {"k": corpus.k, "window_s": WINDOW_S, "offsets_s": protocol_offsets(corpus.k),
                     "min_track_s": min_track_s(corpus.k), "n_tracks": n_tracks,
                     "n_targets": int(np.sum(corpus.role > 0)), "n_skipped": len(corpus.skipped),
                     "corpus_hours": corpus.total_s / 3600, "seeds": seeds,
                     "dense_hop_s": corpus.dense_hop_s,
                     "n_dense_windows": None if corpus.dense_owner is None else len(corpus.dense_owner)},
        "summary": summary,
        "growth": growth,
        "timing": timing,
        "skipped": [{"path": p, "reason": r} for p, r in corpus.skipped],
    }


# --------------------------------------------------------------------------- reports

LABELS = {
    "s2_bands": "S2 band \"beat spectrum\"",
    "beat_spectrum": "Foote beat spectrum",
    "rhythm": "rhythm (log-lag onset ACF)",
    "timbre": "timbre (MFCC stats)",
    "chroma_vote": "chroma vote (S1)",
    "peaks_minhash": "MinHash peak pairs (S4)",
    "combined": "combined (rhythm+timbre+peaks)",
}


def to_markdown(result: dict[str, Any]) -> str:
    """The result tables as Markdown."""
    p = result["protocol"]
    k = p["k"]
    lines = [
        f"{p['n_tracks']} tracks of at least {p['min_track_s']:g} s ({p['n_skipped']} skipped), "
        f"{p['n_targets']} targets; excerpts of {p['window_s']:g} s at {p['offsets_s']} s; "
        f"LSH over {p['seeds']} seeds.",
        "",
        f"| method | exact acc@{k} | LSH acc@{k} mean ± std (min-max) | LSH / exact | exact ms/query "
        "| LSH ms/query |",
        "|---|---|---|---|---|---|",
    ]
    for m, s in result["summary"].items():
        lines.append(
            f"| {LABELS.get(m, m)} | {s['exact']:.3f} | {s['lsh_mean']:.3f} ± {s['lsh_std']:.3f} "
            f"({s['lsh_min']:.3f}-{s['lsh_max']:.3f}) | {s['lsh_over_exact']:.3f} | {s['exact_ms']:.3f} | "
            f"{s['lsh_ms']:.3f} |"
        )
    methods = list(result["summary"])
    lines += ["", f"Accuracy@{k} as the number of tracks grows (exact / LSH; mean over random subsets):", "",
              "| tracks | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
              "|---" * (len(methods) + 1) + "|"]
    for g in result["growth"]:
        cells = [f"{g['exact'][m]:.3f} / {g['lsh'][m]:.3f}" for m in methods]
        lines.append(f"| {g['n_tracks']} | " + " | ".join(cells) + " |")
    if result["timing"]:
        lines += ["", f"Time per query (ms, one query at a time) over every {p['window_s']:g}-s window "
                      f"with a {p['dense_hop_s']:g}-s hop of the tracks; exact / LSH (speed-up, LSH top-{k} "
                      "recall against exact):", "",
                  "| windows | tracks | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
                  "|---" * (len(methods) + 2) + "|"]
        for row in result["timing"]:
            cells = [
                f"{t['exact_ms']:.2f} / {t['lsh_ms']:.2f} ({t['speedup']:.1f}x, {t['recall_vs_exact']:.2f})"
                for t in (row["methods"][m] for m in methods)
            ]
            lines.append(f"| {row['n_excerpts']} | {row['n_tracks']} | " + " | ".join(cells) + " |")
    lines += ["", "Targets of issue #3:", "", *targets_markdown(result)]
    return "\n".join(lines) + "\n"


def targets_markdown(result: dict[str, Any], *, big: int = 10_000) -> list[str]:
    """The issue's targets, measured: rhythm >= 1.5 x Foote, best mode >= 0.85, LSH >= 0.97 x
    exact, and LSH >= 5x faster than exact from ``big`` excerpts on (table rows)."""
    S, k = result["summary"], result["protocol"]["k"]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    rows = ["| target | measured | met |", "|---|---|---|"]
    if "rhythm" in S and "beat_spectrum" in S:
        rh, fo = S["rhythm"]["exact"], S["beat_spectrum"]["exact"]
        ratio = rh / fo if fo else math.inf
        rows.append(f"| rhythm >= 1.5 x Foote (exact acc@{k}) | {rh:.3f} / {fo:.3f} = {ratio:.2f}x | "
                    f"{met(ratio >= 1.5)} |")
    best = max(S, key=lambda m: S[m]["exact"])
    rows.append(f"| best mode >= 0.85 (exact acc@{k}) | {LABELS.get(best, best)}: {S[best]['exact']:.3f} | "
                f"{met(S[best]['exact'] >= 0.85)} |")
    for m, s in S.items():
        rows.append(f"| LSH >= 0.97 x exact: {LABELS.get(m, m)} | {s['lsh_mean']:.3f} / {s['exact']:.3f} = "
                    f"{s['lsh_over_exact']:.3f} | {met(s['lsh_over_exact'] >= 0.97)} |")
    timed = [row for row in result["timing"] if row["n_excerpts"] >= big]
    for m in S if timed else ():
        speedups = [row["methods"][m]["speedup"] for row in timed]
        sizes = ", ".join(str(row["n_excerpts"]) for row in timed)
        rows.append(f"| LSH >= 5x faster than exact at >= {big // 1000}k excerpts: {LABELS.get(m, m)} | "
                    + ", ".join(f"{x:.1f}x" for x in speedups) + f" ({sizes} excerpts) | "
                    f"{met(min(speedups) >= 5)} |")
    return rows


def write_plots(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Accuracy vs tracks and LSH vs exact time per query as PNGs; returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ParameterError("plots need matplotlib: pip install matplotlib") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(result["summary"])
    k = result["protocol"]["k"]
    files = []
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for i, m in enumerate(methods):
        n = [g["n_tracks"] for g in result["growth"]]
        color = f"C{i}"
        ax.plot(n, [g["exact"][m] for g in result["growth"]], "o-", color=color, label=LABELS.get(m, m))
        ax.plot(n, [g["lsh"][m] for g in result["growth"]], "x--", color=color, alpha=0.7)
    ax.set_xlabel("tracks in the collection")
    ax.set_ylabel(f"accuracy@{k}")
    ax.set_title("Excerpt retrieval: exact (solid) and LSH (dashed)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = out / "excerpts_accuracy_vs_tracks.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)
    if result["timing"]:
        fig, ax = plt.subplots(figsize=(9.5, 4.8))
        sizes = [r["n_excerpts"] for r in result["timing"]]
        for i, m in enumerate(methods):
            color = f"C{i}"
            ax.plot(sizes, [r["methods"][m]["exact_ms"] for r in result["timing"]], "o-", color=color,
                    label=LABELS.get(m, m))
            lsh_ms = [r["methods"][m]["lsh_ms"] for r in result["timing"]]
            ax.plot(sizes, lsh_ms, "x--", color=color, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("excerpts in the collection (10-s windows)")
        ax.set_ylabel("ms per query")
        ax.set_title("Time per query: exact (solid) vs LSH (dashed)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        path = out / "excerpts_time_vs_size.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files
