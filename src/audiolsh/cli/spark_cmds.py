"""audiolsh spark ...: the same builds and searches as the local commands, run on Spark
(``audiolsh[spark]``).  PySpark is imported only when a spark command runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from audiolsh.cli import cli

F = TypeVar("F", bound=Callable[..., Any])


@cli.group()
def spark() -> None:
    """Build, query and join indexes on Spark (local[N], yarn, k8s://..., spark://...)."""


def master_option(fn: F) -> F:
    return click.option(
        "--master", default=None, metavar="URL",
        help="Spark master: local[2] (the default, or $AUDIOLSH_SPARK_MASTER), yarn, k8s://...,"
             " spark://host:7077.")(fn)
