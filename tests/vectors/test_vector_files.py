"""npy and CSV/TSV readers, VectorBatch validation and extension dispatch."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiolsh.errors import InputFormatError, ParameterError
from audiolsh.vectors import (
    SUPPORTED_EXTENSIONS,
    VectorBatch,
    read_csv,
    read_npy,
    read_vectors,
    write_sequence_examples,
)

# VectorBatch -------------------------------------------------------------------------------


def test_batch_converts_and_describes() -> None:
    data = np.arange(6, dtype=np.float64).reshape(3, 2)[:, ::-1]
    batch = VectorBatch(keys=["a", "b", "c"], vectors=data, meta=None, source="x.npy")
    assert len(batch) == 3
    assert batch.dim == 2
    assert batch.vectors.dtype == np.float32
    assert batch.vectors.flags.c_contiguous
    assert "n=3" in repr(batch)


@pytest.mark.parametrize(
    ("keys", "vectors", "meta", "message"),
    [
        (["a"], np.zeros((2, 3)), None, "1 keys for 2 vectors"),
        (["a", "b"], np.zeros((2, 3)), [{}], "1 metadata entries"),
        (["a"], np.zeros(3), None, "2-D"),
        (["a"], np.array([["x"]]), None, "numeric"),
        (["a", "b"], np.array([[1.0, 2.0], [np.inf, 0.0]]), None, "row 1 column 0"),
    ],
)
def test_batch_validation(keys: list, vectors: np.ndarray, meta: list | None, message: str) -> None:
    with pytest.raises(InputFormatError, match=message) as info:
        VectorBatch(keys=keys, vectors=vectors, meta=meta, source="src.bin")
    assert info.value.path == "src.bin"


# npy ---------------------------------------------------------------------------------------


def test_npy_two_d(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    data = np.arange(12, dtype=np.int16).reshape(4, 3)
    np.save(path, data)
    batch = read_npy(path)
    assert batch.keys == ["emb:0", "emb:1", "emb:2", "emb:3"]
    assert batch.vectors.dtype == np.float32
    assert batch.vectors.flags.writeable
    np.testing.assert_array_equal(batch.vectors, data)
    assert batch.meta is None
    assert batch.source == str(path)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(5, np.float32), "2-D"),
        (np.zeros((2, 3, 4), np.float32), "2-D"),
        (np.zeros((0, 4), np.float32), "empty array"),
        (np.array([["a", "b"]]), "numeric"),
        (np.zeros((2, 2), np.complex64), "numeric"),
    ],
)
def test_npy_bad_shapes_and_dtypes(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InputFormatError, match=message):
        read_npy(path)


def test_npy_object_array_refused_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([[1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(InputFormatError, match=r"not a readable \.npy") as info:
        read_npy(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("content", "message"), [(b"", "empty file"), (b"hello", "not a")])
def test_npy_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junk.npy"
    path.write_bytes(content)
    with pytest.raises(InputFormatError, match=message):
        read_npy(path)


def test_npy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="cannot read"):
        read_npy(tmp_path / "none.npy")


# CSV ---------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_header_id_numeric(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "track_id,f1,f2,f3\n2,0.5,-1e-3,7\n5, 1.25 ,3E2,-0\n")
    batch = read_csv(path)
    assert batch.keys == ["2", "5"]
    np.testing.assert_array_equal(
        batch.vectors, np.array([[0.5, -1e-3, 7], [1.25, 300, 0]], dtype=np.float32)
    )
    assert batch.meta is None


def test_csv_named_id_column_tsv_crlf_blank_lines_bom(tmp_path: Path) -> None:
    text = "\ufeffa\tname\tb\r\n1\tx y\t2\r\n\r\n3\tz\t4\r\n\n"
    path = _write(tmp_path / "t.tsv", text)
    batch = read_csv(path, id_column="name")
    assert batch.keys == ["x y", "z"]
    np.testing.assert_array_equal(batch.vectors, [[1, 2], [3, 4]])


def test_csv_without_trailing_newline_and_nan_free_specials(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "id,v\na,+.5\nb,5.")
    np.testing.assert_array_equal(read_csv(path).vectors, [[0.5], [5.0]])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a,1,2\nb,1,oops\n", r"non-numeric cell 'oops' at row 3 column 3 \('f2'\)"),
        ("a,1,2\nb,,2\n", r"non-numeric cell '' at row 3 column 2 \('f1'\)"),
        ("a,1,2\n\nb,1_0,2\n", r"non-numeric cell '1_0' at row 4 column 2"),
        ("a,1,2\nb,1e,2\n", r"non-numeric cell '1e' at row 3 column 2"),
        ("a,1,2\nb,1\n", r"ragged row 3: 2 fields, the header has 3"),
        ("a,1,2,3\n", r"ragged row 2: 4 fields, the header has 3"),
        ("a,1,nan\n", r"non-finite value nan at row 2 column 3 \('f2'\)"),
        ("a,1,-inf\n", r"non-finite value -inf at row 2 column 3"),
        ("a,1,1e39\n", r"non-finite value inf at row 2 column 3"),
    ],
)
def test_csv_bad_rows(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path / "t.csv", "id,f1,f2\n" + body)
    with pytest.raises(InputFormatError, match=message) as info:
        read_csv(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("id,f1\n", "no data rows"),
        ("id,f1", "no data rows"),
        ("only_one_column\n1\n", "bad header"),
    ],
)
def test_csv_empty_or_headerless(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputFormatError, match=message):
        read_csv(_write(tmp_path / "e.csv", text))


def test_csv_unknown_id_column_and_bad_parameter(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", "id,f1\na,1\n")
    with pytest.raises(InputFormatError, match="no column named 'track'"):
        read_csv(path, id_column="track")
    with pytest.raises(ParameterError):
        read_csv(path, id_column=" ")


def test_csv_quoted_fields_use_loadtxt_path(tmp_path: Path) -> None:
    text = 'title,"f,1",f2\n"Song, The",1.5,"2"\nplain,3,4\n'
    batch = read_csv(_write(tmp_path / "q.csv", text))
    assert batch.keys == ["Song, The", "plain"]
    np.testing.assert_array_equal(batch.vectors, [[1.5, 2], [3, 4]])
    bad = _write(tmp_path / "qbad.csv", 'title,f1\n"a",1\n"b",x\n')
    with pytest.raises(InputFormatError, match=r"non-numeric cell 'x' at row 3 column 2"):
        read_csv(bad)
    ragged = _write(tmp_path / "qrag.csv", 'title,f1\n"a",1,2\n')
    with pytest.raises(InputFormatError, match="ragged row 2"):
        read_csv(ragged)


def test_csv_wide_table_matches_loadtxt(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((300, 40)) * 10.0 ** rng.integers(-12, 12, (300, 40))
    path = tmp_path / "wide.csv"
    with path.open("w") as handle:
        handle.write("id," + ",".join(f"c{i}" for i in range(40)) + "\n")
        for r, row in enumerate(data):
            fmt = ["%.18e", "%.9g", "%r", "%.3f"][r % 4]
            cells = [fmt % v if fmt != "%r" else repr(float(v)) for v in row]
            handle.write(f"row{r}," + ",".join(cells) + "\n")
    expected = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, 41), dtype=np.float32)
    batch = read_csv(path)
    np.testing.assert_array_equal(batch.vectors, expected)
    assert batch.keys[299] == "row299"


def _float32_midpoints() -> st.SearchStrategy[str]:
    """Decimal strings at or next to the midpoint between two adjacent float32 values."""

    def build(value: float, nudge: int, digits: int) -> str:
        f = np.float32(value)
        mid = (Decimal(float(f)) + Decimal(float(np.nextafter(f, np.float32(np.inf))))) / 2
        mid += Decimal(nudge) * Decimal(10) ** (mid.adjusted() - digits)
        return f"{mid:.{digits}e}" if nudge else str(mid)

    finite = st.floats(min_value=2.0**-100, max_value=2.0**100, width=32)
    return st.builds(build, finite, st.integers(-3, 3), st.integers(8, 30))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, min_value=-3e38, max_value=3e38).map(repr),
            st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.18e}"),
            st.from_regex(r"\A[-+]?(\d{1,25}(\.\d{0,25})?|\.\d{1,25})([eE][-+]?\d{1,2})?\Z"),
            _float32_midpoints(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_csv_fast_parser_is_exact(tmp_path: Path, cells: list[str]) -> None:
    path = tmp_path / "h.csv"
    path.write_text("id,v\n" + "".join(f"k{i},{c}\n" for i, c in enumerate(cells)))
    with np.errstate(over="ignore"):
        expected = np.array([np.float32(float(c)) for c in cells], dtype=np.float32)
    if not np.isfinite(expected).all():
        with pytest.raises(InputFormatError, match="non-finite"):
            read_csv(path)
        return
    got = read_csv(path).vectors[:, 0]
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


# Dispatch ----------------------------------------------------------------------------------


def test_dispatch_by_extension(tmp_path: Path) -> None:
    npy = tmp_path / "a.npy"
    np.save(npy, np.ones((2, 3), np.float32))
    assert read_vectors(npy).keys == ["a:0", "a:1"]
    csv = _write(tmp_path / "b.CSV", "id,x\nq,1\n")
    assert read_vectors(csv).keys == ["q"]
    tsv = _write(tmp_path / "c.tsv", "x\tid\n1\tq\n")
    assert read_vectors(tsv, id_column="id").keys == ["q"]
    tfr = tmp_path / "d.tfr"
    write_sequence_examples(tfr, [{"video_id": "v", "audio_embedding": np.ones((2, 4), np.uint8)}])
    assert read_vectors(tfr).keys == ["v@0.0", "v@1.0"]
    assert read_vectors(tfr, per_second=False).keys == ["v"]


@pytest.mark.parametrize("name", ["vectors.txt", "vectors", "vectors.npz", "x.feather"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, "1,2\n")
    with pytest.raises(InputFormatError, match="unsupported file extension") as info:
        read_vectors(path)
    for ext in SUPPORTED_EXTENSIONS:
        assert ext in str(info.value)
