"""`audiolsh identify --segments`: which track plays when in a recording longer than any clip,
analysed as it streams (issue #19: bounded memory on any file)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiolsh.audio import synth
from audiolsh.cli import cli
from audiolsh.library import Library
from audiolsh.query.identify import identify_segments, identify_segments_file

SR = 22050


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory,
            synth_tracks: Callable[..., list[Path]]) -> tuple[Path, list[Path]]:
    files = synth_tracks(3, 30.0, 71)
    lib = tmp_path_factory.mktemp("seglib") / "lib"
    result = CliRunner().invoke(cli, ["index", *map(str, files), "--index", str(lib), "-j", "1",
                                      "--modes", "fingerprint"])
    assert result.exit_code == 0, result.stderr
    return lib, files


def _mix(files: list[Path], tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Track 1 from 5 s for 20 s, then 11 minutes of unindexed music (longer than any clip
    identify takes whole), then track 2 from 0 s for 20 s, as a FLAC."""
    one, _ = sf.read(files[1], dtype="float32")
    two, _ = sf.read(files[2], dtype="float32")
    minute = synth.music(duration_s=60.0, sr=SR, seed=999)
    other = np.concatenate([minute * np.float32(0.3 + 0.05 * i) for i in range(11)])
    y = np.concatenate([one[5 * SR:25 * SR], other, two[:20 * SR]]).astype(np.float32)
    path = tmp_path / "radio hour.flac"
    sf.write(path, y, SR, format="FLAC", subtype="PCM_16")
    return path, y


def test_segments_of_a_recording_longer_than_a_clip(tmp_path: Path, indexed: tuple[Path, list[Path]]) -> None:
    lib, files = indexed
    mix, _ = _mix(files, tmp_path)
    result = CliRunner().invoke(cli, ["identify", str(mix), "--segments", "--index", str(lib),
                                      "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)[0]["segments"]
    assert [Path(r["path"]).name for r in rows] == [files[1].name, files[2].name]
    first, second = rows
    assert first["start_s"] < 1.0 and abs(first["end_s"] - 20.0) < 1.5
    assert abs(first["offset_s"] - (5.0 + first["start_s"])) < 0.2
    assert abs(second["start_s"] - 680.0) < 1.5
    assert abs(second["offset_s"] - (second["start_s"] - 680.0)) < 0.2
    # --offset starts the analysis later; times stay the recording's
    result = CliRunner().invoke(cli, ["identify", str(mix), "--segments", "--offset", "600",
                                      "--index", str(lib), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)[0]["segments"]
    assert [Path(r["path"]).name for r in rows] == [files[2].name]
    assert abs(rows[0]["start_s"] - 680.0) < 1.5
    # without --segments the recording is one clip, and longer than a clip may be
    result = CliRunner().invoke(cli, ["identify", str(mix), "--index", str(lib)])
    assert result.exit_code == 2 and "too long" in result.stderr and "Traceback" not in result.stderr
    assert "--segments says which tracks a long recording plays" in result.stderr  # what to do instead


def test_streamed_segments_equal_the_whole_signal_s(tmp_path: Path, indexed: tuple[Path, list[Path]]) -> None:
    lib, files = indexed
    one, _ = sf.read(files[0], dtype="float32")
    two, _ = sf.read(files[1], dtype="float32")
    y = np.concatenate([one[3 * SR:23 * SR], two[2 * SR:24 * SR]]).astype(np.float32)
    path = tmp_path / "pair.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    with Library.open(lib, readonly=True) as library:
        whole = identify_segments(library, y, SR)
        streamed = identify_segments_file(library, path)
        assert [m.path for _, _, m in whole] == [str(files[0]), str(files[1])]
        assert [(m.path, m.track_id) for _, _, m in streamed] == [(m.path, m.track_id) for _, _, m in whole]
        for (a0, a1, a), (b0, b1, b) in zip(whole, streamed):
            assert abs(a0 - b0) < 0.1 and abs(a1 - b1) < 0.1 and abs(a.offset_s - b.offset_s) < 0.05
        with pytest.raises(Exception, match="past the end"):
            identify_segments_file(library, path, offset_s=60.0)
