"""precompile: compile the kernels of the common commands now, not at their first use."""

from __future__ import annotations

import time

import click

from audiolsh.cli import EXIT_ERROR, cli
from audiolsh.cli.output import err_console


@cli.command("precompile")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Chains of commands run side by side [default: the cores this process may use].")
@click.pass_context
def precompile(ctx: click.Context, processes: int | None) -> None:
    """Compile the search and analysis kernels for this machine now, so that the first
    commands of a new install do not.

    numba keeps them on disk; this takes a minute or two once.  Runs the common commands (and
    the Python API's set search and joins) on small synthetic inputs in a temporary folder; no
    library and no setting of yours is touched."""
    from audiolsh import precompile as jobs

    t0 = time.perf_counter()

    def said(done: jobs.Done) -> None:
        state = "[red]failed[/]" if done.error else "[green]ready[/]"
        err_console.print(f"{state} {done.name} ({done.seconds:.0f} s)", highlight=False)
        if done.error:
            err_console.print(f"  {done.error}", highlight=False, markup=False)

    finished = jobs.run(processes=processes, on_done=said)
    failed = [d for d in finished if d.error]
    err_console.print(f"{len(finished) - len(failed)} of {len(finished)} command chains ready in "
                      f"{time.perf_counter() - t0:.0f} s", highlight=False)
    if failed:
        ctx.exit(EXIT_ERROR)
