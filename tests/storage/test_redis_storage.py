"""What the Redis backend adds to the storage contract: locations, handles in several processes,
a writer killed mid-commit, the lease lock, chunked segments, one clear connection error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from audiolsh.errors import IndexFormatError, ParameterError, StorageUnavailable
from audiolsh.storage import SegmentInfo, describe, join, open_storage, split, storage_exists
from audiolsh.storage.redis import RedisStorage, parse


def _run(code: str, *args: str, timeout: float = 60) -> str:
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_redis_locations() -> None:
    assert split("redis://h:6379/2?prefix=lib")[0] == "redis"
    assert split("unix:///run/redis.sock?prefix=lib")[0] == "unix"
    assert join("redis://h:6379/2?prefix=lib&socket_timeout=3", "rhythm") == \
        "redis://h:6379/2?socket_timeout=3&prefix=lib/rhythm"
    assert join("unix:///run/r.sock?db=3&prefix=lib", "tracks") == "unix:///run/r.sock?db=3&prefix=lib/tracks"
    assert join("redis://h/0", "x") == "redis://h/0?prefix=audiolsh/x"
    url, prefix, where = parse("redis://:s3cret@h:6380/1?prefix=lib/rhythm")
    assert prefix == "lib/rhythm" and "prefix" not in url and url.endswith("h:6380/1")
    assert "s3cret" not in where and "s3cret" not in describe("redis://user:s3cret@h:6380/1?prefix=a")
    assert describe("redis://user:s3cret@h:6380/1?prefix=a") == "redis://user:***@h:6380/1?prefix=a"
    assert parse("unix:///run/r.sock?db=2&prefix=a")[:2] == ("unix:///run/r.sock?db=2", "a")
    with pytest.raises(ParameterError, match="must be a number"):
        open_storage("redis://h/music?prefix=a")
    with pytest.raises(ParameterError, match="empty prefix"):
        open_storage("redis://h/0?prefix=")
    # lease= is ours: kept by join (every part of a library), not passed on to redis-py.
    assert parse("redis://h/0?lease=2.5&prefix=a&socket_timeout=3")[0] == "redis://h/0?socket_timeout=3"
    assert join("unix:///r.sock?lease=2&prefix=lib", "rhythm") == "unix:///r.sock?lease=2&prefix=lib/rhythm"
    for bad in ("0", "-1", "soon", "nan", ""):
        with pytest.raises(ParameterError, match="lease must be a number of seconds"):
            open_storage(f"redis://h/0?prefix=a&lease={bad}")


def test_unreachable_redis_is_one_clear_error(tmp_path: Any) -> None:
    for where in ("redis://127.0.0.1:1/0?prefix=a", f"unix://{tmp_path}/none.sock?prefix=a"):
        with pytest.raises(StorageUnavailable, match=r"cannot reach Redis at .*(refused|no socket)") as err:
            open_storage(where)
        assert where in str(err.value) and isinstance(err.value, IndexFormatError)
        with pytest.raises(StorageUnavailable, match="cannot reach Redis"):
            storage_exists(where)
    with pytest.raises(IndexFormatError) as err:
        open_storage("redis://:pw@127.0.0.1:1/0?prefix=a")
    assert "pw" not in str(err.value)


def test_create_open_and_refusals(redis_url: str) -> None:
    assert not storage_exists(redis_url)
    with pytest.raises(IndexFormatError, match="no index here"):
        open_storage(redis_url)
    st = open_storage(redis_url, create=True)
    assert isinstance(st, RedisStorage) and storage_exists(redis_url)
    with st.write() as w:
        w.set_config({"a": 1})
    ro = open_storage(redis_url, readonly=True)
    assert ro.config() == {"a": 1}
    with pytest.raises(IndexFormatError, match="read-only"), ro.write():
        pass
    # Prefixes keep indexes apart; a longer prefix is another index.
    other = open_storage(join(redis_url, "part"), create=True)
    assert other.config() is None and st.config() == {"a": 1}
    for s in (st, ro, other):
        s.close()


def test_two_handles_and_another_process_see_each_others_commits(redis_url: str) -> None:
    a = RedisStorage(redis_url, create=True)
    b = RedisStorage(redis_url)
    v_b = b.version()
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}
    info = SegmentInfo.new(n_items=3, config={"k": 1})
    with a.write() as w:
        w.set_config({"from": "a"})
        w.put_segment(info, arrays)
    # A handle sees its own commit at once, another one once its version cache is out of date.
    assert a.config() == {"from": "a"} and a.version() != v_b
    time.sleep(b.version_ttl_s)
    assert b.version() != v_b
    assert b.config() == {"from": "a"} and [s.id for s in b.segments()] == [info.id]
    v_a = a.version()
    out = _run(
        "import sys, numpy as np\n"
        "from audiolsh.storage.redis import RedisStorage\n"
        "st = RedisStorage(sys.argv[1])\n"
        "print(st.config()['from'], float(st.load_arrays(sys.argv[2])['x'].sum()))\n"
        "with st.write() as w:\n"
        "    w.set_config({'from': 'child'})\n"
        "    w.add_track(path='c.wav', content_hash='c', duration_s=1.0, kind='audio')\n",
        redis_url, info.id)
    assert out.split() == ["a", "66.0"]
    time.sleep(a.version_ttl_s)
    assert a.version() != v_a
    assert a.config() == {"from": "child"} and [t.path for t in a.tracks()] == ["c.wav"]
    with pytest.raises(ParameterError, match="already indexed"), b.write() as w:
        w.add_track(path="d.wav", content_hash="c", duration_s=1.0, kind="audio")
    a.close()
    b.close()


STALL_IN_WRITE = """
import sys, time
import numpy as np
from audiolsh.storage import SegmentInfo
from audiolsh.storage.redis import RedisStorage

st = RedisStorage(sys.argv[1], lease_s=1.0)
with st.write() as w:
    w.set_config({"v": 2})
    w.add_track(path="lost.wav", content_hash="lost", duration_s=1.0, kind="audio")
    start = w.allocate_ids(4)
    w.add_items(np.arange(start, start + 4), ["l0", "l1", "l2", "l3"], np.full(4, -1),
                np.zeros(4), None)
    w.delete_items(np.array([0]))
    w.put_segment(SegmentInfo.new(n_items=4, config={}),
                  {"big": np.ones((4, 2_000_000), np.float32)})
    print("staged", flush=True)
    time.sleep(120)
"""


def test_a_writer_killed_mid_commit_leaves_the_previous_version_whole(redis_url: str) -> None:
    st = RedisStorage(redis_url, create=True)
    info = SegmentInfo.new(n_items=2, config={"v": 1})
    with st.write() as w:
        w.set_config({"v": 1})
        w.put_segment(info, {"x": np.arange(4.0)})
        tid = w.add_track(path="kept.wav", content_hash="kept", duration_s=2.0, kind="audio")
        w.add_items(np.arange(w.allocate_ids(2), 2), ["k0", "k1"], np.full(2, tid), np.zeros(2), None)
    before = (st.version(), st.config(), [s.id for s in st.segments()], [t.to_dict() for t in st.tracks()],
              st.n_items(), st.deleted().tolist(), st.items(np.arange(6)))
    proc = subprocess.Popen([sys.executable, "-c", STALL_IN_WRITE, redis_url], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "staged"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert len(st.segment_keys()) == 2  # the killed writer's segment is left over, unreferenced
    time.sleep(st.version_ttl_s)
    after = (st.version(), st.config(), [s.id for s in st.segments()], [t.to_dict() for t in st.tracks()],
             st.n_items(), st.deleted().tolist(), st.items(np.arange(6)))
    assert after == before
    assert st.track_by_hash("lost") is None and st.ids_for_keys(["l0"]).tolist() == []
    # The next writer waits out the dead writer's lease (1 s), collects its leftovers, commits.
    started = time.monotonic()
    with st.write() as w:
        assert w.allocate_ids(1) == 2
        w.add_track(path="lost.wav", content_hash="lost", duration_s=1.0, kind="audio")
    assert time.monotonic() - started < 30  # the dead writer's lease (1 s), not the default 30 s
    assert st.segment_keys() == {info.id}
    assert [t.path for t in st.tracks()] == ["kept.wav", "lost.wav"]
    np.testing.assert_array_equal(st.load_arrays(info.id)["x"], np.arange(4.0))
    st.close()


def test_the_location_sets_the_lease(redis_url: str) -> None:
    st = RedisStorage(f"{redis_url}&lease=2.5", create=True)
    assert st.lease_s == 2.5
    assert RedisStorage(redis_url).lease_s == 30.0 and RedisStorage(redis_url, lease_s=0.4).lease_s == 0.4
    assert RedisStorage(join(f"{redis_url}&lease=2.5", "part"), create=True).lease_s == 2.5
    with st.write():
        assert 0 < st._r.pttl(st._key("lock")) <= 2500
    st.close()


def test_writers_serialise_and_the_lease_is_renewed(redis_url: str) -> None:
    # A lease long enough that renewal (every third of it) never misses it on a busy machine.
    st = RedisStorage(redis_url, create=True, lease_s=1.0)
    other = RedisStorage(redis_url, lock_timeout_s=0.5)
    with st.write() as w:
        w.set_config({"v": 1})
        time.sleep(3.0)  # three leases: kept alive by renewal
        with pytest.raises(IndexFormatError, match="another writer holds the write lock"), other.write():
            pass
    assert st.config() == {"v": 1}
    with other.write() as w:  # the lock was released by the commit
        w.set_config({"v": 2})
    assert other.config() == {"v": 2}
    st.close()
    other.close()


def test_a_writer_that_lost_its_lease_commits_nothing(redis_url: str) -> None:
    st = RedisStorage(redis_url, create=True, lease_s=0.2)
    st._renew = lambda *a: None  # type: ignore[method-assign]  # a writer stalled past its lease
    thief = RedisStorage(redis_url)
    with pytest.raises(IndexFormatError, match="lock expired"), st.write() as w:
        w.set_config({"v": "late"})
        w.put_segment(SegmentInfo.new(n_items=1, config={}), {"x": np.zeros(3)})
        time.sleep(0.4)
        with thief.write() as w2:
            w2.set_config({"v": "thief"})
    time.sleep(st.version_ttl_s)
    assert st.config() == {"v": "thief"} and st.segments() == [] and st.segment_keys() == set()
    st.close()
    thief.close()


def test_segments_are_chunked_and_shared_without_copies(redis_url: str, rng: np.random.Generator) -> None:
    st = RedisStorage(redis_url, create=True)
    st.chunk_bytes = 1000
    arrays = {
        "v": rng.standard_normal((300, 7)).astype(np.float32),
        "f": np.asfortranarray(rng.integers(0, 9, (40, 30)).astype(np.int16)),
        "empty": np.zeros((0, 4), np.uint64),
        "s": np.array(["ab", "cde"]),
    }
    info = SegmentInfo.new(n_items=300, config={})
    with st.write() as w:
        w.put_segment(info, arrays)
    loaded = RedisStorage(redis_url).load_arrays(info.id)
    for name, a in arrays.items():
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        np.testing.assert_array_equal(loaded[name], a)
        assert not loaded[name].flags.writeable
    with pytest.raises(ValueError, match="allow_pickle"), st.write() as w:
        w.put_segment(SegmentInfo.new(n_items=1, config={}), {"o": np.array([{}], dtype=object)})
    assert st.segment_keys() == {info.id}
    st.close()


def test_a_big_catalogue_reads_in_few_round_trips(redis_url: str) -> None:
    st = RedisStorage(redis_url, create=True)
    n = 25_000
    with st.write() as w:
        tid = w.add_track(path="a.wav", content_hash="a", duration_s=1.0, kind="audio")
        ids = np.arange(w.allocate_ids(n), n)
        w.add_items(ids, [f"k{i}" for i in range(n)], np.where(ids % 2 == 0, tid, -1),
                    ids * 0.5, None)
    calls = []
    real = st._r.pipeline

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    st._r.pipeline = counting  # type: ignore[method-assign]
    tracks, offsets = st.item_arrays(ids[::-1])
    assert len(calls) == 1
    np.testing.assert_array_equal(tracks, np.where(ids[::-1] % 2 == 0, tid, -1))
    np.testing.assert_array_equal(offsets, ids[::-1] * 0.5)
    got_ids, got_tracks, got_offsets = st.track_items(np.array([tid]))
    np.testing.assert_array_equal(got_ids, ids[::2])
    assert (got_tracks == tid).all() and st.ids_for_track(tid).tolist() == ids[::2].tolist()
    np.testing.assert_array_equal(got_offsets, ids[::2] * 0.5)
    st.close()


def test_without_redis_py_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import audiolsh.storage.redis_codec as backend

    monkeypatch.setattr(backend, "_redis", None)
    with pytest.raises(ParameterError, match=r"pip install 'audiolsh\[redis\]'"):
        open_storage("redis://127.0.0.1:6379/0?prefix=a")
    with pytest.raises(ParameterError, match=r"audiolsh\[redis\]"):
        storage_exists("unix:///tmp/none.sock?prefix=a")


def test_audiolsh_imports_without_redis_py() -> None:
    out = _run("import sys\n"
               "sys.modules['redis'] = None\n"
               "import audiolsh.cli, audiolsh.library, audiolsh.storage\n"
               "from audiolsh.storage import open_storage\n"
               "try:\n"
               "    open_storage('redis://h:1/0?prefix=a')\n"
               "except Exception as exc:\n"
               "    print(type(exc).__name__, exc)\n")
    assert out.startswith("ParameterError") and "audiolsh[redis]" in out
