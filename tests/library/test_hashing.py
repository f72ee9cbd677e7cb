"""Content hashes: read in one thread per worker a few files ahead of the analysis, in the
files' order, each file once (an update's plan hands its hashes to the indexing for the files
unchanged since)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library, index_audio
from audiolsh.library.update import apply_update, plan_update

SR = 22050


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Library]:
    with Library.create(tmp_path / "lib", modes=("embedding",)) as library:
        yield library


def _songs(folder: Path, n: int, duration_s: float = 4.0) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = [folder / f"song{i}.wav" for i in range(n)]
    for i, path in enumerate(paths):
        sf.write(path, synth.music(duration_s=duration_s, sr=SR, seed=i), SR)
    return paths


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files whose content hash is read from now on, in order."""
    from audiolsh.library import build

    real, read = build.content_hash, []
    monkeypatch.setattr(build, "content_hash", lambda p: read.append(Path(p).name) or real(p))
    return read


class Inline:
    """An executor of ``workers`` slots that runs every job in this process."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        return (fn(job) for job in jobs)


def test_files_are_hashed_side_by_side_one_thread_per_worker(tmp_path: Path, lib: Library,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from audiolsh.library import build

    real = build.content_hash
    barrier = threading.Barrier(2, timeout=60)  # hashing one file at a time breaks it
    threads: set[int] = set()

    def hash_in_pairs(path: str) -> str:
        threads.add(threading.get_ident())
        barrier.wait()
        return real(path)

    monkeypatch.setattr(build, "content_hash", hash_in_pairs)
    monkeypatch.setattr(build, "usable_cores", lambda: 2)
    paths = _songs(tmp_path, 3)  # with the broken one, an even count: the barrier passes two at a time
    (tmp_path / "broken.wav").write_bytes(b"RIFF")  # hashed, then refused by its decode
    report = index_audio(lib, [*paths, tmp_path / "broken.wav"][::-1], executor=Inline(2))
    assert sorted(Path(p).name for p in report.added) == [p.name for p in paths]
    assert [Path(f).name for f, _ in report.failed] == ["broken.wav"]
    assert len(threads) == 2 and threading.get_ident() not in threads
    assert sorted(t.content_hash for t in lib.tracks()) == sorted(real(p) for p in paths)


def test_hash_stream_keeps_the_order_and_names_each_unreadable_file(tmp_path: Path) -> None:
    from audiolsh.audio import content_hash
    from audiolsh.library.build import hash_stream

    files = [tmp_path / f"f{i}.bin" for i in range(7)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * (1000 + i))
    names = [str(f) for f in files]
    names.insert(3, str(tmp_path / "missing.wav"))
    out = list(hash_stream(names, workers=3))
    assert [d for d, _ in out[:3] + out[4:]] == [content_hash(f) for f in files]
    assert out[3][0] is None and "missing.wav" in out[3][1]
    assert list(hash_stream(names, workers=1)) == out


def _noting(into: list[tuple[str, int, bool]]) -> Callable[[str, int, bool], None]:
    return lambda path, n, failed: into.append((Path(path).name, n, failed))


def test_an_update_reads_each_file_once_and_says_so_in_order(tmp_path: Path, lib: Library,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "music"
    _songs(folder, 3)
    index_audio(lib, [folder / "song0.wav"], workers=1)
    read = _count_reads(monkeypatch)
    hashed: list[tuple[str, int, bool]] = []
    (folder / "song1.wav").write_bytes(b"RIFF")  # unreadable as audio, hashed all the same
    (folder / "song9.wav").mkdir()  # not a file: walked past, never hashed
    plan = plan_update(lib, folder, workers=2, on_hashed=_noting(hashed))
    assert hashed == [("song0.wav", 3, False), ("song1.wav", 3, False), ("song2.wav", 3, False)]
    report = apply_update(lib, plan, workers=1, on_hashed=_noting(hashed))
    assert sorted(read) == ["song0.wav", "song1.wav", "song2.wav"]  # the plan's reads only
    assert [Path(p).name for p in report.added] == ["song2.wav"]
    assert [Path(p).name for p, _ in report.failed] == ["song1.wav"]
    assert hashed[3:] == [("song1.wav", 2, False), ("song2.wav", 2, False)]  # known: not read again


def test_a_file_that_cannot_be_read_is_a_failed_hash(tmp_path: Path) -> None:
    from audiolsh.library.build import hash_stream

    said: list[tuple[str, int, bool]] = []
    ok = tmp_path / "ok.bin"
    ok.write_bytes(b"x" * 10)
    list(hash_stream([str(tmp_path / "gone.wav"), str(ok)], 2, on_hashed=_noting(said)))
    assert said == [("gone.wav", 2, True), ("ok.bin", 2, False)]


def test_analysis_starts_before_every_file_is_hashed_and_the_plan_falls_to_it(
        tmp_path: Path, lib: Library) -> None:
    paths = _songs(tmp_path, 6, duration_s=3.0)
    index_audio(lib, paths[:2], workers=1)
    hashed: list[str] = []
    seen_by_jobs: list[int] = []
    plans: list[int] = []

    class Watching(Inline):
        def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
            for job in jobs:
                seen_by_jobs.append(len(hashed))
                yield fn(job)

    report = index_audio(lib, paths, executor=Watching(1), on_plan=plans.append,
                         on_hashed=lambda p, n, bad: hashed.append(p))
    assert sorted(Path(p).name for p in report.added) == [p.name for p in paths[2:]]
    assert sorted(Path(p).name for p in report.skipped) == [p.name for p in paths[:2]]
    assert seen_by_jobs == [3, 4, 5, 6]  # each new file analysed as soon as it is hashed
    assert plans == [6, 5, 4]  # all may be new, then the two already indexed are not


def test_a_file_rewritten_after_the_plan_is_read_again(tmp_path: Path, lib: Library,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from audiolsh.audio import content_hash

    folder = tmp_path / "music"
    _songs(folder, 2)
    plan = plan_update(lib, folder, workers=1)
    assert sorted(Path(f).name for f in plan.add) == ["song0.wav", "song1.wav"]
    # A tag editor saves song1 between the plan and its indexing: new bytes, a new content.
    sf.write(folder / "song1.wav", synth.music(duration_s=4.0, sr=SR, seed=7), SR)
    read = _count_reads(monkeypatch)
    report = apply_update(lib, plan, workers=1)
    assert read == ["song1.wav"]  # song0 as planned; song1 read again
    assert sorted(Path(p).name for p in report.added) == ["song0.wav", "song1.wav"]
    assert lib.track_by_hash(content_hash(folder / "song1.wav")) is not None
    assert lib.track_by_hash(plan.digests[str(folder / "song1.wav")]) is None


def test_a_file_changed_while_its_hash_is_read_gets_no_stat_to_reuse(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from audiolsh.library import build
    from audiolsh.library.build import hash_stream

    files = [tmp_path / f"f{i}.bin" for i in range(2)]
    for f in files:
        f.write_bytes(b"x" * 100)
    real = build._hash_or_error

    def saved_during_the_read(path: str) -> tuple[str | None, str]:
        out = real(path)
        if path.endswith("f1.bin"):
            Path(path).write_bytes(b"y" * 200)  # a tag editor saves it as it is read
        return out

    monkeypatch.setattr(build, "_hash_or_error", saved_during_the_read)
    stats: dict[str, tuple[int, int, int, int]] = {}
    list(hash_stream([str(f) for f in files], 2, stats=stats))
    assert list(stats) == [str(files[0])]
