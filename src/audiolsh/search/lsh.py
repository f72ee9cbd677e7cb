"""LSH searchers: hash, look up the probed buckets, re-rank the candidates exactly.

A searcher is built once over a block of rows (an index segment) and is then read-only, so
many threads and processes can share it; the arrays can be memory-mapped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import HashFamily, check_int
from audiolsh.hashing.hyperplane import HyperplaneLSH, probe_cap
from audiolsh.hashing.kmeans import KMeansLSH
from audiolsh.hashing.minhash import MinHashLSH, SetBatch, as_sets
from audiolsh.search import cells, kernels
from audiolsh.search.brute import METRICS, BruteForce, check_metric, kernel_queries, prepare
from audiolsh.search.compact import compact_rows, kernel_rows, recheck_rows
from audiolsh.search.results import Neighbors, replace_rows
from audiolsh.search.tables import BucketTables

MAX_PROBE_ROUNDS = 4
NO_NAMES = kernels.frozen(np.zeros(0, np.int64))  # answers name rows by their numbers


def _n_chunks(n_queries: int) -> int:
    return max(1, min(n_queries, numba.get_num_threads()))


def widen(result: Neighbors, want: int, probes: int,
          lookup: Callable[[np.ndarray, int], Neighbors],
          exact: Callable[[np.ndarray], Neighbors]) -> Neighbors:
    """Probe the queries short of ``want`` answers again with 4x the buckets (``lookup(rows,
    n_probes)``), up to MAX_PROBE_ROUNDS times, then answer the rest exactly (``exact(rows)``)."""
    if want == 0:
        return result
    short = np.flatnonzero(result.ids[:, want - 1] < 0)
    for _ in range(MAX_PROBE_ROUNDS):
        if len(short) == 0:
            return result
        probes *= 4
        result = replace_rows(result, short, lookup(short, probes))
        short = short[result.ids[short, want - 1] < 0]
    if len(short):
        result = replace_rows(result, short, exact(short))
    return result


class _Searcher:
    """Shared query loop: probe, and widen the probe set for queries short of k candidates."""

    family: HashFamily
    tables_: BucketTables
    default_probes: int
    # Families with neighbouring buckets widen the probe set for short answers and end with
    # an exact scan; MinHash bands have no neighbours, and an empty band match is the answer
    # "nothing near the threshold", so set search returns what its buckets hold.
    widen_short_answers = True
    _alive: np.ndarray
    _n_live: int

    @property
    def alive_(self) -> np.ndarray:
        """uint8 per row: 0 hides a removed row from every answer."""
        return self._alive

    @alive_.setter
    def alive_(self, alive: np.ndarray) -> None:
        self._alive = np.ascontiguousarray(alive, dtype=np.uint8)
        self._n_live = int(self._alive.sum())
        self._dead_bits = kernels.dead_bit_map(self._alive)

    def _lookup(
        self, queries: object, probes: tuple[np.ndarray, ...], k: int, n_rerank: int = 0,
        stop: float = 0.0,
    ) -> Neighbors:
        raise NotImplementedError

    def _probes(self, queries: object, n_probes: int, stop: float) -> tuple[np.ndarray, ...]:
        """The probe sequence; with ``stop`` > 0 also the probes' scores where the family
        gives them (adaptive probing)."""
        scored = getattr(self.family, "scored_probes", None)
        if stop > 0 and scored is not None:
            return scored(queries, n_probes)  # type: ignore[no-any-return]
        return self.family.probes(queries, n_probes)  # type: ignore[no-any-return]

    def _take(self, queries: object, rows: np.ndarray) -> object:
        raise NotImplementedError

    def _exact(self, queries: object, k: int) -> Neighbors:
        raise NotImplementedError

    def _search(self, Q: object, k: int, n_probes: int | None, n_rerank: int, stop: float = 0.0) -> Neighbors:
        """k nearest rows of every query; ``n_probes`` buckets per query over all tables
        (with ``stop`` > 0 at most that many: see ``kernels._probe_until``).

        A query whose buckets hold fewer than k live rows is probed again with more buckets,
        and in the end answered exactly: an empty bucket never means an empty answer.
        """
        k = check_int("k", k, 1)
        probes = self.default_probes if n_probes is None else check_int("n_probes", n_probes, 1)
        queries = self._queries(Q)
        result = self._lookup(queries, self._probes(queries, probes, stop), k, n_rerank, stop)
        if not self.widen_short_answers:
            return result
        return self._widen(queries, result, k, probes, n_rerank)

    def _widen(self, queries: object, result: Neighbors, k: int, probes: int, n_rerank: int) -> Neighbors:
        def lookup(rows: np.ndarray, n_probes: int) -> Neighbors:
            sub = self._take(queries, rows)
            return self._lookup(sub, self.family.probes(sub, n_probes), k, n_rerank)

        return widen(result, min(k, self._n_live), probes, lookup,
                     lambda rows: self._exact(self._take(queries, rows), k))

    def _queries(self, Q: object) -> object:
        raise NotImplementedError


def row_codes(family: HashFamily, keys: np.ndarray) -> np.ndarray | None:
    """Per-row hyperplane bits of every table, the first 16 at most (uint8 or uint16), for
    the Hamming pre-filter; None for families whose keys are not bit strings.  16 bits of a
    table estimate the angle about as well as 24, and keep the codes at 2 bytes a table
    (16 at L=8), inside 64 bytes an item with the tables at 10M rows (K=19).  Queries cut
    their keys to the codes' width (``query_words``); older segments' wider codes still read."""
    if not isinstance(family, HyperplaneLSH):
        return None
    dtype = np.uint8 if family.n_bits <= 8 else np.uint16
    return np.ascontiguousarray(keys.astype(dtype))


# No codes, as the kernels read them (zero columns: any row count passes).
NO_WORDS = kernels.frozen(np.zeros((0, 0), np.uint64))


def word_codes(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """The row codes as the search kernels read them: 64-bit words, each packing
    64 / bits tables' codes (low table first), a row's last word padded with zero codes, and
    the bits of one table's code.  One layout for codes of any width: numba compiles each
    search kernel once, not once per width (tens of seconds each).  Zero columns and 0 bits
    without codes (or on a big-endian machine, where the raw codes are read)."""
    n, n_tables = codes.shape
    if not n_tables or sys.byteorder != "little":
        return (kernels.frozen(codes) if n_tables else NO_WORDS), 0
    per = 8 // codes.itemsize
    width = -(-n_tables // per) * per
    if width != n_tables or not codes.flags.c_contiguous:
        padded = np.zeros((n, width), codes.dtype)
        padded[:, :n_tables] = codes
        codes = padded
    return kernels.frozen(codes.view(np.uint64)), 8 * codes.itemsize


def query_words(keys: np.ndarray, codes: np.ndarray, words: np.ndarray, code_bits: int) -> np.ndarray:
    """The queries' home keys in ``word_codes``'s layout for the row ``codes`` (cut to their
    width, as the rows' were)."""
    q = np.ascontiguousarray(keys.astype(codes.dtype))
    if not code_bits:
        return q
    out = np.zeros((len(q), words.shape[1] * (64 // code_bits)), codes.dtype)
    out[:, :q.shape[1]] = q
    return out.view(np.uint64)


class VectorLSH(_Searcher):
    """LSH over dense vectors for the cosine (hyperplane) or Euclidean (p-stable) metric.

    ``fit(X)`` stores the prepared rows (unit length for cosine) and builds the tables;
    ``alive`` (uint8 per row) hides removed rows without a rebuild.
    """

    def __init__(
        self, family: HashFamily, *, metric: str = "cosine", n_probes: int | None = None,
        n_rerank: int = 0,
    ):
        self.family = family
        self.metric = check_metric(metric)
        if self.metric == "jaccard":
            raise ParameterError("use SetLSH for the jaccard metric")
        self.default_probes = family.n_tables if n_probes is None else check_int("n_probes", n_probes, 1)
        self.default_rerank = check_int("n_rerank", n_rerank, 0)
        self._fast: tuple | None = None
        self._family_views: tuple | None = None
        self._names = NO_NAMES

    def fit(
        self, X: np.ndarray, *, alive: np.ndarray | None = None, prepared: bool = False,
        fit_family: bool = True, rerank_dtype: str = "float32",
    ) -> VectorLSH:
        """Hash the rows; ``prepared``: they already went through ``prepare`` (once is exact:
        normalising a unit row again moves its last bits); ``fit_family`` False: the family
        was already fit on these rows.  ``rerank_dtype`` float16 or int8: the exact pass
        reads a compact copy of the rows (``search.compact``)."""
        self.vectors_ = np.ascontiguousarray(X, np.float32) if prepared else prepare(X, self.metric)
        fit = getattr(self.family, "fit", None)
        if fit is not None and fit_family:
            fit(self.vectors_)
        keys = self.family.keys(self.vectors_)
        compact = compact_rows(self.vectors_, rerank_dtype)
        return self.load(self.vectors_, BucketTables.build(keys), alive, codes=row_codes(self.family, keys),
                         **compact)

    def load(
        self, vectors: np.ndarray, tables: BucketTables, alive: np.ndarray | None = None,
        *, codes: np.ndarray | None = None, rerank: np.ndarray | None = None,
        rerank_scale: np.ndarray | None = None, rerank_offset: np.ndarray | None = None,
    ) -> VectorLSH:
        """Attach already-built (e.g. memory-mapped) vectors, tables, row codes and the
        compact re-rank copy (``search.compact``), if any."""
        self.vectors_ = vectors
        self.tables_ = tables
        self.codes_ = codes if codes is not None else np.zeros((len(vectors), 0), np.uint16)
        self._words, self._code_bits = word_codes(self.codes_)
        self.rerank_, self.rerank_scale_, self.rerank_offset_ = rerank, rerank_scale, rerank_offset
        # The kernels read the index frozen, in memory as memory-mapped: one build of each.
        rows, aux = kernel_rows(vectors, rerank, rerank_scale, rerank_offset)
        self._exact_rows = kernels.frozen(rows), kernels.frozen(aux)
        self._kernel_tables = tuple(kernels.frozen(np.ascontiguousarray(a)) for a in (
            tables.table_start, tables.bucket_keys, tables.bucket_start, tables.members))
        self._names = NO_NAMES
        self.alive_ = np.ones(len(vectors), np.uint8) if alive is None else alive.astype(np.uint8)
        self._fast = self._fast_state()
        self._cells = (cells.fast_state(self.family, tables, len(vectors))
                       if isinstance(self.family, KMeansLSH) else None)
        return self

    def _fast_state(self) -> tuple | None:
        """What the one-call path for a few queries reads, prepared once: None unless the
        family is random hyperplanes and the vectors are C-contiguous float32."""
        fam, X = self.family, self.vectors_
        if not isinstance(fam, HyperplaneLSH) or not isinstance(X, np.ndarray):
            return None
        if X.dtype != np.float32 or X.ndim != 2 or not X.flags.c_contiguous:
            return None
        return (
            self._kernel_tables, self._words, self._code_bits, probe_cap(fam.n_tables, fam.n_bits),
            kernels.frozen(np.zeros(fam.dim, np.float32)), kernels.frozen(fam._weights),
        )

    def _family_arrays(self, fam: HyperplaneLSH) -> tuple[np.ndarray | None, np.ndarray]:
        """The family's mean (None before a fit) and planes, frozen as the index is (once
        while they are the same arrays: ``fit`` replaces them)."""
        seen = self._family_views
        if seen is None or seen[0] is not fam.mean_ or seen[1] is not fam.planes_:
            seen = self._family_views = (
                fam.mean_, fam.planes_, None if fam.mean_ is None else kernels.frozen(fam.mean_),
                kernels.frozen(fam.planes_))
        return seen[2], seen[3]

    def __len__(self) -> int:
        return len(self.vectors_)

    def name_rows(self, ids: np.ndarray | None) -> VectorLSH:
        """Answers name row i by ``ids[i]`` (as an IVF list returns the ids it was given),
        e.g. the row's place before ``index.families.by_cell`` moved it; None: row numbers.
        The k-means path maps inside its compiled call, which costs nothing per query."""
        if ids is None:
            self._names = NO_NAMES
            return self
        ids = np.asarray(ids)
        if ids.shape != (len(self),) or ids.dtype.kind not in "iu" or (len(ids) and ids.min() < 0):
            raise ParameterError(f"row ids must be {len(self)} integers >= 0, one per row")
        # a trailing -1: "no row" (-1) indexes it and stays -1, with no test per answer
        self._names = kernels.frozen(np.concatenate([ids.astype(np.int64), [-1]]))
        return self

    def _as_names(self, ids: np.ndarray) -> np.ndarray:
        return ids if len(self._names) == 0 else self._names[ids]

    def _queries(self, Q: object) -> np.ndarray:
        A = prepare(np.asarray(Q), self.metric)
        if A.shape[1] != self.vectors_.shape[1]:
            raise ParameterError(
                f"query dimension {A.shape[1]} does not match the index's {self.vectors_.shape[1]}"
            )
        return A

    def _take(self, queries: object, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(queries)[rows])

    def search(
        self, Q: object, k: int = 10, *, n_probes: int | None = None, n_rerank: int | None = None,
        stop: float = 0.0, recheck: int = 0,
    ) -> Neighbors:
        """k nearest rows of every query (see ``_Searcher._search``); ``n_rerank`` > 0 measures
        exactly only that many candidates, the nearest by Hamming distance of their hyperplane
        codes (0: every candidate).  ``stop`` > 0 (with ``n_rerank`` 0) probes adaptively: at
        most ``n_probes``, fewer when the k found are near (``kernels._probe_until``; k-means
        cells: ``cells._search_cells``).  ``recheck`` > 0 with a compact re-rank copy: its
        best ``max(k, recheck)`` are measured again on the float32 rows (``compact.recheck_rows``)."""
        rerank = self.default_rerank if n_rerank is None else check_int("n_rerank", n_rerank, 0)
        if not stop >= 0:
            raise ParameterError(f"stop must be a number >= 0, got {stop!r}")
        if check_int("recheck", recheck, 0) and self.rerank_ is not None:
            if len(self._names):
                raise ParameterError("recheck reads rows by number: not with named rows (name_rows)")
            k = check_int("k", k, 1)
            wide = self.search(Q, max(k, recheck), n_probes=n_probes, n_rerank=rerank, stop=stop)
            ids, dist = recheck_rows(self.vectors_, Q, wide.ids, k, self.metric)
            return Neighbors(ids, dist, wide.n_candidates, wide.n_probes)
        if self._cells is not None:  # k-means cells: the queries in one compiled call
            rows = self._rows(Q)
            if rows is not None:
                probes = self.default_probes if n_probes is None else check_int("n_probes", n_probes, 1)
                return cells.search_cells_of(self, rows, check_int("k", k, 1), probes,
                                             METRICS[self.metric], float(stop))
        fast = self._fast
        if fast is not None:
            k = check_int("k", k, 1)
            A = Q if isinstance(Q, np.ndarray) else np.asarray(Q)
            if A.ndim == 1:
                A = A[None]
            if A.ndim == 2 and 0 < len(A) < kernels.SERIAL_BELOW and A.shape[1] == self.vectors_.shape[1]:
                result = self._search_few(fast, A, k, n_probes, rerank, stop)
                if result is not None:
                    return result
        return self._search(Q, k, n_probes, rerank, stop)

    def load_kernels(self, Q: object, k: int = 10) -> bool:
        """Load the compiled kernel a search of the rows Q runs, without running it, where
        the family's one-call path allows (k-means cells: True); else False (run a few rows)."""
        rows = self._rows(Q) if self._cells is not None else None
        if rows is None:
            return False
        cells.load_cells_kernel(self, rows, k, self.default_probes, METRICS[self.metric])
        return True

    def _rows(self, Q: object) -> np.ndarray | None:
        """Q as a 2-D array when it is rows of the right dimension, else None."""
        A = Q if isinstance(Q, np.ndarray) else np.asarray(Q)
        if A.ndim == 1:
            A = A[None]
        if A.ndim == 2 and len(A) and A.shape[1] == self.vectors_.shape[1]:
            return A
        return None

    def _search_few(
        self, fast: tuple, A: np.ndarray, k: int, n_probes: int | None, n_rerank: int,
        stop: float = 0.0,
    ) -> Neighbors | None:
        """A few queries in one compiled call (``kernels.search_hyperplane``): the same answers
        as the general path for the same probes, without its per-step array round trips.
        None when the family's state is not ready (the general path then says why)."""
        fam = self.family
        assert isinstance(fam, HyperplaneLSH)
        tables, codes, code_bits, cap, zero_mean, weights = fast
        fitted_mean, planes = self._family_arrays(fam)
        mean = fitted_mean if fam.center else zero_mean
        if mean is None or not fam.fitted_:
            return None
        probes = self.default_probes if n_probes is None else check_int("n_probes", n_probes, 1)
        rerank = max(n_rerank, k) if n_rerank > 0 and codes.shape[1] else 0
        A = kernel_queries(A)
        found = kernels.search_hyperplane(
            A, self.metric == "cosine", mean, planes, weights, min(probes, cap), *tables,
            self._exact_rows[0], self._dead_bits, k, METRICS[self.metric], codes, code_bits, rerank,
            self._exact_rows[1], float(stop),
        )
        return self._answer(A, (self._as_names(found[0]), *found[1:]), k, probes, n_rerank)

    def _answer(self, A: np.ndarray, found: tuple, k: int, probes: int, n_rerank: int) -> Neighbors:
        """A one-call kernel's (ids, squared or cosine distances, candidates[, probes used],
        finite) as the answer; queries short of k answers widen as the general path does."""
        ids, dist, cand, *rest = found
        finite, probed = rest[-1], (rest[0] if len(rest) > 1 else None)
        if not finite:
            raise ParameterError("vectors contain NaN or infinite values")
        if self.metric == "euclidean":
            dist = np.sqrt(dist)
        result = Neighbors(ids, dist, cand, probed)
        want = min(k, self._n_live)
        # one row (the usual call): a scalar test, cheaper than a column's minimum
        if want and len(ids) and (ids[0, want - 1] < 0 if len(ids) == 1
                                  else min(ids[:, want - 1].tolist()) < 0):
            result = self._widen(self._queries(A), result, k, probes, n_rerank)
        return result

    def _lookup(
        self, queries: object, probes: tuple[np.ndarray, ...], k: int, n_rerank: int = 0,
        stop: float = 0.0,
    ) -> Neighbors:
        Q = np.asarray(queries)
        keys, tables = probes[0], probes[1]
        scores = probes[2] if len(probes) > 2 and stop > 0 else np.zeros((len(Q), 0))
        # The pre-filter needs codes, and never keeps fewer candidates than the answer needs.
        rerank = max(n_rerank, k) if n_rerank > 0 and self.codes_.shape[1] else 0
        codes = self._words
        if rerank:
            q_codes = query_words(self.family.keys(Q), self.codes_, codes, self._code_bits)
        else:
            codes, q_codes = NO_WORDS, np.zeros((len(Q), 0), np.uint64)
        ids, dist, cand, probed = kernels.search_vectors(
            Q, np.ascontiguousarray(keys), np.ascontiguousarray(tables), *self._kernel_tables,
            self._exact_rows[0], self._dead_bits, k,
            METRICS[self.metric], _n_chunks(len(Q)), q_codes, codes, rerank, self._exact_rows[1],
            np.ascontiguousarray(scores, dtype=np.float64), float(stop),
        )
        if self.metric == "euclidean":
            dist = np.sqrt(dist)
        return Neighbors(self._as_names(ids), dist, cand, probed)

    def _exact(self, queries: object, k: int) -> Neighbors:
        brute = BruteForce(self.metric).fit(self.vectors_, alive=self.alive_)
        found = brute.search(np.asarray(queries), k)
        return Neighbors(self._as_names(found.ids), found.distances, found.n_candidates, found.n_probes)

    @property
    def index_nbytes(self) -> int:
        """Bytes of the hash tables and row codes, beyond the stored vectors."""
        return self.tables_.nbytes + self.codes_.nbytes

    @property
    def rerank_nbytes(self) -> int:
        """Bytes the exact pass reads from: the compact copy, else the float32 rows."""
        return sum(a.nbytes for a in self.rerank_arrays().values()) or self.vectors_.nbytes

    def rerank_arrays(self) -> dict[str, np.ndarray]:
        """The compact re-rank copy as a segment stores it (empty for float32)."""
        out = {"rerank": self.rerank_, "rerank_scale": self.rerank_scale_,
               "rerank_offset": self.rerank_offset_}
        return {name: a for name, a in out.items() if a is not None}


class SetLSH(_Searcher):
    """MinHash LSH over sets, candidates re-ranked by exact Jaccard distance.

    Answers hold the sets that share a band with the query (up to k): fewer than k, or
    none, when few sets are near the family's threshold.  ``n_candidates`` (None: all)
    re-ranks only that many candidates, those sharing the most bands with the query
    (collision counting, as in C2LSH: the count estimates the Jaccard similarity), for a
    low threshold that makes much of the collection a candidate."""

    metric = "jaccard"
    widen_short_answers = False

    def __init__(self, family: MinHashLSH, *, n_candidates: int | None = None) -> None:
        self.family = family
        self.default_probes = family.n_tables
        self.default_candidates = 0 if n_candidates is None else check_int("n_candidates", n_candidates, 1)

    def fit(self, sets: SetBatch | list, *, alive: np.ndarray | None = None) -> SetLSH:
        self.sets_ = as_sets(sets)
        tables = BucketTables.build(self.family.keys(self.sets_))
        return self.load(self.sets_, tables, alive)

    def load(self, sets: SetBatch, tables: BucketTables, alive: np.ndarray | None = None) -> SetLSH:
        self.sets_ = sets
        self.tables_ = tables
        self.alive_ = np.ones(len(sets), np.uint8) if alive is None else alive.astype(np.uint8)
        self._kernel_arrays = tuple(kernels.frozen(np.ascontiguousarray(a)) for a in (
            tables.table_start, tables.bucket_keys, tables.bucket_start, tables.members,
            sets.indptr, sets.elements))  # frozen as VectorLSH's: one build of each kernel
        return self

    def __len__(self) -> int:
        return len(self.sets_)

    def _queries(self, Q: object) -> SetBatch:
        return as_sets(Q)  # type: ignore[arg-type]

    def _take(self, queries: object, rows: np.ndarray) -> SetBatch:
        assert isinstance(queries, SetBatch)
        return queries.take(rows)

    def search(
        self, Q: object, k: int = 10, *, n_probes: int | None = None, n_candidates: int | None = None
    ) -> Neighbors:
        """Up to k sets sharing a band with each query, nearest by exact Jaccard first;
        ``n_candidates`` overrides the searcher's (see the class docstring)."""
        top = self.default_candidates if n_candidates is None else check_int("n_candidates", n_candidates, 1)
        return self._search(Q, k, n_probes, top)

    def _lookup(
        self, queries: object, probes: tuple[np.ndarray, ...], k: int, n_rerank: int = 0,
        stop: float = 0.0,
    ) -> Neighbors:
        """``n_rerank`` > 0: exact Jaccard for only that many candidates, those with the most
        band collisions."""
        assert isinstance(queries, SetBatch)
        keys, tables = probes
        args = (
            queries.indptr, queries.elements, np.ascontiguousarray(keys),
            np.ascontiguousarray(tables), *self._kernel_arrays, self.alive_, k,
            _n_chunks(len(queries)),
        )
        if n_rerank > 0:
            ids, dist, cand = kernels.search_sets_counted(*args, max(n_rerank, k))
        else:
            ids, dist, cand = kernels.search_sets(*args)
        return Neighbors(ids, dist, cand)

    def _exact(self, queries: object, k: int) -> Neighbors:
        return BruteForce("jaccard").fit(self.sets_, alive=self.alive_).search(queries, k)  # type: ignore[arg-type]
