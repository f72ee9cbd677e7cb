"""A fast CLI: ``--help`` and ``--version`` import none of the heavy stacks, the lazy command
map stays in step with the commands, every numba kernel is cached on disk, a process's first
clip is timed after a warm-up, and ``vectors query`` times its queries apart from the loading."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import audiolsh
import audiolsh.cli
from audiolsh import jit_cache
from audiolsh.cli import COMMANDS, LazyGroup, cli
from audiolsh.errors import ParameterError

SRC = Path(audiolsh.__file__).resolve().parents[1]
#: Imported by a command that needs them, never by the group itself.
HEAVY = ("numpy", "numba", "scipy", "librosa", "soundfile", "soxr", "sklearn", "matplotlib", "fastapi",
         "uvicorn", "starlette", "pyspark", "pyarrow", "redis", "audiolsh.library", "audiolsh.index")
LISTING = """
import json, sys
from audiolsh.cli import main
sys.argv = ["audiolsh", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(sys.modules)))
"""


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _import_every_command_module() -> None:
    for info in pkgutil.iter_modules(audiolsh.cli.__path__, "audiolsh.cli."):
        importlib.import_module(info.name)


def _groups() -> list[tuple[str, LazyGroup]]:
    from audiolsh.cli.spark_cmds import spark

    return [("audiolsh", cli), ("audiolsh spark", spark)]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["spark", "--help"]])
def test_help_and_version_import_no_heavy_module(argv: list[str]) -> None:
    env = _child_env()
    done = subprocess.run([sys.executable, "-c", LISTING, *argv], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    modules = json.loads(done.stderr)
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"audiolsh {' '.join(argv)} imported {heavy}"
    assert "audiolsh.cli.audio_cmds" not in modules and done.stdout.strip()


def test_the_lazy_map_names_every_command_with_its_own_help() -> None:
    _import_every_command_module()
    for prog, group in _groups():
        ctx = click.Context(group)
        for name, lazy in group.lazy.items():
            command = group.get_command(ctx, name)
            assert command is not None, f"{prog} {name}: {lazy.target} is not a command"
            assert command.name == name, f"{prog} {name}: {lazy.target} is the command {command.name!r}"
            assert command.get_short_help_str(limit=10_000) == lazy.short_help, (
                f"{prog} {name}: the one-line help in the lazy map differs from the command's docstring")
        # A command attached by a decorator but missing from the map would not be listed.
        assert set(group.commands) == set(group.lazy), f"{prog}: commands missing from its lazy map"


def test_help_lists_every_command_without_importing_it() -> None:
    fresh = LazyGroup("demo", lazy={"late": audiolsh.cli.Lazy("no.such.module:cmd", "Would fail to import.")})
    result = CliRunner().invoke(fresh, ["--help"])
    assert result.exit_code == 0 and "late  Would fail to import." in result.output
    listed = CliRunner().invoke(cli, ["--help"]).output
    for name, lazy in COMMANDS.items():
        assert f"  {name} " in listed and lazy.short_help.split()[0] in listed


def test_a_lazy_command_runs_when_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["info", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2 and "error" in result.output


def test_every_numba_kernel_is_cached_on_disk() -> None:
    """A kernel without ``cache=True`` is compiled again by every process (seconds on the first
    query); ``inline="always"`` helpers are compiled into their cached callers."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    uncached = []
    for info in pkgutil.walk_packages(audiolsh.__path__, "audiolsh."):
        if info.name.endswith("__main__"):
            continue  # runs the CLI
        if ".spark" in info.name or info.name.startswith("audiolsh.cli.spark"):
            continue  # needs the spark extra; its kernels live in search/ and are checked there
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__:
                if obj.targetoptions.get("inline") != "always" and isinstance(obj._cache, NullCache):
                    uncached.append(f"{module.__name__}.{name}")
    assert uncached == []


def test_numba_cache_falls_back_to_a_writable_folder(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "audiolsh"
    home_cache = tmp_path / "xdg"
    read_only = {package / "__pycache__", home_cache / "audiolsh" / "numba"}

    def writable(path: Path) -> bool:
        return path not in read_only

    env = {"XDG_CACHE_HOME": str(tmp_path / "elsewhere")}
    assert jit_cache.cache_dir(env, package_dir=package, writable=writable) == str(
        tmp_path / "elsewhere" / "audiolsh" / "numba")
    env = {"XDG_CACHE_HOME": str(home_cache)}  # the user's cache cannot be written either
    chosen = jit_cache.cache_dir(env, package_dir=package, writable=writable)
    assert chosen is not None and Path(chosen).name.startswith("audiolsh-numba-")
    assert jit_cache.cache_dir(env, package_dir=tmp_path / "writable", writable=writable) is None
    assert jit_cache.cache_dir({"NUMBA_CACHE_DIR": "/x"}, package_dir=package, writable=writable) is None


def test_queries_are_timed_after_a_warm_up_on_a_synthetic_clip(tmp_path: Path) -> None:
    """The first clip of a process is timed as a warm one: a synthetic clip goes first, unreported."""
    import soundfile as sf

    from audiolsh.cli.audio_cmds import WARM_UP_SR, _each_clip

    seen: list[tuple[str, int | None]] = []

    def work(clip: Path) -> dict[str, object]:
        seen.append((clip.name, sf.info(str(clip)).samplerate if clip.name == "warm-up.wav" else None))
        if clip.name == "bad.wav":
            raise ParameterError("bad.wav: no audio")
        return {"query": clip.name}

    done = list(_each_clip([tmp_path / "a.wav", tmp_path / "bad.wav", tmp_path / "b.wav"], work))
    assert seen == [("warm-up.wav", WARM_UP_SR), ("a.wav", None), ("bad.wav", None), ("b.wav", None)]
    assert [(clip.name, record and record["query"]) for clip, record in done] == [
        ("a.wav", "a.wav"), ("bad.wav", None), ("b.wav", "b.wav")]
    assert all(record is None or record["elapsed_ms"] >= 0 for _, record in done)


def test_a_failed_warm_up_is_not_reported_and_track_ids_warm_up_on_themselves() -> None:
    from audiolsh.cli.audio_cmds import _each_clip

    calls: list[int] = []

    def work(track_id: int) -> dict[str, object]:
        calls.append(track_id)
        if len(calls) == 1:
            raise ParameterError("only the warm-up fails")
        return {"track_id": track_id}

    done = list(_each_clip([7, 8], work))
    assert calls == [7, 7, 8]
    assert [record and record["track_id"] for _, record in done] == [7, 8]
    assert list(_each_clip([], work)) == [] and calls == [7, 7, 8]


def test_no_temporary_folder_for_the_warm_up_is_no_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from audiolsh.cli.audio_cmds import _each_clip

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    done = list(_each_clip([tmp_path / "a.wav"], lambda clip: {"query": clip.name}))
    assert [record and record["query"] for _, record in done] == ["a.wav"]


def test_vectors_query_times_the_queries_apart_from_the_loading(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from audiolsh.index import Index

    rng = np.random.default_rng(5)
    data, queries = tmp_path / "data.npy", tmp_path / "queries.npy"
    np.save(data, rng.standard_normal((200, 8)).astype(np.float32))
    np.save(queries, rng.standard_normal((10, 8)).astype(np.float32))
    idx = str(tmp_path / "vec")
    assert CliRunner().invoke(cli, ["vectors", "add", str(data), "--index", idx]).exit_code == 0
    batches: list[int] = []
    query = Index.query

    def counted(self: Index, q: Any, *args: Any, **kwargs: Any) -> Any:
        batches.append(len(q))
        return query(self, q, *args, **kwargs)

    monkeypatch.setattr(Index, "query", counted)
    result = CliRunner().invoke(cli, ["vectors", "query", str(queries), "--index", idx, "-k", "3",
                                      "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    # loading: a one-row search, and the (default k-means) batch kernel loaded without a run;
    # then the timed search
    assert batches == [1, 10]
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("loaded in ") and "queries.npy" in summary and "; 10 queries in " in summary
    assert len(result.stdout.strip().splitlines()) == 10


def test_the_index_and_identification_import_no_statistics_or_spectrum_stack() -> None:
    """scipy.stats (for one normal CDF) cost every command about half a second to import."""
    code = ("import json, sys, audiolsh.index, audiolsh.library, audiolsh.query.identify\n"
            "sys.stdout.write(json.dumps(sorted(sys.modules)))")
    env = _child_env()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    modules = set(json.loads(done.stdout))
    assert not modules & {"scipy.stats", "scipy.signal", "librosa.core.spectrum", "sklearn"}


@pytest.mark.parametrize(("given", "want"), [(None, "PASSIVE"), ("active", "active")])
def test_the_command_lets_openmp_workers_sleep_unless_told(given: str | None, want: str) -> None:
    """OpenMP's workers spin after each parallel call by default and take a core from the
    answers' writing; the command has them sleep, unless its environment sets the policy."""
    env = {k: v for k, v in _child_env().items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, audiolsh.cli; print(os.environ['OMP_WAIT_POLICY'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    assert done.stdout.strip() == want
