"""Options shared by several commands."""

from __future__ import annotations

import math
from typing import Any

import click

#: Names the index for every command, and for ``web.app.app_from_env``.
INDEX_ENV = "AUDIOLSH_INDEX"
DEFAULT_INDEX = "audiolsh-index"

index_option = click.option(
    "--index", "index_path", type=str, envvar=INDEX_ENV, default=DEFAULT_INDEX, show_default=True,
    show_envvar=True,
    help="Where the index is: a directory, redis://host:port/db?prefix=NAME (audiolsh[redis]), or"
    " memory://name (this process only).",
)

LONGEST_S = 1e7
"""The most seconds an option of lengths or offsets takes (116 days): larger ones, accepted,
overflowed the frame counts they make."""


class Finite(click.FloatRange):
    """``click.FloatRange`` that refuses NaN and infinity, which pass its comparisons."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        out = super().convert(value, param, ctx)
        if not math.isfinite(out):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return float(out)


def seconds(low: float = 0.0, *, low_open: bool = False) -> Finite:
    """A length or offset in seconds: finite, from ``low`` to ``LONGEST_S``."""
    return Finite(low, LONGEST_S, min_open=low_open)
