"""One Spark session for the Spark tests: local[2], UI off, the driver on 127.0.0.1; stopped
at the end of the session.  Functions a test sends to the tasks are defined inside the test
(pickled by value: the workers cannot import test modules)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from audiolsh.spark import spark_session, stop_session

    session = spark_session("local[2]", app="audiolsh-tests")
    try:
        yield session
    finally:
        stop_session(session)
