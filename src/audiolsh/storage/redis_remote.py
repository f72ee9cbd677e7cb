"""Remote-probe layout of the Redis backend (``?mode=remote``): a segment's buckets and rows stay
in Redis, and a query fetches the rows of the buckets it probes in one round trip.

Per segment (``B`` is the segment's key base, as for its chunked arrays), two hashes:

    B:b:0      bucket (the table, uint16 LE; its key, uint64 LE) -> its rows (uint32 LE
               each), every table of the segment
    B:rows:0   row (4 bytes, uint32 LE) -> the row's data: a float32 vector, or the sorted
               uint64 elements of a set

One bucket hash for all tables rather than one per table: a query then reads all its probed
buckets with one HMGET (a command called from a script costs a few microseconds, and MinHash
has 25 tables).  A bucket is one field, never one key (a key per bucket costs Redis ~50 bytes
more each).  The segment's other arrays (item ids, learned hash state, row codes) stay chunked
as in the shared store: a reader loads only those.

``PROBE`` runs one query against every segment in the server: it reads the probed buckets,
de-duplicates their rows and returns them with their data, and the index version, so a
reader notices a commit without another command.  No command here scans the key space.  The
script names a segment's hashes from its key base, so it runs on a standalone server (or a
replica), not on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audiolsh.search.tables import ARRAY_NAMES as TABLE_ARRAYS
from audiolsh.storage.base import iter_chunks

#: Array names of the rows' data in a segment: dense vectors, or sets as CSR.
VECTORS = "vectors"
SET_ARRAYS = ("indptr", "elements")
#: Arrays of a remote segment kept in the probe hashes rather than in chunks.
PROBE_ARRAYS = (*TABLE_ARRAYS, VECTORS, *SET_ARRAYS)
#: A stand-in for a segment's rows when its hash is gone (a compaction dropped it): no real
#: answer has an odd length.
GONE = b"!"
#: Fields per HMGET/HSET inside the script and in pipelines (Lua's unpack stops near 8000).
FIELDS = 4000

PROBE = """
local nseg = tonumber(ARGV[1])
local out = {redis.call('GET', KEYS[1]) or '0'}
local function hmget(key, fields)
  local got = {}
  for i = 1, #fields, 4000 do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + 3999, #fields)))
    for j = 1, #part do got[#got + 1] = part[j] end
  end
  return got
end
for s = 0, nseg - 1 do
  local base, ntab = ARGV[2 + 4 * s], tonumber(ARGV[3 + 4 * s])
  local budget, probe = tonumber(ARGV[4 + 4 * s]), ARGV[5 + 4 * s]
  local rows_key = base .. ':rows:0'
  if redis.call('EXISTS', rows_key) == 0 then
    out[#out + 1] = '!'; out[#out + 1] = {}
  else
    local fields = {}
    for i = 1, #probe, 10 do fields[#fields + 1] = string.sub(probe, i, i + 9) end
    local got = hmget(base .. ':b:0', fields)
    local hits, found = {}, {}
    for j = 1, #got do
      local v = got[j]
      if v then
        for i = 1, #v, 4 do
          local r = string.sub(v, i, i + 3)
          local c = hits[r]
          if c then hits[r] = c + 1 else hits[r] = 1; found[#found + 1] = r end
        end
      end
    end
    local rows = found
    if budget > 0 and #found > budget then
      -- the rows found in the most probed buckets, in the order found: all above the count
      -- that admits budget rows, and the first of those at it (as the local counted search)
      local hist = {}
      for t = 1, ntab do hist[t] = 0 end
      for j = 1, #found do
        local c = math.min(hits[found[j]], ntab); hits[found[j]] = c; hist[c] = hist[c] + 1
      end
      local level, above = 1, 0
      for t = ntab, 1, -1 do
        if above + hist[t] >= budget then level = t; break end
        above = above + hist[t]
      end
      local at_level = budget - above
      rows = {}
      for j = 1, #found do
        local c = hits[found[j]]
        if c > level then rows[#rows + 1] = found[j]
        elseif c == level and at_level > 0 then rows[#rows + 1] = found[j]; at_level = at_level - 1 end
      end
    end
    -- the values go back as an array: joining them here would cost more than the transfer
    local data = hmget(rows_key, rows)
    for j = 1, #data do
      if not data[j] then return redis.error_reply('audiolsh: a bucket names a missing row') end
    end
    out[#out + 1] = table.concat(rows)
    out[#out + 1] = data
  end
end
return out
"""


@dataclass(frozen=True)
class RemoteLayout:
    """Where a remote segment's probe hashes are and what its rows hold."""

    base: str
    n_tables: int
    n_rows: int
    #: values per row: the vector dimension, or 0 for sets (variable length, uint64)
    width: int

    @property
    def rows_key(self) -> str:
        return f"{self.base}:rows:0"

    @property
    def buckets_key(self) -> str:
        return f"{self.base}:b:0"

    def keys(self) -> list[str]:
        return [self.rows_key, self.buckets_key]

    def to_dict(self) -> dict[str, Any]:
        return {"n_tables": self.n_tables, "n_rows": self.n_rows, "width": self.width}

    @classmethod
    def from_dict(cls, base: str, data: dict[str, Any]) -> RemoteLayout:
        return cls(base, int(data["n_tables"]), int(data["n_rows"]), int(data["width"]))


@dataclass(frozen=True)
class Probed:
    """What one query's probe found in one segment: its rows (positions in the segment) in
    the order found, and their data (vectors (n, dim) float32, or sets as CSR)."""

    rows: np.ndarray
    vectors: np.ndarray | None = None
    indptr: np.ndarray | None = None
    elements: np.ndarray | None = None


def remote_ready(arrays: dict[str, np.ndarray]) -> bool:
    """True when a segment's arrays have bucket tables and rows to keep in probe hashes (an
    index segment; a fingerprint segment keeps the shared-store layout)."""
    has_rows = VECTORS in arrays or all(n in arrays for n in SET_ARRAYS)
    return has_rows and all(n in arrays for n in TABLE_ARRAYS)


def row_values(arrays: dict[str, np.ndarray]) -> tuple[list[bytes], int]:
    """Every row's data as bytes, and the row width (0: sets)."""
    if VECTORS in arrays:
        X = np.ascontiguousarray(arrays[VECTORS], dtype="<f4")
        buf, step = X.tobytes(), X.shape[1] * 4
        return [buf[i * step:(i + 1) * step] for i in range(len(X))], int(X.shape[1])
    indptr = np.asarray(arrays["indptr"], np.int64) * 8
    buf = np.ascontiguousarray(arrays["elements"], dtype="<u8").tobytes()
    return [buf[a:b] for a, b in zip(indptr[:-1].tolist(), indptr[1:].tolist())], 0


#: A bucket's field: its table, then its key.
FIELD = np.dtype([("table", "<u2"), ("key", "<u8")])


def _fields(tables: np.ndarray, keys: np.ndarray) -> bytes:
    f = np.empty(len(keys), FIELD)
    f["table"], f["key"] = tables, keys
    return f.tobytes()


def bucket_fields(arrays: dict[str, np.ndarray]) -> list[tuple[bytes, bytes]]:
    """Every bucket of every table as (field, its rows)."""
    ts, keys, starts = arrays["table_start"], arrays["bucket_keys"], arrays["bucket_start"]
    tables = np.repeat(np.arange(len(ts) - 1), np.diff(ts))
    fb = _fields(tables, keys)
    mb = np.ascontiguousarray(arrays["members"], dtype="<u4").tobytes()
    bounds = (np.asarray(starts, np.int64) * 4).tolist()
    w = FIELD.itemsize
    return [(fb[w * i:w * i + w], mb[bounds[i]:bounds[i + 1]]) for i in range(len(keys))]


def write_probe_hashes(pipe: Any, layout: RemoteLayout, arrays: dict[str, np.ndarray],
                       flush_bytes: int) -> None:
    """HSET the segment's buckets and rows, sending the pipeline every ``flush_bytes``."""
    queued = 0

    def put(key: str, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        nonlocal queued
        for part in iter_chunks(len(pairs), FIELDS):
            chunk = pairs[part]
            pipe.hset(key, mapping=dict(chunk))
            queued += sum(len(v) + len(f) for f, v in chunk)
            if queued >= flush_bytes:
                pipe.execute()
                queued = 0

    put(layout.buckets_key, bucket_fields(arrays))
    values, _ = row_values(arrays)
    names = np.arange(len(values), dtype="<u4").tobytes()
    put(layout.rows_key, [(names[4 * i:4 * i + 4], v) for i, v in enumerate(values)])
    pipe.execute()


def read_arrays(r: Any, layout: RemoteLayout) -> dict[str, np.ndarray]:
    """The probe hashes back as the segment's arrays (for a merge, an exact scan or a full load):
    the same arrays the segment was written from.  The buckets are read with HSCAN, so a big
    segment does not hold the server up."""
    buckets = dict(r.hscan_iter(layout.buckets_key, count=FIELDS))
    names = np.arange(layout.n_rows, dtype="<u4").tobytes()
    fields = [names[4 * i:4 * i + 4] for i in range(layout.n_rows)]
    pipe = r.pipeline(transaction=False)
    for part in iter_chunks(len(fields), FIELDS):
        pipe.hmget(layout.rows_key, fields[part])
    values = [v for part in pipe.execute() for v in part]
    if any(v is None for v in values) or (layout.n_rows and not buckets):
        raise LookupError("a row of the segment is missing")
    out = _tables(buckets, layout.n_tables)
    rows = probed_rows(np.arange(layout.n_rows), values, layout.width)
    if rows.vectors is not None:
        out[VECTORS] = rows.vectors
    else:
        assert rows.indptr is not None and rows.elements is not None
        out["indptr"], out["elements"] = rows.indptr, rows.elements.astype(np.uint64)
    for a in out.values():
        a.flags.writeable = False  # segments are immutable, as in the other layouts
    return out


def probed_rows(rows: np.ndarray, values: Sequence[bytes], width: int) -> Probed:
    """Rows with their stored values (vectors of ``width`` float32, or sets when 0)."""
    data = b"".join(values)
    if width:
        return Probed(rows, vectors=np.frombuffer(data, "<f4").reshape(len(rows), width))
    lengths = np.array([len(v) // 8 for v in values], np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Probed(rows, indptr=indptr, elements=np.frombuffer(data, "<u8"))


def _tables(buckets: dict[bytes, bytes], n_tables: int) -> dict[str, np.ndarray]:
    """Bucket tables (CSR, keys sorted within each table) from the bucket hash."""
    f = np.frombuffer(b"".join(buckets.keys()), FIELD)
    values = list(buckets.values())
    order = np.lexsort((f["key"], f["table"]))
    sizes = np.array([len(values[i]) // 4 for i in order.tolist()], np.int64)
    return {
        "table_start": np.concatenate([[0], np.cumsum(np.bincount(f["table"], minlength=n_tables))]
                                      ).astype(np.int64),
        "bucket_keys": f["key"][order].astype(np.uint64),
        "bucket_start": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "members": np.frombuffer(b"".join(values[i] for i in order.tolist()), "<u4").astype(np.int32),
    }


def probe_args(layouts: Sequence[RemoteLayout], probes: Sequence[bytes], budget: int = 0) -> list[Any]:
    """ARGV of ``PROBE`` for one query: per segment, its key base, tables, how many rows to
    fetch at most (0: all; else those in the most probed buckets) and its probes
    (``packed_probes``).  The script names the segment's hashes from its base: one round trip
    whatever the number of segments (a standalone server; Redis Cluster would want every key
    declared)."""
    args: list[Any] = [len(layouts)]
    for lay, packed in zip(layouts, probes):
        args += [lay.base, lay.n_tables, budget, packed]
    return args


def decode(reply: list[Any], layouts: Sequence[RemoteLayout]) -> tuple[int, list[Probed | None]]:
    """``PROBE``'s reply: the index version and, per segment, what it found (None: gone)."""
    version = int(reply[0])
    out: list[Probed | None] = []
    for s, lay in enumerate(layouts):
        rows_b, values = reply[1 + 2 * s:3 + 2 * s]
        if rows_b == GONE:
            out.append(None)
            continue
        out.append(probed_rows(np.frombuffer(rows_b, "<u4").astype(np.int64), values, lay.width))
    return version, out


def packed_probes(keys: np.ndarray, tables: np.ndarray) -> bytes:
    """One query's probes (keys and their tables, best first) as the bucket fields ``PROBE``
    reads."""
    return _fields(tables, keys)
