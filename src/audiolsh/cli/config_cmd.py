"""config: the settings in force and where each comes from."""

from __future__ import annotations

import click

from audiolsh.cli import cli
from audiolsh.cli.config import Resolved, effective
from audiolsh.cli.output import emit_records, err_console, format_option
from audiolsh.files import shown


@cli.command("config")
@format_option
@click.pass_context
def config_cmd(ctx: click.Context, fmt: str) -> None:
    """Show each setting's value and where it comes from: the environment, the config file
    ($AUDIOLSH_CONFIG, else $XDG_CONFIG_HOME/audiolsh/config.toml, else
    ~/.config/audiolsh/config.toml) or the built-in default.  A flag on the command line wins
    over all three."""
    resolved = Resolved.load()
    rows = effective(resolved, ctx)
    emit_records(rows, fmt, flat_rows=rows, title="audiolsh settings")
    state = "" if resolved.path.is_file() else " (no such file: built-in defaults)"
    err_console.print(f"config file: {shown(resolved.path)}{state}", highlight=False, markup=False)
