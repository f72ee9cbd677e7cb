"""The Spark session: tasks run this audiolsh in this interpreter; a missing Java is one clear
message."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from audiolsh.errors import ParameterError

pytestmark = pytest.mark.spark


def test_tasks_run_this_audiolsh(spark: Any) -> None:
    import audiolsh

    def _where(_: Any) -> Any:  # defined here: pickled by value, tests are no package
        import audiolsh

        yield (sys.executable, audiolsh.__file__)

    seen = set(spark.sparkContext.parallelize(range(4), 2).mapPartitions(_where).collect())
    assert seen == {(sys.executable, audiolsh.__file__)}
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.ui.enabled") == "false"


def test_without_java_the_message_says_what_to_install(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from audiolsh.spark.session import _check_java

    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ParameterError, match="openjdk-17-jre-headless"):
        _check_java()
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.2"\' >&2\n')
    fake.chmod(0o755)
    with pytest.raises(ParameterError, match=r"Java 17 or newer.*11\.0\.2"):
        _check_java()
    assert os.environ["JAVA_HOME"] == str(tmp_path)
