"""An index whose segments have a bucket per hash value (as every segment of a hundred hours
and more has) keeps no low hash bits and answers, lists its landmarks and compacts as one
with low bits does; the two layouts mix in one index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from audiolsh.audio.synth import music
from audiolsh.errors import IndexFormatError
from audiolsh.index import fingerprint as fpi
from audiolsh.index.fingerprint import FP_FORMAT_VERSION, FingerprintIndex
from audiolsh.search import fingerprint as sfp

SR = 16000


@pytest.fixture(scope="module")
def songs() -> dict[str, np.ndarray]:
    return {f"song{s}.wav": music(duration_s=25.0, sr=SR, seed=s) for s in (31, 32, 33)}


def _landmark_set(idx: FingerprintIndex) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for tids, frames, hashes in idx.landmark_chunks(3):
        out += zip(tids.tolist(), frames.tolist(), hashes.tolist())
    return sorted(out)


def test_segments_with_a_bucket_per_hash(songs: dict[str, np.ndarray], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    paths = list(songs)
    plain = FingerprintIndex.create(None, max_segments=8)
    plain_ids = [plain.add(p, songs[p], SR, content_hash=p) for p in paths]
    where = tmp_path / "fp"
    with FingerprintIndex.create(where, max_segments=8) as idx:
        ids = [idx.add(paths[0], songs[paths[0]], SR, content_hash=paths[0])]  # low bits kept
        monkeypatch.setattr(sfp, "high_bits_for", lambda n, hash_bits: hash_bits)
        ids += [idx.add(p, songs[p], SR, content_hash=p) for p in paths[1:]]
        assert ids == plain_ids
        lows = [len(seg.table.low) for seg in idx._segments]
        assert lows[0] == len(idx._segments[0].table) > 0 and lows[1:] == [0, 0]
    with FingerprintIndex.open(where, readonly=True) as idx:
        assert _landmark_set(idx) == _landmark_set(plain)
        for k, p in enumerate(paths):
            m = idx.identify(songs[p][(6 + k) * SR:(11 + k) * SR], SR)
            assert m is not None and m.track_id == ids[k] and abs(m.offset_s - (6 + k)) < 0.1
    with FingerprintIndex.open(where) as idx:
        idx.compact(full=True)
        assert len(idx._segments) == 1 and len(idx._segments[0].table.low) == 0
        assert _landmark_set(idx) == _landmark_set(plain)
        m = idx.identify(songs[paths[0]][14 * SR:17 * SR], SR)
        assert m is not None and m.track_id == ids[0] and abs(m.offset_s - 14) < 0.1


def test_a_segment_of_a_newer_format_is_refused(songs: dict[str, np.ndarray], tmp_path: Path) -> None:
    """A segment written by a newer audiolsh (its layout may not be this one's) stops the open
    with a message that says so, not with a wrong answer."""
    where = tmp_path / "fp"
    with FingerprintIndex.create(where) as idx:
        path = next(iter(songs))
        idx.add(path, songs[path], SR, content_hash=path)
    db = sqlite3.connect(where / "catalogue.sqlite")
    try:
        (seg_id, text), = db.execute("SELECT id, config FROM segments").fetchall()
        config = json.loads(text)
        assert config["format_version"] == FP_FORMAT_VERSION
        config["format_version"] = FP_FORMAT_VERSION + 1
        db.execute("UPDATE segments SET config = ? WHERE id = ?", (json.dumps(config), seg_id))
        db.commit()
    finally:
        db.close()
    with pytest.raises(IndexFormatError, match=rf"segment {seg_id}: fingerprint segment format version"
                                              rf" {FP_FORMAT_VERSION + 1} is newer .*upgrade audiolsh"):
        FingerprintIndex.open(where, readonly=True).identify(songs[path][:5 * SR], SR)


def _set_version(idx: FingerprintIndex, version: int) -> None:
    """The index's config as an audiolsh that writes fingerprint format ``version`` stored it."""
    with idx.storage.write() as w:
        w.set_config({**idx.storage.config(), "format_version": version})


@pytest.mark.parametrize("where", ["memory", "embedded"])
@pytest.mark.parametrize("how", ["add", "compact"])
def test_an_index_is_raised_to_the_version_that_reads_its_segments(
        songs: dict[str, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str,
        how: str) -> None:
    """A version-4 index keeps its version while its segments keep low bits, and is raised to
    5 when a segment without them is written into it (by an add or a compaction), so that an
    audiolsh that reads version 4 at most says "upgrade" instead of misreading the segment."""
    paths = list(songs)
    idx = FingerprintIndex.create(None if where == "memory" else tmp_path / "fp", max_segments=8)
    _set_version(idx, 4)
    before = idx.storage.config()
    idx.add(paths[0], songs[paths[0]], SR, content_hash=paths[0])
    assert idx.storage.config()["format_version"] == 4
    monkeypatch.setattr(sfp, "high_bits_for", lambda n, hash_bits: hash_bits)
    if how == "add":
        idx.add(paths[1], songs[paths[1]], SR, content_hash=paths[1])
    else:
        monkeypatch.undo()
        idx.add(paths[1], songs[paths[1]], SR, content_hash=paths[1])
        assert idx.storage.config()["format_version"] == 4
        monkeypatch.setattr(sfp, "high_bits_for", lambda n, hash_bits: hash_bits)
        idx.compact(full=True)
    assert len(idx._segments[-1].table.low) == 0
    stored = idx.storage.config()
    assert stored == {**before, "format_version": 5}
    monkeypatch.setattr(fpi, "FP_FORMAT_VERSION", 4)  # the version-4 reader
    with pytest.raises(IndexFormatError, match=r"fingerprint format version 5 is newer .*upgrade audiolsh"):
        FingerprintIndex._check_config(stored, "fp")
    idx.close()
