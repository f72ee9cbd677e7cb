"""A segment build as bytes (``index.transfer``): the same build back, never pickled."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from audiolsh.errors import IndexFormatError
from audiolsh.index import Index, IndexConfig, ItemRows, build_segment
from audiolsh.index.transfer import build_from_bytes, build_from_file, build_to_bytes, build_to_file


def _build(metric: str, rng: np.random.Generator):
    data = ([rng.choice(1000, 8, replace=False).tolist() for _ in range(40)] if metric == "jaccard"
            else rng.standard_normal((40, 5)).astype(np.float32))
    ids = np.arange(100, 140, dtype=np.int64)
    build = build_segment(IndexConfig(metric=metric, n_tables=3), data, ids)
    build.tracks = [{"path": "/x/a.npy", "content_hash": "ab" * 20, "duration_s": None, "kind": "vectors",
                     "meta": {"dim": 5, "z": 1, "a": 2}, "n_items": None}]
    build.items = ItemRows(ids, [f"k{i}" for i in range(40)], np.full(40, -2, np.int64), np.full(40, np.nan),
                           [{"labels": [1, 2], "b": 0, "a": None}] + [None] * 39)
    return build


def _through(how: str, build, folder: Path):  # type: ignore[no-untyped-def]
    if how == "bytes":
        return build_from_bytes(build_to_bytes(build))
    path = folder / "seg.build"
    assert build_to_file(build, path) == len(build_to_bytes(build))
    back = build_from_file(path)
    path.unlink()  # the views stay readable, as the driver deletes the staged file
    assert all(not a.flags.writeable for a in back.arrays.values())  # views of the file, not copies
    return back


@pytest.mark.parametrize("how", ["bytes", "file"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean", "jaccard"])
def test_round_trip_gives_the_same_build(metric: str, how: str, rng: np.random.Generator,
                                         tmp_path: Path) -> None:
    build = _build(metric, rng)
    back = _through(how, build, tmp_path)
    assert back.info == build.info and back.tracks == build.tracks
    assert sorted(back.arrays) == sorted(build.arrays)
    for name, a in build.arrays.items():
        assert back.arrays[name].dtype == a.dtype
        np.testing.assert_array_equal(back.arrays[name], a)
    assert back.items is not None and build.items is not None
    np.testing.assert_array_equal(back.items.ids, build.items.ids)
    np.testing.assert_array_equal(back.items.track_rows, build.items.track_rows)
    np.testing.assert_array_equal(back.items.offsets_s, build.items.offsets_s)
    assert back.items.keys == build.items.keys and back.items.metas == build.items.metas
    assert list(back.items.metas[0]) == ["labels", "b", "a"]  # key order kept
    with Index.create(None, metric=metric, n_tables=3) as index:
        index.reserve_ids(140)
        index.attach([back])
        assert len(index) == 40 and index.items(np.array([100]))[0].key == "k0"


def test_bad_bytes_and_newer_versions_are_refused(rng: np.random.Generator) -> None:
    with pytest.raises(IndexFormatError, match="unreadable segment build"):
        build_from_bytes(b"not a zip")
    data = build_to_bytes(_build("cosine", rng))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as z, zipfile.ZipFile(out, "w") as w:
        for name in z.namelist():
            content = z.read(name)
            if name == "build.json":
                doc = json.loads(content)
                doc["format_version"] = 99
                content = json.dumps(doc).encode()
            w.writestr(name, content)
    with pytest.raises(IndexFormatError, match="newer than this audiolsh reads"):
        build_from_bytes(out.getvalue())


def test_object_arrays_are_never_pickled(rng: np.random.Generator) -> None:
    build = _build("cosine", rng)
    build.arrays["odd"] = np.array([{"a": 1}], dtype=object)
    with pytest.raises(ValueError, match="pickle"):
        build_to_bytes(build)


def test_bad_files_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    bad = tmp_path / "bad.build"
    bad.write_bytes(b"not a zip")
    with pytest.raises(IndexFormatError, match=r"bad\.build: unreadable segment build"):
        build_from_file(bad)
    data = build_to_bytes(_build("cosine", rng))
    cut = tmp_path / "cut.build"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="unreadable segment build"):
        build_from_file(cut)
    deflated = tmp_path / "deflated.build"  # a member that is not stored cannot be a view
    with zipfile.ZipFile(io.BytesIO(data)) as z, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as w:
        for name in z.namelist():
            w.writestr(name, z.read(name))
    with pytest.raises(IndexFormatError, match="not a stored zip member"):
        build_from_file(deflated)
