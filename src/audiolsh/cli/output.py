"""Printing results as a table, JSON, JSON lines or CSV: the only place that writes stdout."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

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
                 title: str | None = None) -> None:
    """``records`` are the per-query objects (json/jsonl); ``flat_rows`` one line per result."""
    if fmt == "jsonl":
        for r in records:
            sys.stdout.write(json.dumps(r) + "\n")
    elif fmt == "json":
        sys.stdout.write(json.dumps(list(records), indent=2) + "\n")
    elif fmt == "csv":
        emit_csv(flat_rows)
    else:
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
    for col in rows[0]:
        table.add_column(str(col), overflow="fold")
    for r in rows:
        table.add_row(*(_cell(v) for v in r.values()))
    console.print(table)


def emit_text(text: str) -> None:
    """Text already formatted (jsonl lines), as it is."""
    sys.stdout.write(text)
