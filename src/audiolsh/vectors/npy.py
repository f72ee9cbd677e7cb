"""Read a 2-D NumPy ``.npy`` array of vectors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from audiolsh.errors import InputFormatError
from audiolsh.files import shown
from audiolsh.vectors.batch import VectorBatch

logger = logging.getLogger(__name__)


def read_npy(path: str | os.PathLike[str]) -> VectorBatch:
    """Read an ``(n, d)`` numeric ``.npy`` file.

    The file is memory-mapped and copied once into a float32 array, so the result does not
    keep the file open. Pickled (object) arrays are refused.

    Parameters
    ----------
    path
        The ``.npy`` file.

    Returns
    -------
    VectorBatch
        Keys are ``"{stem}:{row}"``; ``meta`` is None.

    Raises
    ------
    InputFormatError
        If the file is empty, not an ``.npy`` file, pickled, not 2-D, not numeric or has no
        rows or columns.
    """
    source = os.fspath(path)
    try:
        if os.path.getsize(source) == 0:
            raise InputFormatError(source, "empty file")
        array = np.load(source, mmap_mode="r", allow_pickle=False)
    except InputFormatError:
        raise
    except OSError as exc:
        raise InputFormatError(source, f"cannot read: {exc.strerror or exc}") from exc
    except (ValueError, EOFError) as exc:
        # Object arrays ("Object arrays cannot be loaded when allow_pickle=False"), a missing
        # magic string (numpy falls back to pickle) and truncated headers all land here.
        raise InputFormatError(source, f"not a readable .npy array: {exc}") from exc
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npz returns NpzFile
        raise InputFormatError(source, "not a single .npy array")
    if array.dtype.kind not in "biuf":
        raise InputFormatError(source, f"array must be numeric, got dtype {array.dtype}")
    if array.ndim != 2:
        raise InputFormatError(source, f"array must be 2-D (n, d), got shape {array.shape}")
    n, d = array.shape
    if n == 0 or d == 0:
        raise InputFormatError(source, f"empty array of shape {array.shape}")
    vectors = np.array(array, dtype=np.float32, order="C", copy=True)
    del array
    stem = shown(Path(source).stem)
    keys = [f"{stem}:{row}" for row in range(n)]
    logger.debug("read %d x %d vectors from %s", n, d, source)
    return VectorBatch(keys=keys, vectors=vectors, meta=None, source=source)
