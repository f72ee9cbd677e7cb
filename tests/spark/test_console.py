"""What a spark command shows on a real console (a subprocess: the JVM writes to the process's
own stderr, which CliRunner does not see): audiolsh's lines only, no Spark or Hadoop warnings;
a failed task or a bad master URL is one line and exit status 2, with no Java stack trace."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.spark

#: The lines spark overlaps prints on stderr: Spark stages, the counting pass, the summary.
OWN_LINE = re.compile(r"^(stage \d+ \(.*\): \d+ tasks done.*|\d+ landmarks of \d+ tracks: .*"
                      r"|\d+ shared stretch(es)? among \d+ tracks in .*)$")
#: Run the CLI with a driver that plans a search its tasks refuse (max_per_hash 1).
FAILING = """
import dataclasses, sys
from audiolsh.query.overlaps import OverlapSearch
plan = OverlapSearch.of
OverlapSearch.of = classmethod(lambda cls, lib, **kw: dataclasses.replace(plan(lib, **kw), max_per_hash=1))
from audiolsh.cli import main
sys.argv = ["audiolsh", *sys.argv[1:]]
main()
"""


def start(*args: str, code: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "AUDIOLSH_SPARK_MASTER"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                         env.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "audiolsh"]
    return subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def audiolsh(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    return finish(start(*args, code=code))


@pytest.fixture(scope="module")
def runs(planted_library: Any) -> dict[str, subprocess.CompletedProcess[str]]:
    """The two Spark commands, started together (each starts its own JVM: the start-ups overlap)."""
    where = str(planted_library.path)
    started = {"ok": start("spark", "overlaps", "--index", where, "--format", "jsonl"),
               "failing": start("spark", "overlaps", "--index", where, code=FAILING)}
    return {name: finish(proc) for name, proc in started.items()}


def spark_log_of(err: str) -> Path:
    found = re.search(r"Spark's log: (\S+)", err)
    assert found, err
    return Path(found.group(1))


@pytest.mark.slow  # Spark sessions of their own
def test_a_spark_command_prints_only_its_own_lines(planted_library: Any, runs: dict[str, Any]) -> None:
    from audiolsh.cli import cli

    done = runs["ok"]
    assert done.returncode == 0, done.stderr
    local = CliRunner().invoke(cli, ["overlaps", "--index", str(planted_library.path), "--format", "jsonl"])
    assert done.stdout == local.stdout
    lines = done.stderr.splitlines()
    assert not [line for line in lines if not OWN_LINE.match(line)], done.stderr
    assert "WARN" not in done.stderr and "log4j" not in done.stderr and "at org.apache" not in done.stderr


@pytest.mark.slow  # Spark sessions of their own
def test_a_failed_task_is_one_line_and_exit_2(runs: dict[str, Any]) -> None:
    done = runs["failing"]
    assert done.returncode == 2 and not done.stdout
    errors = [line for line in done.stderr.splitlines() if not OWN_LINE.match(line)]
    assert len(errors) == 1, done.stderr
    assert re.match(r"error: spark overlaps failed: task raised ParameterError: max_per_hash must be an"
                    r" integer >= 2, got 1 \(in stage \d+\); Spark's log: ", errors[0]), errors[0]
    assert "at org.apache" not in done.stderr and "Traceback" not in done.stderr
    log = spark_log_of(errors[0])  # kept: it holds the stack traces
    try:
        assert "at org.apache" in log.read_text() and "ParameterError" in log.read_text()
    finally:
        log.unlink()


def test_a_bad_master_url_is_one_line_and_exit_2(planted_library: Any) -> None:
    """spark-submit refuses it before the JVM answers: its reason comes from Spark's log."""
    done = audiolsh("spark", "overlaps", "--index", str(planted_library.path), "--master", "nonsense://x")
    assert done.returncode == 2 and not done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: cannot start Spark on nonsense://x: SparkException: Master must either be yarn or start"
        " with spark, k8s, or local;"), done.stderr
    spark_log_of(lines[0]).unlink()
