"""Item keys stored with their segment, so a query's ids map to keys by array indexing.

A segment's keys are two arrays written with its other arrays (so with their atomic commit:
the catalogue names the segment only once every file is on disk): ``key_offsets`` (int64,
rows + 1) and ``key_bytes`` (uint8, the keys' UTF-8 bytes end to end), in the segment's row
order; memory-mapped like the rest.  The catalogue keeps every key as well: segments written
before these arrays, or by a newer layout than this one reads, resolve keys there.  Rows
removed since stay in the arrays; callers check them against the segment's live rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

#: Layout of the key arrays; a segment's config records it under ``"keys"``.
KEYS_FORMAT = 1
OFFSETS = "key_offsets"
BYTES = "key_bytes"
ARRAYS = (OFFSETS, BYTES)


def encode(keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The key arrays of ``keys`` (one per row, in row order)."""
    encoded = [k.encode("utf-8") for k in keys]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return {OFFSETS: offsets, BYTES: np.frombuffer(b"".join(encoded), np.uint8).copy()}


def config() -> dict[str, Any]:
    """What a segment's config says of its key arrays."""
    return {"format_version": KEYS_FORMAT}


def readable(seg_config: dict[str, Any], arrays: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray] | None:
    """The segment's key arrays when it has them in a layout this version reads, else None
    (the keys are then read from the catalogue)."""
    stored = seg_config.get("keys")
    if not stored or stored.get("format_version", 0) > KEYS_FORMAT or OFFSETS not in arrays:
        return None
    return np.asarray(arrays[OFFSETS]), arrays[BYTES]


def take(offsets: np.ndarray, blob: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The key arrays of the given rows, in their order: bytes gathered in one numpy pass."""
    starts = np.asarray(offsets[rows])
    lengths = offsets[rows + 1] - starts
    bounds = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=bounds[1:])
    gather = np.repeat(starts - bounds[:-1], lengths) + np.arange(bounds[-1])
    return {OFFSETS: bounds, BYTES: np.asarray(blob[gather])}


def concat(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Key arrays one after the other."""
    shift = np.cumsum([0] + [len(p[BYTES]) for p in parts[:-1]])
    offsets = np.concatenate([[0]] + [p[OFFSETS][1:] + s for p, s in zip(parts, shift)])
    return {OFFSETS: offsets.astype(np.int64), BYTES: np.concatenate([p[BYTES] for p in parts])}


def decode(offsets: np.ndarray, blob: np.ndarray, rows: np.ndarray) -> list[str]:
    """Keys of the given rows, decoded at once."""
    picked = take(offsets, blob, rows)
    raw = picked[BYTES].tobytes()
    text = raw.decode("utf-8")
    edges = picked[OFFSETS].tolist()
    if len(text) == len(raw):  # ASCII: byte offsets are character offsets
        return [text[a:b] for a, b in pairwise(edges)]
    return [raw[a:b].decode("utf-8") for a, b in pairwise(edges)]
