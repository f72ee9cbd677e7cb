"""audiolsh on Spark (``audiolsh[spark]``): Spark only orchestrates; the project's own readers,
extraction, hashing and search kernels run inside the tasks, so a distributed build gives the
index a local one gives."""

from audiolsh.spark.index import spark_index
from audiolsh.spark.session import command_session, spark_session, stop_session

__all__ = ["command_session", "spark_index", "spark_session", "stop_session"]
