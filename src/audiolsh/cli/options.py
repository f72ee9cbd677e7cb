"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

from audiolsh.index import INDEX_ENV

DEFAULT_INDEX = "audiolsh-index"

index_option = click.option(
    "--index", "index_path", type=click.Path(file_okay=False, path_type=Path),
    envvar=INDEX_ENV, default=DEFAULT_INDEX, show_default=True, show_envvar=True,
    help="Index directory.",
)
