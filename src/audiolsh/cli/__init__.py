"""The ``audiolsh`` command: a thin layer of library calls with progress and formats.

The commands live in modules that import numpy, numba, scipy, librosa or FastAPI; the group
imports a command's module only when that command runs (or its own ``--help`` is asked for),
so that ``audiolsh --help`` and ``--version`` start at once.  ``COMMANDS`` says where each
command is and its one-line help; tests/cli/test_cli_startup.py keeps it in step with the
commands themselves.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import click

from audiolsh import __version__
from audiolsh.errors import AudiolshError

EXIT_ERROR = 2

# numba's parallel kernels run on OpenMP, whose workers spin for milliseconds after each call
# (GNU's default): a command's one batch query leaves a core busy, and writing its answers ran
# at half speed on 2 cores.  Asleep at once unless the environment says otherwise (read when
# OpenMP loads: at the first parallel call, after this).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Lazy(NamedTuple):
    """A command not imported yet: ``"module:attribute"`` and its one-line help."""

    target: str
    short_help: str


COMMANDS: dict[str, Lazy] = {
    "clusters": Lazy("audiolsh.cli.index_cmds:clusters",
                     "Group the collection (SVD-reduced features, k-means); a vector index groups its rows."),
    "config": Lazy("audiolsh.cli.config_cmd:config_cmd",
                   "Show each setting's value and where it comes from: the environment, the config file"
                   " ($AUDIOLSH_CONFIG, else $XDG_CONFIG_HOME/audiolsh/config.toml, else"
                   " ~/.config/audiolsh/config.toml) or the built-in default."),
    "evaluate": Lazy("audiolsh.cli.evaluate_cmds:evaluate",
                     "Run an evaluation protocol on a corpus folder and print its tables."),
    "identify": Lazy("audiolsh.cli.audio_cmds:identify",
                     "Which track each clip comes from, where in it the clip starts, and how sure we are."),
    "index": Lazy("audiolsh.cli.audio_cmds:index_cmd",
                  "Index audio files, folders (recursively) and @lists of them (one path a line), every"
                  " mode from one decode per file."),
    "info": Lazy("audiolsh.cli.index_cmds:info",
                 "Show what a music library or a vector index holds and how it is built."),
    "nearest": Lazy("audiolsh.cli.audio_cmds:nearest",
                    "The passages of the collection nearest to each clip (per-second embeddings, voting)."),
    "overlaps": Lazy("audiolsh.cli.index_cmds:overlaps",
                     "Pairs of tracks that share material (a duplicate, a re-release, a reused loop, a"
                     " medley): where the shared stretch starts in each track and how long it is."),
    "precompile": Lazy("audiolsh.cli.precompile_cmd:precompile",
                       "Compile the search and analysis kernels for this machine now, so that the first"
                       " commands of a new install do not."),
    "remove": Lazy("audiolsh.cli.index_cmds:remove",
                   "Remove tracks (by track id, path, folder, a part of the artist, title or file name that"
                   " names one track, or @lists of them, one a line) or items (--keys) from the index."),
    "serve": Lazy("audiolsh.cli.web_cmds:serve",
                  "Serve the web page and the REST API (OpenAPI docs at /docs) on a music library."),
    "similar": Lazy("audiolsh.cli.audio_cmds:similar",
                    "Tracks that sound like each clip (or --track), by rhythm, timbre, chroma, peaks or"
                    " combined (rhythm + timbre + peaks)."),
    "spark": Lazy("audiolsh.cli.spark_cmds:spark",
                  "Build, query and join indexes on Spark (local[N], yarn, k8s://..., spark://...)."),
    "tune": Lazy("audiolsh.cli.index_cmds:tune",
                 "Sweep tables, bits and probes on a validation split; store the cheapest good setting."),
    "update": Lazy("audiolsh.cli.update_cmd:update",
                   "Bring the library up to date with FOLDER: index new files, drop the tracks whose files"
                   " under FOLDER were deleted, index again the files whose content changed."),
    "vectors": Lazy("audiolsh.cli.vector_cmds:vectors",
                    "k-NN over vectors: audio embeddings, feature tables."),
}


def _print_error(message: str) -> None:
    from rich.markup import escape

    from audiolsh.cli.output import err_console

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


class LazyGroup(click.Group):
    """A group whose commands are imported when resolved (``lazy``: name -> ``Lazy``); the
    group's ``--help`` lists them from their ``short_help`` without importing anything."""

    def __init__(self, *args: Any, lazy: Mapping[str, Lazy] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attr = self.lazy[cmd_name].target.partition(":")
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [n for n in self.list_commands(ctx) if n in self.lazy or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in self.commands:
                text = self.commands[name].get_short_help_str(limit)
            else:
                # Shortened as click shortens a loaded command's help.
                text = click.Command(name, help=self.lazy[name].short_help).get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def load_all(self) -> None:
        """Import every command now (before forking workers that all run commands)."""
        ctx = click.Context(self)
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if isinstance(command, LazyGroup):
                command.load_all()


class _Group(LazyGroup):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except AudiolshError as exc:
            _print_error(str(exc))
            ctx.exit(EXIT_ERROR)
        except OSError as exc:
            # Permission denied, disk full, a folder where a file should be: say which.
            _print_error(str(exc))
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            from audiolsh.cli.output import err_console

            err_console.print("interrupted: everything committed so far is kept")
            ctx.exit(130)


@click.group(cls=_Group, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
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


__all__ = ["COMMANDS", "EXIT_ERROR", "Lazy", "LazyGroup", "cli", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
