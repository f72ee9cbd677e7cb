"""Segments built anywhere: ids reserved up front, ``build_segment`` in another process, one
atomic ``attach``, and a merge of many segments that equals one build of all rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.index import Index, IndexConfig, ItemRows, build_segment
from audiolsh.storage import MemoryStorage

METRICS = ["cosine", "euclidean", "jaccard"]

BUILD = """
import json, sys
import numpy as np
from audiolsh.index import IndexConfig, build_segment
config, ids, rows, out = json.loads(sys.argv[1]), np.load(sys.argv[2]), np.load(sys.argv[3]), sys.argv[4]
built = build_segment(IndexConfig(**config), rows, ids)
np.savez(out, **built.arrays)
print(json.dumps(built.info.config))
"""


def _data(metric: str, seed: int, n: int) -> Any:
    rng = np.random.default_rng(seed)
    if metric == "jaccard":
        return [rng.choice(10**6, size=int(rng.integers(5, 30)), replace=False).tolist() for _ in range(n)]
    return rng.standard_normal((n, 12)).astype(np.float32)


def _take(data: Any, sel: slice) -> Any:
    return data[sel]


def _items(ids: np.ndarray, tag: str) -> ItemRows:
    n = len(ids)
    return ItemRows(ids, [f"{tag}{i}" for i in range(n)], np.full(n, -2, np.int64),
                    np.arange(n, dtype=np.float64), [None] * n)


@pytest.mark.parametrize("metric", METRICS)
def test_a_merge_of_attached_parts_is_one_build(tmp_path: Path, metric: str) -> None:
    data = _data(metric, 1, 600)
    one = Index.create(tmp_path / "one", metric=metric, n_tables=4)
    one.add(data, keys=[str(i) for i in range(600)])
    parts = Index.create(tmp_path / "parts", metric=metric, n_tables=4)
    parts.auto_compact = False
    builds = []
    for start in range(0, 600, 100):  # six parts, ids reserved before each build
        ids = parts.reserve_ids(100)
        built = build_segment(parts.config, _take(data, slice(start, start + 100)), ids)
        built.items = ItemRows(ids, [str(i) for i in ids.tolist()], np.full(100, -1, np.int64),
                               np.full(100, np.nan), [None] * 100)
        builds.append(built)
    parts.attach(builds[:3])
    parts.attach(builds[3:])
    assert len(parts.info()["segments"]) == 6 and len(parts) == 600  # auto-compaction was off
    parts.compact(full=True)
    assert len(parts.info()["segments"]) == 1
    a, b = one._segments[0], parts._segments[0]
    assert np.array_equal(a.ids, b.ids)
    for key, table in a.searcher.tables_.arrays().items():
        assert np.array_equal(table, b.searcher.tables_.arrays()[key]), key
    queries = _take(data, slice(0, 20))
    ra, rb = one.query(queries, k=5), parts.query(queries, k=5)
    assert np.array_equal(ra.ids, rb.ids) and np.array_equal(ra.distances, rb.distances)
    assert [h.key for h in parts.hits(rb)[3]] == [h.key for h in one.hits(ra)[3]]


def test_a_segment_built_in_another_process_attaches_with_its_track(tmp_path: Path) -> None:
    X = _data("cosine", 2, 300)
    index = Index.create(tmp_path / "idx", metric="cosine", n_tables=4)
    ids = index.reserve_ids(len(X))
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "rows.npy", X)
    config = {k: v for k, v in vars(index.config).items()}
    run = subprocess.run([sys.executable, "-c", BUILD, json.dumps(config), str(tmp_path / "ids.npy"),
                          str(tmp_path / "rows.npy"), str(tmp_path / "seg.npz")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    local = build_segment(index.config, X, ids)
    with np.load(tmp_path / "seg.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays.keys() == local.arrays.keys()
    assert all(np.array_equal(arrays[k], local.arrays[k]) for k in arrays)  # pure: the same bits
    assert json.loads(run.stdout) == local.info.config
    local.arrays = arrays
    local.tracks = [{"path": "far.wav", "content_hash": "far", "duration_s": 30.0, "kind": "audio",
                     "meta": None}]
    local.items = _items(ids, "far-")
    [[tid]] = index.attach([local])
    assert index.tracks()[0].n_items == 300 and index.tracks()[0].id == tid
    hit = index.hits(index.query(X[7:8], k=1))[0][0]
    assert (hit.id, hit.key, hit.track_id, hit.offset_s) == (ids[7], "far-7", tid, 7.0)
    # An attach is one transaction: a duplicate track rolls every build of it back.
    again = build_segment(index.config, X[:10], index.reserve_ids(10))
    again.tracks = [{"path": "dup.wav", "content_hash": "far", "duration_s": 1.0, "kind": "audio",
                     "meta": None}]
    with pytest.raises(ParameterError, match="already indexed"):
        index.attach([again])
    assert len(index) == 300 and len(index.info()["segments"]) == 1
    with pytest.raises(ParameterError, match="already attached"):
        index.attach([local])


def test_builds_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    index = Index.create(None, metric="cosine", dim=12)
    with pytest.raises(ParameterError, match="dimension 5"):
        index.attach([build_segment(IndexConfig(metric="cosine"), np.ones((4, 5)), np.arange(4))])
    with pytest.raises(ParameterError, match="euclidean segment"):
        index.attach([build_segment(IndexConfig(metric="euclidean"), np.ones((4, 12)), np.arange(4))])
    with pytest.raises(ParameterError, match="3 ids for 4 rows"):
        build_segment(index.config, np.ones((4, 12)), np.arange(3))


def test_an_index_at_a_memory_location_is_shared_by_its_handles() -> None:
    X = _data("euclidean", 3, 200)
    try:
        writer = Index.create("memory://index-test", metric="euclidean")
        writer.add(X)
        reader = Index.open("memory://index-test", readonly=True)
        assert len(reader) == 200
        writer.add(X[:10] + 100)
        assert len(reader) == 210  # picks up the other handle's commit
        assert reader.query(X[5:6], k=1).ids[0, 0] == 5
        with pytest.raises(Exception, match="already exists"):
            Index.create("memory://index-test")
    finally:
        MemoryStorage.forget("index-test")


def test_item_look_ups_come_from_the_segments_and_follow_removals(tmp_path: Path) -> None:
    X = _data("cosine", 4, 200)
    index = Index.create(tmp_path / "idx", metric="cosine")
    with index.session() as s:
        a = s.add_track("a.wav", content_hash="a")
        s.add(X[:120], [f"a{i}" for i in range(120)], track=a, offsets_s=np.arange(120) * 0.5)
        b = s.add_track("b.wav", content_hash="b")
        s.add(X[120:], [f"b{i}" for i in range(80)], track=b, offsets_s=np.arange(80) * 0.5)
    ids = np.arange(200)
    expected = index.storage.item_arrays(ids)
    calls: list[int] = []
    real = index.storage.item_arrays
    index.storage.item_arrays = lambda q: (calls.append(len(q)), real(q))[1]  # type: ignore[method-assign]
    got = index.item_arrays(ids[::-1])
    assert np.array_equal(got[0], expected[0][::-1]) and np.array_equal(got[1], expected[1][::-1])
    index.item_arrays(ids)
    index.track_items(np.array([1, 2]))
    assert calls == [200]  # one catalogue read per segment, then none per query
    index.remove(["a3", "b5"])
    tracks, offsets = index.item_arrays(np.array([3, 125, 4]))
    assert tracks.tolist() == [-1, -1, 1] and np.isnan(offsets[:2]).all() and offsets[2] == 2.0
    got_ids, got_tracks, _ = index.track_items(np.array([2]))
    assert 125 not in got_ids and len(got_ids) == 79 and (got_tracks == 2).all()
    both = np.array([1, 2])
    assert np.array_equal(index.track_items(both)[0], index.storage.track_items(both)[0])
