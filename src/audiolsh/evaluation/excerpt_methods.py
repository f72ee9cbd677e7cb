"""The excerpt protocol's methods, each exact (brute force) or through LSH.

Vector methods (S2's band variant, Foote's beat spectrum, the rhythm descriptor, timbre):
standardised vectors (rhythm and timbre then through the library's learned within-track
normalisation, unless "none"), cosine, :class:`VectorLSH` with hyperplanes.  The chroma vote (S1):
each query frame's nearest frames vote for their excerpt, votes divided by the excerpt's frame
count.  MinHash over peak sets (S4, :class:`SetLSH`, ranked by exact Jaccard).  Combined: the
library's fusion (``audiolsh.library.Fusion``) of the plain standardised rhythm and timbre and
the peaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.features import normalisation as wccn
from audiolsh.features.excerpts import BLOCKS, NORMALISATION, fit_standardizer, standardize
from audiolsh.features.peaks import common_elements, drop_elements
from audiolsh.features.scaling import COMBINED_VECTORS, NORMALISED, Fusion, Standardizer
from audiolsh.hashing import HyperplaneLSH, MinHashLSH, SetBatch
from audiolsh.hashing.hyperplane import needs_centering
from audiolsh.index.build import auto_whiten
from audiolsh.search import BruteForce, SetLSH, VectorLSH
from audiolsh.search.brute import jaccard_rows, prepare

__all__ = ["METHODS", "VECTOR_MODES", "Methods", "window_ranges"]

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
COMBINED_PEAK_CANDIDATES = 20  # and from the peak sets' MinHash LSH


def merge_candidates(*ids: np.ndarray) -> np.ndarray:
    """Row-wise union of candidate id arrays (nq, m_i), each id once, -1 padded."""
    out = np.sort(np.concatenate(ids, axis=1), axis=1)
    out[:, 1:][out[:, 1:] == out[:, :-1]] = -1
    return out


def _lsh_bits(n: int, *, per_bucket: int = 8) -> int:
    """Bits per table so that a bucket holds about ``per_bucket`` rows."""
    return int(np.clip(round(math.log2(max(n, 2) / per_bucket)), 3, 16))


class _VectorMethod:
    """Standardised vectors, cosine; exact brute force or hyperplane LSH."""

    def __init__(self, X: np.ndarray, normalisation: str, seed: int | None, *, n_tables: int = 8,
                 blocks: tuple[int, ...] = (), matrix: np.ndarray | None = None) -> None:
        if normalisation == "standardize":
            mean, std = fit_standardizer(X)
        else:
            mean, std = np.zeros(X.shape[1], np.float32), np.ones(X.shape[1], np.float32)
        # The library's own standardiser, with its learned normalisation when one is given.
        self.standardizer = Standardizer(mean, std, blocks, matrix)
        Z = self.prepare(X)
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

    def prepare(self, Q: np.ndarray, *, learned: bool = True) -> np.ndarray:
        """Standardised rows; with ``learned`` (and a matrix) normalised too."""
        return self.standardizer(Q, learned=learned)

    def search(self, Q: np.ndarray, k: int, *, lsh: bool) -> np.ndarray:
        Qz = self.prepare(Q)
        return (self.lsh.search(Qz, k) if lsh and self.lsh else self.exact.search(Qz, k)).ids

    def similarity(self, Q: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
        """Cosine similarity of each query with the given rows (nq, m), or with every row (None)."""
        Qz = prepare(self.prepare(Q), "cosine")
        if ids is None:
            return (Qz @ self.exact.vectors_.T).astype(np.float64)
        rows = self.exact.vectors_[np.maximum(ids, 0)]
        return np.where(ids >= 0, np.einsum("qmd,qd->qm", rows, Qz), -np.inf)


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


def window_ranges(chroma: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        labels: np.ndarray,
        methods: Sequence[str] = METHODS,
        normalisation: str = wccn.DEFAULT,
    ) -> None:
        self.methods = tuple(methods)
        self.learned = learned = wccn.load(normalisation)
        # The library's rule: pairs common to the collection's windows are left out of every set.
        self.common = common_elements(sets, labels)
        sets = drop_elements(sets, self.common)
        self.vec = {
            name: _VectorMethod(vectors[mode], VECTOR_NORMALISATION[name], seed, blocks=BLOCKS.get(mode, ()),
                                matrix=learned.matrix(mode, vectors[mode].shape[1])
                                if learned is not None and mode in NORMALISED else None)
            for name, mode in VECTOR_MODES.items()
            if name in self.methods or (name in COMBINED and "combined" in self.methods)
        }
        need_peaks = "peaks_minhash" in self.methods or "combined" in self.methods
        self.peaks = _PeaksMethod(sets, seed) if need_peaks else None
        self.chroma = None
        if "chroma_vote" in self.methods:
            self.chroma = _ChromaVote(chroma_frames, chroma_first, chroma_stop, seed)
        if "combined" in self.methods:
            self._fit_fusion(vectors, sets, labels, seed)

    def _fit_fusion(self, vectors: dict[str, np.ndarray], sets: SetBatch, labels: np.ndarray,
                    seed: int | None) -> None:
        """The library's fusion (``audiolsh.library.Fusion``) fitted on this collection, and an
        index of the combined vectors (rhythm and timbre blocks) for its LSH candidates."""
        prepared = {p: self.vec[p].prepare(vectors[VECTOR_MODES[p]], learned=False) for p in COMBINED_VECTORS}
        matrix = None
        if self.learned is not None:  # the library's rule: the joint form when the matrix exists
            matrix = self.learned.matrix("combined", sum(prepared[p].shape[1] for p in COMBINED_VECTORS))
        self.fusion = Fusion.fit(prepared, sets, labels, matrix=matrix)
        C = self.fusion.combine([prepared[p] for p in COMBINED_VECTORS])
        self.combined = _VectorMethod(C, "none", seed)

    def _combined_rows(self, qv: dict[str, np.ndarray]) -> np.ndarray:
        """The combined rows of queries: the plain standardised parts (no learned normalisation)."""
        return self.fusion.combine([self.vec[p].prepare(qv[VECTOR_MODES[p]], learned=False)
                                    for p in COMBINED_VECTORS])

    def _fused(self, qv: dict[str, np.ndarray], qs: SetBatch, ids: np.ndarray | None) -> np.ndarray:
        """Fused scores with the given rows, or with every row (None)."""
        assert self.peaks is not None
        Qc = self._combined_rows(qv)
        score = self.fusion.score(self.combined.similarity(Qc, ids), self.peaks.similarity(qs, ids))
        return score if ids is None else np.where(ids >= 0, score, -np.inf)

    def search(
        self, method: str, qv: dict[str, np.ndarray], qs: SetBatch, qc: Sequence[np.ndarray], k: int,
        *, lsh: bool,
    ) -> np.ndarray:
        """(nq, k) ids of the collection rows retrieved for the queries (-1 padded)."""
        if method in ("peaks_minhash", "combined"):
            qs = drop_elements(qs, self.common)
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
            # Candidates from both sources, as the library takes them (it takes max(50, 20 k)
            # from each; 80 and 20 here): the combined (rhythm + timbre) vectors' LSH and the
            # peak sets' MinHash LSH (an excerpt that only its peak pairs place near would
            # otherwise be missed), re-ranked by the exact fused score.
            Qc = self._combined_rows(qv)
            cand = merge_candidates(
                self.combined.search(Qc, max(COMBINED_CANDIDATES, 10 * k), lsh=True),
                self.peaks.search(qs, max(COMBINED_PEAK_CANDIDATES, k), lsh=True))
        else:
            cand = np.tile(np.arange(len(self.peaks.sets)), (nq, 1))
        score = self._fused(qv, qs, None if not lsh else cand)
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(cand, order, axis=1)
        ids[np.take_along_axis(score, order, axis=1) == -np.inf] = -1
        return ids
