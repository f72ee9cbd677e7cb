"""Printing results as a table, JSON, JSON lines or CSV: the only place that writes stdout."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from audiolsh.errors import ParameterError

if TYPE_CHECKING:
    from audiolsh.library.tags import Names

FORMATS = ("table", "json", "jsonl", "csv")

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Output format.",
)

#: For commands whose records stream (spark query, spark join): JSON lines unless asked.
stream_format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
    help="Output format on stdout (table, json and csv gather every record first).",
)

err_console = Console(stderr=True, soft_wrap=True)


def emit_records(records: Sequence[dict[str, Any]], fmt: str, *, flat_rows: list[dict[str, Any]],
                 title: str | None = None, notes: Sequence[str] = ()) -> None:
    """``records`` are the per-query objects (json/jsonl); ``flat_rows`` one line per result;
    ``notes`` lines above the table (the records hold the same facts)."""
    if fmt == "jsonl":
        for r in records:
            sys.stdout.write(json.dumps(r) + "\n")
    elif fmt == "json":
        sys.stdout.write(json.dumps(list(records), indent=2) + "\n")
    elif fmt == "csv":
        emit_csv(flat_rows)
    else:
        for note in notes:
            sys.stdout.write(note + "\n")
        emit_table(flat_rows, title=title)


def emit_object(data: Any, fmt: str, *, flat_rows: Sequence[dict[str, Any]],
                table: Callable[[], None]) -> None:
    """A command's one answer (a report, a summary): json indented, jsonl on one line, csv its
    ``flat_rows``, table whatever ``table()`` prints."""
    if fmt in ("json", "jsonl"):
        sys.stdout.write(json.dumps(data, indent=2 if fmt == "json" else None) + "\n")
    elif fmt == "csv":
        emit_csv(flat_rows)
    else:
        table()


def track_columns(record: dict[str, Any], names: Names, fmt: str, *, name_key: str = "track",
                  path_key: str = "path") -> dict[str, Any]:
    """The columns naming a record's track: a table shows its name ("Artist - Title", else the
    file name) and its path relative to the folder indexed; CSV keeps the absolute path and the
    tags as the JSON records do."""
    from audiolsh.library.tags import display_name  # here: importing the library is slow (--help)

    if fmt == "table":
        return {name_key: display_name(record["title"], record["artist"]),
                "path": names.relative(record["path"])}
    return {path_key: record["path"], "title": record["title"], "artist": record["artist"]}


def emit_csv(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.write(buf.getvalue())


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def emit_table(rows: Sequence[dict[str, Any]], *, title: str | None = None) -> None:
    console = Console(width=max(100, Console().width))
    if not rows:
        console.print("(no results)")
        return
    table = Table(title=title)
    widths: Sequence[int | None] = _widths(rows, console.width) or [None] * len(rows[0])
    for col, width in zip(rows[0], widths):
        # "raw score", not "raw_score": a narrow header wraps between its words, as _widths plans
        table.add_column(str(col).replace("_", " "), overflow="fold", min_width=width, max_width=width)
    for r in rows:
        table.add_row(*(_cell(v) for v in r.values()))
    console.print(table)


def _widths(rows: Sequence[dict[str, Any]], width: int) -> list[int] | None:
    """Column widths that fit ``width`` folding as few words as may be: the widest columns give
    way first, down to their longest word (a header's longest part between underscores; a
    path's whole length, as it has few spaces to wrap at), so cells wrap between words; then
    paths down to their longest word; only then are words folded.  None: the table fits."""
    cols = list(rows[0])
    cells = [[_cell(r.get(c)) for r in rows] for c in cols]

    def longest(texts: list[str], split: bool) -> int:
        return max((len(p) for t in texts for line in t.splitlines()
                    for p in (line.split() if split else [line])), default=0)

    def is_path(col: str) -> bool:
        return "path" in col or col in ("a", "b")

    room = width - (3 * len(cols) + 1)  # rich's borders and padding
    widths = [max(len(str(c)), longest(texts, False)) for c, texts in zip(cols, cells)]
    if sum(widths) <= room:
        return None
    for split_paths in (False, True):
        floor = [max(max(map(len, str(c).split("_"))), longest(texts, split_paths or not is_path(str(c))))
                 for c, texts in zip(cols, cells)]
        if sum(floor) <= room:
            break
    while sum(widths) > room:
        give = [i for i, (w, f) in enumerate(zip(widths, floor)) if w > f] or list(range(len(cols)))
        widths[max(give, key=lambda i: widths[i])] -= 1
    return widths


def emit_text(text: str) -> None:
    """Text already formatted (jsonl lines), as it is."""
    sys.stdout.write(text)


def check_outputs(**paths: Path | None) -> None:
    """Refuse, before a long run, an output file (``--option=path``) that could not be written
    after it: a folder that does not exist, or a folder where the file should be."""
    for option, path in paths.items():
        if path is None:
            continue
        flag = "--" + option.replace("_", "-")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise ParameterError(f"{flag} {path}: the folder {parent} does not exist")
        if path.is_dir():
            raise ParameterError(f"{flag} {path}: this is a folder; give a file name")
        if not os.access(parent, os.W_OK):
            raise ParameterError(f"{flag} {path}: the folder {parent} cannot be written")
