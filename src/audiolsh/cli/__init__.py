"""The ``audiolsh`` command: a thin layer of library calls with progress and formats."""

from __future__ import annotations

import logging

import click
from rich.markup import escape

from audiolsh import __version__
from audiolsh.cli.output import err_console
from audiolsh.errors import AudiolshError

EXIT_ERROR = 2


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AudiolshError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            ctx.exit(EXIT_ERROR)
        except OSError as exc:
            # Permission denied, disk full, a folder where a file should be: say which.
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            err_console.print("interrupted: everything committed so far is kept")
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="audiolsh")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Index a music collection and search it with locality-sensitive hashing.

    Defaults for --index, --workers, --format and serve's address come from
    ~/.config/audiolsh/config.toml (or $AUDIOLSH_CONFIG) if there is one: `audiolsh config`."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from audiolsh.cli.config import Defaults, Resolved

    ctx.default_map = Defaults(Resolved.load())  # a command line flag still wins (click's order)


def main() -> None:
    cli.main(prog_name="audiolsh")


def _register() -> None:
    # Importing the command modules attaches their commands to the group.
    from audiolsh.cli import (  # noqa: F401
        audio_cmds,
        config_cmd,
        evaluate_cmds,
        index_cmds,
        spark_cmds,
        spark_index,
        spark_join,
        spark_overlaps,
        spark_vectors,
        update_cmd,
        vector_cmds,
        web_cmds,
    )
    from audiolsh.cli.evaluate_excerpts import excerpts

    evaluate_cmds.evaluate.add_command(excerpts)


_register()

__all__ = ["EXIT_ERROR", "cli", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
