"""Choose L, K and probes automatically (S5's three questions, answered by a sweep).

The indexed vectors are split once, by seed, into a build set and a held-out validation set
of queries.  For every (L, K) the tables are built over the build set and every probe count
is tried (for cosine also with the Hamming pre-filter at 20k and 100k exactly measured
candidates); recall@k is measured against exact search on the same build set.  The
cheapest setting (lowest single-query time) whose recall, less two standard errors over the
validation queries and ``autotune.MARGIN``, reaches the target wins: the mean alone reached
0.951 on validation and 0.946 on fresh queries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.evaluation.metrics import recall_at_k
from audiolsh.hashing import HyperplaneLSH, PStableLSH
from audiolsh.hashing.hyperplane import needs_centering
from audiolsh.index import autotune
from audiolsh.search import BruteForce, VectorLSH

log = logging.getLogger(__name__)

SINGLE_QUERY_SAMPLE = 100


@dataclass(frozen=True)
class TuneRow:
    n_tables: int
    n_bits: int
    n_probes: int
    n_rerank: int
    recall: float
    precision: float
    candidates: float
    single_ms: float
    batch_ms: float
    table_bytes_per_item: float
    build_s: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class TuneReport:
    rows: list[TuneRow]
    best: TuneRow | None
    target_recall: float
    k: int
    n_build: int
    n_validation: int
    exact_single_ms: float
    exact_batch_ms: float


def _family(metric: str, dim: int, n_tables: int, n_bits: int, seed: int, X: np.ndarray,
            center: bool, width: float | None, whiten: float = 0.0):
    if metric == "cosine":
        return HyperplaneLSH(dim, n_tables=n_tables, n_bits=n_bits, seed=seed, center=center,
                             whiten=whiten)
    assert width is not None
    return PStableLSH(dim, n_tables=n_tables, n_hashes=n_bits, bucket_width=width, seed=seed)


def _time_single(fn: Callable[[np.ndarray], object], Q: np.ndarray) -> float:
    sample = Q[: min(len(Q), SINGLE_QUERY_SAMPLE)]
    fn(sample[0])
    t0 = time.perf_counter()
    for q in sample:
        fn(q)
    return (time.perf_counter() - t0) / len(sample) * 1e3


def tune_vectors(
    X: np.ndarray,
    *,
    metric: str = "cosine",
    target_recall: float = 0.95,
    k: int = 10,
    n_validation: int = 500,
    tables: Iterable[int] = (4, 8, 12, 16),
    bits: Iterable[int] | None = None,
    probes_per_table: Iterable[int] = (1, 2, 4, 8, 16, 32),
    rerank_per_k: Iterable[int] = (0, 20, 100),
    seed: int = 0,
    center: bool = False,
    whiten: float = 0.0,
    bucket_width: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TuneReport:
    """Sweep (L, K, probes) on a validation split of X; see the module docstring."""
    if not 0 < target_recall <= 1:
        raise ParameterError(f"target recall must be in (0, 1], got {target_recall!r}")
    if metric not in ("cosine", "euclidean"):
        raise ParameterError(f"tune works on cosine or euclidean vectors, not {metric!r}")
    n = len(X)
    n_val = min(n_validation, n // 5)
    if n_val < 10 or n - n_val < 2 * k:
        raise ParameterError(f"too few vectors to tune ({n}); index at least {max(50, 5 * k)}")
    order = np.random.default_rng(seed).permutation(n)
    Q = np.ascontiguousarray(X[order[:n_val]])
    B = np.ascontiguousarray(X[order[n_val:]])
    brute = BruteForce(metric).fit(B)
    t0 = time.perf_counter()
    truth = brute.search(Q, k).ids
    exact_batch_ms = (time.perf_counter() - t0) / n_val * 1e3
    exact_single_ms = _time_single(lambda q: brute.search(q, k), Q)
    if bits is None and metric == "euclidean":
        bits = (4, 6, 8, 10)
    if bits is None:
        base = int(np.clip(round(np.log2(len(B) / 16)), 4, 24))
        bits = sorted({max(2, base - 2), base, min(30, base + 2)})
    if metric == "euclidean" and bucket_width is None:
        from audiolsh.index.build import estimate_bucket_width

        bucket_width = estimate_bucket_width(B, seed)
    grid = [(L, K) for L in tables for K in bits]
    rows: list[TuneRow] = []
    bound: list[float] = []
    for step, (L, K) in enumerate(grid):
        t0 = time.perf_counter()
        fam = _family(metric, X.shape[1], L, K, seed, B, center, bucket_width, whiten)
        searcher = VectorLSH(fam, metric=metric).fit(B)
        build_s = time.perf_counter() - t0
        # The Hamming pre-filter needs hyperplane codes (cosine only).
        reranks = [r * k for r in rerank_per_k] if searcher.codes_.shape[1] else [0]
        for ppt in probes_per_table:
            P = L * ppt
            recall = 0.0
            for R in reranks:
                t0 = time.perf_counter()
                res = searcher.search(Q, k, n_probes=P, n_rerank=R)
                batch_ms = (time.perf_counter() - t0) / n_val * 1e3
                per_query = recall_at_k(res.ids, truth)
                recall = float(per_query.mean())
                # What fresh queries can count on: the mean less the tuner's margin.
                bound.append(recall - autotune.Z * float(per_query.std()) / np.sqrt(n_val)
                             - autotune.MARGIN)
                cand = float(res.n_candidates.mean())
                exact = min(cand, R) if R else cand
                rows.append(TuneRow(
                    n_tables=L, n_bits=K, n_probes=P, n_rerank=R, recall=recall,
                    precision=recall * k / max(exact, 1.0), candidates=cand,
                    single_ms=_time_single(partial(searcher.search, k=k, n_probes=P, n_rerank=R), Q),
                    batch_ms=batch_ms, table_bytes_per_item=searcher.index_nbytes / len(B),
                    build_s=build_s,
                ))
            if recall >= 0.999:
                break  # more probes only cost time
        if progress is not None:
            progress(step + 1, len(grid))
    ok = [r for r, b in zip(rows, bound) if b >= target_recall]
    best = min(ok, key=lambda r: (r.single_ms, r.table_bytes_per_item)) if ok else None
    return TuneReport(rows, best, target_recall, k, len(B), n_val, exact_single_ms, exact_batch_ms)


def tune_index(index, *, apply: bool = True, **kwargs) -> TuneReport:  # type: ignore[no-untyped-def]
    """Tune on an index's own vectors and, with ``apply``, store and build the best setting."""
    from audiolsh.index.build import auto_bits, auto_whiten

    X, _ = index.live_data()
    cfg = index.config
    center = needs_centering(X) if cfg.center == "auto" else bool(cfg.center)
    whiten = 0.0
    if cfg.metric == "cosine" and cfg.whiten != "auto":
        whiten = float(cfg.whiten)
    elif cfg.metric == "cosine" and len(X):
        n_bits = cfg.n_bits or auto_bits(len(X))
        whiten = auto_whiten(np.asarray(X), n_bits=n_bits, seed=cfg.seed, center=center)
    report = tune_vectors(
        np.asarray(X), metric=cfg.metric, seed=cfg.seed, center=center, whiten=whiten,
        bucket_width=cfg.bucket_width, **kwargs,
    )
    if apply and report.best is not None:
        b = report.best
        index.set_params(
            n_tables=b.n_tables, n_bits=b.n_bits, n_probes=b.n_probes, n_rerank=b.n_rerank,
            tuned={"target_recall": report.target_recall, "k": report.k, **b.to_dict()},
        )
    return report
