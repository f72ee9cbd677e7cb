"""Bucket tables as sorted arrays (CSR): no dict, no per-item Python, memory-mappable.

For every table t the distinct keys live sorted in ``bucket_keys[table_start[t]:table_start[t+1]]``
and the members of bucket b are ``members[bucket_start[b]:bucket_start[b+1]]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARRAY_NAMES = ("table_start", "bucket_keys", "bucket_start", "members")


@dataclass(frozen=True)
class BucketTables:
    table_start: np.ndarray  # (L+1,) int64
    bucket_keys: np.ndarray  # (B,) uint64
    bucket_start: np.ndarray  # (B+1,) int64
    members: np.ndarray  # (L*n,) int32 row positions

    @property
    def n_tables(self) -> int:
        return len(self.table_start) - 1

    @property
    def n_buckets(self) -> int:
        return len(self.bucket_keys)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in ARRAY_NAMES)

    @classmethod
    def build(cls, keys: np.ndarray) -> BucketTables:
        """From (n, L) uint64 home keys."""
        n, n_tables = keys.shape
        if n >= 2**31:
            raise ValueError("a segment holds at most 2^31 - 1 rows")
        order = np.argsort(keys, axis=0, kind="stable")
        sorted_keys = np.take_along_axis(keys, order, axis=0)
        # A bucket starts where the key changes, and at the top of every table.
        starts = np.ones((n, n_tables), dtype=bool)
        starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
        starts_t = starts.T.reshape(-1)
        bucket_keys = sorted_keys.T.reshape(-1)[starts_t]
        bucket_start = np.append(np.flatnonzero(starts_t), n * n_tables).astype(np.int64)
        per_table = starts.sum(axis=0)
        table_start = np.concatenate([[0], np.cumsum(per_table)]).astype(np.int64)
        members = order.T.reshape(-1).astype(np.int32)
        return cls(table_start, bucket_keys, bucket_start, members)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_NAMES}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> BucketTables:
        return cls(*(arrays[name] for name in ARRAY_NAMES))

    def bucket_sizes(self) -> np.ndarray:
        return np.diff(self.bucket_start)
