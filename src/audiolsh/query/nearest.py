"""Which passages of the collection sound nearest to a clip, by per-second embeddings."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from audiolsh.library import Library, embed_clip
from audiolsh.query.hits import search


@dataclass(frozen=True)
class Passage:
    track_id: int
    path: str
    offset_s: float
    score: float
    votes: int


def nearest_passages(library: Library, path: str | os.PathLike[str], *, k: int = 5,
                     per_window: int = 10, offset_s: float = 0.0,
                     duration_s: float | None = 30.0) -> list[Passage]:
    """Where in the collection a clip's passage sounds nearest.

    Every second of the clip queries the embedding index; each hit votes for (track, start of
    the clip in that track), weighted by its cosine similarity.  The best k starts are returned.
    """
    library.mode("embedding")
    E, offsets, _ = embed_clip(path, offset_s=offset_s, duration_s=duration_s)
    offsets = offsets - offset_s  # positions within the analysed excerpt
    hits = search(library, "embedding", E, per_window)
    hits = hits.take((hits.tracks >= 0) & np.isfinite(hits.offsets))
    starts = np.round(hits.offsets - offsets[hits.rows]).astype(np.int64)
    # A start before the track's beginning is no passage of it.
    keep = starts >= 0
    if not keep.any():
        return []
    keys, inverse = np.unique(np.stack([hits.tracks[keep], starts[keep]], axis=1), axis=0,
                              return_inverse=True)
    score = np.bincount(inverse.ravel(), weights=1.0 - hits.distances[keep]) / len(E)
    votes = np.bincount(inverse.ravel())
    best = np.argsort(-score)[:k]
    out = []
    for i in best:
        t = library.track(int(keys[i, 0]))
        out.append(Passage(int(keys[i, 0]), t.path if t else "?", float(keys[i, 1]),
                           float(score[i]), int(votes[i])))
    return out
