"""Choose L, K and probes automatically (S5's three questions, answered by a sweep).

The indexed vectors are split once, by seed, into a build set and a held-out validation set
of queries.  For every (L, K) the tables are built over the build set and every probe count
is tried (for cosine also with the Hamming pre-filter at 20k and 100k exactly measured
candidates); recall@k is measured against exact search on the same build set.  The
cheapest setting (lowest single-query time) whose recall, less two standard errors over the
validation queries and ``autotune.MARGIN``, reaches the target wins: the mean alone reached
0.951 on validation and 0.946 on fresh queries.

The learned and cross-polytope families keep their build settings (k-means: its cells;
cross-polytope: its tables and bits): their tables are built once over the build set and
only the probes are swept, k-means cells probed or cross-polytope buckets probed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.evaluation.metrics import recall_at_k
from audiolsh.hashing import HyperplaneLSH, PStableLSH
from audiolsh.hashing.base import HashFamily
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
    family: str = "hyperplane"
    #: k-means: cells per table of the swept partition (its probes count cells)
    n_cells: int | None = None


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
    split = _Split.of(X, metric, target_recall, k, n_validation, seed)
    B = split.B
    if bits is None and metric == "euclidean":
        bits = (4, 6, 8, 10)
    if bits is None:
        base = int(np.clip(round(np.log2(len(B) / 16)), 4, 24))
        bits = sorted({max(2, base - 2), base, min(30, base + 2)})
    if metric == "euclidean" and bucket_width is None:
        from audiolsh.index.build import estimate_bucket_width

        bucket_width = estimate_bucket_width(B, seed)
    grid = [(L, K) for L in tables for K in bits]
    for step, (L, K) in enumerate(grid):
        t0 = time.perf_counter()
        fam = _family(metric, X.shape[1], L, K, seed, B, center, bucket_width, whiten)
        searcher = VectorLSH(fam, metric=metric).fit(B)
        # The Hamming pre-filter needs hyperplane codes (cosine only).
        reranks = [r * k for r in rerank_per_k] if searcher.codes_.shape[1] else [0]
        split.sweep(searcher, L, K, [L * ppt for ppt in probes_per_table], reranks,
                    time.perf_counter() - t0, stop=0.999)
        if progress is not None:
            progress(step + 1, len(grid))
    return split.report()


@dataclass
class _Split:
    """The held-out queries, the build set, its exact answers, and the rows measured so far."""

    Q: np.ndarray
    B: np.ndarray
    truth: np.ndarray
    target_recall: float
    k: int
    exact_single_ms: float
    exact_batch_ms: float
    rows: list[TuneRow]
    bound: list[float]

    @classmethod
    def of(cls, X: np.ndarray, metric: str, target_recall: float, k: int, n_validation: int,
           seed: int) -> _Split:
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
        return cls(Q, B, truth, target_recall, k, _time_single(lambda q: brute.search(q, k), Q),
                   exact_batch_ms, [], [])

    def sweep(self, searcher: VectorLSH, L: int, K: int, probes: Iterable[int],
              reranks: list[int], build_s: float, stop: float, enough: float = np.inf) -> None:
        """Measure every probe count (ascending) with every re-rank budget; stop once the
        recall (of the last budget) reaches ``stop`` or its bound ``enough``: more probes
        only cost time."""
        Q, k, n_val = self.Q, self.k, len(self.Q)
        for P in probes:
            recall = 0.0
            for R in reranks:
                t0 = time.perf_counter()
                res = searcher.search(Q, k, n_probes=P, n_rerank=R)
                batch_ms = (time.perf_counter() - t0) / n_val * 1e3
                per_query = recall_at_k(res.ids, self.truth)
                recall = float(per_query.mean())
                # What fresh queries can count on: the mean less the tuner's margin.
                self.bound.append(recall - autotune.Z * float(per_query.std()) / np.sqrt(n_val)
                                  - autotune.MARGIN)
                cand = float(res.n_candidates.mean())
                exact = min(cand, R) if R else cand
                self.rows.append(TuneRow(
                    n_tables=L, n_bits=K, n_probes=P, n_rerank=R, recall=recall,
                    precision=recall * k / max(exact, 1.0), candidates=cand,
                    single_ms=_time_single(partial(searcher.search, k=k, n_probes=P, n_rerank=R), Q),
                    batch_ms=batch_ms, table_bytes_per_item=searcher.index_nbytes / len(self.B),
                    build_s=build_s,
                ))
            if recall >= stop or self.bound[-1] >= enough:
                break

    def report(self, **extra: Any) -> TuneReport:
        ok = [r for r, b in zip(self.rows, self.bound) if b >= self.target_recall]
        best = min(ok, key=lambda r: (r.single_ms, r.table_bytes_per_item)) if ok else None
        return TuneReport(self.rows, best, self.target_recall, self.k, len(self.B), len(self.Q),
                          self.exact_single_ms, self.exact_batch_ms, **extra)


def probe_counts(n_tables: int, most: int) -> list[int]:
    """Probe counts to sweep: every table's home bucket, then about 1.4x more each step, up
    to ``most`` (every bucket a family has, or a cap)."""
    counts, p = [], float(n_tables)
    while p < most:
        counts.append(int(p))
        p = max(p * 1.4, p + 1)
    return [*counts, most]


# Cross-polytope buckets probed per table at most: past this its probe sequence costs more
# than the exact scan it replaces on any index tune is meant for.
MAX_CROSS_POLYTOPE_PROBES_PER_TABLE = 256


def tune_probes(
    X: np.ndarray, family: HashFamily, *, metric: str = "cosine", target_recall: float = 0.95,
    k: int = 10, n_validation: int = 500, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> TuneReport:
    """The probes a family (k-means, cross-polytope) built as the index builds it needs for
    the target; its build settings stay (see the module docstring)."""
    split = _Split.of(X, metric, target_recall, k, n_validation, seed)
    t0 = time.perf_counter()
    searcher = VectorLSH(family, metric=metric).fit(split.B)
    build_s = time.perf_counter() - t0
    L = family.n_tables
    n_cells = getattr(family, "n_cells", None)
    most = L * (n_cells or MAX_CROSS_POLYTOPE_PROBES_PER_TABLE)
    split.sweep(searcher, L, getattr(family, "n_bits", 0), probe_counts(L, most), [0], build_s,
                stop=0.999, enough=target_recall)
    if progress is not None:
        progress(1, 1)
    return split.report(family="kmeans" if n_cells else "cross-polytope", n_cells=n_cells)


def tune_index(index, *, apply: bool = True, **kwargs) -> TuneReport:  # type: ignore[no-untyped-def]
    """Tune on an index's own vectors and, with ``apply``, store and build the best setting."""
    from audiolsh.index.build import auto_bits, auto_whiten
    from audiolsh.index.families import learned_family

    X, _ = index.live_data()
    cfg = index.config
    if kwargs.get("tables", 0) is None:  # not given: the family's own (hyperplane: a sweep)
        del kwargs["tables"]
    if cfg.family != "hyperplane":
        for name in ("tables", "bits"):
            if kwargs.pop(name, None) is not None:
                raise ParameterError(
                    f"tune keeps the tables and cells of a {cfg.family} index and picks its probes:"
                    f" --{name} does not apply")
        X = np.asarray(X)
        family = learned_family(cfg, X, cfg.n_bits or auto_bits(len(X)))
        report = tune_probes(X, family, metric=cfg.metric, seed=cfg.seed, **kwargs)
        if apply and report.best is not None:  # probes are a query setting: no rebuild
            index.set_params(n_probes=report.best.n_probes, n_rerank=0, tuned={
                "target_recall": report.target_recall, "k": report.k, "family": cfg.family,
                **report.best.to_dict()})
        return report
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
