"""The hash family an index builds its segments with (``IndexConfig.family``).

auto : the default, resolved when the config is made (``resolve_family``): kmeans for
    cosine and euclidean, unless a hyperplane shape is asked for (``n_tables``, ``n_bits``,
    ``bucket_width`` or a numeric ``whiten``), then hyperplane; jaccard: MinHash.  Measured
    (docs/results.md, "Issue #18: k-means family"): the default-built k-means index reaches
    recall@10 >= 0.95 on every dataset there and is 3.3-53x faster than the default-built
    hyperplane index at that recall.  Configs written before the field are hyperplane.
hyperplane : random hyperplanes for cosine (p-stable projections for Euclidean),
    data-independent.
cross-polytope : cosine only; FALCONN's family, ``n_bits`` key bits per table.
kmeans : a learned partition (spherical k-means for cosine, k-means for Euclidean), as an
    IVF index; ``n_bits`` gives 2^n_bits cells per table, None about 2 sqrt(rows) (one cell,
    an exact scan, below ``autotune.MIN_ROWS`` rows, where there is nothing to tune); one
    table unless ``n_tables`` is given.  Its probe cap and adaptive stop for a target recall
    come from ``tune_cells``, stored as the segment's operating point.
"""

from __future__ import annotations

import math
import mmap
import os
import tempfile
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing import kmeans
from audiolsh.hashing.base import HashFamily
from audiolsh.hashing.crosspolytope import CrossPolytopeLSH
from audiolsh.hashing.hyperplane import needs_centering
from audiolsh.hashing.kmeans import KMeansLSH
from audiolsh.index import autotune, cell_stop
from audiolsh.search import BucketTables, VectorLSH

FAMILIES = ("hyperplane", "cross-polytope", "kmeans")
AUTO = "auto"
# Cells per sqrt(rows) of an auto-sized k-means partition: a query scores every centroid
# and scans its probed cells, and the two costs meet about here.  3 was 1.46x faster on
# anisotropic 300k rows but 0.65-0.87x on isotropic 1M (more probes tuned, as many rows
# scanned, 1.5x the centroids) and not clearly faster on the real set (docs/results.md,
# "Issue #18: confirmed ratios and the cell rule"), so 2 stays.
CELLS_PER_SQRT_ROW = 2.0
MAX_AUTO_CELLS = 1 << 14


def check_family(family: Any, metric: str) -> str:
    if family not in FAMILIES:
        raise ParameterError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if family == "cross-polytope" and metric != "cosine":
        raise ParameterError(f"the cross-polytope family is for the cosine metric, not {metric}")
    if family != "hyperplane" and metric == "jaccard":
        raise ParameterError(f"jaccard indexes hash with MinHash: family {family!r} does not apply")
    return str(family)


def resolve_family(family: Any, metric: str, *, hyperplane_shape: bool) -> Any:
    """The family "auto" stands for (module docstring); any other value as it is.
    ``hyperplane_shape``: the config sets a knob only hyperplanes read."""
    if family != AUTO:
        return family
    return "kmeans" if metric in ("cosine", "euclidean") and not hyperplane_shape else "hyperplane"


def auto_cells(n_rows: int) -> int:
    """k-means cells for a segment of ``n_rows`` rows: ~2 sqrt(n), at most n / 8; one (an
    exact scan) below the rows a segment is tuned from, so small segments answer exactly."""
    if n_rows < autotune.MIN_ROWS:
        return 1
    cells = round(CELLS_PER_SQRT_ROW * math.sqrt(max(n_rows, 1)))
    return int(np.clip(cells, 1, min(MAX_AUTO_CELLS, max(1, n_rows // 8))))


def learned_family(config: Any, data: np.ndarray, n_bits: int) -> HashFamily:
    """The cross-polytope or k-means family of a segment of ``data`` (prepared rows), not
    yet fit (``VectorLSH.fit`` fits it).  ``n_bits``: the config's, or its auto value."""
    dim = data.shape[1]
    if config.family == "cross-polytope":
        center = needs_centering(data) if config.center == "auto" else bool(config.center)
        return CrossPolytopeLSH(dim, n_tables=config.tables, n_bits=n_bits, seed=config.seed,
                                center=center)
    cells = 2**config.n_bits if config.n_bits else auto_cells(len(data))
    return KMeansLSH(dim, n_tables=config.n_tables or 1, n_cells=min(cells, 1 << 20), seed=config.seed,
                     spherical=config.metric == "cosine")


def table_keys(tables: BucketTables, n_rows: int) -> np.ndarray:
    """Every row's key in every table (n, L) uint64, read back from the tables."""
    keys = np.empty((n_rows, tables.n_tables), np.uint64)
    slot_keys = np.repeat(tables.bucket_keys, tables.bucket_sizes())  # one per member slot
    for t in range(tables.n_tables):
        part = slice(t * n_rows, (t + 1) * n_rows)
        keys[tables.members[part], t] = slot_keys[part]
    return keys


def by_cell(searcher: VectorLSH) -> tuple[VectorLSH, np.ndarray]:
    """The searcher's rows reordered by their cell in the first table, and the order (new
    row i is old row order[i]): a probed cell is then one contiguous read, as an IVF list,
    instead of a gather from all over the rows (2-3x the single-query speed measured at
    150k rows).  The keys are the same; only the row numbers change."""
    n = len(searcher.vectors_)
    order = searcher.tables_.members[:n].astype(np.int64)  # table 0's rows, cell by cell
    keys = table_keys(searcher.tables_, n)[order]
    moved = VectorLSH(searcher.family, metric=searcher.metric)
    compact = searcher.rerank_arrays()  # a compact copy's rows move too (scale, offset: per column)
    if "rerank" in compact:
        compact["rerank"] = np.ascontiguousarray(compact["rerank"][order])
    return moved.load(permuted_rows(searcher.vectors_, order), BucketTables.build(keys),
                      **compact), order


# Memory-mapped rows of more than this many bytes are reordered into a temporary file.
SPILL_BYTES = 1 << 30
GATHER_ROWS = 1 << 16


def _mapped(X: np.ndarray) -> bool:
    """The rows are pages of a file (a memory map, or a view of one)."""
    a: Any = X
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def permuted_rows(X: np.ndarray, order: np.ndarray) -> np.ndarray:
    """X[order], C-contiguous.  Memory-mapped rows of more than SPILL_BYTES go into an
    unlinked temporary file (its space reserved first, so a full disk is an error, not a
    fault), a block at a time: rows that did not fit in memory are not copied into memory
    (5.1 GB at 10M x 128), and the file goes when the segment is written and dropped."""
    if X.nbytes <= SPILL_BYTES or not _mapped(X):
        return np.ascontiguousarray(X[order])
    with tempfile.TemporaryFile() as f:
        try:
            os.posix_fallocate(f.fileno(), 0, X.nbytes)
        except OSError as e:
            raise ParameterError(f"no room for a {X.nbytes / 1e9:.1f} GB temporary copy of the rows"
                                 f" in {tempfile.gettempdir()} (set TMPDIR): {e.strerror}") from None
        out = np.memmap(f, dtype=X.dtype, mode="r+", shape=X.shape)  # the map outlives the file
    for lo in range(0, len(order), GATHER_ROWS):
        np.take(X, order[lo : lo + GATHER_ROWS], axis=0, out=out[lo : lo + GATHER_ROWS])
    return out


# Held-out rows of a k-means segment's tuning: their exact pass (queries x rows x dim) costs
# at most TUNE_SHARE of the build's k-means (its Lloyd passes over the fit sample and the
# assignment of every row, cells x rows x dim each), and at most TUNE_FLOPS multiply-adds,
# within TUNE_QUERIES; fewer queries only widen the standard-error margin (more probes).
TUNE_SHARE = 0.1
TUNE_FLOPS = 2e10
TUNE_QUERIES = (200, 400)


def tune_queries(fam: KMeansLSH, n: int) -> int:
    """Held-out queries for a k-means segment of ``n`` rows (see TUNE_SHARE)."""
    passes = fam.n_tables * (kmeans.N_ITER * fam.fit_rows(n) / max(n, 1) + 1)  # over the rows, per cell
    by_build = TUNE_SHARE * passes * fam.n_cells
    return int(np.clip(min(by_build, TUNE_FLOPS / (max(n, 1) * fam.dim)), *TUNE_QUERIES))


def tune_cells(searcher: VectorLSH, target: float, seed: int) -> dict[str, Any] | None:
    """The probe cap and adaptive stop of a k-means segment for a target recall@10, as
    ``autotune``'s operating point (``autotune.pick`` and ``fixed_probes`` read it), from one
    exact pass over held-out rows of the segment (their own row left out of their exact
    neighbours) and their probe sequences: ``cell_stop.operating_point`` models every (cap,
    stop) from them, with no search.  None for segments too small to hold rows out."""
    X, fam = searcher.vectors_, searcher.family
    n = len(X)
    if n < autotune.MIN_ROWS or not isinstance(fam, KMeansLSH):
        return None
    nq = tune_queries(fam, n)
    rng = np.random.default_rng([seed, 0x7C31])
    rows = np.sort(rng.choice(n, nq, replace=False))
    truth, dist = autotune.nearest_others(X, rows, autotune.NEAREST, searcher.metric)
    n_all = fam.n_tables * fam.n_cells
    p_max = int(min(n_all, max(8 * fam.n_tables, n_all // 8, 64)))
    keys, tables, gaps = fam.scored_probes(X[rows], p_max)
    cells = np.ascontiguousarray(table_keys(searcher.tables_, n)[truth])  # (q, M, L): the neighbours' cells
    found = autotune.first_probe(cells, keys, tables)
    sizes = cell_sizes(searcher.tables_, fam.n_cells)[tables, keys]
    return cell_stop.operating_point(found, dist, gaps, sizes, fam.n_tables, target)


def cell_sizes(tables: BucketTables, n_cells: int) -> np.ndarray:
    """Rows of every cell of every table, (L, C)."""
    sizes = np.zeros((tables.n_tables, n_cells), np.int64)
    per_table = np.diff(tables.table_start)
    table = np.repeat(np.arange(tables.n_tables), per_table)
    sizes[table, tables.bucket_keys.astype(np.int64)] = tables.bucket_sizes()
    return sizes
