"""The Spark session audiolsh runs on, and what a user sees while it works.

``spark_session(master)`` checks what Spark needs (PySpark from ``audiolsh[spark]``, a Java 17
runtime) and says what to install when something is missing; the executors run the same
Python interpreter as the driver (``PYSPARK_PYTHON``), so they import this audiolsh.  The JVM
it starts writes its output (log4j at ERROR, with ``log4j2.properties`` here; the JVM's own
warnings; the Python workers' stderr) to Spark's log, a file in the temporary folder, never to
the console: a command shows only its own lines.  ``command_session`` turns a failed Spark job
into one line (``SparkJobError``: what the task raised and in which stage, and where Spark's
log is, kept for that).  ``StageProgress`` prints one line per finished stage (tasks, seconds)
from Spark's status tracker while a job runs.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audiolsh.errors import AudiolshError, ParameterError

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


LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
"""log4j 2 settings of the driver JVM audiolsh starts: ERROR and above, to its stderr (Spark's log)."""


class SparkJobError(AudiolshError, RuntimeError):
    """A Spark job failed (a task raised, an executor died), or Spark could not start."""


_jvm_log: dict[str, Any] = {"path": None, "keep": False}


def spark_log() -> str | None:
    """Spark's log: the file the JVM this process started writes to (None: no JVM started here)."""
    return _jvm_log["path"]


def _new_log() -> str:
    fd, path = tempfile.mkstemp(prefix="audiolsh-spark-", suffix=".log")
    os.close(fd)
    _jvm_log["path"] = path

    def remove() -> None:  # kept when a message names it
        if not _jvm_log["keep"]:
            Path(path).unlink(missing_ok=True)

    atexit.register(remove)
    return path


def _spark_context(conf: Any) -> Any:
    """The SparkContext of ``conf``; the first JVM of this process writes to Spark's log."""
    from pyspark import SparkContext

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return SparkContext.getOrCreate(conf)  # a JVM already runs: its output goes where it goes
    from pyspark.java_gateway import launch_gateway

    with open(_new_log(), "ab") as log:
        gateway = launch_gateway(conf, popen_kwargs={"stdout": log, "stderr": subprocess.STDOUT})
    return SparkContext(conf=conf, gateway=gateway)


def spark_session(master: str | None = None, *, app: str = "audiolsh",
                  conf: dict[str, str] | None = None) -> Any:
    """A SparkSession on ``master`` (default local[2]; yarn, k8s://..., spark://... as
    spark-submit takes them); the UI is off, a local driver binds to loopback, and Spark logs
    errors only, to Spark's log (``spark_log()``), not to the console."""
    pyspark = _pyspark()
    _check_java()
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = master or os.environ.get("AUDIOLSH_SPARK_MASTER") or DEFAULT_MASTER
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
    }
    if master.startswith("local"):
        settings |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                     "spark.sql.shuffle.partitions": "8"}
    spark_conf = SparkConf().setMaster(master).setAppName(app)
    for key, value in (settings | (conf or {})).items():
        spark_conf.set(key, value)
    try:
        sc = _spark_context(spark_conf)
        session = SparkSession.builder.getOrCreate()
    except Exception as exc:  # the JVM's own words, on one line
        reason = (_log_error() if "JAVA_GATEWAY_EXITED" in str(exc) else None) or failure(exc)
        raise SparkJobError(f"cannot start Spark on {master}: {reason}{_log_note()}") from None
    sc.setLogLevel("ERROR")
    del pyspark
    return session


def stop_session(session: Any) -> None:
    session.stop()


def failure(exc: BaseException, *, stage: int | None = None) -> str:
    """What a Spark error says, on one line: the exception a task raised (the last line of its
    Python traceback) or the JVM's, and the stage it failed in (from the text, else ``stage``)."""
    text = str(exc)
    found = re.search(r"\bin stage (\d+)", text)
    if found:
        stage = int(found.group(1))
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Traceback (most recent call last):"]
    what = None
    if starts:  # a Python exception: the first unindented line after its frames
        what = next((line for line in lines[starts[-1] + 1:] if line.strip() and not line[0].isspace()),
                    None)
        what = what and f"task raised {_short_class(what)}"
    if what is None:
        lost = re.search(r"most recent failure: Lost task [^)]*\)(?: \([^)]*\))?: (.+)", text)
        causes = [line[len("Caused by: "):] for line in lines if line.startswith("Caused by: ")]
        errors = [line.lstrip(": ") for line in lines
                  if re.match(r"^:? ?[\w.$]+(Exception|Error)\b", line.strip())]
        what = (lost.group(1) if lost else causes[-1] if causes else errors[0] if errors
                else next((line for line in lines if line.strip()), type(exc).__name__))
        what = _short_class(what.strip())
    what = " ".join(what.split())
    if len(what) > 400:
        what = what[:400] + "..."
    return what + (f" (in stage {stage})" if stage is not None else "")


def _short_class(line: str) -> str:
    """``java.lang.IllegalStateException: x`` -> ``IllegalStateException: x``."""
    return re.sub(r"^(?:[a-z_][\w$]*\.)+(?=[A-Z])", "", line)


def _failed_stage(session: Any) -> int | None:
    """The first stage with failed tasks of the session's last failed job (a task's exception
    as PySpark hands it on no longer names it)."""
    try:
        tracker = session.sparkContext.statusTracker()
        for jid in sorted(tracker.getJobIdsForGroup(None) or [], reverse=True):
            job = tracker.getJobInfo(jid)
            if job is None or str(job.status) != "FAILED":
                continue
            for sid in sorted(job.stageIds):
                info = tracker.getStageInfo(sid)
                if info is not None and info.numFailedTasks:
                    return int(sid)
    except Exception:  # best effort: the session may be gone
        return None
    return None


_LOGGED_ERROR = re.compile(r'(?:Exception in thread "[^"]*" )?((?:[\w$]+\.)*[\w$]*(?:Exception|Error)\b.*)')


def _log_error() -> str | None:
    """The last exception Spark's log names (why spark-submit exited), on one line."""
    path = spark_log()
    if path is None or not os.path.exists(path):
        return None
    with open(path, errors="replace") as log:
        found = [m.group(1) for line in log if (m := _LOGGED_ERROR.match(line.rstrip()))]
    return _short_class(found[-1]) if found else None


def _log_note() -> str:
    path = spark_log()
    if path is None:
        return ""
    _jvm_log["keep"] = True
    return f"; Spark's log: {path}"


def _spark_error(exc: BaseException) -> bool:
    """An error of Spark's (py4j's, PySpark's, the JVM's), not one of audiolsh's own."""
    return not isinstance(exc, AudiolshError) and type(exc).__module__.split(".")[0] in ("py4j", "pyspark")


@contextmanager
def command_session(master: str | None = None, *, command: str = "spark",
                    app: str | None = None) -> Iterator[Any]:
    """The session one command runs on: a session already active in this process (a notebook's,
    a test's) is used as it is and left running; one started here is stopped at the end.  A
    Spark job that fails in it is a ``SparkJobError``: "``command`` failed: " and one line."""
    _pyspark()
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    session = running or spark_session(master, app=app or f"audiolsh {command}")
    try:
        yield session
    except Exception as exc:
        if not _spark_error(exc):
            raise
        reason = failure(exc, stage=_failed_stage(session))
        raise SparkJobError(f"{command} failed: {reason}{_log_note()}") from None
    finally:
        if running is None:
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

