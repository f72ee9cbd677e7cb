"""A library built from segments made in two other processes answers as `audiolsh index` of the
same files does: fit once, build parts elsewhere with reserved ids, attach, merge."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from audiolsh.audio import content_hash
from audiolsh.library import Library, LibraryPart, extract

SR = 22050

BUILD_PART = """
import sys
from audiolsh.audio import content_hash
from audiolsh.library import Library, extract

location, out, *files = sys.argv[1:]
with Library.open(location) as lib:
    cfg = lib.config
    batch = [extract(f, content_hash(f), cfg.modes, cfg.window_s, cfg.hop_s) for f in files]
    lib.build(batch).save(out)
"""


@pytest.fixture(scope="module")
def music(synth_tracks: Callable[..., list[Path]]) -> list[Path]:
    return synth_tracks(6, 30.0, 70)


def _cli_index(files: list[Path], where: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "audiolsh", "index", *map(str, files), "--index", str(where),
                          "-j", "2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_parts_built_in_two_processes_answer_as_one_index_run(tmp_path: Path, music: list[Path],
                                                              answers: Callable[..., list[object]]) -> None:
    reference = tmp_path / "reference"
    _cli_index(music, reference)

    where = tmp_path / "portable"
    with Library.create(where) as lib:
        cfg = lib.config
        # The explicit learning stage, on the sample `audiolsh index` learns from (its first batch).
        sample = [extract(str(f), content_hash(f), cfg.modes, cfg.window_s, cfg.hop_s) for f in music]
        assert lib.fit(sample) and not lib.fit(sample)  # learned once, then frozen
    parts = []
    for name, files in (("a", music[:3]), ("b", music[3:])):
        out = tmp_path / f"part-{name}"
        run = subprocess.run([sys.executable, "-c", BUILD_PART, str(where), str(out), *map(str, files)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        parts.append(LibraryPart.load(out))
    with Library.open(where) as lib:
        lib.set_auto_compact(False)
        # An attach that stopped after some modes committed: attaching the part again completes it.
        lib._by_mode["rhythm"].attach(parts[0].builds["rhythm"])
        ids = lib.attach(parts)
        assert ids == [1, 2, 3, 4, 5, 6] and len(lib) == 6
        assert lib.attach(parts) == [] and len(lib) == 6  # and once more changes nothing
        assert all(len(index.info()["segments"]) == 2 for index in lib.indexes.values())
        assert lib.fingerprint is not None and lib.fingerprint.info()["n_segments"] == 2
        lib.compact(full=True)
        assert all(len(index.info()["segments"]) == 1 for index in lib.indexes.values())

    with Library.open(reference, readonly=True) as ref, Library.open(where, readonly=True) as built:
        assert [t.content_hash for t in ref.tracks()] == [t.content_hash for t in built.tracks()]
        assert ref.config.to_dict() == built.config.to_dict()  # the same learned state
        # One merge of the parts' segments is the segment one build of all rows makes.
        for name in ("rhythm", "peaks", "embedding"):
            a = ref.indexes[name]._segments[0]
            b = built.indexes[name]._segments[0]
            assert np.array_equal(a.ids, b.ids)
            for key, table in a.searcher.tables_.arrays().items():
                assert np.array_equal(table, b.searcher.tables_.arrays()[key]), (name, key)
        assert answers(ref, music) == answers(built, music)


def test_a_part_is_refused_before_the_library_has_learned(tmp_path: Path, music: list[Path]) -> None:
    with Library.create(tmp_path / "lib", modes=("rhythm", "timbre")) as lib:
        ex = extract(str(music[0]), content_hash(music[0]), lib.modes, 10.0, 5.0)
        with pytest.raises(ValueError, match=r"no rhythm statistics yet.*Library\.fit"):
            lib.build([ex])
        lib.fit([ex])
        part = lib.build([ex])
        part.save(tmp_path / "part")
        (tmp_path / "part" / "part.json").write_text("{}")
        with pytest.raises(RuntimeError, match="not a saved library part"):
            LibraryPart.load(tmp_path / "part")
