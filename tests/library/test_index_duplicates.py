"""``index_audio`` with files of one content: empty files are refused each by name, and a file is
"already indexed" only when a file of its content was indexed, never when that file failed."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.library import Library, index_audio

SR = 22050
MODES = ("embedding",)


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Library]:
    with Library.create(tmp_path / "lib", modes=MODES) as library:
        yield library


def test_each_empty_file_is_refused_by_name(tmp_path: Path, lib: Library) -> None:
    empties = [tmp_path / f"empty.{ext}" for ext in ("wav", "ogg", "mp3", "flac")]
    for path in empties:
        path.write_bytes(b"")
    said: list[tuple[str, str]] = []
    report = index_audio(lib, empties, workers=1, on_file=lambda p, s: said.append((p, s)))
    assert not report.skipped and not report.added
    names = sorted(p.name for p in empties)
    assert sorted(Path(f).name for f, _ in report.failed) == names
    assert all(msg.endswith("empty file (0 bytes)") and Path(f).name in msg for f, msg in report.failed)
    assert sorted(Path(p).name for p, s in said if s.startswith("failed: ")) == names


def test_a_copy_of_a_file_that_failed_is_not_already_indexed(tmp_path: Path, lib: Library) -> None:
    noise = np.random.default_rng(3).bytes(20_000)
    copies = [tmp_path / f"noise{i}.wav" for i in range(3)]
    for path in copies:
        path.write_bytes(noise)
    report = index_audio(lib, copies, workers=1)
    assert report.skipped == [] and report.added == []
    assert sorted(Path(f).name for f, _ in report.failed) == [p.name for p in copies]
    assert all("not audio" in msg for _, msg in report.failed)


class FailsFirst:
    """An executor on which the extraction of ``path`` fails (a read error, say) and every
    other job runs as it would locally."""

    workers = 1

    def __init__(self, path: Path, eager: bool = False) -> None:
        self.path = str(path)
        self.eager = eager  # every job read (so every file hashed) before the first runs

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        for job in list(jobs) if self.eager else jobs:
            yield (job[0], f"{job[0]}: cannot read file") if job[0] == self.path else fn(job)


@pytest.mark.parametrize("eager", [False, True])
def test_the_next_copy_of_a_file_that_failed_is_tried_itself(tmp_path: Path, lib: Library,
                                                             eager: bool) -> None:
    first, second, third = (tmp_path / f"copy{i}.wav" for i in range(3))
    sf.write(first, synth.music(duration_s=12.0, sr=SR, seed=5), SR, subtype="PCM_16")
    shutil.copyfile(first, second)
    shutil.copyfile(first, third)
    plans: list[int] = []
    report = index_audio(lib, [first, second, third], executor=FailsFirst(first, eager), on_plan=plans.append)
    assert report.failed == [(str(first), f"{first}: cannot read file")]
    assert report.added == [str(second)]
    assert report.skipped == [str(third)]  # the content is in the library now
    # Three may be extracted; lazily, the second is hashed after the first failed and is
    # planned itself; eagerly, the copies wait for the first, and the second is tried again.
    assert plans == ([3, 2, 1, 2] if eager else [3, 2])
    assert [Path(t.path).name for t in lib.tracks()] == ["copy1.wav"]

