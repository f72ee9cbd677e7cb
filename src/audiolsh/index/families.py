"""The hash family an index builds its segments with (``IndexConfig.family``).

hyperplane : random hyperplanes for cosine (p-stable projections for Euclidean): the
    default, data-independent.
cross-polytope : cosine only; FALCONN's family, ``n_bits`` key bits per table.
kmeans : a learned partition (spherical k-means for cosine, k-means for Euclidean), as an
    IVF index; ``n_bits`` gives 2^n_bits cells per table, None about 2 sqrt(rows); one
    table unless ``n_tables`` is given when the index is created.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audiolsh.errors import ParameterError
from audiolsh.hashing.base import HashFamily
from audiolsh.hashing.crosspolytope import CrossPolytopeLSH
from audiolsh.hashing.hyperplane import needs_centering
from audiolsh.hashing.kmeans import KMeansLSH
from audiolsh.search import BucketTables, VectorLSH

FAMILIES = ("hyperplane", "cross-polytope", "kmeans")
# Cells per sqrt(rows) of an auto-sized k-means partition: a query scores every centroid
# and scans its probed cells, and the two costs meet about here.
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


def auto_cells(n_rows: int) -> int:
    """k-means cells for a segment of ``n_rows`` rows: ~2 sqrt(n), at most n / 8."""
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
    return KMeansLSH(dim, n_tables=config.tables, n_cells=min(cells, 1 << 20), seed=config.seed,
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
    return moved.load(np.ascontiguousarray(searcher.vectors_[order]), BucketTables.build(keys),
                      **compact), order
