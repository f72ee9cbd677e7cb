"""The Spark session audiolsh runs on, and what a user sees while it works.

``spark_session(master)`` checks what Spark needs (PySpark from ``audiolsh[spark]``, a Java 17
runtime) and says what to install when something is missing; the executors run the same
Python interpreter as the driver (``PYSPARK_PYTHON``), so they import this audiolsh.
``StageProgress`` prints one line per finished stage (tasks, seconds) from Spark's status
tracker while a job runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from audiolsh.errors import ParameterError

DEFAULT_MASTER = "local[2]"


def _check_java() -> None:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") \
        else shutil.which("java")
    if not java or not os.path.exists(java):
        raise ParameterError("Spark needs a Java 17 runtime: apt-get install openjdk-17-jre-headless"
                             " (or set JAVA_HOME)")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ParameterError(f"Spark needs a Java 17 runtime; {java} does not run ({exc})") from None
    version = out.split('"')[1] if '"' in out else ""
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < 17:
        raise ParameterError(f"Spark 4 needs Java 17 or newer; {java} is {version or 'unknown'}:"
                             " apt-get install openjdk-17-jre-headless")


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise ParameterError("Spark commands need PySpark: pip install 'audiolsh[spark]'") from None
    return pyspark


def spark_session(master: str | None = None, *, app: str = "audiolsh",
                  conf: dict[str, str] | None = None) -> Any:
    """A SparkSession on ``master`` (default local[2]; yarn, k8s://..., spark://... as
    spark-submit takes them); the UI is off and a local driver binds to loopback."""
    pyspark = _pyspark()
    _check_java()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = master or os.environ.get("AUDIOLSH_SPARK_MASTER") or DEFAULT_MASTER
    builder = SparkSession.builder.master(master).appName(app)
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
    }
    if master.startswith("local"):
        settings |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                     "spark.sql.shuffle.partitions": "8"}
    for key, value in (settings | (conf or {})).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM's own words, on one line
        raise ParameterError(f"cannot start Spark on {master}: {' '.join(str(exc).split())[:500]}") from None
    session.sparkContext.setLogLevel("ERROR")
    del pyspark
    return session


def stop_session(session: Any) -> None:
    session.stop()


@contextmanager
def command_session(master: str | None = None, *, app: str = "audiolsh") -> Iterator[Any]:
    """The session one command runs on: a session already active in this process (a notebook's,
    a test's) is used as it is and left running; one started here is stopped at the end."""
    _pyspark()
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    if running is not None:
        yield running
        return
    session = spark_session(master, app=app)
    try:
        yield session
    finally:
        stop_session(session)


class StageProgress:
    """Polls Spark's status tracker and reports each stage once it completes."""

    def __init__(self, session: Any, say: Callable[[str], None], *, every_s: float = 0.5) -> None:
        self._tracker = session.sparkContext.statusTracker()
        self._say = say
        self._every = every_s
        self._seen: set[int] = set(self._known_stages())  # a shared session's earlier jobs
        self._started: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="audiolsh-spark-progress")

    def _known_stages(self) -> Iterator[int]:
        for jid in self._tracker.getJobIdsForGroup(None) or []:
            job = self._tracker.getJobInfo(jid)
            if job is not None:
                yield from job.stageIds

    def _poll(self) -> None:
        tracker = self._tracker
        for sid in tracker.getActiveStageIds():
            self._started.setdefault(sid, time.monotonic())
        for jid in tracker.getJobIdsForGroup(None) or []:
            job = tracker.getJobInfo(jid)
            if job is None:
                continue
            for sid in job.stageIds:
                if sid in self._seen:
                    continue
                info = tracker.getStageInfo(sid)
                if info is None or info.numTasks == 0:
                    continue
                if info.numCompletedTasks + info.numFailedTasks >= info.numTasks and sid not in \
                        tracker.getActiveStageIds():
                    self._seen.add(sid)
                    took = time.monotonic() - self._started.get(sid, time.monotonic())
                    self._say(f"stage {sid} ({info.name.split(' at ')[0]}): {info.numCompletedTasks}"
                              f" tasks done" + (f", {info.numFailedTasks} failed" if info.numFailedTasks
                                                else "") + (f" in {took:.1f} s" if took > 0 else ""))

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._poll()
            except Exception:  # the tracker is best effort; the job reports its own errors
                return

    def __enter__(self) -> StageProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._poll()
        except Exception:  # pragma: no cover - the session may be gone
            pass


@contextmanager
def progress(session: Any, say: Callable[[str], None]) -> Iterator[StageProgress]:
    with StageProgress(session, say) as p:
        yield p

