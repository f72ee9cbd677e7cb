"""Remote-probe layout of the Redis backend (``?mode=remote``): a segment's buckets and rows stay
in Redis, and a query fetches the rows of the buckets it probes in one round trip.

Per segment (``B`` is the segment's key base, as for its chunked arrays):

    B:t:T      hash  bucket key (8 bytes, uint64 LE) -> its rows (uint32 LE each), table T
    B:rows:0   hash  row (4 bytes, uint32 LE) -> the row's data: a float32 vector, or the
               sorted uint64 elements of a set

The segment's other arrays (item ids, learned hash state, row codes) stay chunked as in the
shared store: a reader loads only those.  ``PROBE`` runs one query against every segment in
the server: it reads the probed buckets of each table, de-duplicates their rows and returns
them with their data, and the index version, so a reader notices a commit without another
command.  No command here scans the key space.
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
local k, a = 2, 2 + 2 * nseg
local function hmget(key, fields)
  local got = {}
  for i = 1, #fields, 4000 do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + 3999, #fields)))
    for j = 1, #part do got[#got + 1] = part[j] end
  end
  return got
end
for s = 1, nseg do
  local ntab, var = tonumber(ARGV[1 + s]), ARGV[1 + nseg + s] == '1'
  local rows_key = KEYS[k]
  if redis.call('EXISTS', rows_key) == 0 then
    out[#out + 1] = '!'; out[#out + 1] = ''; out[#out + 1] = ''
  else
    local seen, rows = {}, {}
    for t = 1, ntab do
      local probe = ARGV[a]
      local fields = {}
      for i = 1, #probe, 8 do fields[#fields + 1] = string.sub(probe, i, i + 7) end
      if #fields > 0 then
        local got = hmget(KEYS[k + t], fields)
        for j = 1, #got do
          local v = got[j]
          if v then
            for i = 1, #v, 4 do
              local r = string.sub(v, i, i + 3)
              if not seen[r] then seen[r] = true; rows[#rows + 1] = r end
            end
          end
        end
      end
      a = a + 1
    end
    local data = hmget(rows_key, rows)
    local lengths = {}
    for j = 1, #data do
      if not data[j] then return redis.error_reply('audiolsh: a bucket names a missing row') end
      if var then lengths[j] = struct.pack('<I4', #data[j]) end
    end
    out[#out + 1] = table.concat(rows)
    out[#out + 1] = table.concat(data)
    out[#out + 1] = table.concat(lengths)
  end
  k = k + ntab + 1
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

    def table_key(self, t: int) -> str:
        return f"{self.base}:t:{t}"

    def keys(self) -> list[str]:
        return [self.rows_key] + [self.table_key(t) for t in range(self.n_tables)]

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


def table_fields(arrays: dict[str, np.ndarray], t: int) -> list[tuple[bytes, bytes]]:
    """Table t as (bucket key, its rows) pairs."""
    ts, keys, starts = arrays["table_start"], arrays["bucket_keys"], arrays["bucket_start"]
    lo, hi = int(ts[t]), int(ts[t + 1])
    kb = np.ascontiguousarray(keys[lo:hi], dtype="<u8").tobytes()
    first, last = int(starts[lo]), int(starts[hi])
    mb = np.ascontiguousarray(arrays["members"][first:last], dtype="<u4").tobytes()
    bounds = ((np.asarray(starts[lo:hi + 1], np.int64) - first) * 4).tolist()
    return [(kb[8 * i:8 * i + 8], mb[bounds[i]:bounds[i + 1]]) for i in range(hi - lo)]


def write_probe_hashes(pipe: Any, layout: RemoteLayout, arrays: dict[str, np.ndarray],
                       flush_bytes: int) -> None:
    """HSET the segment's tables and rows, sending the pipeline every ``flush_bytes``."""
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

    for t in range(layout.n_tables):
        put(layout.table_key(t), table_fields(arrays, t))
    values, _ = row_values(arrays)
    names = np.arange(len(values), dtype="<u4").tobytes()
    put(layout.rows_key, [(names[4 * i:4 * i + 4], v) for i, v in enumerate(values)])
    pipe.execute()


def read_arrays(r: Any, layout: RemoteLayout) -> dict[str, np.ndarray]:
    """The probe hashes back as the segment's arrays (for a merge, an exact scan or a full load):
    the same arrays the segment was written from."""
    pipe = r.pipeline(transaction=False)
    for t in range(layout.n_tables):
        pipe.hgetall(layout.table_key(t))
    names = np.arange(layout.n_rows, dtype="<u4").tobytes()
    fields = [names[4 * i:4 * i + 4] for i in range(layout.n_rows)]
    for part in iter_chunks(len(fields), FIELDS):
        pipe.hmget(layout.rows_key, fields[part])
    replies = pipe.execute()
    tables, row_parts = replies[:layout.n_tables], replies[layout.n_tables:]
    values = [v for part in row_parts for v in part]
    if any(v is None for v in values):
        raise LookupError("a row of the segment is missing")
    out = _tables_from_hashes(tables)
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


def _tables_from_hashes(tables: list[dict[bytes, bytes]]) -> dict[str, np.ndarray]:
    keys: list[np.ndarray] = []
    members: list[bytes] = []
    sizes: list[np.ndarray] = []
    per_table: list[int] = []
    for h in tables:
        k = np.frombuffer(b"".join(h.keys()), "<u8")
        order = np.argsort(k, kind="stable")
        values = list(h.values())
        keys.append(k[order])
        members.extend(values[i] for i in order.tolist())
        sizes.append(np.array([len(values[i]) // 4 for i in order.tolist()], np.int64))
        per_table.append(len(h))
    size = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    return {
        "table_start": np.concatenate([[0], np.cumsum(per_table)]).astype(np.int64),
        "bucket_keys": (np.concatenate(keys) if keys else np.zeros(0, "<u8")).astype(np.uint64),
        "bucket_start": np.concatenate([[0], np.cumsum(size)]).astype(np.int64),
        "members": np.frombuffer(b"".join(members), "<u4").astype(np.int32),
    }


def probe_args(layouts: Sequence[RemoteLayout], probes: Sequence[Sequence[bytes]],
               version_key: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``PROBE`` for one query: per segment, its probed keys of each table."""
    keys = [version_key]
    args: list[Any] = [len(layouts)]
    args += [lay.n_tables for lay in layouts]
    args += ["0" if lay.width else "1" for lay in layouts]
    for lay, per_table in zip(layouts, probes):
        keys += lay.keys()
        args += list(per_table)
    return keys, args


def decode(reply: list[bytes], layouts: Sequence[RemoteLayout]) -> tuple[int, list[Probed | None]]:
    """``PROBE``'s reply: the index version and, per segment, what it found (None: gone)."""
    version = int(reply[0])
    out: list[Probed | None] = []
    for s, lay in enumerate(layouts):
        rows_b, data, lengths = reply[1 + 3 * s:4 + 3 * s]
        if rows_b == GONE:
            out.append(None)
            continue
        rows = np.frombuffer(rows_b, "<u4").astype(np.int64)
        if lay.width:
            out.append(Probed(rows, vectors=np.frombuffer(data, "<f4").reshape(len(rows), lay.width)))
        else:
            n = np.frombuffer(lengths, "<u4").astype(np.int64) // 8
            indptr = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
            out.append(Probed(rows, indptr=indptr, elements=np.frombuffer(data, "<u8")))
    return version, out


def packed_probes(keys: np.ndarray, tables: np.ndarray, n_tables: int) -> list[bytes]:
    """One query's probes (keys and their tables, best first) as one packed string per table."""
    order = np.argsort(tables, kind="stable")
    packed = np.ascontiguousarray(keys[order], dtype="<u8").tobytes()
    bounds = (np.searchsorted(tables[order], np.arange(n_tables + 1)) * 8).tolist()
    return [packed[bounds[t]:bounds[t + 1]] for t in range(n_tables)]
