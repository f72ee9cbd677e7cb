"""The common in-memory form of vectors read from any supported file, and format dispatch."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.errors import InputFormatError
from audiolsh.files import check_regular

logger = logging.getLogger(__name__)

#: File extensions (lower case) understood by :func:`read_vectors`, mapped to a format name.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".npy": "npy",
    ".csv": "csv",
    ".tsv": "csv",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfr": "tfrecord",
    ".parquet": "parquet",
}


@dataclass(frozen=True, eq=False, repr=False)
class VectorBatch:
    """Vectors read from one file, one row per item.

    Parameters
    ----------
    keys
        One identifier per row.
    vectors
        Array of shape ``(n, d)``; stored as C-contiguous float32 (converted if needed).
    meta
        Optional per-row metadata dicts (same length as ``keys``), or None.
    source
        The path of the file the vectors came from; named in every error.

    Raises
    ------
    InputFormatError
        If the array is not 2-D numeric, lengths disagree, or a value is NaN or infinite.
    """

    keys: list[str]
    vectors: np.ndarray
    meta: list[dict[str, Any]] | None
    source: str

    def __post_init__(self) -> None:
        source = os.fspath(self.source)
        object.__setattr__(self, "source", source)
        keys = list(self.keys)
        object.__setattr__(self, "keys", keys)
        raw = np.asarray(self.vectors)
        if raw.dtype.kind not in "biuf":
            raise InputFormatError(source, f"vectors must be numeric, got dtype {raw.dtype}")
        if raw.ndim != 2:
            raise InputFormatError(source, f"vectors must be 2-D (n, d), got shape {tuple(raw.shape)}")
        vectors = np.ascontiguousarray(raw, dtype=np.float32)
        object.__setattr__(self, "vectors", vectors)
        n = vectors.shape[0]
        if len(keys) != n:
            raise InputFormatError(source, f"{len(keys)} keys for {n} vectors")
        if self.meta is not None:
            meta = list(self.meta)
            object.__setattr__(self, "meta", meta)
            if len(meta) != n:
                raise InputFormatError(source, f"{len(meta)} metadata entries for {n} vectors")
        finite = np.isfinite(vectors)
        if not finite.all():
            row, col = (int(i) for i in np.argwhere(~finite)[0])
            raise InputFormatError(
                source,
                f"non-finite value {vectors[row, col]} at row {row} column {col} (key {keys[row]!r})",
            )

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Number of columns ``d`` of :attr:`vectors`."""
        return int(self.vectors.shape[1])

    def __repr__(self) -> str:
        meta = "None" if self.meta is None else f"[{len(self.meta)} dicts]"
        return f"VectorBatch(source={self.source!r}, n={len(self)}, dim={self.dim}, meta={meta})"


def read_vectors(
    path: str | os.PathLike[str],
    *,
    per_second: bool = True,
    dequantize: bool = False,
    id_column: str | None = None,
) -> VectorBatch:
    """Read a vector file, choosing the reader from the file extension.

    ``.npy`` -> :func:`read_npy`, ``.csv``/``.tsv`` -> :func:`read_csv`,
    ``.tfrecord``/``.tfrecords``/``.tfr`` -> :func:`read_audioset` (AudioSet layout),
    ``.parquet`` -> :func:`read_parquet` (a file or a folder of them; needs pyarrow).

    Parameters
    ----------
    path
        The file to read.
    per_second
        TFRecord only: one row per second (True) or one mean vector per clip (False).
    dequantize
        TFRecord only: map AudioSet's uint8 values back to [-2, 2].
    id_column
        CSV/TSV and Parquet only: the name of the id column (default: the first column; for
        Parquet only when it holds strings or integers).

    Returns
    -------
    VectorBatch

    Raises
    ------
    InputFormatError
        If the extension is not supported, the file cannot be read or is not a regular file
        (a FIFO, a device, a socket, a symbolic link loop).
    """
    suffix = Path(path).suffix.lower()
    kind = SUPPORTED_EXTENSIONS.get(suffix)
    logger.debug("reading %s as %s", os.fspath(path), kind)
    if kind is not None and not (kind == "parquet" and os.path.isdir(path)):
        # A FIFO or a device would block the reader or never end: refused before it opens.
        check_regular(path, InputFormatError)
    if kind == "npy":
        from audiolsh.vectors.npy import read_npy

        return read_npy(path)
    if kind == "csv":
        from audiolsh.vectors.csv import read_csv

        return read_csv(path, id_column=id_column)
    if kind == "tfrecord":
        from audiolsh.vectors.tfrecord import read_audioset

        return read_audioset(path, per_second=per_second, dequantize=dequantize)
    if kind == "parquet":
        from audiolsh.vectors.parquet import read_parquet

        return read_parquet(path, id_column=id_column)
    supported = ", ".join(SUPPORTED_EXTENSIONS)
    shown = suffix or "(none)"
    raise InputFormatError(path, f"unsupported file extension {shown}; supported: {supported}")
