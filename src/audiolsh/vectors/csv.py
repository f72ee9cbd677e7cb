"""Read a feature table: one header row, one id column, every other column numeric.

Rows and columns in error messages are 1-based and count lines as a text editor or a
spreadsheet shows them: the header is row 1, the first data row is row 2.

Files without double quotes (the usual case for numeric tables) are parsed by a compiled
byte-level parser; its results are identical to ``np.loadtxt(..., dtype=np.float32)`` (each cell
is rounded to float64 then to float32). Any cell it cannot prove exact (more than 18
significant digits close to a float32 rounding boundary, ``nan``, ``inf``, odd syntax) sends its
row to a Python re-parse. Files with quotes go through ``np.loadtxt`` with ``quotechar='"'``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path

import numba
import numpy as np

from audiolsh.errors import InputFormatError, ParameterError
from audiolsh.vectors.batch import VectorBatch

logger = logging.getLogger(__name__)

_POW10 = np.array([10.0**i for i in range(23)], dtype=np.float64)  # all exact in float64
_PYTHON = 1  # line status values set by _parse_lines
_RAGGED = 2
_BLANK = 3


@numba.njit(cache=True, nogil=True, inline="always")
def _skip_field(buf, s, n, delim):  # pragma: no cover - compiled
    """Index of the delimiter or newline ending the field that starts at ``s`` (or ``n``)."""
    while s < n and buf[s] != delim and buf[s] != 10:
        s += 1
    return s


@numba.njit(cache=True, nogil=True, inline="always")
def _parse_field(buf, s, n, delim, pow10):  # pragma: no cover - compiled
    """Parse a plain decimal field starting at ``s``; return (value, status, end).

    ``end`` is the index of the delimiter or newline that ends the field (or ``n``).
    status 0: value is the correctly rounded float64; 1: value is within a few float64 ulps of
    the true value; 2: not a plain decimal (empty, nan, inf, junk): let Python decide.
    """
    while s < n and (buf[s] == 32 or buf[s] == 9) and buf[s] != delim:
        s += 1
    neg = False
    if s < n and buf[s] == 45:
        neg = True
        s += 1
    elif s < n and buf[s] == 43:
        s += 1
    mant = 0
    ndig = 0
    exp10 = 0
    inexact = False
    any_digit = False
    while s < n and 48 <= buf[s] <= 57:
        d = buf[s] - 48
        any_digit = True
        if ndig < 18:
            mant = mant * 10 + d
            if mant != 0:
                ndig += 1
        else:
            exp10 += 1
            if d != 0:
                inexact = True
        s += 1
    if s < n and buf[s] == 46:
        s += 1
        while s < n and 48 <= buf[s] <= 57:
            d = buf[s] - 48
            any_digit = True
            if ndig < 18:
                mant = mant * 10 + d
                if mant != 0:
                    ndig += 1
                exp10 -= 1
            elif d != 0:
                inexact = True
            s += 1
    if not any_digit:
        return 0.0, 2, _skip_field(buf, s, n, delim)
    if s < n and (buf[s] == 101 or buf[s] == 69):
        s += 1
        eneg = False
        if s < n and (buf[s] == 45 or buf[s] == 43):
            eneg = buf[s] == 45
            s += 1
        if s >= n or not (48 <= buf[s] <= 57):
            return 0.0, 2, _skip_field(buf, s, n, delim)
        ev = 0
        while s < n and 48 <= buf[s] <= 57:
            if ev < 100000:
                ev = ev * 10 + (buf[s] - 48)
            s += 1
        exp10 += -ev if eneg else ev
    while s < n and (buf[s] == 32 or buf[s] == 9 or buf[s] == 13) and buf[s] != delim:
        s += 1
    if s < n and buf[s] != delim and buf[s] != 10:
        return 0.0, 2, _skip_field(buf, s, n, delim)
    if mant == 0:
        return (-0.0 if neg else 0.0), 0, s
    status = 1
    if not inexact and mant <= 9007199254740992 and -22 <= exp10 <= 22:
        status = 0  # Clinger's fast path: one correctly rounded IEEE operation
        if exp10 >= 0:
            value = float(mant) * pow10[exp10]
        else:
            value = float(mant) / pow10[-exp10]
    elif exp10 < -330 or exp10 > 330:
        return 0.0, 2, s
    elif exp10 >= 0:
        value = float(mant) * 10.0**exp10
    else:
        value = float(mant) / 10.0 ** (-exp10)
    return (-value if neg else value), status, s


@numba.njit(cache=True, nogil=True, inline="always")
def _float32_ambiguous(value):  # pragma: no cover - compiled
    """True if ``value`` (a few ulps off the truth) may round to a different float32."""
    a = abs(value)
    if not (2.4e-38 < a < 3.4e38):
        return True
    f = float(np.float32(a))
    m, ex = math.frexp(f)
    ulp = math.ldexp(1.0, ex - 24)
    ulp_down = ulp * 0.5 if m == 0.5 else ulp
    tol = a * 3.552713678800501e-15  # 2**-48: 16 float64 ulps
    return abs(a - (f + 0.5 * ulp)) <= tol or abs(a - (f - 0.5 * ulp_down)) <= tol


@numba.njit(cache=True, nogil=True)
def _line_starts(buf):  # pragma: no cover - compiled
    """Start offsets of the lines of ``buf``; a final newline does not open an empty line."""
    n = buf.shape[0]
    count = 0
    for i in range(n):
        if buf[i] == 10:
            count += 1
    if n > 0 and buf[n - 1] != 10:
        count += 1
    starts = np.empty(count, dtype=np.int64)
    if count == 0:
        return starts
    starts[0] = 0
    k = 1
    for i in range(n - 1):
        if buf[i] == 10:
            starts[k] = i + 1
            k += 1
    return starts


@numba.njit(cache=True, nogil=True, parallel=True)
def _parse_lines(
    buf, starts, delim, id_col, n_cols, out, id_start, id_end, line_end, status, pow10
):  # pragma: no cover - compiled
    """Parse unquoted delimited lines into ``out`` (one row per line), in parallel.

    ``status`` per line: 0 parsed exactly; 1 a cell needs Python (value NaN); 2 wrong number
    of fields; 3 blank. ``line_end`` is the end of the line without newline or carriage return.
    """
    n = buf.shape[0]
    n_lines = starts.shape[0]
    for j in numba.prange(n_lines):
        pos = starts[j]
        if j + 1 < n_lines:
            stop = starts[j + 1] - 1
        else:
            stop = n - 1 if buf[n - 1] == 10 else n
        e = stop
        if e > pos and buf[e - 1] == 13:
            e -= 1
        line_end[j] = e
        p = pos
        while p < stop and (buf[p] == 32 or buf[p] == 9 or buf[p] == 13):
            p += 1
        if p >= stop:
            status[j] = 3
            continue
        state = 0
        col = 0
        vcol = 0
        s = pos
        while True:
            if col >= n_cols:
                state = 2
                break
            if col == id_col:
                f = _skip_field(buf, s, stop, delim)
                a = s
                b = f
                while a < b and (buf[a] == 32 or buf[a] == 9):
                    a += 1
                while b > a and (buf[b - 1] == 32 or buf[b - 1] == 9 or buf[b - 1] == 13):
                    b -= 1
                id_start[j] = a
                id_end[j] = b
            else:
                value, kind, f = _parse_field(buf, s, stop, delim, pow10)
                if kind == 2 or (kind == 1 and _float32_ambiguous(value)):
                    state = 1
                    out[j, vcol] = np.nan
                else:
                    out[j, vcol] = value
                vcol += 1
            col += 1
            if f >= stop:
                break
            s = f + 1
        if col != n_cols:
            state = 2
        status[j] = state


def read_csv(path: str | os.PathLike[str], *, id_column: str | None = None) -> VectorBatch:
    """Read a feature table with a header row, an id column and numeric columns.

    ``.tsv`` files are tab-separated, everything else comma-separated. Blank lines are
    skipped. The text is UTF-8 (a byte-order mark is allowed).

    Parameters
    ----------
    path
        The table to read.
    id_column
        Header name of the id column; default: the first column. Every other column must be
        numeric.

    Returns
    -------
    VectorBatch
        Keys are the id column values; vectors hold the other columns in file order; ``meta`` is
        None.

    Raises
    ------
    InputFormatError
        Empty file, header without numeric columns, unknown ``id_column``, ragged row,
        non-numeric or non-finite cell (named by row and column), no data rows.
    ParameterError
        If ``id_column`` is an empty string.
    """
    source = os.fspath(path)
    if id_column is not None and not id_column.strip():
        raise ParameterError("--id-column must be a non-empty column name")
    delim = "\t" if Path(source).suffix.lower() == ".tsv" else ","
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise InputFormatError(source, f"cannot read: {exc.strerror or exc}") from exc
    if not data.strip():
        raise InputFormatError(source, "empty file")

    newline = data.find(b"\n")
    header_end = len(data) if newline < 0 else newline
    try:
        header_text = data[:header_end].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise InputFormatError(source, f"header is not UTF-8 text: {exc.reason}") from exc
    header = [name.strip() for name in next(csv.reader([header_text], delimiter=delim), [])]
    if len(header) < 2:
        raise InputFormatError(
            source,
            f"bad header {header_text[:80]!r}: need an id column and at least one numeric"
            f" column separated by {delim!r}",
        )
    if id_column is None:
        id_idx = 0
    elif id_column.strip() in header:
        id_idx = header.index(id_column.strip())
    else:
        shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
        raise InputFormatError(source, f"no column named {id_column!r} in header ({shown})")

    body = data[header_end + 1 :] if newline >= 0 else b""
    if b'"' in body:
        keys, vectors, lines = _read_quoted(source, delim, header, id_idx)
    else:
        keys, vectors, lines = _read_fast(source, body, delim, header, id_idx)
    if not keys:
        raise InputFormatError(source, "no data rows after the header")
    finite = np.isfinite(vectors)
    if not finite.all():
        r, c = (int(i) for i in np.argwhere(~finite)[0])
        col = c if c < id_idx else c + 1
        raise InputFormatError(
            source,
            f"non-finite value {vectors[r, c]} at row {lines[r]} column {col + 1} ({header[col]!r})",
        )
    logger.debug("read %d x %d vectors from %s", vectors.shape[0], vectors.shape[1], source)
    return VectorBatch(keys=keys, vectors=vectors, meta=None, source=source)


def _read_fast(
    source: str, body: bytes, delim: str, header: list[str], id_idx: int
) -> tuple[list[str], np.ndarray, list[int]]:
    """Parse an unquoted table body with the compiled parser."""
    n_cols = len(header)
    buf = np.frombuffer(body, dtype=np.uint8)
    starts = _line_starts(buf)
    n_lines = starts.shape[0]
    out = np.empty((n_lines, n_cols - 1), dtype=np.float32)
    id_start = np.zeros(n_lines, dtype=np.int64)
    id_end = np.zeros(n_lines, dtype=np.int64)
    line_end = np.zeros(n_lines, dtype=np.int64)
    status = np.zeros(n_lines, dtype=np.uint8)
    _parse_lines(buf, starts, ord(delim), id_idx, n_cols, out, id_start, id_end, line_end, status, _POW10)
    ragged = np.flatnonzero(status == _RAGGED)
    if ragged.size:
        j = int(ragged[0])
        n_fields = body[starts[j] : line_end[j]].count(delim.encode()) + 1
        raise InputFormatError(source, f"ragged row {j + 2}: {n_fields} fields, the header has {n_cols}")
    for j in np.flatnonzero(status == _PYTHON).tolist():
        text = body[starts[j] : line_end[j]].decode("utf-8", errors="replace")
        out[j] = _parse_cells(source, text.split(delim), header, id_idx, j + 2)
    used = np.flatnonzero(status != _BLANK)
    if used.size == n_lines:
        vectors = out
    elif used.size and used[-1] == used.size - 1:
        vectors = out[: used.size]  # blank lines only at the end: a view, no copy
    else:
        vectors = out[used]
    try:
        keys = [
            body[a:b].decode("utf-8")
            for a, b in zip(id_start[used].tolist(), id_end[used].tolist(), strict=True)
        ]
    except UnicodeDecodeError as exc:
        raise InputFormatError(source, f"id column is not UTF-8 text: {exc.reason}") from exc
    return keys, vectors, (used + 2).tolist()


def _parse_cells(source: str, cells: list[str], header: list[str], id_idx: int, line: int) -> np.ndarray:
    """Convert one row's numeric cells with Python's float, naming the first bad cell."""
    if len(cells) != len(header):
        raise InputFormatError(
            source, f"ragged row {line}: {len(cells)} fields, the header has {len(header)}"
        )
    values = []
    for col, cell in enumerate(cells):
        if col == id_idx:
            continue
        text = cell.strip()
        try:
            if "_" in text:
                raise ValueError(text)
            values.append(float(text))
        except ValueError:
            raise InputFormatError(
                source,
                f"non-numeric cell {cell[:40]!r} at row {line} column {col + 1} ({header[col]!r})",
            ) from None
    with np.errstate(over="ignore"):  # out-of-range values become inf, reported as non-finite
        return np.array(values, dtype=np.float32)


def _read_quoted(
    source: str, delim: str, header: list[str], id_idx: int
) -> tuple[list[str], np.ndarray, list[int]]:
    """Parse a table containing quotes: ids and row checks with ``csv``, values with loadtxt."""
    keys, lines = _scan_rows(source, delim, header, id_idx)
    numeric = [c for c in range(len(header)) if c != id_idx]
    try:
        vectors = np.loadtxt(
            source,
            dtype=np.float32,
            delimiter=delim,
            skiprows=1,
            usecols=numeric,
            ndmin=2,
            comments=None,
            quotechar='"',
            encoding="utf-8-sig",
        )
    except ValueError as exc:
        _diagnose(source, delim, header, id_idx)
        raise InputFormatError(source, f"cannot parse table: {exc}") from exc
    if vectors.shape[0] != len(keys):
        _diagnose(source, delim, header, id_idx)
        raise InputFormatError(source, f"found {len(keys)} rows but {vectors.shape[0]} rows of numbers")
    return keys, vectors, lines


def _is_blank(row: list[str]) -> bool:
    return len(row) <= 1 and not "".join(row).strip()


def _scan_rows(source: str, delim: str, header: list[str], id_idx: int) -> tuple[list[str], list[int]]:
    """Read the ids and line numbers (1-based) of the data rows; raise on a ragged row."""
    keys: list[str] = []
    lines: list[int] = []
    try:
        with open(source, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delim)
            next(reader, None)
            start = reader.line_num + 1
            for row in reader:
                if not _is_blank(row):
                    if len(row) != len(header):
                        raise InputFormatError(
                            source,
                            f"ragged row {start}: {len(row)} fields, the header has {len(header)}",
                        )
                    keys.append(row[id_idx].strip())
                    lines.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise InputFormatError(source, f"not UTF-8 text: {exc.reason}") from exc
    except csv.Error as exc:
        raise InputFormatError(source, f"bad CSV syntax: {exc}") from exc
    return keys, lines


def _diagnose(source: str, delim: str, header: list[str], id_idx: int) -> None:
    """Scan the table with the ``csv`` module and raise on the first bad row or cell."""
    try:
        with open(source, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delim)
            next(reader, None)
            start = reader.line_num + 1
            for row in reader:
                if not _is_blank(row):
                    _parse_cells(source, row, header, id_idx, start)
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise InputFormatError(source, f"not UTF-8 text: {exc.reason}") from exc
    except csv.Error as exc:
        raise InputFormatError(source, f"bad CSV syntax: {exc}") from exc
