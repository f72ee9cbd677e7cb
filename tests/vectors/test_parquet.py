"""Parquet vectors: a list column or a wide table, the id column, and one clear error per
bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiolsh.errors import InputFormatError
from audiolsh.vectors import read_parquet, read_vectors

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def X(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((50, 6)).astype(np.float32)


def test_list_column_with_string_ids(tmp_path: Path, X: np.ndarray) -> None:
    path = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(len(X))],
                             "vec": pa.array(list(X), type=pa.list_(pa.float32())),
                             "label": ["x"] * len(X)}), path)
    batch = read_vectors(path)
    assert batch.keys == [f"r{i}" for i in range(len(X))] and batch.meta is None
    np.testing.assert_array_equal(batch.vectors, X)


def test_fixed_size_list_of_doubles_without_ids(tmp_path: Path, X: np.ndarray) -> None:
    path = tmp_path / "emb.parquet"
    values = X.astype(np.float64).ravel()
    pq.write_table(pa.table({"vec": pa.FixedSizeListArray.from_arrays(values, 6)}), path,
                   row_group_size=16)
    batch = read_parquet(path)
    assert batch.keys == [f"emb:{i}" for i in range(len(X))]
    np.testing.assert_array_equal(batch.vectors, X)


def test_wide_table_with_integer_ids_or_an_id_column_by_name(tmp_path: Path, X: np.ndarray) -> None:
    path = tmp_path / "wide.parquet"
    cols = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    pq.write_table(pa.table({"n": np.arange(len(X)) * 10} | cols), path)
    batch = read_parquet(path)
    assert batch.keys[:2] == ["0", "10"]
    np.testing.assert_array_equal(batch.vectors, X)
    pq.write_table(pa.table(cols | {"name": [f"t{i}" for i in range(len(X))]}), path)
    batch = read_parquet(path, id_column="name")
    assert batch.keys[0] == "t0"
    np.testing.assert_array_equal(batch.vectors, X)


def test_a_folder_of_parquet_files_is_one_table(tmp_path: Path, X: np.ndarray) -> None:
    folder = tmp_path / "table.parquet"
    folder.mkdir()
    for i, part in enumerate(np.array_split(X, 3)):
        pq.write_table(pa.table({"vec": pa.array(list(part), type=pa.list_(pa.float32()))}),
                       folder / f"part-{i}.parquet")
    np.testing.assert_array_equal(read_vectors(folder).vectors, X)


@pytest.mark.parametrize("table, message", [
    ({"id": ["a", "b"], "v": [[1.0, 2.0], [3.0]]}, "unequal length.*row 1"),
    ({"id": ["a", "b"], "v": [[1.0, 2.0], None]}, "null vector in column 'v' at row 1"),
    ({"id": ["a", "b"], "v": [[1.0, None], [1.0, 2.0]]}, "null element"),
    ({"id": ["a", "b"], "v": [[1.0], [2.0]], "w": [[1.0], [2.0]]}, "several list columns"),
    ({"id": ["a", "b"], "x": [1.0, 2.0], "tag": ["p", "q"]}, "'tag' is string, not numeric"),
    ({"id": ["a", None], "x": [1.0, 2.0]}, "null id"),
    ({"id": ["a", "b"], "x": [1.0, float("nan")]}, "non-finite"),
    ({"id": pa.array([], pa.string()), "x": pa.array([], pa.float32())}, "no rows"),
    ({"id": ["a"]}, "no vector columns"),
])
def test_bad_tables_name_the_problem(tmp_path: Path, table: dict, message: str) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(InputFormatError, match=message):
        read_parquet(path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="file not found"):
        read_parquet(tmp_path / "none.parquet")
    bad = tmp_path / "junk.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(InputFormatError, match="not a readable Parquet file"):
        read_parquet(bad)
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(InputFormatError, match="empty file"):
        read_parquet(tmp_path / "empty.parquet")
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"id": ["a"], "x": [1.0]}), good)
    with pytest.raises(InputFormatError, match="no column named 'nope'"):
        read_parquet(good, id_column="nope")
