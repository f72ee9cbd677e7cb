"""The Spark session: tasks run this audiolsh in this interpreter; a missing Java is one clear
message; a Spark error is one line naming what failed and where."""

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


JAVA_TRACE = "\n\tat org.apache.spark.scheduler.DAGScheduler.runJob(DAGScheduler.scala:2898)"


@pytest.mark.parametrize(("text", "stage", "says"), [
    ("An error occurred while calling o45.collect.\n: org.apache.spark.SparkException: Job aborted due to"
     " stage failure: Task 0 in stage 3.0 failed 1 times, most recent failure: Lost task 0.0 in stage 3.0"
     " (TID 7) (127.0.0.1 executor driver): java.lang.OutOfMemoryError: Java heap space" + JAVA_TRACE,
     None, "OutOfMemoryError: Java heap space (in stage 3)"),
    ("Job aborted: Lost task 1.0 in stage 2.0: org.apache.spark.api.python.PythonException: Traceback"
     " (most recent call last):\n  File \"/x/tasks.py\", line 3, in f\n    raise ValueError('bad\n row')\n"
     "ValueError: bad\n row" + JAVA_TRACE + "\nDriver stacktrace:\nTraceback (most recent call last):\n"
     "  File \"/x/tasks.py\", line 3, in f\n    raise ValueError('bad')\nValueError: bad" + JAVA_TRACE,
     None, "task raised ValueError: bad (in stage 2)"),
    ("An exception was thrown from the Python worker:\nTraceback (most recent call last):\n  File \"t.py\","
     " line 8, in g\n    raise KeyError('nope')\nKeyError: 'nope'", 5,
     "task raised KeyError: 'nope' (in stage 5)"),
    ("org.apache.spark.SparkException: Exception thrown in awaitResult:" + JAVA_TRACE + "\nCaused by:"
     " java.io.FileNotFoundException: /data/part-0 (No such file or directory)" + JAVA_TRACE,
     None, "FileNotFoundException: /data/part-0 (No such file or directory)"),
])
def test_a_spark_error_is_one_line(text: str, stage: int | None, says: str) -> None:
    from audiolsh.spark.session import failure

    assert failure(RuntimeError(text), stage=stage) == says
