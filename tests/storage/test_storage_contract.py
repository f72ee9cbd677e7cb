"""The storage contract, run against every backend: MemoryStorage, EmbeddedStorage and
RedisStorage in its two modes (the shared store, and remote-probe whose segments keep their
bucket tables and rows in Redis hashes)."""

from __future__ import annotations

import ast
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.storage import EmbeddedStorage, MemoryStorage, SegmentInfo
from audiolsh.storage.redis import RedisStorage

BACKENDS = ["memory", "embedded", "redis", "redis remote"]


class Boom(Exception):
    pass


def _open(kind: str, root: Path, request: pytest.FixtureRequest) -> Any:
    if kind == "memory":
        return MemoryStorage()
    if kind == "redis":
        return RedisStorage(request.getfixturevalue("redis_url"), create=True)
    if kind == "redis remote":
        return RedisStorage(request.getfixturevalue("redis_url") + "&mode=remote", create=True)
    return EmbeddedStorage(root / "idx", create=True)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path):
    st = _open(request.param, tmp_path, request)
    yield st
    st.close()


def _arrays(rng: np.random.Generator, n: int = 12) -> dict[str, np.ndarray]:
    """A segment's arrays as an index writes them: three bucket tables (sorted distinct keys
    per table, two rows a bucket) over n rows."""
    keys = [np.unique(rng.integers(0, 2**64 - 1, size=n // 2, dtype=np.uint64)) for _ in range(3)]
    return {
        "vectors": rng.standard_normal((n, 5)).astype(np.float32),
        "table_start": np.arange(0, 3 * (n // 2) + 1, n // 2, dtype=np.int64),
        "bucket_keys": np.concatenate(keys),
        "bucket_start": np.arange(0, 3 * n + 1, 2, dtype=np.int64),
        "members": np.concatenate([rng.permutation(n) for _ in range(3)]).astype(np.int32),
        "flags": (rng.random(n) > 0.5).astype(np.uint8),
        "ids": np.arange(100, 100 + n, dtype=np.int64),
    }


def _info(n: int = 12, tag: str = "a") -> SegmentInfo:
    return SegmentInfo(
        id=f"{int(time.time() * 1000):013d}-{tag}",
        n_items=n,
        config={"metric": "cosine", "family": {"family": "hyperplane", "seed": 3, "mean": None}},
        created_at=time.time(),
    )


def _segment_dirs(st: Any) -> set[str]:
    """The segments whose arrays are stored (committed or not)."""
    if isinstance(st, RedisStorage):
        return st.segment_keys()
    if not isinstance(st, EmbeddedStorage):
        return set()
    return {p.name for p in (st.root / "segments").iterdir()}


def _snapshot(st: Any) -> dict[str, Any]:
    return {
        "config": st.config(),
        "segments": [s.id for s in st.segments()],
        "tracks": [t.to_dict() for t in st.tracks()],
        "n_items": st.n_items(),
        "deleted": st.deleted().tolist(),
        "items": st.items(np.arange(0, 50)),
    }


def _add_items(w: Any, start: int, n: int, *, track: int = -1, prefix: str = "k") -> np.ndarray:
    ids = np.arange(start, start + n, dtype=np.int64)
    w.add_items(
        ids,
        [f"{prefix}{i}" for i in ids.tolist()],
        np.full(n, track, dtype=np.int64),
        np.arange(n, dtype=np.float64) * 0.5,
        [{"i": int(i)} for i in ids.tolist()],
    )
    return ids


def test_fresh_storage_is_empty(storage: Any) -> None:
    assert storage.config() is None
    assert storage.segments() == []
    assert storage.tracks() == []
    assert storage.n_items() == 0
    assert storage.deleted().tolist() == []
    assert storage.items(np.array([0, 1])) == [None, None]
    assert storage.ids_for_keys(["x"]).tolist() == []


def test_write_commits_everything_on_clean_exit(storage: Any, rng: np.random.Generator) -> None:
    arrays = _arrays(rng)
    info = _info()
    v0 = storage.version()
    with storage.write() as w:
        w.set_config({"metric": "cosine", "n_tables": 8})
        start = w.allocate_ids(12)
        w.put_segment(info, arrays)
        tid = w.add_track(path="a.wav", content_hash="h-a", duration_s=3.5, kind="audio",
                          meta={"artist": "x"})
        _add_items(w, start, 12, track=tid)
        w.set_track_items(tid, 12)
    assert storage.version() != v0
    assert storage.config() == {"metric": "cosine", "n_tables": 8}
    [seg] = storage.segments()
    assert seg.id == info.id
    assert seg.n_items == 12
    assert seg.config == info.config
    assert seg.created_at == pytest.approx(info.created_at)
    assert storage.n_items() == 12
    [track] = storage.tracks()
    assert (track.id, track.path, track.content_hash) == (tid, "a.wav", "h-a")
    assert track.duration_s == 3.5
    assert track.n_items == 12
    assert track.kind == "audio"
    assert track.meta == {"artist": "x"}


def test_write_rolls_back_on_exception(storage: Any, rng: np.random.Generator) -> None:
    with storage.write() as w:
        w.set_config({"v": 1})
        start = w.allocate_ids(3)
        w.put_segment(_info(3, "keep"), _arrays(rng, 3))
        tid = w.add_track(path="k.wav", content_hash="keep", duration_s=None, kind="audio")
        _add_items(w, start, 3, track=tid)
    before = _snapshot(storage)
    dirs_before = _segment_dirs(storage)
    with pytest.raises(Boom), storage.write() as w:
        w.set_config({"v": 2})
        first = w.allocate_ids(10)
        w.put_segment(_info(10, "lost"), _arrays(rng, 10))
        w.drop_segment(before["segments"][0])
        t2 = w.add_track(path="b.wav", content_hash="lost", duration_s=1.0, kind="audio")
        w.set_track_items(tid, 99)
        _add_items(w, first, 10, track=t2, prefix="lost")
        w.delete_items(np.array([start]))
        raise Boom
    assert _snapshot(storage) == before
    assert storage.track_by_hash("lost") is None
    assert storage.ids_for_keys([f"lost{i}" for i in range(50)]).tolist() == []
    # Nothing of the failed segment is left on disk.
    assert _segment_dirs(storage) == dirs_before
    # The id counter was not advanced either: the next allocation reuses the range.
    with storage.write() as w:
        assert w.allocate_ids(1) == first


def test_failed_write_leaves_no_segment_folder_after_next_write(
    storage: Any, rng: np.random.Generator
) -> None:
    with pytest.raises(Boom), storage.write() as w:
        w.put_segment(_info(4, "doomed"), _arrays(rng, 4))
        raise Boom
    with storage.write() as w:
        w.put_segment(_info(4, "kept"), _arrays(rng, 4))
    assert [s.id.endswith("kept") for s in storage.segments()] == [True]
    if isinstance(storage, (EmbeddedStorage, RedisStorage)):
        assert _segment_dirs(storage) == {s.id for s in storage.segments()}


def test_stray_segment_folders_are_collected_by_the_next_write(tmp_path: Path) -> None:
    """A crash between writing a segment's files and the commit leaves an orphan folder."""
    st = EmbeddedStorage(tmp_path / "idx", create=True)
    orphan = tmp_path / "idx" / "segments" / "0000000000000-orphan"
    orphan.mkdir()
    (orphan / "vectors.npy").write_bytes(b"partial")
    (orphan / ".ids.npy.tmp").write_bytes(b"partial")
    with st.write() as w:
        w.set_config({"x": 1})
    assert not orphan.exists()
    st.close()


def test_segment_arrays_round_trip(storage: Any, rng: np.random.Generator) -> None:
    arrays = _arrays(rng)
    originals = {k: v.copy() for k, v in arrays.items()}
    info = _info()
    with storage.write() as w:
        w.put_segment(info, arrays)
    # Changing the caller's arrays afterwards does not reach the stored segment.
    arrays["vectors"][:] = 0
    loaded = storage.load_arrays(info.id)
    assert set(loaded) == set(originals)
    for name, a in originals.items():
        assert loaded[name].dtype == a.dtype, name
        assert loaded[name].shape == a.shape, name
        np.testing.assert_array_equal(loaded[name], a)
        # Segments are immutable.
        assert not loaded[name].flags.writeable, name


def test_segment_arrays_are_read_through_cpythons_ast_race(
    storage: Any, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPython 3.11 can fail ``ast.literal_eval`` with a spurious SystemError while another
    thread builds an AST (numpy parses every .npy header with it): each header read is tried
    again instead of failing the query that needed the segment."""
    arrays = _arrays(rng)
    info = _info()
    with storage.write() as w:
        w.put_segment(info, arrays)
    real = ast.literal_eval
    calls = 0

    def every_other_call_fails(text: str) -> Any:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise SystemError("AST constructor recursion depth mismatch (before=3, after=2)")
        return real(text)

    monkeypatch.setattr(ast, "literal_eval", every_other_call_fails)
    loaded = storage.load_arrays(info.id)
    assert set(loaded) == set(arrays)
    for name, a in arrays.items():
        np.testing.assert_array_equal(loaded[name], a)
    if not isinstance(storage, MemoryStorage):
        assert calls >= 2 and calls % 2 == 0  # each header read failed once, then succeeded


def test_other_system_errors_reading_a_segment_are_not_retried_and_a_lasting_race_is_raised(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = EmbeddedStorage(tmp_path / "idx", create=True)
    info = _info()
    with st.write() as w:
        w.put_segment(info, _arrays(rng))
    calls = 0

    def broken(text: str) -> Any:
        nonlocal calls
        calls += 1
        raise SystemError("something else")

    monkeypatch.setattr(ast, "literal_eval", broken)
    with pytest.raises(SystemError, match="something else"):
        st.load_arrays(info.id)
    assert calls == 1

    def always_racing(text: str) -> Any:
        nonlocal calls
        calls += 1
        raise SystemError("AST constructor recursion depth mismatch (before=3, after=2)")

    calls = 0
    monkeypatch.setattr(ast, "literal_eval", always_racing)
    with pytest.raises(SystemError, match="recursion depth mismatch"):
        st.load_arrays(info.id)
    assert calls == 3  # three tries, then the error
    st.close()


def test_drop_segment(storage: Any, rng: np.random.Generator) -> None:
    a, b = _info(3, "a"), _info(3, "b")
    with storage.write() as w:
        w.put_segment(a, _arrays(rng, 3))
        w.put_segment(b, _arrays(rng, 3))
    assert sorted(s.id for s in storage.segments()) == sorted([a.id, b.id])
    with storage.write() as w:
        w.drop_segment(a.id)
    assert [s.id for s in storage.segments()] == [b.id]
    np.testing.assert_array_equal(storage.load_arrays(b.id)["ids"], np.arange(100, 103))
    if isinstance(storage, (EmbeddedStorage, RedisStorage)):
        with storage.write():
            pass
        assert _segment_dirs(storage) == {b.id}


def test_tracks(storage: Any) -> None:
    with storage.write() as w:
        t1 = w.add_track(path="one.wav", content_hash="h1", duration_s=1.0, kind="audio")
        t2 = w.add_track(path="two.npy", content_hash="h2", duration_s=None, kind="vectors",
                         meta={"rows": 7})
    assert t1 != t2
    assert [t.id for t in storage.tracks()] == sorted([t1, t2])
    assert storage.track(t1).path == "one.wav"
    assert storage.track(t2).duration_s is None
    assert storage.track(t2).meta == {"rows": 7}
    assert storage.track(t2).kind == "vectors"
    assert storage.track_by_hash("h2").id == t2
    assert storage.track_by_hash("nope") is None
    assert storage.track(12345) is None
    with storage.write() as w:
        w.set_track_items(t1, 5)
        w.remove_track(t2)
    assert storage.track(t1).n_items == 5
    assert storage.track(t2) is None
    assert storage.track_by_hash("h2") is None
    assert [t.id for t in storage.tracks()] == [t1]


def test_track_meta_is_replaced_in_one_commit(storage: Any) -> None:
    """Tags read after a track was indexed replace its meta; a failed write leaves the old."""
    with storage.write() as w:
        tid = w.add_track(path="one.wav", content_hash="h1", duration_s=1.0, kind="audio")
        w.set_track_items(tid, 4)
    with storage.write() as w:
        w.set_track_meta(tid, {"tags": {"artist": "Ana", "year": 1999}})
        w.set_track_meta(987654, {"tags": {}})  # a track removed meanwhile: nothing to change
    t = storage.track(tid)
    assert t.meta == {"tags": {"artist": "Ana", "year": 1999}}
    assert (t.n_items, t.path, t.content_hash) == (4, "one.wav", "h1")
    assert storage.track_by_hash("h1").meta == t.meta
    with pytest.raises(RuntimeError), storage.write() as w:
        w.set_track_meta(tid, {"tags": {"title": "lost"}})
        raise RuntimeError("crash")
    assert storage.track(tid).meta == {"tags": {"artist": "Ana", "year": 1999}}
    assert [x.id for x in storage.tracks()] == [tid]


@pytest.mark.parametrize("kind", BACKENDS)
def test_track_content_hash_is_unique(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    st = _open(kind, tmp_path, request)
    with st.write() as w:
        w.add_track(path="a.wav", content_hash="same", duration_s=1.0, kind="audio")
    with pytest.raises(ParameterError, match="already indexed"), st.write() as w:
        w.add_track(path="b.wav", content_hash="same", duration_s=2.0, kind="audio")
        _add_items(w, 0, 3)
    # The failed write left nothing behind.
    assert [t.path for t in st.tracks()] == ["a.wav"]
    assert st.n_items() == 0
    st.close()


def test_items_and_lookups(storage: Any) -> None:
    with storage.write() as w:
        tid = w.add_track(path="a.wav", content_hash="h", duration_s=1.0, kind="audio")
        start = w.allocate_ids(6)
        ids = np.arange(start, start + 6, dtype=np.int64)
        w.add_items(
            ids,
            ["a", "b", "c", "a", "d", "e"],
            np.array([tid, tid, -1, tid, -1, tid], dtype=np.int64),
            np.array([0.0, 1.5, np.nan, 3.0, np.nan, 4.5]),
            [{"x": 1}, None, {"nested": {"y": [1, 2]}}, None, None, None],
        )
    items = storage.items(np.array([ids[2], ids[0], 999, ids[2]]))
    assert items[2] is None
    a, b, c = items[1], items[0], items[3]
    assert (a.id, a.key, a.track_id, a.offset_s, a.meta) == (ids[0], "a", tid, 0.0, {"x": 1})
    assert (b.id, b.key, b.track_id, b.offset_s) == (ids[2], "c", None, None)
    assert b.meta == {"nested": {"y": [1, 2]}}
    assert c == b
    assert storage.ids_for_keys(["a"]).tolist() == [ids[0], ids[3]]
    assert storage.ids_for_keys(["e", "b", "zzz"]).tolist() == [ids[1], ids[5]]
    assert storage.ids_for_keys([]).tolist() == []
    assert storage.ids_for_track(tid).tolist() == [ids[0], ids[1], ids[3], ids[5]]
    assert storage.ids_for_track(tid + 100).tolist() == []
    assert storage.n_items() == 6


def test_many_keys_and_ids(storage: Any) -> None:
    """More than SQLite's parameter limit in one lookup."""
    n = 2500
    with storage.write() as w:
        start = w.allocate_ids(n)
        ids = _add_items(w, start, n)
    keys = [f"k{i}" for i in ids.tolist()]
    assert storage.ids_for_keys(keys).tolist() == ids.tolist()
    got = storage.items(ids[::-1])
    assert [it.id for it in got] == ids[::-1].tolist()
    assert [it.key for it in got] == keys[::-1]


def test_delete_and_forget(storage: Any) -> None:
    with storage.write() as w:
        start = w.allocate_ids(5)
        ids = _add_items(w, start, 5)
    with storage.write() as w:
        w.delete_items(ids[[1, 3]])
    assert storage.deleted().tolist() == [ids[1], ids[3]]
    assert storage.n_items() == 3
    assert storage.items(ids[[1, 3]]) == [None, None]
    assert storage.ids_for_keys([f"k{ids[1]}", f"k{ids[2]}"]).tolist() == [ids[2]]
    with storage.write() as w:
        w.delete_items(ids[[3]])  # twice is harmless
    assert storage.deleted().tolist() == [ids[1], ids[3]]
    with storage.write() as w:
        w.forget_deleted(ids[[1]])
    assert storage.deleted().tolist() == [ids[3]]
    assert storage.n_items() == 3


def test_allocate_ids_are_consecutive_and_never_reused(storage: Any) -> None:
    with storage.write() as w:
        a = w.allocate_ids(4)
        b = w.allocate_ids(2)
    with storage.write() as w:
        c = w.allocate_ids(3)
        w.delete_items(np.arange(a, a + 4))
    with storage.write() as w:
        d = w.allocate_ids(1)
    assert b == a + 4
    assert c == b + 2
    assert d == c + 3


def test_version_changes_after_every_commit(storage: Any) -> None:
    seen = {storage.version()}
    for i in range(4):
        with storage.write() as w:
            w.set_config({"i": i})
        v = storage.version()
        assert v not in seen
        seen.add(v)
    # Reading does not move it.
    v = storage.version()
    storage.config()
    storage.segments()
    storage.n_items()
    assert storage.version() == v


def test_embedded_persists_and_other_connections_see_commits(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = tmp_path / "idx"
    writer = EmbeddedStorage(root, create=True)
    reader = EmbeddedStorage(root)
    readonly = EmbeddedStorage(root, readonly=True)
    v_reader, v_ro = reader.version(), readonly.version()
    info = _info(5)
    arrays = _arrays(rng, 5)
    with writer.write() as w:
        w.set_config({"metric": "euclidean"})
        w.put_segment(info, arrays)
        _add_items(w, w.allocate_ids(5), 5)
    for other, v in ((reader, v_reader), (readonly, v_ro)):
        assert other.version() != v
        assert other.config() == {"metric": "euclidean"}
        assert [s.id for s in other.segments()] == [info.id]
        assert other.n_items() == 5
        np.testing.assert_array_equal(other.load_arrays(info.id)["vectors"], arrays["vectors"])
    with pytest.raises(IndexFormatError, match="read-only"), readonly.write():
        pass
    for st in (writer, reader, readonly):
        st.close()
    again = EmbeddedStorage(root)
    assert again.config() == {"metric": "euclidean"}
    assert again.n_items() == 5
    np.testing.assert_array_equal(again.load_arrays(info.id)["ids"], arrays["ids"])
    again.close()


def test_embedded_refuses_what_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no index"):
        EmbeddedStorage(tmp_path)
    with pytest.raises(IndexFormatError):
        EmbeddedStorage(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    EmbeddedStorage(tmp_path / "idx", create=True).close()
    manifest = tmp_path / "idx" / "manifest.json"
    data = json.loads(manifest.read_text())
    assert data["format_version"] == 1

    manifest.write_text(json.dumps({**data, "format_version": 999}))
    with pytest.raises(IndexFormatError, match="999"):
        EmbeddedStorage(tmp_path / "idx")
    manifest.write_text(json.dumps({**data, "format": "something-else"}))
    with pytest.raises(IndexFormatError, match="not an audiolsh index"):
        EmbeddedStorage(tmp_path / "idx")
    manifest.write_text("{not json")
    with pytest.raises(IndexFormatError, match="unreadable"):
        EmbeddedStorage(tmp_path / "idx")
    manifest.write_text(json.dumps(data))
    EmbeddedStorage(tmp_path / "idx").close()


# ---------------------------------------------------------------- locations


def test_a_location_names_its_backend(tmp_path: Path) -> None:
    from audiolsh.storage import join, open_storage, split, storage_exists

    assert split(tmp_path / "idx") == ("file", str(tmp_path / "idx"))
    assert split(f"file://{tmp_path}/idx") == ("file", f"{tmp_path}/idx")
    assert split("memory://shelf") == ("memory", "shelf") and split(None) == ("memory", "")
    assert join("memory://shelf", "rhythm") == "memory://shelf/rhythm"
    assert join(tmp_path / "lib", "rhythm") == str(tmp_path / "lib" / "rhythm") and join(None, "x") is None
    with pytest.raises(ParameterError, match=r"unknown storage scheme 'http'"):
        open_storage("http://localhost/lib")
    with pytest.raises(ParameterError, match="database must be a number"):
        open_storage("redis://localhost/lib")
    with pytest.raises(ParameterError, match="needs a name"):
        open_storage("memory://")
    with pytest.raises(IndexFormatError, match="no index here"):
        open_storage("memory://nothing-here")
    assert not storage_exists(tmp_path / "idx")
    st = open_storage(tmp_path / "idx", create=True)
    assert isinstance(st, EmbeddedStorage) and storage_exists(tmp_path / "idx")
    st.close()


def test_handles_of_one_memory_location_share_it() -> None:
    from audiolsh.storage import open_storage, storage_exists

    name = "memory://shared-test"
    try:
        first = open_storage(name, create=True)
        with first.write() as w:
            w.set_config({"a": 1})
            w.set_config({"b": 2}, "library")
        second = open_storage(name)
        assert second.config() == {"a": 1} and second.config("library") == {"b": 2}
        before = second.version()
        with second.write() as w:
            w.add_track(path="x.wav", content_hash="h", duration_s=1.0, kind="audio")
        assert first.version() != before and [t.path for t in first.tracks()] == ["x.wav"]
        assert storage_exists(name)
    finally:
        MemoryStorage.forget("shared-test")
    assert not storage_exists(name)


def test_configs_are_named(storage: Any) -> None:
    with storage.write() as w:
        w.set_config({"metric": "cosine"})
        w.set_config({"modes": ["rhythm"]}, "library")
    assert storage.config() == {"metric": "cosine"}
    assert storage.config("library") == {"modes": ["rhythm"]} and storage.config("other") is None


def test_a_vanished_segment_is_one_named_error(storage: Any) -> None:
    from audiolsh.storage import SegmentMissing

    rng = np.random.default_rng(0)
    info = _info()
    with storage.write() as w:
        w.put_segment(info, _arrays(rng))
    assert set(storage.load_arrays(info.id)) >= {"vectors", "ids"}
    with storage.write() as w:
        w.drop_segment(info.id)
    with storage.write():
        pass  # the next writer collects the dropped segment's files
    with pytest.raises(SegmentMissing, match=info.id):
        storage.load_arrays(info.id)
    assert issubclass(SegmentMissing, IndexFormatError)


def test_a_writer_waiting_for_another_says_so_once_at_the_default_level(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A second writer waits for the first one's lock, and says so where a user sees it (the
    command line shows warnings; it was an info line, so a wait of minutes looked like a hang)."""
    import threading

    from audiolsh.storage.embedded import location_lock

    said = threading.Event()

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for another writer to finish" in record.getMessage():
                said.set()

    handler = Said(level=logging.WARNING)
    logging.getLogger("audiolsh.storage").addHandler(handler)
    try:
        with location_lock(tmp_path / "lib"):
            def wait_then_take() -> None:
                with location_lock(tmp_path / "lib"):
                    pass

            waiter = threading.Thread(target=wait_then_take)
            waiter.start()
            assert said.wait(300)  # a guard, not a duration
        waiter.join(300)
        assert not waiter.is_alive()
    finally:
        logging.getLogger("audiolsh.storage").removeHandler(handler)
    waits = [r for r in caplog.records if "waiting for another writer" in r.getMessage()]
    assert len(waits) == 1 and waits[0].levelno == logging.WARNING
