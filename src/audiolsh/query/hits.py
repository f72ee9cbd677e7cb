"""Library-level hits: a mode's search answers resolved to (library track, offset, distance).

Query code asks these functions and never reaches into a mode's storage.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from audiolsh.library import Library
from audiolsh.library.passages import offset_key, window_items
from audiolsh.search import Neighbors

__all__ = ["Hits", "as_ids", "live_windows", "offset_key", "resolve", "search", "track_windows",
           "window_items"]


@dataclass(frozen=True)
class Hits:
    """Flat arrays, one entry per hit: the query row, the library track id (-1: a row of no
    complete track), the hit window's offset in its track (s) and the distance."""

    rows: np.ndarray
    tracks: np.ndarray
    offsets: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, keep: np.ndarray) -> Hits:
        return Hits(self.rows[keep], self.tracks[keep], self.offsets[keep], self.distances[keep])

    def known(self, exclude: Collection[int] = ()) -> Hits:
        """Hits of complete tracks, without the excluded ones."""
        return self.take((self.tracks >= 0) & ~np.isin(self.tracks, as_ids(exclude)))


def as_ids(tracks: Collection[int]) -> np.ndarray:
    return np.fromiter(tracks, np.int64, len(tracks))


def search(library: Library, name: str, data: Any, k: int, *, exact: bool = False) -> Hits:
    """The k nearest rows of complete tracks in mode ``name`` for every query row, resolved.

    Rows of a track no catalogue lists yet (an index run commits every mode before the
    catalogue, and one interrupted in between leaves them until it runs again) are passed
    over: a query short of k such rows asks the index for twice as many, so they never take
    the place of real answers."""
    index = library.index(name)
    ask = k
    while True:
        res = index.query(data, ask, exact=exact)
        hits = resolve(library, name, res)
        unlisted = hits.tracks < 0
        if not unlisted.any():
            return hits
        hits = hits.take(~unlisted)
        n_rows = len(res.ids)
        found = np.bincount(hits.rows, minlength=n_rows)
        # a row is done when it has k answers, or when the index had no more to give it
        exhausted = (res.ids >= 0).sum(axis=1) < ask
        if ((found >= k) | exhausted).all() or ask >= len(index):
            first = np.searchsorted(hits.rows, np.arange(n_rows))
            rank = np.arange(len(hits)) - first[hits.rows]
            return hits.take(rank < k)
        ask *= 2


def resolve(library: Library, name: str, res: Neighbors) -> Hits:
    valid = res.ids >= 0
    rows = np.nonzero(valid)[0]
    sub_track, offsets = library.index(name).item_arrays(res.ids[valid])
    tracks = library.resolve_tracks(name, sub_track)
    return Hits(rows, tracks, offsets, res.distances[valid].astype(np.float64))


def track_windows(library: Library, name: str, track_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Item ids and offsets (s) of one library track's windows in mode ``name``, by offset."""
    sub = library.mode_tracks(name, np.array([track_id], np.int64))
    if sub[0] < 0:
        return np.zeros(0, np.int64), np.zeros(0)
    ids, _tracks, offsets = library.index(name).track_items(sub)
    order = np.argsort(offsets, kind="stable")
    return ids[order], offsets[order]


def live_windows(library: Library, name: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """Every live row of mode ``name`` with its library track id (-1: incomplete) and offset."""
    index = library.index(name)
    data, ids = index.live_data()
    sub, offsets = index.item_arrays(ids)
    return data, library.resolve_tracks(name, sub), offsets
