"""audiolsh spark ...: the same builds and searches as the local commands, run on Spark
(``audiolsh[spark]``).  PySpark is imported only when a spark command runs, and each command's
module only when it is resolved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from audiolsh.cli import Lazy, LazyGroup, cli

F = TypeVar("F", bound=Callable[..., Any])


SPARK_COMMANDS = {
    "index": Lazy("audiolsh.cli.spark_index:spark_index_cmd",
                  "Index audio files, folders and @lists of them on Spark: the library `audiolsh index`"
                  " makes of them."),
    "join": Lazy("audiolsh.cli.spark_join:spark_join",
                 "Every item's nearest other items in the index (a similarity self-join), on Spark."),
    "overlaps": Lazy("audiolsh.cli.spark_overlaps:spark_overlaps_cmd",
                     "Pairs of tracks that share material, found on Spark: the records `audiolsh overlaps`"
                     " gives, in its order and formats."),
    "query": Lazy("audiolsh.cli.spark_vectors:spark_query",
                  "For every row of QUERIES (files, or folders of .parquet files: a Parquet table), the k"
                  " nearest indexed vectors, searched in Spark tasks."),
    "vectors": Lazy("audiolsh.cli.spark_vectors:spark_vectors", "Vector indexes built on Spark."),
}


@cli.group(cls=LazyGroup, lazy=SPARK_COMMANDS)
def spark() -> None:
    """Build, query and join indexes on Spark (local[N], yarn, k8s://..., spark://...)."""


def master_option(fn: F) -> F:
    return click.option(
        "--master", default=None, metavar="URL",
        help="Spark master: local[2] (the default, or $AUDIOLSH_SPARK_MASTER), yarn, k8s://...,"
             " spark://host:7077.")(fn)
