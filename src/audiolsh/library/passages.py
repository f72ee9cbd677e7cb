"""Passages (excerpt windows) of a library: where a window of one mode sits in another, and how
alike two passages are in each similarity mode: the raw value ``similar`` ranks by.

- rhythm, timbre, chroma: the cosine of the prepared rows;
- peaks: the Jaccard of the peak-pair sets;
- combined: the fused score (``features.scaling.Fusion``) of the combined rows' cosine and the
  peak sets' Jaccard of the same windows (a window without a peak set counts as an empty set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.hashing import SetBatch
from audiolsh.search.brute import jaccard_rows, prepare

if TYPE_CHECKING:
    from audiolsh.library.core import Library
    from audiolsh.library.modes import Mode


@dataclass(frozen=True)
class Passages:
    """Passages of one mode ready to compare: unit rows (vector modes, combined) or peak sets
    (peaks), and for combined also the windows' peak sets."""

    rows: Any
    sets: SetBatch | None = None

    def __len__(self) -> int:
        return len(self.rows)


def offset_key(tracks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One int64 per (track, offset to 10 ms) for joining windows across indexes."""
    centis = np.round(np.nan_to_num(offsets, nan=-1.0) * 100).astype(np.int64)
    return tracks.astype(np.int64) * 10_000_000 + centis


def window_items(library: Library, name: str, tracks: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Item ids in the ``name`` index of the windows (library track, offset s); -1 where absent."""
    out = np.full(len(tracks), -1, np.int64)
    sub = library.mode_tracks(name, tracks)
    if not (sub >= 0).any():
        return out
    ids, sub_tracks, sub_offsets = library.index(name).track_items(np.unique(sub[sub >= 0]))
    have = offset_key(sub_tracks, sub_offsets)
    order = np.argsort(have)
    want = offset_key(sub, offsets)
    p = np.clip(np.searchsorted(have[order], want), 0, max(len(have) - 1, 0))
    hit = (sub >= 0) & (have[order][p] == want) if len(have) else np.zeros(len(want), bool)
    out[hit] = ids[order][p[hit]]
    return out


def track_passages(library: Library, name: str, tracks: np.ndarray | None = None) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """Item ids, library track ids and offsets (s) of the live windows of mode ``name`` of the
    given complete tracks (None: all of them), by item id."""
    keys, _lib_ids = library.track_map(name)
    sub = keys if tracks is None else library.mode_tracks(name, np.asarray(tracks, np.int64))
    sub = sub[sub >= 0]
    if not len(sub):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    ids, sub_tracks, offsets = library.index(name).track_items(sub)
    return ids, library.resolve_tracks(name, sub_tracks), offsets


def stored_passages(library: Library, mode: Mode, ids: np.ndarray, tracks: np.ndarray,
                    offsets: np.ndarray) -> Passages:
    """The stored passages (item ids of mode ``mode`` with their library tracks and offsets)."""
    data, _found = library.index(mode.name).rows_found(ids)
    if mode.query == "sets":
        return Passages(data)
    sets = None
    if mode.query == "fused":
        pid = window_items(library, "peaks", tracks, offsets)
        # A window without a peak set (removed meanwhile) counts as an empty set: Jaccard 0.
        sets, _ = library.index("peaks").rows_found(pid)
    return Passages(prepare(np.asarray(data, np.float32), "cosine"), sets)


def query_passages(mode: Mode, data: Any, sets: SetBatch | None = None) -> Passages:
    """A query's passages: its prepared rows of the mode (and for combined, its peak sets)."""
    if mode.query == "sets":
        return Passages(data)
    return Passages(prepare(np.asarray(data, np.float32), "cosine"), sets)


def cross_raw(library: Library, mode: Mode, a: Passages, b: Passages) -> np.ndarray:
    """(len(a), len(b)) raw similarity of every passage of ``a`` with every passage of ``b``."""
    every = np.broadcast_to(np.arange(len(b), dtype=np.int64), (len(a), len(b)))
    if mode.query == "sets":
        return np.asarray(jaccard_rows(a.rows, b.rows, every))
    cosine = (a.rows @ b.rows.T).astype(np.float64)
    if mode.query != "fused":
        return cosine
    assert library.fusion is not None and a.sets is not None and b.sets is not None
    return np.asarray(library.fusion.score(cosine, jaccard_rows(a.sets, b.sets, every)))


def paired_raw(library: Library, mode: Mode, a: Passages, ia: np.ndarray, b: Passages,
               ib: np.ndarray) -> np.ndarray:
    """Raw similarity of the passage pairs (``a`` row ``ia[i]``, ``b`` row ``ib[i]``)."""
    if mode.query == "sets":
        return np.asarray(jaccard_rows(a.rows.take(ia), b.rows, ib[:, None])[:, 0])
    cosine = np.einsum("ij,ij->i", a.rows[ia], b.rows[ib]).astype(np.float64)
    if mode.query != "fused":
        return cosine
    assert library.fusion is not None and a.sets is not None and b.sets is not None
    jac = jaccard_rows(a.sets.take(ia), b.sets, ib[:, None])[:, 0]
    return np.asarray(library.fusion.score(cosine, jac))
