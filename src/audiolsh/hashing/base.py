"""The protocol every hash family follows, and the registry that rebuilds one from its config."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from audiolsh.errors import ParameterError


@runtime_checkable
class HashFamily(Protocol):
    """L tables of K hashes each, turned into one 64-bit bucket key per table.

    ``keys(X)`` gives the home bucket of every row in every table, shape (n, L) uint64.
    ``probes(X, n_probes)`` gives, per row, the ``n_probes`` buckets most likely to hold
    its neighbours across all tables, best first: (keys (n, P) uint64, tables (n, P) int32).
    The first L probes are not necessarily the home buckets of every table, but the best
    probe of every query is always a home bucket.
    """

    name: ClassVar[str]

    @property
    def n_tables(self) -> int: ...

    def keys(self, X: Any) -> np.ndarray: ...

    def probes(self, X: Any, n_probes: int) -> tuple[np.ndarray, np.ndarray]: ...

    def to_config(self) -> dict[str, Any]: ...


_FAMILIES: dict[str, type] = {}


def register(cls: type) -> type:
    _FAMILIES[cls.name] = cls  # type: ignore[attr-defined]
    return cls


def from_config(config: dict[str, Any], *, arrays: dict[str, np.ndarray] | None = None) -> HashFamily:
    """Rebuild a family (same seed, same buckets) from ``to_config()``'s output, plus the
    ``learned_arrays()`` of families that learn large state at fit (stored beside the config)."""
    family = config.get("family")
    if family not in _FAMILIES:
        raise ParameterError(f"unknown hash family {family!r}: choose one of {sorted(_FAMILIES)}")
    cls = _FAMILIES[family]
    if config.get("learned"):
        return cls.from_config(config, arrays=arrays)  # type: ignore[attr-defined, no-any-return]
    return cls.from_config(config)  # type: ignore[attr-defined, no-any-return]


def learned_arrays(family: Any) -> dict[str, np.ndarray]:
    """What a family learned at fit that its config does not hold (empty for most)."""
    get = getattr(family, "learned_arrays", None)
    return dict(get()) if get is not None else {}


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if type(value) is int and value >= low and (high is None or value <= high):
        return value  # the usual case, first: a query checks several of these
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ParameterError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def as_matrix(X: Any, dim: int) -> np.ndarray:
    """(n, dim) float32 C-contiguous; a single vector becomes one row."""
    A = np.asarray(X, dtype=np.float32)
    if A.ndim == 1:
        A = A[None, :]
    if A.ndim != 2 or A.shape[1] != dim:
        raise ParameterError(f"expected vectors of dimension {dim}, got shape {np.shape(X)!r}")
    if not all_finite(A):
        raise ParameterError("vectors contain NaN or infinite values")
    return np.ascontiguousarray(A)


FINITE_BLOCK = 1 << 16  # rows checked at a time


def all_finite(A: np.ndarray) -> bool:
    """Every value finite, checked a block of rows at a time: a memory-mapped 10M x 128
    matrix would otherwise take a 1.3 GB mask (and read the whole file at once)."""
    return all(bool(np.isfinite(A[lo : lo + FINITE_BLOCK]).all()) for lo in range(0, len(A), FINITE_BLOCK))


def random_multipliers(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random odd 64-bit multipliers: sum(h_i * a_i) mod 2^64 separates distinct hash tuples."""
    return rng.integers(0, 2**63, size=shape, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
