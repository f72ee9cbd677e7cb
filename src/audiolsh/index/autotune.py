"""Right by default: a segment's shape (L tables, K bits, whitening) and its probing chosen at
build time for a target recall, from held-out rows of the segment itself.

The model builds no table.  A true neighbour of a query is a candidate exactly when one of
the query's probed buckets is the neighbour's bucket in the same table, and with every
candidate measured exactly (no Hamming pre-filter) a true top-k neighbour that is a
candidate is in the answer.  So for a few hundred held-out rows (their own row left out of
their exact top k) the hash keys of their true neighbours and their scored probe sequences
give, for every probe budget, which neighbours would be found: the recall of any operating
point, without a sweep.  The cost of a point comes from the same sequences: the planes a
query is projected on, the probes, and the rows the probed buckets hold (their sizes
estimated from a hashed sample of the rows).

Adaptive probing (``kernels._probe_until``) stops before a probe whose score exceeds
``stop`` x the k-th distance found.  The found k-th distance is never below the true one, so
a query probes at least what the model gives it with the true k-th distance: the recall on
the held-out rows is at least the modelled one.  The choice needs the modelled recall minus
two standard errors (over queries) minus a margin to reach the target, so fresh queries
reach it too.  The recall-vs-budget curve is stored with the segment: a query asks for
another recall without a rebuild (``pick``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing import HyperplaneLSH, PStableLSH
from audiolsh.hashing.hyperplane import key_balance, probe_cap

# Partial whitening of the hyperplanes ("auto"): its strength, and the rows a segment needs
# (per dimension) for a covariance estimate worth adapting to.
AUTO_WHITEN = 0.5
WHITEN_MIN_ROWS_PER_DIM = 20

log = logging.getLogger(__name__)

VERSION = 1
#: segments smaller than this keep the fixed defaults: too few rows to hold out and model
MIN_ROWS = 2000
K = 10
#: true neighbours kept per held-out query: the k-th distance found while probing is the
#: k-th among those found of these, exactly while k of them are (see ``walk``)
NEAREST = 2 * K
TRUTH_SCORES = 1 << 22  # dot products of the exact pass at a time (16 MB)
TABLES = (2, 4, 6, 8, 10, 12, 16)
FIRST_TABLES = 8
#: hash-table bytes per item a default build may use (``IndexConfig.max_table_bytes``)
DEFAULT_MAX_TABLE_BYTES = 64.0
# What a table costs per item (``search.tables.BucketTables``): an int32 member per row, a
# uint64 key and an int64 offset per bucket.
MEMBER_BYTES, BUCKET_BYTES = 4, 16
BITS_STEP = 2
PROBES_PER_TABLE = 64
#: held-out queries: as many as a brute-force pass of about this many multiply-adds allows
QUERY_FLOPS = 2e9
MIN_QUERIES, MAX_QUERIES = 64, 128
SIZE_SAMPLE = 2000
#: bucket counts of the sample are looked up in one array of at most this many cells
COUNT_TABLE = 1 << 22
Z = 2.0
MARGIN = 0.005
# Query cost in units of one candidate row measured: a plane the query is projected on (a
# sequential dot product) and a probe (heap step and bucket look-up).
PLANE_COST = 0.1
PROBE_COST = 1.5
STOP_GRID = 48
# Whitening is tried (and the covariance paid for) when plain planes leave the keys less
# balanced than this (``key_balance``: about 0.95 on isotropic clusters, 0.4-0.8 on
# embeddings whose variance sits in a few directions).
WHITEN_TRY_BELOW = 0.9
#: rows the balance is measured on: at 2^K / 16 buckets still thousands of colliding pairs
BALANCE_SAMPLE = 8000
RECALL_GRID = (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)


def check_recall(value: Any, name: str = "target recall") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < 1:
        raise ParameterError(f"{name} must be a number between 0 and 1 (exclusive), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Choice:
    """The family a segment is built with, already fit on its rows, and the operating point
    stored in its config."""

    family: Any
    point: dict[str, Any]


@dataclass
class _Held:
    """Held-out queries, the rows of their NEAREST true neighbours (own row left out; query
    by query) and their distances in the kernels' units (cosine: 1 - cos; euclidean:
    squared), ascending."""

    queries: np.ndarray
    neighbour_rows: np.ndarray
    distances: np.ndarray
    sample: np.ndarray
    n: int


@numba.njit(cache=True, nogil=True)
def _select(dots, sq, lo, euclid, best_d, best_i):  # pragma: no cover - compiled
    """Fold a block of dot products (queries x rows ``lo``..) into each query's running best
    (ascending ``best_d``): by -dot (cosine on unit rows) or |x|^2 - 2 dot (euclidean, less
    the query's own |q|^2)."""
    kk = best_d.shape[1]
    for q in range(dots.shape[0]):
        worst = best_d[q, kk - 1]
        for j in range(dots.shape[1]):
            d = sq[j] - 2 * dots[q, j] if euclid else -dots[q, j]
            if d >= worst:
                continue
            pos = kk - 1
            while pos > 0 and best_d[q, pos - 1] > d:
                best_d[q, pos] = best_d[q, pos - 1]
                best_i[q, pos] = best_i[q, pos - 1]
                pos -= 1
            best_d[q, pos] = d
            best_i[q, pos] = lo + j
            worst = best_d[q, kk - 1]


@numba.njit(cache=True, nogil=True)
def first_probe(nb_keys, keys, tables):  # pragma: no cover - compiled
    """(m, M): the first probe of each query that holds each of its neighbours (their keys
    ``nb_keys`` (m, M, L)), P when none does."""
    m, M, _ = nb_keys.shape
    P = keys.shape[1]
    out = np.full((m, M), P, dtype=np.int64)
    for q in range(m):
        left = M
        for p in range(P):
            t = tables[q, p]
            for j in range(M):
                if out[q, j] == P and nb_keys[q, j, t] == keys[q, p]:
                    out[q, j] = p
                    left -= 1
            if left == 0:
                break
    return out


@numba.njit(cache=True, nogil=True)
def walk(found, dist, scores, stops, k, n_home):  # pragma: no cover - compiled
    """Adaptive probing replayed on the held-out queries: per query and stop (ascending), the
    probes used.  ``found`` (m, M): the first probe holding each of the query's M nearest
    rows (P: none); ``dist`` their distances, ascending; ``scores`` (m, P) the probes'.
    After p probes the k-th distance found is the k-th among the M found so far, or, while
    fewer than k are, at least the M-th (rows beyond them are no nearer): the walk stops no
    later than the kernel's."""
    m, M = found.shape
    P = scores.shape[1]
    used = np.empty((m, len(stops)), dtype=np.int64)
    kth = np.empty(P + 1)
    top = np.empty(k)
    for q in range(m):
        order = np.argsort(found[q])
        top[:] = np.inf
        ptr = 0
        for p in range(P + 1):
            while ptr < M and found[q, order[ptr]] < p:
                d = dist[q, order[ptr]]
                pos = k - 1
                if d < top[pos]:
                    while pos > 0 and top[pos - 1] > d:
                        top[pos] = top[pos - 1]
                        pos -= 1
                    top[pos] = d
                ptr += 1
            kth[p] = top[k - 1] if top[k - 1] < np.inf else dist[q, M - 1]
        u = min(n_home, P)
        for g in range(len(stops)):
            c = stops[g]
            while u < P and (c == np.inf or not scores[q, u] > c * kth[u]):
                u += 1
            used[q, g] = u
    return used


def nearest_others(X: np.ndarray, rows: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers (m, k) and distances (ascending) of the exact k nearest other rows of each
    of ``rows`` (its own row left out; the last when a duplicate pushed it beyond k + 1), by
    blocks of rows into one reused buffer (fresh pages for each block cost more than the
    product)."""
    Q = np.ascontiguousarray(X[rows], dtype=np.float32)
    m, kk = len(rows), k + 1
    euclid = metric == "euclidean"
    best_d = np.full((m, kk), np.inf, np.float32)
    best_i = np.full((m, kk), -1, np.int64)
    step = max(256, TRUTH_SCORES // max(m, 1))
    buf = np.empty((m, min(step, len(X))), np.float32)
    for lo in range(0, len(X), step):
        B = np.asarray(X[lo:lo + step], np.float32)
        dots = buf[:, : len(B)]
        np.matmul(Q, B.T, out=dots)
        sq = np.einsum("ij,ij->i", B, B) if euclid else np.zeros(0, np.float32)
        _select(dots, sq, lo, euclid, best_d, best_i)
    best_d = best_d.astype(np.float64)
    best_d = best_d + np.einsum("ij,ij->i", Q, Q)[:, None] if euclid else 1.0 + best_d
    own = best_i == rows[:, None]
    own[~own.any(axis=1), -1] = True
    keep = np.argsort(own, axis=1, kind="stable")[:, :k]
    nbrs = np.take_along_axis(best_i, keep, axis=1)
    return nbrs, np.maximum(np.take_along_axis(best_d, keep, axis=1), 0.0)


def _held_out(X: np.ndarray, metric: str, rng: np.random.Generator) -> _Held:
    n, d = X.shape
    m = int(np.clip(QUERY_FLOPS / (n * d), MIN_QUERIES, MAX_QUERIES))
    m = min(m, n // 10)
    rows = np.sort(rng.choice(n, m, replace=False))
    nbrs, dist = nearest_others(X, rows, NEAREST, metric)
    sample = X[np.sort(rng.choice(n, min(n, SIZE_SAMPLE), replace=False))]
    return _Held(np.ascontiguousarray(X[rows], dtype=np.float32), X[nbrs.ravel()], dist, sample, n)


def table_bytes(family: Any, sample_keys: np.ndarray, n: int) -> float:
    """Hash-table bytes per item a segment of ``n`` rows built with ``family`` holds (the
    member lists, the hyperplane row codes and the sorted bucket keys and offsets), its
    buckets estimated from the hashed sample: the share of distinct keys in a sample is at
    least the segment's (it only falls as rows are added), and K bits make at most 2^K."""
    L = family.n_tables
    ordered = np.sort(sample_keys, axis=0)
    share = (1 + (ordered[1:] != ordered[:-1]).sum(axis=0)) / max(len(sample_keys), 1)
    if isinstance(family, HyperplaneLSH):
        share = np.minimum(share, 2.0 ** family.n_bits / n)
        code = 1 if family.n_bits <= 8 else 2  # ``search.lsh.row_codes``
    else:
        code = 0
    return float(L * (MEMBER_BYTES + code) + BUCKET_BYTES * share.sum())


def _evaluate(family: Any, held: _Held, sample_keys: np.ndarray, size: float) -> dict[str, Any]:
    """Every operating point of one fitted family: the recall (lower bound), mean probes and
    cost of each (probe cap, stop) on the held-out queries, as the rows of ``points``
    (columns LCB, COST, CAP, STOP, PROBES, RECALL)."""
    L = family.n_tables
    bits = getattr(family, "n_bits", getattr(family, "n_hashes", 1))
    m = len(held.queries)
    if isinstance(family, HyperplaneLSH):
        p_max = min(probe_cap(L, bits), L * PROBES_PER_TABLE)
    else:
        p_max = L * PROBES_PER_TABLE
    keys, tables, scores = family.scored_probes(held.queries, p_max)
    P = keys.shape[1]
    nb_keys = family.keys(held.neighbour_rows).reshape(m, NEAREST, L)
    found = first_probe(np.ascontiguousarray(nb_keys), keys, tables)
    # Rows the probed buckets hold, from the hashed sample scaled to the segment.
    sizes = _sample_counts(sample_keys, keys, tables, bits if isinstance(family, HyperplaneLSH) else None)
    sizes = sizes * (held.n / len(sample_keys))
    members = np.cumsum(sizes, axis=1)
    grid = stop_grid(scores, held.distances[:, K - 1], min(L, P), STOP_GRID, 0.005)
    stops = np.concatenate([[0.0], grid, [np.inf]])
    used = np.maximum(walk(found, held.distances, np.ascontiguousarray(scores), stops, K, L), 1)
    caps = np.array(sorted({min(P, L * 2 ** i) for i in range(int(math.log2(PROBES_PER_TABLE)) + 1)} | {P}))
    # Every (cap, stop) at once: u (caps, queries, stops) probes, then recall and cost.
    u = np.minimum(used[None], caps[:, None, None])
    per_q = (found[None, :, :K, None] < u[:, :, None, :]).mean(axis=2)
    lcb = per_q.mean(axis=1) - Z * per_q.std(axis=1) / math.sqrt(m) - MARGIN
    cost = (PLANE_COST * L * bits + PROBE_COST * u + members[np.arange(m)[None, :, None], u - 1]).mean(axis=1)
    shape = lcb.shape
    # A stop of 0 probes the home buckets only, whatever the cap.
    cap_col = np.where(stops[None, :] > 0, caps[:, None], L)
    points = np.stack([lcb, cost, np.broadcast_to(cap_col, shape), np.broadcast_to(stops[None], shape),
                       u.mean(axis=1), per_q.mean(axis=1)], axis=-1).reshape(-1, 6)
    return {"family": family, "points": points, "p_max": P, "table_bytes": size}


def stop_grid(scores: np.ndarray, kth: np.ndarray, home: int, n_stops: int, tail: float) -> np.ndarray:
    """``n_stops`` stops, geometric, between the ``tail`` and 1 - ``tail`` quantiles of the
    probes' scores (past the ``home`` first) over each query's k-th distance ``kth``: the
    ratios the adaptive walk compares with its stop (empty when fewer than 2 are positive)."""
    ratio = (scores[:, home:] / np.maximum(kth, 1e-12)[:, None]).ravel()
    ratio = ratio[ratio > 0]
    if len(ratio) < 2:
        return np.zeros(0)
    lo, hi = np.quantile(ratio, [tail, 1 - tail])
    return np.geomspace(max(float(lo), 1e-12), max(float(hi), 2e-12), n_stops)


def _sample_counts(
    sample_keys: np.ndarray, keys: np.ndarray, tables: np.ndarray, bits: int | None,
) -> np.ndarray:
    """How many sampled rows each probed bucket (``keys`` in ``tables``) holds.  Keys of
    ``bits`` bits (hyperplanes) are counted in one table of every (table, key); others (hashed
    keys) are looked up table by table."""
    L = sample_keys.shape[1]
    if bits is not None and L << bits <= COUNT_TABLE:
        b = np.uint64(bits)
        cells = (np.arange(L, dtype=np.uint64) << b) | sample_keys
        counts = np.bincount(cells.ravel().astype(np.int64), minlength=L << bits)
        return counts[((tables.astype(np.uint64) << b) | keys).astype(np.int64)]
    sizes = np.zeros(keys.shape, np.int64)
    for t in range(L):
        sel = tables == t
        col = np.sort(sample_keys[:, t])
        want = keys[sel]
        sizes[sel] = np.searchsorted(col, want, "right") - np.searchsorted(col, want, "left")
    return sizes


LCB, COST, CAP, STOP, PROBES, RECALL = range(6)


def _best(points: np.ndarray, target: float) -> np.ndarray | None:
    """The cheapest point whose recall bound reaches the target."""
    ok = points[points[:, LCB] >= target]
    return ok[np.lexsort((-ok[:, LCB], ok[:, COST]))[0]] if len(ok) else None


def _fallback(points: np.ndarray) -> np.ndarray:
    """The best recall bound (to 0.001), the cheapest of those."""
    return points[np.lexsort((points[:, COST], -np.round(points[:, LCB], 3)))[0]]


def tune_segment(
    X: np.ndarray, *, metric: str, target: float, seed: int, center: bool,
    n_tables: int | None, n_bits: int | None, whiten: str | float, bucket_width: float,
    auto_bits: int, max_table_bytes: float | None = DEFAULT_MAX_TABLE_BYTES,
) -> Choice | None:
    """The family and operating point for a segment of prepared rows ``X``; None below
    MIN_ROWS.  ``n_tables`` / ``n_bits`` / a numeric ``whiten`` fix those; the others are
    chosen: first K and whitening, then L, the fastest point whose tables fit in
    ``max_table_bytes`` per item (None: no limit).  When no point inside it reaches the
    target, the best recall inside it (a warning says so)."""
    n, d = X.shape
    if n < MIN_ROWS:
        return None
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 0x54_55_4E_45])
    held = _held_out(X, metric, rng)
    budget = math.inf if max_table_bytes is None else float(max_table_bytes)
    learned: dict[float, Any] = {}

    def family(L: int, bits: int, w: float) -> Any:
        if metric == "euclidean":
            return PStableLSH(d, n_tables=L, n_hashes=bits, bucket_width=bucket_width, seed=seed)
        fam = HyperplaneLSH(d, n_tables=L, n_bits=bits, seed=seed, center=center, whiten=w)
        if fam.center:
            if w not in learned:
                learned[w] = fam.learn(X)
                if w > 0:  # the same mean: plain planes need nothing else
                    learned.setdefault(0.0, (learned[w][0], np.zeros((d, 0)), np.zeros(0)))
            fam.fit(X, learned=learned[w])
        return fam

    if metric == "euclidean":
        whitens = [0.0]
        bit_grid = [n_bits] if n_bits else [4, 6, 8, 10, 12]
    else:
        if whiten != "auto":
            whitens = [float(whiten)]
        elif n >= WHITEN_MIN_ROWS_PER_DIM * d and key_balance(
                X, n_bits=auto_bits, seed=seed, center=center, sample=BALANCE_SAMPLE) < WHITEN_TRY_BELOW:
            whitens = [AUTO_WHITEN, 0.0]  # whitened first: its mean serves both
        else:
            whitens = [0.0]
        bit_grid = [n_bits] if n_bits else sorted(
            {int(np.clip(auto_bits + s, 2, 24)) for s in range(-2 * BITS_STEP, 2 * BITS_STEP + 1, BITS_STEP)})
    table_grid = [n_tables] if n_tables else list(TABLES)
    tried: dict[tuple[int, int, float], dict[str, Any]] = {}
    hashed: dict[tuple[int, int, float], tuple[Any, np.ndarray, float]] = {}

    def sized(L: int, bits: int, w: float) -> tuple[Any, np.ndarray, float]:
        """A shape's family, the sample's keys and its table bytes per item (cheap)."""
        if (L, bits, w) not in hashed:
            fam = family(L, bits, w)
            sample_keys = fam.keys(held.sample)
            hashed[(L, bits, w)] = (fam, sample_keys, table_bytes(fam, sample_keys, n))
        return hashed[(L, bits, w)]

    def trial(L: int, bits: int, w: float) -> dict[str, Any]:
        """A shape's points, scored only when its tables fit."""
        if (L, bits, w) not in tried:
            fam, sample_keys, size = sized(L, bits, w)
            tried[(L, bits, w)] = (_evaluate(fam, held, sample_keys, size) if size <= budget
                                   else {"family": fam, "points": None, "table_bytes": size})
        return tried[(L, bits, w)]

    def score(shape: tuple[int, int, float]) -> tuple[float, float]:
        """Ordered: reaching the target (by cost), else the recall bound, else oversized."""
        result = trial(*shape)
        pts = result["points"]
        if pts is None:
            return (2.0, result["table_bytes"])
        best = _best(pts, target)
        return (0.0, float(best[COST])) if best is not None else (1.0, -float(_fallback(pts)[LCB]))

    def descend(shape: tuple[int, int, float], axis: int, grid: list[Any]) -> tuple[int, int, float]:
        """Walk one coordinate of the shape along its grid while the score falls."""
        i = grid.index(shape[axis])
        for step in (1, -1):
            j = i
            while 0 <= j + step < len(grid):
                nxt = list(shape)
                nxt[axis] = grid[j + step]
                if score(tuple(nxt)) >= score(shape):  # type: ignore[arg-type]
                    break
                shape, j = tuple(nxt), j + step  # type: ignore[assignment]
            if j != i:
                break  # it moved one way: the other way is uphill
        return shape

    mid_bits = bit_grid[len(bit_grid) // 2]
    # The first L: the most (up to FIRST_TABLES) whose tables fit.
    fits = [L for L in table_grid if L <= (n_tables or FIRST_TABLES)]
    first_L = next((L for L in reversed(fits) if sized(L, mid_bits, whitens[0])[2] <= budget), fits[0])
    shape = min([(first_L, mid_bits, w) for w in whitens], key=score)
    shape = descend(shape, 1, bit_grid)
    shape = descend(shape, 0, table_grid)
    if tried[shape]["points"] is None:  # nothing fits: the smallest tables tried
        shape = min(tried, key=lambda s: tried[s]["table_bytes"])
        fam, sample_keys, size = sized(*shape)
        tried[shape] = _evaluate(fam, held, sample_keys, size)
    result = tried[shape]
    points = result["points"]
    chosen = _best(points, target)
    if chosen is None:
        chosen = _fallback(points)
        log.warning("no operating point within %s table bytes per item reaches recall %.3g on %d rows;"
                    " built for the best inside it, recall %.3f (held-out bound)",
                    max_table_bytes, target, n, chosen[LCB])
    curve = []
    for r in RECALL_GRID:
        p = _best(points, r)
        if p is not None:
            curve.append([r, int(p[CAP]), _stop(p[STOP]), round(float(p[PROBES]), 1)])
    full = points[np.isinf(points[:, STOP])]
    fixed = sorted({(int(c), round(float(r), 4)) for c, r in full[:, [CAP, LCB]]})
    point = {
        "version": VERSION,
        "k": K,
        "target_recall": target,
        "n_probes": int(chosen[CAP]),
        "stop": _stop(chosen[STOP]),
        "recall_estimate": round(float(chosen[LCB]), 4),
        "probes_estimate": round(float(chosen[PROBES]), 1),
        "max_probes": result["p_max"],
        "curve": curve,
        "fixed": [list(f) for f in fixed],
        "n_queries": len(held.queries),
        "shapes_tried": len(tried),
        "shapes_scored": sum(r["points"] is not None for r in tried.values()),
        "max_table_bytes": max_table_bytes,
        "table_bytes_estimate": round(result["table_bytes"], 1),
    }
    # Not stored: a segment is a pure function of its rows (the same in any process).
    log.debug("tuned %d rows in %.3f s: %s", n, time.perf_counter() - t0, point)
    return Choice(result["family"], point)


def _stop(value: float) -> float:
    """A stop for the kernels: 0 means probe every probe (the model's infinity)."""
    return 0.0 if math.isinf(value) else float(value)


def pick(point: dict[str, Any], recall: float | None) -> tuple[int, float]:
    """(probe cap, stop) for a recall target from a segment's stored operating point: its
    own target's when ``recall`` is None, else the cheapest stored point that reaches
    ``recall``; beyond the curve every probe the model tried, without stopping."""
    if recall is None:
        return int(point["n_probes"]), float(point["stop"])
    for r, cap, stop, _ in point["curve"]:
        if r >= recall:
            return int(cap), float(stop)
    return int(point["max_probes"]), 0.0


def fixed_probes(point: dict[str, Any], recall: float | None) -> int:
    """Probes without adaptive stopping (remote probing, the Hamming pre-filter) that reach
    the recall (the segment's target when None) by the stored curve; the most tried when
    none does."""
    want = point["target_recall"] if recall is None else recall
    for probes, r in point["fixed"]:
        if r >= want:
            return int(probes)
    return int(point["max_probes"])
