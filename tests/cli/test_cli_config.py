"""The config file: defaults for --index, --workers, --format and serve's address, below the
environment and the command line; `audiolsh config` says where each setting comes from; a bad
file is one line naming it and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from audiolsh.cli import cli

CLEAN = {"AUDIOLSH_INDEX": None, "AUDIOLSH_WORKERS": None, "AUDIOLSH_FORMAT": None, "AUDIOLSH_HOST": None,
         "AUDIOLSH_PORT": None, "AUDIOLSH_SERVER_WORKERS": None, "AUDIOLSH_CONFIG": None}


def run(*args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={**CLEAN, **env})
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def settings(**env: str) -> dict[str, tuple[object, str]]:
    code, out, err = run("config", "--format", "json", **env)
    assert code == 0, err
    return {r["setting"]: (r["value"], r["source"]) for r in json.loads(out)}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "xdg" / "audiolsh" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'index = "{tmp_path / "from-file"}"\nformat = "jsonl"\nworkers = 3\n\n'
                    "[server]\nport = 9001\n")
    return path


def test_the_file_under_xdg_config_home_gives_defaults_and_a_flag_or_the_environment_wins(
        tmp_path: Path, config: Path) -> None:
    xdg = str(tmp_path / "xdg")
    where = f"config file {config}"
    got = settings(XDG_CONFIG_HOME=xdg)
    assert got["index"] == (str(tmp_path / "from-file"), where)
    assert got["format"] == ("jsonl", where) and got["workers"] == (3, where)
    assert got["server.port"] == (9001, where)
    assert got["server.host"] == ("127.0.0.1", "built-in default")
    assert got["server.workers"] == (2, "built-in default")  # serve's --workers is not -j
    # The settings reach the commands: identify looks for the file's library ...
    code, _, err = run("identify", "clip.wav", XDG_CONFIG_HOME=xdg)
    assert code == 2 and f"{tmp_path / 'from-file'}: no music library here" in err
    # ... the environment comes before the file, a flag before both.
    code, _, err = run("identify", "clip.wav", XDG_CONFIG_HOME=xdg, AUDIOLSH_INDEX=str(tmp_path / "env"))
    assert code == 2 and f"{tmp_path / 'env'}: no music library here" in err
    code, _, err = run("identify", "clip.wav", "--index", str(tmp_path / "flag"), XDG_CONFIG_HOME=xdg,
                       AUDIOLSH_INDEX=str(tmp_path / "env"))
    assert code == 2 and f"{tmp_path / 'flag'}: no music library here" in err
    env = settings(XDG_CONFIG_HOME=xdg, AUDIOLSH_FORMAT="csv", AUDIOLSH_PORT="9002")
    assert env["format"] == ("csv", "environment $AUDIOLSH_FORMAT")
    assert env["server.port"] == (9002, "environment $AUDIOLSH_PORT")
    # The file's format is the format of every command that has one (config's own here).
    code, out, _ = run("config", XDG_CONFIG_HOME=xdg)
    assert code == 0 and json.loads(out.splitlines()[0])["setting"] == "index"
    code, out, _ = run("serve", "--help", XDG_CONFIG_HOME=xdg)
    assert "[default: 9001;" in out


def test_audiolsh_config_names_the_file_and_without_one_the_defaults(tmp_path: Path, config: Path) -> None:
    code, out, err = run("config", "--format", "json", AUDIOLSH_CONFIG=str(config),
                         XDG_CONFIG_HOME=str(tmp_path / "elsewhere"))
    assert code == 0 and f"config file: {config}" in err
    assert {r["setting"]: r["value"] for r in json.loads(out)}["server.port"] == 9001
    code, out, err = run("config", "--format", "json", XDG_CONFIG_HOME=str(tmp_path / "elsewhere"))
    assert code == 0 and "(no such file: built-in defaults)" in err
    assert all(r["source"] == "built-in default" for r in json.loads(out))


@pytest.mark.parametrize(("text", "problem"), [
    ('index = "lib"\nport = 80\n', "unknown setting 'port'"),
    ("[server]\nhots = 'x'\n", "unknown setting 'server.hots'"),
    ('workers = "four"\n', "workers must be a positive integer, not 'four'"),
    ('format = "yaml"\n', "format must be one of table, json, jsonl, csv, not 'yaml'"),
    ("[server]\nport = 70000\n", "server.port must be a port number, 1 to 65535, not 70000"),
    ('index = "lib\n', "not valid TOML: "),
])
def test_a_bad_config_file_is_one_line_naming_the_file_and_the_key(tmp_path: Path, text: str,
                                                                   problem: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    code, out, err = run("info", AUDIOLSH_CONFIG=str(path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {path}: {problem}"), err


def test_a_named_config_file_must_exist_and_a_bad_variable_is_named(tmp_path: Path) -> None:
    code, _, err = run("info", AUDIOLSH_CONFIG=str(tmp_path / "none.toml"))
    assert code == 2 and err.strip() == f"error: {tmp_path / 'none.toml'}: config file not found" \
        " (named by $AUDIOLSH_CONFIG)"
    code, _, err = run("config", AUDIOLSH_PORT="http", XDG_CONFIG_HOME=str(tmp_path))
    assert code == 2 and err.strip() == "error: $AUDIOLSH_PORT: must be a port number, 1 to 65535, not 'http'"


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    path = tmp_path / "config.toml"
    path.write_text(example)
    got = settings(AUDIOLSH_CONFIG=str(path))
    assert all(source == f"config file {path}" for _, source in got.values())
    assert got["index"][0] == str(Path("~/music.idx").expanduser()) and got["server.port"][0] == 8000
