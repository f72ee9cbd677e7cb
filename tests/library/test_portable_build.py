"""A library built from segments made in two other processes answers as `audiolsh index` of the
same files does: fit once, build parts elsewhere with reserved ids, attach, merge."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from audiolsh.audio import content_hash
from audiolsh.library import Extracted, Library, LibraryPart, extract
from audiolsh.library.build import BuildSpec, build_from_spec

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


def test_parts_from_a_spec_number_their_rows_when_attached(tmp_path: Path,
                                                           synth_tracks: Callable[..., list[Path]]) -> None:
    """A part built from a BuildSpec (JSON, no library handle) and sent as bytes, its rows
    numbered at attach, is the part a writable library builds with reserved ids."""
    files = synth_tracks(3, 14.0, 40)
    modes = ("fingerprint", "rhythm", "timbre", "chroma", "peaks")
    batch = [extract(str(f), content_hash(f), modes, 10.0, 5.0) for f in files]
    sent = [Extracted.from_bytes(ex.to_bytes()) for ex in batch]
    for ex, back in zip(batch, sent):
        assert (back.path, back.content_hash, back.duration_s) == (ex.path, ex.content_hash, ex.duration_s)
        assert all(np.array_equal(ex.vectors[m][0], back.vectors[m][0]) for m in ex.vectors)
        assert np.array_equal(ex.landmarks.hashes, back.landmarks.hashes)
        assert np.array_equal(ex.peaks[0].elements, back.peaks[0].elements)
    chunks = (slice(0, 2), slice(2, 3))
    with Library.create(None, modes=modes) as a, Library.create(None, modes=modes) as b:
        a.fit(batch)
        b.fit(sent)
        a.attach([a.build(batch[c]) for c in chunks])
        spec = BuildSpec.from_dict(json.loads(json.dumps(BuildSpec.of(b).to_dict())))
        parts = [LibraryPart.from_bytes(build_from_spec(spec, sent[c]).to_bytes(), tmp_path / f"part-{i}")
                 for i, c in enumerate(chunks)]
        assert all(p.local_ids for p in parts)
        b.set_auto_compact(False)
        assert b.attach(parts) == [1, 2, 3]
        for name, index in a.indexes.items():
            segs_a, segs_b = index._segments, b.indexes[name]._segments
            assert len(segs_a) == len(segs_b) == 2
            for sa, sb in zip(segs_a, segs_b):
                assert np.array_equal(sa.ids, sb.ids)
                assert index.items(sa.ids) == b.indexes[name].items(sb.ids)
                tables = sb.searcher.tables_.arrays()
                assert all(np.array_equal(t, tables[k]) for k, t in sa.searcher.tables_.arrays().items())
