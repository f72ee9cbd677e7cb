"""What a vector or set index is built with, and the build of one segment.

``build_segment`` is pure: given the config, the rows and their item ids it makes the same
segment in any process or on any machine (hashing does not depend on how rows are batched),
so segments can be built where the data is and attached to the index later.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.hashing import HyperplaneLSH, MinHashLSH, PStableLSH, as_sets, concat_sets
from audiolsh.hashing.base import check_int, learned_arrays
from audiolsh.hashing.hyperplane import check_whiten, key_balance, needs_centering
from audiolsh.index.autotune import (
    AUTO_WHITEN,
    DEFAULT_MAX_TABLE_BYTES,
    WHITEN_MIN_ROWS_PER_DIM,
    check_recall,
    tune_segment,
)
from audiolsh.index.families import AUTO, by_cell, check_family, learned_family, resolve_family, tune_cells
from audiolsh.index.segments import SegmentBuild
from audiolsh.search import BruteForce, SetLSH, VectorLSH, prepare
from audiolsh.search.brute import check_metric
from audiolsh.search.compact import RERANK_FORMAT, check_rerank_dtype, compact_rows
from audiolsh.storage import SegmentInfo

log = logging.getLogger(__name__)

TARGET_BUCKET_SIZE = 16
DEFAULT_TABLES = 8
DEFAULT_TARGET_RECALL = 0.95
WIDTH_SAMPLE = 2000
DEFAULT_PSTABLE_HASHES = 8
# How crowded plain planes must leave the tables (key_balance below this) for the "auto"
# whitening (AUTO_WHITEN, with WHITEN_MIN_ROWS_PER_DIM rows per dimension) to pay.
WHITEN_BELOW_BALANCE = 0.6
FAMILY_ARRAY_PREFIX = "family_"


@dataclass
class IndexConfig:
    """What an index is built with.  Build-time knobs apart from the query-time ``n_probes``.

    metric : cosine (random hyperplanes), euclidean (p-stable) or jaccard (MinHash, sets).
    dim : vector dimension; learned from the first add when None.
    n_tables : L hash tables (for jaccard: chosen by the threshold); None: chosen per segment
        for ``target_recall`` (see below), else 8.
    n_bits : K hashes per table; None: chosen per segment for ``target_recall``, else
        log2(rows / 16) (cosine) or 8 (euclidean).
    bucket_width : p-stable width; None estimates it from the data at each segment build.
    center : centre the hyperplanes on the data mean: "auto" does so when the rows share a
        dominant direction (non-negative or dB features), see ``needs_centering``.
    whiten : cosine only: partial whitening alpha in [0, 1] of data-adaptive hyperplanes
        (``HyperplaneLSH(whiten=...)``; implies centring).  "auto" uses 0.5 when plain planes
        would crowd the rows into few buckets (``key_balance`` < 0.6: the variance sits in a
        few directions) and the segment has at least 20 rows per dimension; else 0.
    n_probes : buckets probed per query over all tables; None means 4 per table (32 per
        table for whitened segments, whose buckets are smaller and more even).
    n_rerank : cosine only: measure exactly just the candidates nearest by Hamming distance of
        their hyperplane codes, this many (0: all candidates).  In Redis remote-probe mode
        (cosine, euclidean): fetch and measure at most this many rows per segment, those found
        in the most probed buckets (0: all, the answers of the same index elsewhere).
    num_perm, threshold : MinHash signature length and the Jaccard threshold for banding.
    n_candidates : jaccard only: rank the candidates by the bands they share with the query
        (collision counting) and measure the exact Jaccard of only this many (None: all); in
        Redis remote-probe mode only these rows are fetched.
    max_segments : merge segments beyond this many.
    family : "auto" (default: "kmeans" for cosine and euclidean unless ``n_tables``,
        ``n_bits``, ``bucket_width`` or a numeric ``whiten`` ask for hyperplanes, resolved
        when the config is made), "hyperplane" (p-stable for euclidean), "cross-polytope"
        (cosine) or "kmeans" (learned cells, as IVF): see ``index.families``.
    target_recall : cosine, euclidean: every segment of at least ``autotune.MIN_ROWS`` rows
        is built for this recall@10 (``autotune.tune_segment``): L, K and whitening (those
        not set here) and its adaptive probing are chosen from held-out rows and stored with
        the segment; ``query(recall=...)`` asks for another.  None: the fixed defaults
        (indexes made before this field existed open with None).  The kmeans family keeps
        its cells and tunes its probes (``families.tune_cells``); cross-polytope is not
        tuned.
    max_table_bytes : with ``target_recall``: the hash tables (and row codes) a tuned segment
        may hold, bytes per item; the tuner picks the fastest point inside it, and warns when
        none inside reaches the target (then the best recall inside it).  None: no limit.
    rerank_dtype : cosine, euclidean: float16 or int8 keeps a compact copy of the rows that
        the exact pass reads (for when the float32 rows do not fit in memory; they stay on
        disk for exact scans and merges); float32 (default) re-ranks the rows themselves.
        Queries of int8 rows recheck their best 2k on the float32 rows (``Index.query``'s
        ``recheck``).
    """

    metric: str = "cosine"
    dim: int | None = None
    n_tables: int | None = None
    n_bits: int | None = None
    bucket_width: float | None = None
    center: str | bool = "auto"
    whiten: str | float = "auto"
    n_probes: int | None = None
    n_rerank: int = 0
    num_perm: int = 128
    threshold: float = 0.5
    n_candidates: int | None = None
    seed: int = 0
    max_segments: int = 8
    tuned: dict[str, Any] | None = field(default=None)
    # The hash family (issue #18); configs written before it have none: hyperplane.
    family: str = AUTO
    # Right by default (issue #18): the build-time recall target.
    target_recall: float | None = DEFAULT_TARGET_RECALL
    rerank_dtype: str = "float32"  # older indexes have none: float32
    # Older configs have none: the default applies to the segments they build from now on.
    max_table_bytes: float | None = DEFAULT_MAX_TABLE_BYTES

    def __post_init__(self) -> None:
        self.family = resolve_family(self.family, self.metric, hyperplane_shape=(
            self.n_tables is not None or self.n_bits is not None or self.bucket_width is not None
            or self.whiten != "auto"))

    def validate(self) -> IndexConfig:
        check_metric(self.metric)
        if self.dim is not None:
            check_int("dim", self.dim, 1)
        if self.n_tables is not None:
            check_int("n_tables", self.n_tables, 1, 256)
        if self.target_recall is not None:
            check_recall(self.target_recall)
        if self.n_bits is not None:
            check_int("n_bits", self.n_bits, 1, 64)
        if self.n_probes is not None:
            check_int("n_probes", self.n_probes, 1)
        check_int("n_rerank", self.n_rerank, 0)
        if self.bucket_width is not None and not self.bucket_width > 0:
            raise ParameterError(f"bucket_width must be positive, got {self.bucket_width!r}")
        if self.center not in ("auto", True, False):
            raise ParameterError(f"center must be 'auto', true or false, got {self.center!r}")
        if self.whiten != "auto":
            check_whiten(self.whiten)
        check_int("num_perm", self.num_perm, 2, 4096)
        if not 0 < self.threshold < 1:
            raise ParameterError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if self.n_candidates is not None:
            check_int("n_candidates", self.n_candidates, 1)
        check_int("seed", self.seed, 0)
        check_int("max_segments", self.max_segments, 1)
        check_family(self.family, self.metric)
        check_rerank_dtype(self.rerank_dtype)
        if self.max_table_bytes is not None and (
                isinstance(self.max_table_bytes, bool) or not isinstance(self.max_table_bytes, (int, float))
                or not self.max_table_bytes > 0):
            raise ParameterError(f"max_table_bytes must be a positive number, got {self.max_table_bytes!r}")
        return self

    @property
    def tables(self) -> int:
        """L where no segment chose it: the set value, else 8."""
        return self.n_tables if self.n_tables is not None else DEFAULT_TABLES

    @property
    def default_probes(self) -> int:
        return self.n_probes if self.n_probes is not None else 4 * self.tables

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise IndexFormatError(f"index config has unknown fields {sorted(unknown)}")
        if "target_recall" not in data:  # written before builds were tuned: keep its builds
            data = {**data, "target_recall": None}
        if "family" not in data:  # written before families: hyperplanes, whatever "auto" says now
            data = {**data, "family": "hyperplane"}
        return cls(**data).validate()


def auto_bits(n_rows: int) -> int:
    return int(np.clip(round(math.log2(max(n_rows, 1) / TARGET_BUCKET_SIZE)), 2, 24))


def auto_whiten(X: np.ndarray, *, n_bits: int, seed: int, center: bool) -> float:
    """The "auto" whitening of a segment's rows (see ``IndexConfig.whiten``)."""
    if len(X) < WHITEN_MIN_ROWS_PER_DIM * X.shape[1]:
        return 0.0
    balance = key_balance(X, n_bits=n_bits, seed=seed, center=center)
    return AUTO_WHITEN if balance < WHITEN_BELOW_BALANCE else 0.0


def estimate_bucket_width(X: np.ndarray, seed: int) -> float:
    """4 x the median distance from a sample of rows to their 10th nearest sampled row."""
    rng = np.random.default_rng(seed)
    sample = X[rng.choice(len(X), size=min(len(X), WIDTH_SAMPLE), replace=False)]
    nn = BruteForce("euclidean").fit(sample).search(sample[:500], min(11, len(sample)))
    d = nn.distances[:, -1]
    d = d[np.isfinite(d) & (d > 0)]
    return float(4.0 * np.median(d)) if len(d) else 1.0


def build_segment(config: IndexConfig, data: Any, ids: np.ndarray, *, prepared: bool = False) -> SegmentBuild:
    """One segment of rows (vectors, or sets for jaccard) with their item ids: a pure function
    of its inputs, so a segment built in any process or machine is the one this index would
    build (``Index.reserve_ids``, then ``Index.attach``).  ``prepared``: the rows already went
    through ``prepare`` (unit length for cosine)."""
    cfg = config
    t0 = time.perf_counter()
    tune_s = 0.0
    if not prepared:
        data = as_sets(data) if cfg.metric == "jaccard" else prepare(np.asarray(data), cfg.metric)
    if len(data) != len(ids):
        raise ParameterError(f"{len(ids)} ids for {len(data)} rows")
    n = len(ids)
    family: Any
    point: dict[str, Any] | None = None
    if cfg.metric == "jaccard":
        family = MinHashLSH(num_perm=cfg.num_perm, threshold=cfg.threshold, seed=cfg.seed)
        searcher: VectorLSH | SetLSH = SetLSH(family, n_candidates=cfg.n_candidates).fit(data)
        arrays = {"indptr": data.indptr, "elements": data.elements}
    else:
        choice = None
        if cfg.family != "hyperplane":
            family = learned_family(cfg, data, cfg.n_bits or auto_bits(n))
        else:
            center = cfg.metric == "cosine" and (
                needs_centering(data) if cfg.center == "auto" else bool(cfg.center))
            width = 0.0
            if cfg.metric == "euclidean":
                width = cfg.bucket_width or estimate_bucket_width(data, cfg.seed)
            if cfg.target_recall is not None:
                t1 = time.perf_counter()
                choice = tune_segment(
                    data, metric=cfg.metric, target=cfg.target_recall, seed=cfg.seed, center=center,
                    n_tables=cfg.n_tables, n_bits=cfg.n_bits, whiten=cfg.whiten, bucket_width=width,
                    auto_bits=auto_bits(n), max_table_bytes=cfg.max_table_bytes,
                )
                tune_s += time.perf_counter() - t1
            if choice is not None:
                family, point = choice.family, choice.point
            elif cfg.metric == "cosine":
                n_bits = cfg.n_bits or auto_bits(n)
                whiten = (
                    auto_whiten(data, n_bits=n_bits, seed=cfg.seed, center=center)
                    if cfg.whiten == "auto" else float(cfg.whiten)
                )
                family = HyperplaneLSH(
                    data.shape[1], n_tables=cfg.tables, n_bits=n_bits, seed=cfg.seed,
                    center=center, whiten=whiten,
                )
            else:
                family = PStableLSH(
                    data.shape[1], n_tables=cfg.tables, n_hashes=cfg.n_bits or DEFAULT_PSTABLE_HASHES,
                    bucket_width=width, seed=cfg.seed,
                )
        cells = cfg.family == "kmeans"
        # k-means rows move cell by cell: their compact copy is made once, in that order (the
        # same bytes; one int8 copy in memory at a time, 1.3 GB at 10M x 128, not two)
        searcher = VectorLSH(family, metric=cfg.metric).fit(
            data, prepared=True, fit_family=choice is None,
            rerank_dtype="float32" if cells else cfg.rerank_dtype)
        if cells:  # rows stored cell by cell (ids follow them)
            searcher, order = by_cell(searcher)
            searcher.load(searcher.vectors_, searcher.tables_,
                          **compact_rows(searcher.vectors_, cfg.rerank_dtype))
            ids = ids[order]
            if cfg.target_recall is not None:
                t1 = time.perf_counter()
                point = tune_cells(searcher, cfg.target_recall, cfg.seed)
                tune_s += time.perf_counter() - t1
        arrays = {"vectors": searcher.vectors_, **searcher.rerank_arrays()}
        if searcher.codes_.shape[1]:
            arrays["codes"] = searcher.codes_
        for name, a in learned_arrays(family).items():
            arrays[FAMILY_ARRAY_PREFIX + name] = a
    arrays.update(searcher.tables_.arrays())
    arrays["ids"] = ids.astype(np.int64)
    seg_config: dict[str, Any] = {"metric": cfg.metric, "family": family.to_config()}
    if point is not None:
        seg_config["operating_point"] = point
    if "rerank" in arrays:
        seg_config["rerank"] = {"dtype": cfg.rerank_dtype, "format_version": RERANK_FORMAT}
    info = SegmentInfo.new(n_items=n, config=seg_config)
    timings = {"build_s": time.perf_counter() - t0, "tune_s": tune_s}
    # Timings stay out of the segment (a pure function of its rows): logged and returned.
    log.debug("built a segment of %d rows in %.3f s, %.3f s of it tuning", n, timings["build_s"], tune_s,
              extra={"timings": timings})
    return SegmentBuild(info, arrays, timings=timings)


def concat_rows(parts: list[Any], metric: str) -> Any:
    """Staged batches as one array (or SetBatch)."""
    if metric == "jaccard":
        return concat_sets(parts)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
