"""`audiolsh precompile`: the common commands run once on small inputs so that later processes load
their kernels from numba's cache instead of compiling them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from audiolsh import precompile
from audiolsh.cli import cli

# A process that runs one command and writes the audiolsh kernels it had to compile to $COMPILED.
_COUNTING = """
import json, os, sys
from numba.core import event

compiled = []

class Compiles(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        if f.__module__.startswith("audiolsh"):
            compiled.append(f.__module__ + "." + f.__qualname__)

    def on_end(self, ev):
        pass

event.register("numba:compile", Compiles())
from audiolsh.cli import cli
code = cli.main(sys.argv[1:], prog_name="audiolsh", standalone_mode=False)
open(os.environ["COMPILED"], "w").write(json.dumps(compiled))
sys.exit(code or 0)
"""


def _resolve(argv: tuple[str, ...]) -> click.Context:
    """Parse ``argv`` as the ``audiolsh`` command would (unknown options and bad values raise)."""
    command: click.Command = cli
    ctx: click.Context | None = None
    args = list(argv)
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=args[0] if ctx else "audiolsh", parent=ctx)
        sub = command.get_command(ctx, args.pop(0))
        assert sub is not None, argv
        command = sub
    return command.make_context(command.name, args, parent=ctx)


def test_every_command_of_the_chains_is_one_the_cli_takes(tmp_path: Path) -> None:
    precompile.write_inputs(tmp_path)
    chains = precompile.jobs(tmp_path)
    commands = [argv for job in chains for argv in job.commands]
    names = {argv[0] if argv[0] != "vectors" else " ".join(argv[:2]) for argv in commands}
    assert {"index", "identify", "similar", "nearest", "overlaps", "vectors add", "vectors query"} <= names
    for job in chains:
        for argv in job.commands:
            _resolve(argv)  # raises on an option the command no longer takes
    with pytest.raises(click.UsageError):
        _resolve(("vectors", "add", "x.npy", "--no-such-option"))
    flags = {a for job in chains for argv in job.commands for a in argv if a.startswith("--")}
    assert {"--rerank-dtype", "--family", "--metric", "--segments"} <= flags


def _compiles(argv: tuple[str, ...], cache: Path, record: Path) -> list[str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "COMPILED": str(record)}
    done = subprocess.run([sys.executable, "-c", _COUNTING, *argv], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return list(json.loads(record.read_text()))


@pytest.mark.slow
def test_a_process_after_precompile_compiles_none_of_its_kernels(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def chain(inputs: Path) -> list[precompile.Job]:
        return [precompile.Job("small add", (("vectors", "add", str(inputs / "batch.npy"), "--index",
                                               str(inputs / "small"), "--tables", "2"),))]

    inputs = tmp_path / "inputs"
    precompile.write_inputs(inputs)
    argv = ("vectors", "add", str(inputs / "batch.npy"), "--index", str(tmp_path / "again"), "--tables", "2")
    # Control: on an empty cache the command compiles its kernels.
    fresh = _compiles(argv, tmp_path / "empty-cache", tmp_path / "fresh.json")
    assert any(name.startswith("audiolsh.hashing") for name in fresh), fresh

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    done = precompile.run(processes=1, chains=chain)
    assert [(d.name, d.error) for d in done] == [("small add", None)]
    assert any((tmp_path / "cache").rglob("*.nbi"))
    assert _compiles(argv, tmp_path / "cache", tmp_path / "after.json") == []


def test_a_failed_command_is_named_and_the_other_chains_go_on(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.npy"

    def chains(inputs: Path) -> list[precompile.Job]:
        return [precompile.Job("bad", (("vectors", "query", str(missing), "--index", str(tmp_path / "idx")),
                                       ("config",))),
                precompile.Job("good", (("config",),)),
                precompile.Job("bad call", (), (json.loads,))]  # a Path is not JSON text

    done = {d.name: d for d in precompile.run(processes=2, chains=chains)}
    assert set(done) == {"bad", "good", "bad call"} and done["good"].error is None
    assert (done["bad call"].error or "").startswith("loads: TypeError: the JSON object must be str")
    error = done["bad"].error
    assert error is not None and error.startswith("audiolsh vectors query") and "missing.npy" in error

    monkeypatch.setattr(precompile, "jobs", chains)
    result = CliRunner().invoke(cli, ["precompile", "--processes", "1"])
    assert result.exit_code == 2
    assert "failed bad" in result.output and "ready good" in result.output
    assert "1 of 3 command chains ready" in result.output
