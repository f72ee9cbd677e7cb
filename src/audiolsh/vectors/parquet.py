"""Read vectors from a Parquet file (or a folder of them, a Parquet table), with pyarrow.

Two layouts, as Spark, pandas and polars write them:

- a list column: one column of numeric lists (``array<float>`` in Spark, ``list<float>`` or
  ``fixed_size_list``) holds the vectors, all of one length; other columns are left alone
  except the id column;
- wide: every column but the id column is one numeric dimension, as in a CSV table.

The id column is ``id_column``, or else the first column when it holds strings or integers;
without one the keys are ``"{stem}:{row}"`` as for ``.npy``.  pyarrow (``audiolsh[spark]``) is
imported only when a Parquet file is read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.errors import InputFormatError, ParameterError
from audiolsh.files import shown
from audiolsh.vectors.batch import VectorBatch

logger = logging.getLogger(__name__)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParameterError("reading Parquet needs pyarrow: pip install 'audiolsh[spark]'") from None
    return pa, pq


def read_parquet(path: str | os.PathLike[str], *, id_column: str | None = None) -> VectorBatch:
    """Read an ``(n, d)`` table of vectors from a Parquet file or a folder of Parquet files.

    Parameters
    ----------
    path
        The file (or a folder: a Parquet table, its files read in name order).
    id_column
        The column holding the ids; default: the first column if it holds strings or integers.

    Returns
    -------
    VectorBatch
        Keys are the id column's values as strings (or ``"{stem}:{row}"``); ``meta`` is None.

    Raises
    ------
    InputFormatError
        Unreadable file, no rows, an unknown ``id_column``, several list columns, vectors of
        unequal length, a null or non-numeric value (named by row and column), NaN or inf.
    ParameterError
        pyarrow is not installed.
    """
    pa, pq = _pyarrow()
    source = os.fspath(path)
    if id_column is not None and not id_column.strip():
        raise ParameterError("--id-column must be a non-empty column name")
    try:
        if Path(source).is_file() and Path(source).stat().st_size == 0:
            raise InputFormatError(source, "empty file")
        table = pq.read_table(source)
    except InputFormatError:
        raise
    except FileNotFoundError:
        raise InputFormatError(source, "file not found") from None
    except OSError as exc:
        raise InputFormatError(source, f"cannot read: {exc.strerror or exc}") from None
    except (pa.ArrowException, ValueError) as exc:
        raise InputFormatError(source, f"not a readable Parquet file: {' '.join(str(exc).split())}") from None
    return batch_from_arrow(table, source, id_column=id_column)


def _is_list(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_number(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)
                or pa.types.is_decimal(t))


def _is_id(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)))


def _no_nulls(source: str, column: Any, name: str, what: str = "value") -> None:
    if column.null_count:
        import pyarrow.compute as pc

        row = int(pc.index(pc.is_null(column), True).as_py())
        raise InputFormatError(source, f"null {what} in column {name!r} at row {row}")


def batch_from_arrow(table: Any, source: str, *, id_column: str | None = None) -> VectorBatch:
    """The vectors of an Arrow table in one of the layouts above (see ``read_parquet``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = table.schema
    names = list(schema.names)
    if len(set(names)) != len(names):
        raise InputFormatError(source, f"duplicate column names in {names[:20]}")
    if id_column is not None:
        id_name: str | None = id_column.strip()
        if id_name not in names:
            listed = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise InputFormatError(source, f"no column named {id_column!r} ({listed})")
    else:
        id_name = names[0] if names and _is_id(schema.field(0).type) else None
    rest = [f for f in schema if f.name != id_name]
    lists = [f for f in rest if _is_list(f.type)]
    n = table.num_rows
    if n == 0:
        raise InputFormatError(source, "no rows")
    if len(lists) > 1:
        raise InputFormatError(source, f"several list columns ({', '.join(f.name for f in lists)});"
                                       " one column of vectors expected")
    if lists:
        field = lists[0]
        column = table.column(field.name).combine_chunks()
        _no_nulls(source, column, field.name, "vector")
        if not _is_number(field.type.value_type):
            raise InputFormatError(source, f"column {field.name!r} holds lists of {field.type.value_type},"
                                           " not numbers")
        if pa.types.is_fixed_size_list(field.type):
            d = int(field.type.list_size)
        else:
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            d = int(lengths[0])
            bad = np.flatnonzero(lengths != d)
            if len(bad):
                raise InputFormatError(source, f"vectors of unequal length in column {field.name!r}:"
                                               f" {d} at row 0, {int(lengths[bad[0]])} at row {int(bad[0])}")
        values = column.flatten()
        _no_nulls(source, values, field.name, "element")
        flat = values.cast(pa.float64()).to_numpy(zero_copy_only=False) if pa.types.is_decimal(
            values.type) else values.to_numpy(zero_copy_only=False)
        vectors = np.asarray(flat, dtype=np.float32).reshape(n, d)
    else:
        if not rest:
            raise InputFormatError(source, "no vector columns (only the id column)")
        wrong = [f for f in rest if not _is_number(f.type)]
        if wrong:
            raise InputFormatError(source, f"column {wrong[0].name!r} is {wrong[0].type}, not numeric"
                                           " (with no list column, every column but the id is a dimension)")
        vectors = np.empty((n, len(rest)), np.float32)
        for j, f in enumerate(rest):  # one pass per column, never per row
            column = table.column(f.name).combine_chunks()
            _no_nulls(source, column, f.name)
            if pa.types.is_decimal(f.type):
                column = column.cast(pa.float64())
            vectors[:, j] = column.to_numpy(zero_copy_only=False)
    if vectors.shape[1] == 0:
        raise InputFormatError(source, "vectors of dimension 0")
    if id_name is None:
        stem = shown(Path(source).stem)
        keys = [f"{stem}:{row}" for row in range(n)]
    else:
        ids = table.column(id_name).combine_chunks()
        _no_nulls(source, ids, id_name, "id")
        keys = ids.cast(pa.string()).to_pylist()
    logger.debug("read %d x %d vectors from %s", n, vectors.shape[1], source)
    return VectorBatch(keys=keys, vectors=vectors, meta=None, source=source)
