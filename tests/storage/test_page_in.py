"""Reading an index's memory-mapped files into the page cache ahead of its queries: every file
of every listed segment (never the SQLite catalogue, whose locks a closed descriptor would
drop), nothing when they would not fit, and an early end when asked to stop."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio.synth import music
from audiolsh.index.fingerprint import FingerprintIndex
from audiolsh.library import Library, index_audio
from audiolsh.storage import EmbeddedStorage
from audiolsh.storage.page_in import CHUNK, page_in

SR = 16000
PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def resident(path: Path) -> int:
    """Pages of ``path`` in the page cache (mincore on a private map, which faults none in)."""
    size = path.stat().st_size
    if not size:
        return 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        n = (size + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * n)()
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))  # the export ends with this line
        if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        return sum(v & 1 for v in vec)


def pages(path: Path) -> int:
    return (path.stat().st_size + PAGE - 1) // PAGE


def evict(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.fixture(scope="module")
def index_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    where = tmp_path_factory.mktemp("page-in") / "fp"
    with FingerprintIndex.create(where, max_segments=8) as idx:
        for s in (41, 42):  # two segments
            idx.add(f"song{s}.wav", music(duration_s=40.0, sr=SR, seed=s), SR, content_hash=f"s{s}")
        files = idx.storage.mapped_files()
        assert len(idx._segments) == 2
    return files


def test_the_mapped_files_are_every_listed_segments_arrays(index_files: list[Path]) -> None:
    root = index_files[0].parents[2]
    on_disk = sorted((root / "segments").glob("*/*.npy"))
    assert sorted(index_files) == on_disk and len({f.parent for f in on_disk}) == 2
    assert {f.name for f in on_disk} >= {"indptr.npy", "pos.npy", "envelope.npy", "track_ids.npy"}


def test_page_in_brings_every_page_of_the_files_into_memory(index_files: list[Path]) -> None:
    evict(index_files)
    big = max(index_files, key=pages)
    if resident(big) == pages(big):  # pragma: no cover - a file system that keeps every page
        pytest.skip("this file system does not let a file's pages go (tmpfs?)")
    seen: list[tuple[int, int]] = []
    done = page_in(index_files, on_progress=lambda n, total: seen.append((n, total)))
    total = sum(f.stat().st_size for f in index_files)
    assert (done.files, done.bytes, done.skipped, done.stopped) == (len(index_files), total, None, False)
    assert all(resident(f) == pages(f) for f in index_files)
    assert len(seen) == len(index_files) and seen[-1] == (total, total)
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)


def test_files_larger_than_the_budget_are_not_read(index_files: list[Path]) -> None:
    evict(index_files)
    big = max(index_files, key=pages)
    total = sum(f.stat().st_size for f in index_files)
    done = page_in(index_files, budget_bytes=total - 1)
    assert done.bytes == 0 and done.files == 0 and done.skipped and "MB" in done.skipped
    if resident(big) < pages(big):  # the file system lets pages go: none came back
        assert resident(big) == 0


def test_a_stopped_page_in_ends_after_one_chunk(index_files: list[Path]) -> None:
    stop = threading.Event()
    stop.set()
    done = page_in(index_files, stop=stop)
    assert done.stopped and 0 < done.bytes <= CHUNK and done.files == 0


def test_a_file_gone_since_it_was_listed_is_passed_over(index_files: list[Path], tmp_path: Path) -> None:
    extra = tmp_path / "x.npy"
    np.save(extra, np.arange(1000))
    files = [*index_files, tmp_path / "gone.npy", extra]
    done = page_in(files)
    assert done.files == len(index_files) + 1 and done.bytes == sum(f.stat().st_size for f in index_files) \
        + extra.stat().st_size


def test_a_library_lists_the_files_of_its_catalogue_and_every_mode(tmp_path: Path) -> None:
    with Library.create(tmp_path / "lib", modes=("fingerprint", "timbre")) as lib:
        music_dir = tmp_path / "music"
        music_dir.mkdir()
        for s in (51, 52):
            sf.write(music_dir / f"t{s}.wav", music(duration_s=20.0, sr=SR, seed=s), SR)
        assert not index_audio(lib, [music_dir], workers=1).failed
        files = lib.mapped_files()
        evict(files)
        done = lib.page_in()
        assert done.files == len(files) and done.bytes == sum(f.stat().st_size for f in files)
        assert all(resident(f) == pages(f) for f in files)
    folders = {f.relative_to(tmp_path / "lib").parts[0] for f in files}
    assert {"fingerprint", "timbre"} <= folders
    with Library.create(None, modes=("fingerprint",)) as mem:
        assert mem.mapped_files() == [] and mem.page_in().bytes == 0


ADD_TRACK = """
import sys
from audiolsh.storage import EmbeddedStorage
st = EmbeddedStorage(sys.argv[1])
with st.write() as w:
    w.add_track(path=sys.argv[2], content_hash=sys.argv[2], duration_s=1.0, kind="audio")
st.close()
"""


def add_track_in_another_process(root: Path, name: str) -> None:
    """A writer that opens, commits and exits: the last connection of its process, it
    checkpoints and deletes the WAL unless another process still holds the catalogue."""
    subprocess.run([sys.executable, "-c", ADD_TRACK, str(root), name], check=True, timeout=300)


def test_a_paged_in_reader_sees_every_later_commit_of_other_processes(tmp_path: Path) -> None:
    """A server pages its index in, then other processes add tracks one after another: each
    commit reaches the server's next read (a page-in that closed a descriptor of the catalogue
    dropped the server's SQLite locks, the first writer deleted the WAL on exit, and the server
    read its stale snapshot from then on)."""
    root = tmp_path / "fp"
    with FingerprintIndex.create(root) as idx:
        idx.add("song.wav", music(duration_s=10.0, sr=SR, seed=5), SR, content_hash="s5")
    with FingerprintIndex.open(root, readonly=True) as reader:
        assert page_in(reader.storage.mapped_files()).files > 0
        for name in ("one", "two", "three"):
            add_track_in_another_process(root, name)
            assert [t.path for t in reader.storage.tracks()][-1] == name
        assert len(reader.storage.tracks()) == 4


LOCK_FREE = """
import fcntl, sys
with open(sys.argv[1], "r+b") as f:
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("locked")
    else:
        print("free")
"""


def locked_by_another_process(path: Path) -> bool:
    out = subprocess.run([sys.executable, "-c", LOCK_FREE, str(path)], capture_output=True, text=True,
                         check=True, timeout=300).stdout.strip()
    assert out in ("locked", "free")
    return out == "locked"


def test_closing_one_storage_keeps_the_sqlite_locks_of_another_on_the_same_catalogue(tmp_path: Path) -> None:
    """Two storages of one process read the catalogue's -shm file for its header; closing one
    leaves the other's SQLite locks on it in place (closing a descriptor of the file would drop
    every lock the process holds there, and another process could then reset the shared memory
    under the open reader)."""
    root = tmp_path / "idx"
    EmbeddedStorage(root, create=True).close()
    a, b = EmbeddedStorage(root, readonly=True), EmbeddedStorage(root, readonly=True)
    a.version(), b.version()  # each reads the -shm header
    shm = root / "catalogue.sqlite-shm"
    assert locked_by_another_process(shm)
    a.close()
    assert locked_by_another_process(shm)
    add_track_in_another_process(root, "one")
    assert [t.path for t in b.tracks()] == ["one"]
    b.close()
    assert not shm.exists() or not locked_by_another_process(shm)
