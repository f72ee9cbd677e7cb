"""`spark vectors add` and `spark query` against their local twins: shards of four formats
added on Spark give the catalogue, segments and answers `vectors add` of the same files gives;
`spark query` prints the records `vectors query` prints; a second add adds nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from audiolsh.cli import cli
from audiolsh.index import Index
from audiolsh.vectors import write_sequence_examples

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.spark

DIM = 16


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seeded clustered vectors as .npy, .csv, Parquet (a list column) and an AudioSet
    TFRecord, and two query files (.npy and a wide Parquet table)."""
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(15)
    centres = rng.standard_normal((12, DIM)) * 3

    def rows(n: int) -> np.ndarray:
        return (centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, DIM))).astype(np.float32)

    out = {name: folder / name for name in ("a.npy", "b.csv", "c.parquet", "d.tfrecord", "q1.npy",
                                            "q2.parquet")}
    np.save(out["a.npy"], rows(700))
    b = rows(500)
    header = "track," + ",".join(f"f{j}" for j in range(DIM))
    out["b.csv"].write_text("\n".join([header] + [f"b{i}," + ",".join(f"{v:.6f}" for v in r)
                                                  for i, r in enumerate(b)]) + "\n")
    c = rows(600)
    pq.write_table(pa.table({"clip": [f"c{i}" for i in range(len(c))],
                             "embedding": pa.FixedSizeListArray.from_arrays(c.ravel(), DIM)}),
                   out["c.parquet"])
    clips = rng.integers(0, 256, (20, 10, DIM))
    write_sequence_examples(out["d.tfrecord"], [
        {"video_id": f"v{i}", "start_time_seconds": 10.0 * i, "end_time_seconds": 10.0 * i + 10,
         "labels": [i % 3], "audio_embedding": clips[i]} for i in range(len(clips))])
    np.save(out["q1.npy"], rows(60))
    q2 = rows(40)
    pq.write_table(pa.table({"qid": [f"q{i}" for i in range(len(q2))]}
                            | {f"f{j}": q2[:, j] for j in range(DIM)}), out["q2.parquet"])
    return out


SHARDS = ("a.npy", "b.csv", "c.parquet", "d.tfrecord")


@pytest.fixture(scope="module")
def local(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local `vectors add` of the shards (one segment per file)."""
    idx = tmp_path_factory.mktemp("local") / "idx"
    code, _, err = run("vectors", "add", *(str(files[s]) for s in SHARDS), "--index", str(idx))
    assert code == 0, err
    return idx


@pytest.fixture(scope="module")
def added(spark: Any, files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The same shards added with `spark vectors add` (merged)."""
    idx = tmp_path_factory.mktemp("spark") / "idx"
    code, _, err = run("spark", "vectors", "add", *(str(files[s]) for s in SHARDS), "--index", str(idx))
    assert code == 0, err
    return idx, err


def _catalogue(index: Index) -> tuple[list[Any], list[Any]]:
    tracks = [(t.id, t.path, t.content_hash, t.n_items, t.kind, t.meta) for t in index.tracks()]
    return tracks, index.items(np.arange(index.storage.n_items() + 10))


def _arrays(index: Index) -> list[dict[str, np.ndarray]]:
    return [index.storage.load_arrays(s.id) for s in index.segments]


def _same_segments(a: Index, b: Index) -> None:
    assert [s.n_items for s in a.segments] == [s.n_items for s in b.segments]
    assert [s.config for s in a.segments] == [s.config for s in b.segments]
    for x, y in zip(_arrays(a), _arrays(b)):
        assert sorted(x) == sorted(y)
        for name in x:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def test_spark_add_is_the_local_add(added: tuple[Path, str], local: Path, files: dict[str, Path],
                                    tmp_path: Path) -> None:
    idx, err = added
    assert "count rows" in err and "build segments" in err  # a line per stage
    for name in SHARDS:
        assert f"{files[name]}: added" in err
    merged = tmp_path / "local-merged"
    shutil.copytree(local, merged)
    with Index.open(idx) as spark_index, Index.open(merged) as local_index:
        assert len(local_index.segments) == len(SHARDS) and len(spark_index.segments) == 1
        assert _catalogue(spark_index) == _catalogue(local_index)
        assert spark_index.config == local_index.config
        local_index.compact(full=True)  # one segment: what the spark add merged to
        _same_segments(spark_index, local_index)
        queries = np.load(files["q1.npy"])
        for exact in (False, True):
            got = spark_index.query(queries, 10, exact=exact)
            want = local_index.query(queries, 10, exact=exact)
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.distances, want.distances)
        first = spark_index.items(np.array([0, 700, 1200, 1800]))  # ids in shard order
        assert [it.key for it in first] == ["a:0", "b0", "c0", "v0@0.0"]
        assert first[3].meta == {"video_id": "v0", "start_time_seconds": 0.0, "second": 0, "labels": [0]}


def test_unmerged_partitions_keep_their_segments(spark: Any, files: dict[str, Path], local: Path,
                                                 tmp_path: Path) -> None:
    from audiolsh.spark.vectors import add_shards

    idx = tmp_path / "idx"
    report = add_shards(spark, str(idx), [files[s] for s in SHARDS], merge=False)
    assert [s.status for s in report.shards] == ["added"] * 4 and report.n_segments == 4
    with Index.open(idx) as spark_index, Index.open(local) as local_index:
        assert _catalogue(spark_index) == _catalogue(local_index)
        _same_segments(spark_index, local_index)
    grouped = tmp_path / "grouped"
    report = add_shards(spark, str(grouped), [files[s] for s in SHARDS], merge=False, partitions=2)
    with Index.open(grouped) as index:
        assert [s.n_items for s in index.segments] == [700 + 500, 600 + 200]


def test_segments_travel_as_staged_files_or_as_bytes_alike(spark: Any, files: dict[str, Path], local: Path,
                                                           tmp_path: Path) -> None:
    from audiolsh.spark.vectors import add_shards

    shards = [files[s] for s in SHARDS]
    staged, shipped = tmp_path / "staged", tmp_path / "shipped"
    own = tmp_path / "own-staging"
    own.mkdir()
    add_shards(spark, str(staged), shards, merge=False, staging=own)
    add_shards(spark, str(shipped), shards, merge=False, staging=None)
    add_shards(spark, str(tmp_path / "auto"), shards, merge=False)
    assert list(own.iterdir()) == []  # the staged segments are removed once attached
    assert sorted(p.name for p in tmp_path.iterdir() if ".staging-" in p.name) == []
    with Index.open(staged) as a, Index.open(shipped) as b, Index.open(tmp_path / "auto") as c, \
            Index.open(local) as want:
        for got in (a, b, c):
            assert _catalogue(got) == _catalogue(want)
            _same_segments(got, want)


def test_a_second_add_adds_nothing(added: tuple[Path, str], files: dict[str, Path]) -> None:
    idx, _ = added
    with Index.open(idx) as index:
        segments, n = [s.id for s in index.segments], len(index)
    code, out, err = run("spark", "vectors", "add", *(str(files[s]) for s in SHARDS), "--index", str(idx),
                         "--format", "json")
    assert code == 0, err
    assert err.count("already indexed, skipped") == len(SHARDS) and "build segments" not in err
    summary = json.loads(out)  # each shard's outcome, in the words of `vectors add --format json`
    assert [(Path(f["path"]).name, f["status"], f["n_vectors"]) for f in summary["files"]] == \
        [(s, "skipped", 0) for s in SHARDS]
    assert summary["n_vectors"] == n and summary["failed"] == 0
    with Index.open(idx) as index:
        assert [s.id for s in index.segments] == segments and len(index) == n
        assert len(index.tracks()) == len(SHARDS)


def test_spark_query_prints_the_records_of_vectors_query(added: tuple[Path, str], files: dict[str, Path],
                                                          tmp_path: Path) -> None:
    idx, _ = added
    queries = [str(files["q1.npy"]), str(files["q2.parquet"])]
    want = ""
    for q in queries:
        code, out, err = run("vectors", "query", q, "--index", str(idx), "-k", "7", "--format", "jsonl")
        assert code == 0, err
        want += out
    code, out, err = run("spark", "query", *queries, "--index", str(idx), "-k", "7")
    assert code == 0, err
    assert out == want
    assert json.loads(out.splitlines()[60])["query"] == "q0"
    code, out, err = run("spark", "query", *queries, "--index", str(idx), "-k", "7", "--format", "json")
    assert code == 0, err
    assert json.loads(out) == [json.loads(line) for line in want.splitlines()]
    table = tmp_path / "answers.parquet"
    code, _, err = run("spark", "query", *queries, "--index", str(idx), "-k", "7", "--out", str(table),
                       "--partitions", "1")
    assert code == 0, err
    assert pq.read_table(table).to_pylist() == [json.loads(line) for line in want.splitlines()]


def test_bad_shards_are_reported_and_the_rest_goes_on(spark: Any, files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    broken = tmp_path / "broken.npy"
    broken.write_bytes(b"not numpy at all")
    idx = tmp_path / "idx"
    code, _, err = run("spark", "vectors", "add", str(broken), str(tmp_path / "missing.csv"),
                       str(files["a.npy"]), "--index", str(idx))
    assert code == 2 and "Traceback" not in err
    assert "broken.npy: not a readable .npy array" in err and "missing.csv: file not found" in err
    with Index.open(idx) as index:
        assert len(index) == 700 and [t.path for t in index.tracks()] == [str(files["a.npy"].resolve())]
    code, out, err = run("spark", "query", str(files["q1.npy"]), str(broken), "--index", str(idx), "-k", "1")
    assert code == 2 and "broken.npy" in err and len(out.splitlines()) == 60


def test_locations_tasks_cannot_reach_are_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run("spark", "query", str(files["q1.npy"]), "--index", "memory://here")
    assert code == 2 and "memory://" in err and "Traceback" not in err
    code, _, err = run("spark", "query", str(files["q1.npy"]), "--index", str(tmp_path / "none"))
    assert code == 2 and "no index here" in err
    code, _, err = run("spark", "query", str(files["q1.npy"]), "--index", str(tmp_path / "x"),
                       "--out", str(tmp_path / "out.csv"))
    assert code == 2 and ".jsonl or .parquet" in err
    code, _, err = run("spark", "vectors", "add", str(files["a.npy"]), "--index",
                       "redis://127.0.0.1:1/0?prefix=nowhere")
    assert code == 2 and "127.0.0.1:1" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_failed_task_is_one_line() -> None:
    from audiolsh.spark.vectors import _brief

    report = ("An error occurred while calling z:org.apache.spark.api.python.PythonRDD.runJob.\n"
              "org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 failed\n"
              "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
              '  File "/x/worker.py", line 1, in main\n'
              "MemoryError: Unable to allocate 8.00 GiB\n"
              "\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException(X.scala:1)\n")
    assert _brief(RuntimeError(report)) == "MemoryError: Unable to allocate 8.00 GiB"
    assert _brief(RuntimeError("java.lang.OutOfMemoryError\nmore")) == "java.lang.OutOfMemoryError"


def test_a_parquet_table_folder_is_its_part_files(spark: Any, files: dict[str, Path], tmp_path: Path) -> None:
    table = tmp_path / "table.parquet"
    table.mkdir()
    X = np.load(files["q1.npy"])
    for i, part in enumerate(np.array_split(X, 2)):
        pq.write_table(pa.table({"vec": pa.array(list(part), type=pa.list_(pa.float32()))}),
                       table / f"part-{i}.parquet")
    (table / "_SUCCESS").write_text("")
    idx = tmp_path / "idx"
    code, _, err = run("spark", "vectors", "add", str(table), "--index", str(idx))
    assert code == 0, err
    parts = [table / "part-0.parquet", table / "part-1.parquet"]
    with Index.open(idx) as index:
        assert [t.path for t in index.tracks()] == [str(p) for p in parts]
        assert index.items(np.array([30]))[0].key == "part-1:0"
    want = "".join(run("vectors", "query", str(p), "--index", str(idx), "-k", "2", "--format", "jsonl")[1]
                   for p in parts)
    code, out, err = run("spark", "query", str(table), "--index", str(idx), "-k", "2")
    assert code == 0, err
    assert out == want and len(out.splitlines()) == len(X)


def test_an_index_in_redis(spark: Any, files: dict[str, Path], redis_url: str) -> None:
    code, _, err = run("spark", "vectors", "add", str(files["a.npy"]), "--index", redis_url)
    assert code == 0, err
    code, want, err = run("vectors", "query", str(files["q1.npy"]), "--index", redis_url, "-k", "3",
                          "--format", "jsonl")
    assert code == 0, err
    code, out, err = run("spark", "query", str(files["q1.npy"]), "--index", redis_url, "-k", "3")
    assert code == 0, err
    assert out == want
