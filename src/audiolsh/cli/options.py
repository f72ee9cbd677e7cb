"""Options shared by several commands."""

from __future__ import annotations

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
