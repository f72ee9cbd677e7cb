"""Index on disk: reopening, compaction, rebuilds, read-only mode and format checks."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.index import Index
from audiolsh.search import BruteForce

METRICS = ["cosine", "euclidean", "jaccard"]
DIM = 12


def make_data(metric: str, seed: int, n: int) -> Any:
    rng = np.random.default_rng(seed)
    if metric == "jaccard":
        base = [rng.choice(10**6, 30, replace=False) for _ in range(max(1, n // 5))]
        out = []
        for i in range(n):
            keep = rng.permutation(base[i % len(base)])[:25]
            out.append(np.concatenate([keep, rng.integers(10**6, 10**7, 5)]).tolist())
        return out
    centres = rng.standard_normal((max(1, n // 10), DIM)) * 3
    X = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, DIM))
    return X.astype(np.float32)


def take(data: Any, rows: Any) -> Any:
    if isinstance(data, list):
        return [data[i] for i in rows]
    return data[np.asarray(rows)]


def concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], list):
        return [s for p in parts for s in p]
    return np.concatenate(parts)


def assert_same_neighbours(got: Any, want_ids: np.ndarray, want_d: np.ndarray) -> None:
    """Equal distances; equal ids except for the order (or choice) among tied last places."""
    np.testing.assert_allclose(got.distances, want_d, atol=1e-5)
    for gi, wi, wd in zip(got.ids, want_ids, want_d):
        clear = wd < wd[-1] - 1e-5
        assert set(gi[clear].tolist()) == set(wi[clear].tolist())


def _segment_dirs(path: Path) -> set[str]:
    return {p.name for p in (path / "segments").iterdir()}


@pytest.mark.parametrize("variant", [*METRICS, "cosine-positive"])
def test_reopening_changes_no_answer(variant: str, tmp_path: Path) -> None:
    metric = variant.split("-")[0]
    path = tmp_path / "idx"
    index = Index.create(path, metric=metric, n_tables=6, seed=5)
    parts = [make_data(metric, s, n) for s, n in ((1, 400), (2, 150), (3, 60))]
    if variant == "cosine-positive":  # non-negative rows: centred hyperplanes, stored mean
        parts = [np.abs(p) for p in parts]
    for i, p in enumerate(parts):
        index.add(p, keys=[f"{i}-{j}" for j in range(len(p))], meta=[{"j": j} for j in range(len(p))])
    queries = concat([take(parts[0], range(0, 400, 13)), make_data(metric, 99, 25)])
    before = index.query(queries, k=7)
    before_exact = index.query(queries, k=7, exact=True)
    before_probes = index.query(queries, k=7, n_probes=3)
    info = index.info()
    if variant == "cosine-positive":
        assert all(s.config["family"]["center"] for s in index.segments)
        assert all(s.config["family"]["mean"] is not None for s in index.segments)
    index.close()

    for readonly in (False, True):
        again = Index.open(path, readonly=readonly)
        assert asdict(again.config) == info["config"]
        assert len(again) == 610
        assert [s["id"] for s in again.info()["segments"]] == [s["id"] for s in info["segments"]]
        for got, want in (
            (again.query(queries, k=7), before),
            (again.query(queries, k=7, exact=True), before_exact),
            (again.query(queries, k=7, n_probes=3), before_probes),
        ):
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.distances, want.distances)
            np.testing.assert_array_equal(got.n_candidates, want.n_candidates)
        hit = again.hits(again.query(take(parts[1], [4]), k=1))[0][0]
        assert (hit.key, hit.meta) == ("1-4", {"j": 4})
        again.close()


@pytest.mark.parametrize("metric", METRICS)
def test_compaction_keeps_every_answer(metric: str, tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index = Index.create(path, metric=metric, max_segments=3, seed=1)
    batches = [make_data(metric, 10 + b, 40) for b in range(9)]
    ids = []
    for b, batch in enumerate(batches):
        ids.append(index.add(batch, keys=[f"{b}-{i}" for i in range(40)]))
        assert len(index.segments) <= 3
        assert len(index) == 40 * (b + 1)
    ids_all = np.concatenate(ids)
    data = concat(batches)
    # Every row is still found as its own nearest neighbour, under its own id.
    res = index.query(data, k=3)
    np.testing.assert_array_equal(res.ids[:, 0], ids_all)
    # Exact answers are those of brute force over everything that was added.
    queries = take(data, range(3, 360, 18))
    exact = index.query(queries, k=10, exact=True)
    truth = BruteForce(metric).fit(data).search(queries, 10)
    assert_same_neighbours(exact, ids_all[truth.ids], truth.distances)

    # A forced full compaction changes none of that either.
    index.compact(full=True)
    assert len(index.segments) == 1
    assert len(index) == 360
    np.testing.assert_array_equal(index.query(data, k=3).ids[:, 0], ids_all)
    assert_same_neighbours(index.query(queries, k=10, exact=True), exact.ids, exact.distances)
    # Dropped segments lose their folders at the next write.
    with index.storage.write():
        pass
    assert _segment_dirs(path) == {s.id for s in index.segments}
    index.close()


def test_compaction_in_memory(tmp_path: Path) -> None:
    index = Index.create(None, metric="cosine", max_segments=2)
    batches = [make_data("cosine", b, 30) for b in range(6)]
    ids = np.concatenate([index.add(b) for b in batches])
    assert len(index.segments) <= 2
    np.testing.assert_array_equal(index.query(concat(batches), k=1).ids[:, 0], ids)


@pytest.mark.parametrize("metric", METRICS)
def test_set_params_rebuilds_and_still_answers(metric: str, tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index = Index.create(path, metric=metric, n_tables=8)
    data = make_data(metric, 4, 300)
    ids = index.add(data)
    old_segments = [s.id for s in index.segments]

    index.set_params(n_probes=50)  # query-time only: no rebuild
    assert [s.id for s in index.segments] == old_segments
    assert index.config.n_probes == 50

    change = {"threshold": 0.7} if metric == "jaccard" else {"n_tables": 3}
    index.set_params(**change)
    segs = index.segments
    assert [s.id for s in segs] != old_segments
    family = segs[0].config["family"]
    if metric == "jaccard":
        assert family["threshold"] == 0.7
    else:
        assert family["n_tables"] == 3
    assert len(index) == 300
    np.testing.assert_array_equal(index.query(data, k=1).ids[:, 0], ids)
    index.close()

    reopened = Index.open(path)
    for name, value in {**change, "n_probes": 50}.items():
        assert getattr(reopened.config, name) == value
    np.testing.assert_array_equal(reopened.query(take(data, range(20)), k=1).ids[:, 0], ids[:20])
    reopened.close()


def test_readonly_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    writer = Index.create(path, metric="euclidean")
    data = make_data("euclidean", 1, 100)
    writer.add(data, keys=[str(i) for i in range(100)])
    writer.close()
    ro = Index.open(path, readonly=True)
    before = ro.query(data[:10], k=3)
    for attempt in (
        lambda: ro.add(data[:2]),
        lambda: ro.remove(["1"]),
        lambda: ro.compact(full=True),
        lambda: ro.set_params(n_tables=2),
        lambda: ro.remove_track(1),
    ):
        with pytest.raises(IndexFormatError, match="read-only"):
            attempt()
    with pytest.raises(IndexFormatError), ro.session() as s:
        s.add(data[:2])
    assert len(ro) == 100
    assert "1" in ro
    after = ro.query(data[:10], k=3)
    np.testing.assert_array_equal(after.ids, before.ids)
    ro.close()
    rw = Index.open(path)
    assert len(rw) == 100
    rw.close()


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    Index.create(path, metric="cosine").close()
    manifest = path / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "format_version": 999}))
    for readonly in (False, True):
        with pytest.raises(IndexFormatError, match=r"version 999.*newer"):
            Index.open(path, readonly=readonly)
    with pytest.raises(IndexFormatError):
        Index.open_or_create(path, metric="cosine")


def test_folder_without_index_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for where in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(IndexFormatError, match="no index"):
            Index.open(where)
    assert not (tmp_path / "missing").exists()
    # A catalogue without a config (creation interrupted) is refused too.
    (tmp_path / "idx").mkdir()
    from audiolsh.storage import EmbeddedStorage

    EmbeddedStorage(tmp_path / "idx", create=True).close()
    with pytest.raises(IndexFormatError, match="no config"):
        Index.open(tmp_path / "idx")


def test_unknown_config_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index = Index.create(path, metric="cosine")
    with index.storage.write() as w:
        w.set_config({**asdict(index.config), "from_the_future": 1})
    index.close()
    with pytest.raises(IndexFormatError, match="from_the_future"):
        Index.open(path)


def test_reader_sees_writer_commits(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    writer = Index.create(path, metric="cosine", max_segments=2)
    first = make_data("cosine", 1, 80)
    writer.add(first, keys=[f"a{i}" for i in range(80)])
    reader = Index.open(path)
    ro = Index.open(path, readonly=True)
    assert len(reader) == len(ro) == 80
    for b in range(4):  # the third add compacts under the readers' feet
        batch = make_data("cosine", 10 + b, 50)
        ids = writer.add(batch, keys=[f"b{b}-{i}" for i in range(50)])
        for other in (reader, ro):
            assert len(other) == 80 + 50 * (b + 1)
            assert f"b{b}-7" in other
            np.testing.assert_array_equal(other.query(batch, k=1).ids[:, 0], ids)
    writer.remove([f"a{i}" for i in range(10)])
    for other in (reader, ro):
        assert len(other) == 270
        assert not np.isin(other.query(first, k=5).ids, np.arange(10)).any()
    for ix in (writer, reader, ro):
        ix.close()


def test_reader_survives_segment_collected_between_listing_and_loading(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    writer = Index.create(path, metric="euclidean", max_segments=1)
    writer.add(make_data("euclidean", 1, 50), keys=[f"a{i}" for i in range(50)])
    reader = Index.open(path)
    assert len(reader) == 50
    ids = writer.add(make_data("euclidean", 2, 50), keys=[f"b{i}" for i in range(50)])
    # The reader lists the segments, then (before it maps the new one) the writer compacts
    # and a further write collects the dropped folders.
    listing = reader.storage.segments
    raced = []

    def segments_then_race():  # type: ignore[no-untyped-def]
        out = listing()
        if not raced:
            raced.append(True)
            writer.compact(full=True)
            with writer.storage.write():
                pass
        return out

    reader.storage.segments = segments_then_race  # type: ignore[method-assign]
    assert len(reader) == 100
    assert reader.query(make_data("euclidean", 2, 50)[:3], k=1).ids[0, 0] == ids[0]


def test_reader_survives_segment_half_collected(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    writer = Index.create(path, metric="euclidean", max_segments=8)
    writer.add(make_data("euclidean", 1, 50), keys=[f"a{i}" for i in range(50)])
    reader = Index.open(path)
    assert len(reader) == 50
    second = make_data("euclidean", 2, 50)
    ids = writer.add(second, keys=[f"b{i}" for i in range(50)])
    listing = reader.storage.segments
    raced: list[bool] = []

    def segments_then_race():  # type: ignore[no-untyped-def]
        out = listing()
        if not raced:
            raced.append(True)
            dropped = {s.id for s in writer.segments}
            writer.compact(full=True)
            # The next writer's garbage collection is half-way through these folders.
            for seg in dropped:
                (path / "segments" / seg / "table_start.npy").unlink()
        return out

    reader.storage.segments = segments_then_race  # type: ignore[method-assign]
    assert len(reader) == 100
    np.testing.assert_array_equal(reader.query(second[:3], k=1).ids[:, 0], ids[:3])


def test_set_params_refuses_to_change_the_metric() -> None:
    index = Index.create(None, metric="cosine")
    data = make_data("cosine", 3, 60)
    index.add(data)
    with pytest.raises(ParameterError):
        index.set_params(metric="euclidean")
    assert index.config.metric == "cosine"


def test_set_params_refuses_to_change_the_dimension() -> None:
    index = Index.create(None, metric="cosine")
    index.add(make_data("cosine", 3, 60))
    with pytest.raises(ParameterError):
        index.set_params(dim=4)
    assert index.config.dim == DIM
