"""spark overlaps: the planted passage with its offsets in both tracks, the duplicate, nothing
between unrelated tracks, and exactly the local search's overlaps (records, order, formats)
in any partitioning; a task that fails is one line and exit status 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audiolsh.errors import ParameterError
from audiolsh.library import Library
from audiolsh.query.overlaps import OverlapSearch, library_overlaps

pytestmark = pytest.mark.spark



def _names(o: Any) -> frozenset[str]:
    return frozenset({Path(o.path_a).stem, Path(o.path_b).stem})


def test_the_planted_passage_and_exactly_the_local_overlaps(spark: Any, planted_library: Any) -> None:
    from audiolsh.spark.overlaps import spark_overlaps

    with Library.open(planted_library.path, readonly=True) as lib:
        local = library_overlaps(lib)
        lines: list[str] = []
        found = spark_overlaps(spark, lib, say=lines.append)
        assert found == local  # the same records, in the same order
        assert spark_overlaps(spark, lib, partitions=3) == local  # whatever the partitioning
    assert [_names(o) for o in found] == [{"c", "c_copy"}, {"a", "b"}]  # and nothing else
    passage = found[1]
    in_a, in_b = ((passage.offset_a_s, passage.offset_b_s) if Path(passage.path_a).stem == "a"
                  else (passage.offset_b_s, passage.offset_a_s))
    planted = planted_library
    assert in_a == pytest.approx(planted.from_s, abs=0.2) and in_b == pytest.approx(planted.into_s, abs=0.2)
    assert passage.length_s == pytest.approx(planted.length_s, abs=1.0) and passage.kind == "passage"
    assert found[0].kind == "duplicate"
    assert len(lines) == 1 and "votes between tracks" in lines[0]


def test_min_seconds_and_threshold_as_the_local_search(spark: Any, planted_library: Any) -> None:
    from audiolsh.spark.overlaps import spark_overlaps

    with Library.open(planted_library.path, readonly=True) as lib:
        found = spark_overlaps(spark, lib, min_seconds=12.0, threshold=0.99, partitions=2)
        assert found == library_overlaps(lib, min_seconds=12.0, threshold=0.99)
    assert [_names(o) for o in found] == [{"c", "c_copy"}]


def test_cli_prints_what_overlaps_prints(spark: Any, planted_library: Any) -> None:
    from audiolsh.cli import cli

    where = str(planted_library.path)
    for fmt in ("jsonl", "csv"):
        local = CliRunner().invoke(cli, ["overlaps", "--index", where, "--format", fmt])
        on_spark = CliRunner().invoke(cli, ["spark", "overlaps", "--index", where, "--format", fmt,
                                            "--partitions", "3"])
        assert local.exit_code == 0 and on_spark.exit_code == 0, on_spark.output
        assert on_spark.stdout == local.stdout and on_spark.stdout.count("\n") == 2 + (fmt == "csv")
    assert "2 shared stretches among 5 tracks" in on_spark.stderr
    assert any(line.startswith("stage ") for line in on_spark.stderr.splitlines())


def test_a_task_that_fails_is_one_line_and_exit_2(spark: Any, planted_library: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver plans a search its tasks refuse: the task's exception, in one line."""
    from audiolsh.cli import cli
    from audiolsh.spark import session

    monkeypatch.setitem(session._jvm_log, "keep", False)  # the message keeps Spark's log: not after the test
    plan = OverlapSearch.of
    monkeypatch.setattr(OverlapSearch, "of", classmethod(
        lambda cls, lib, **kw: dataclasses.replace(plan(lib, **kw), max_per_hash=1)))
    result = CliRunner().invoke(cli, ["spark", "overlaps", "--index", str(planted_library.path)])
    assert result.exit_code == 2 and not result.stdout
    errors = [line for line in result.stderr.splitlines() if not line.startswith("stage ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: spark overlaps failed: task raised ParameterError: max_per_hash")
    assert "(in stage " in errors[0] and "Traceback" not in result.stderr


def test_a_library_in_memory_is_refused(spark: Any) -> None:
    from audiolsh.spark.overlaps import spark_overlaps

    with Library.create(None, modes=("fingerprint",)) as lib, pytest.raises(ParameterError, match="memory"):
        spark_overlaps(spark, lib)


def test_a_library_that_changes_under_the_tasks_is_refused(spark: Any, planted_library: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The tasks read the fingerprints of the version the driver planned from, or stop."""
    from audiolsh.spark.overlaps import spark_overlaps

    with Library.open(planted_library.path, readonly=True) as lib:
        fp = lib.fingerprint
        assert fp is not None
        planned = fp.storage.version() + 1  # a commit the driver saw and the tasks do not
        monkeypatch.setattr(fp.storage, "version", lambda: planned)
        with pytest.raises(Exception, match="the library changed while overlaps ran"):
            spark_overlaps(spark, lib, partitions=2)
