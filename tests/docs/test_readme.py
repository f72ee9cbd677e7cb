"""The README's Python examples run as written, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from audiolsh.cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND = r"audiolsh ((?:vectors |evaluate |spark vectors |spark )?[a-z]+)"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_make_run_and_make_test() -> None:
    first = _blocks("bash")[0]
    assert "make run" in first and "make test" in first


def test_python_examples_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)


def test_every_documented_command_has_help() -> None:
    runner = CliRunner()
    commands = set()
    for block in _blocks("bash"):
        for line in block.splitlines():
            m = re.match(COMMAND, line.strip())
            if m:
                commands.add(m.group(1))
    assert {"index", "nearest", "vectors add", "vectors query", "tune", "info", "identify", "similar",
            "clusters", "serve", "evaluate identify", "evaluate excerpts", "spark vectors add",
            "spark query", "spark index", "spark join", "overlaps", "spark overlaps"} <= commands
    for cmd in commands:
        result = runner.invoke(cli, [*cmd.split(), "--help"])
        assert result.exit_code == 0, (cmd, result.output)


def test_every_documented_option_exists() -> None:
    runner = CliRunner()
    checked = 0
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            m = re.match(COMMAND, line)
            if not m:
                continue
            cmd = m.group(1).split()
            help_text = runner.invoke(cli, [*cmd, "--help"]).output
            for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", line):
                assert option in help_text, (line, option)
                checked += 1
    assert checked >= 20


def test_the_stated_min_confidence_defaults_are_the_shipped_calibrations() -> None:
    """The README's `--min-confidence` default (and the one without an envelope) are those the
    package ships; a refit that moves them must move the README too."""
    from audiolsh.index import confidence as calibrated

    text = " ".join(README.read_text().split())
    with_env = calibrated.load(calibrated.DEFAULT).default_min_confidence
    without = calibrated.load(calibrated.WITHOUT_ENVELOPE).default_min_confidence
    stated = re.search(r"below `--min-confidence` \(default ([0-9.]+), or ([0-9.]+) where no envelope", text)
    assert stated, "README no longer states --min-confidence's defaults where expected"
    assert (float(stated.group(1)), float(stated.group(2))) == (round(with_env, 4), round(without, 4))
