"""``vectors query``'s jsonl lines in one compiled pass: the text ``json.dumps`` writes for
``records.vector_records``, byte for byte, without a Python string per answer.

Python's float repr costs about as much per answer as the whole query did; a distance
rounded to 6 places needs none of its generality.  Such a value v is the double nearest
m / 10^6 for an integer m, and the shortest text that reads back as v is that decimal with
its trailing zeros dropped (another decimal of at most 6 places lies 10^-6 away, far beyond
half an ulp of any |v| < 10^9); repr writes it with an exponent below 10^-4 (``1.2e-05``).
Larger distances, and any value not finite, are left to Python (``fits``).
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

import numba
import numpy as np

from audiolsh.query.records import rounded_array

#: distances at or above this are left to Python's repr (and its exponent from 10^16)
LARGEST = 1e9

_QUERY = np.frombuffer(b'{"query": ', np.uint8)
_RESULTS = np.frombuffer(b', "results": [', np.uint8)
_ID = np.frombuffer(b'{"id": ', np.uint8)
_DISTANCE = np.frombuffer(b', "distance": ', np.uint8)
_SEP = np.frombuffer(b", ", np.uint8)
_END = np.frombuffer(b"]}\n", np.uint8)
#: bytes a distance takes at most: "-999999999.999999"
_FLOAT = 18


def fits(distances: np.ndarray) -> bool:
    """Whether ``lines`` writes these (rounded) distances exactly as repr does."""
    return bool(np.all(np.abs(distances) < LARGEST))


@numba.njit(cache=True, nogil=True)
def _put(out, at, text):  # pragma: no cover - compiled
    for i in range(text.shape[0]):
        out[at + i] = text[i]
    return at + text.shape[0]


@numba.njit(cache=True, nogil=True)
def _digits(out, at, value, width):  # pragma: no cover - compiled
    """value (>= 0) in decimal, zero-padded to width digits (0: as many as it needs)."""
    n = 1
    probe = value
    while probe >= 10:
        probe //= 10
        n += 1
    n = max(n, width)
    for i in range(n - 1, -1, -1):
        out[at + i] = 48 + value % 10
        value //= 10
    return at + n


@numba.njit(cache=True, nogil=True)
def _float(out, at, v):  # pragma: no cover - compiled
    """repr(v) for v rounded to 6 places, |v| < LARGEST (see the module docstring)."""
    if v < 0 or (v == 0 and np.signbit(v)):
        out[at] = 45  # "-"
        at += 1
        v = -v
    m = np.int64(np.rint(v * 1e6))
    if m == 0:
        out[at], out[at + 1], out[at + 2] = 48, 46, 48  # "0.0"
        return at + 3
    if m < 100:  # below 1e-4: d[.d]e-0x, as repr writes it
        lead, rest, exponent = (m, 0, 54) if m < 10 else (m // 10, m % 10, 53)
        out[at] = 48 + lead
        at += 1
        if rest:
            out[at], out[at + 1] = 46, 48 + rest
            at += 2
        out[at], out[at + 1], out[at + 2], out[at + 3] = 101, 45, 48, exponent  # e-06 / e-05
        return at + 4
    at = _digits(out, at, m // 1000000, 0)
    out[at] = 46  # "."
    at += 1
    frac = m % 1000000
    if frac == 0:
        out[at] = 48
        return at + 1
    width = 6
    while frac % 10 == 0:
        frac //= 10
        width -= 1
    return _digits(out, at, frac, width)


@numba.njit(cache=True, nogil=True)
def _lines(q_bytes, q_offsets, k_bytes, k_offsets, slots, distances, quote, out):  # pragma: no cover
    """The lines into out; ``quote``: the keys' bytes are plain (``plain``), quoted here."""
    at = 0
    n, k = slots.shape
    for i in range(n):
        at = _put(out, at, _QUERY)
        at = _put(out, at, q_bytes[q_offsets[i]: q_offsets[i + 1]])
        at = _put(out, at, _RESULTS)
        first = True
        for j in range(k):
            s = slots[i, j]
            if s < 0:
                continue
            if not first:
                at = _put(out, at, _SEP)
            first = False
            at = _put(out, at, _ID)
            if quote:
                out[at] = 34
                at += 1
            at = _put(out, at, k_bytes[k_offsets[s]: k_offsets[s + 1]])
            if quote:
                out[at] = 34
                at += 1
            at = _put(out, at, _DISTANCE)
            at = _float(out, at, distances[i, j])
            out[at] = 125  # "}"
            at += 1
        at = _put(out, at, _END)
    return at


def joined(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """ASCII texts end to end, and their offsets."""
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(list(map(len, texts)), out=offsets[1:])
    return np.frombuffer("".join(texts).encode("ascii"), np.uint8), offsets


def plain(blob: np.ndarray) -> bool:
    """Whether UTF-8 bytes are JSON string content as they are: printable ASCII, no quote
    and no backslash (json.dumps then writes them between quotes unchanged)."""
    return bool(np.all((blob >= 0x20) & (blob < 0x7F) & (blob != 0x22) & (blob != 0x5C)))


def lines(queries: list[str], k_bytes: np.ndarray, k_offsets: np.ndarray, slots: np.ndarray,
          rounded: np.ndarray, *, quote: bool) -> str:
    """The lines of queries (JSON-quoted, ASCII) whose answers are keys ``slots[i, j]`` of
    ``k_bytes`` (ends at ``k_offsets``; JSON-quoted ASCII, or ``quote``: ``plain`` bytes to
    put between quotes; slot -1: no answer, left out) at the distances ``rounded`` (float64,
    rounded to 6 places, ``fits``)."""
    q_bytes, q_offsets = joined(queries)
    slots = np.ascontiguousarray(slots, np.int64)
    used = slots[slots >= 0]
    per_answer = len(_ID) + len(_DISTANCE) + _FLOAT + 3 + len(_SEP)
    size = (len(q_bytes) + len(queries) * (len(_QUERY) + len(_RESULTS) + len(_END))
            + int(np.diff(k_offsets)[used].sum()) + len(used) * per_answer)
    out = np.empty(size, np.uint8)
    end = _lines(q_bytes, q_offsets, np.ascontiguousarray(k_bytes, np.uint8),
                 np.ascontiguousarray(k_offsets, np.int64), slots,
                 np.ascontiguousarray(rounded, np.float64), quote, out)
    return out[:end].tobytes().decode("ascii")


def plain_lines(queries: list[str], k_offsets: np.ndarray, k_bytes: np.ndarray, slots: np.ndarray,
                distances: np.ndarray) -> str | None:
    """The lines straight from the answers' key bytes (``Index.key_bytes``), None when a key
    needs escaping (then its text is Python's to encode) or a distance does not ``fit``."""
    if not plain(k_bytes):
        return None
    rounded = rounded_array(distances)
    slots = np.asarray(slots).reshape(distances.shape)
    if not fits(rounded[slots >= 0]):
        return None
    return lines(list(map(encode_basestring_ascii, queries)), k_bytes, k_offsets, slots, rounded,
                 quote=True)
