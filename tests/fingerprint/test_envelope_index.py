"""The energy envelope an index keeps beside each track's hashes, and the confidence it buys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from audiolsh.audio.synth import music, pink_noise
from audiolsh.features import stream_peaks
from audiolsh.features.envelope import BLOCK_FRAMES, band_power, clip_z, track_envelope
from audiolsh.features.landmarks import FP_SR, landmarks, magnitude_frames
from audiolsh.index import confidence as calibrated
from audiolsh.index.fingerprint import FingerprintIndex
from audiolsh.library.extract import Extracted

SR = 16000
SONG_S = 30.0
SEEDS = (21, 22, 23)


@pytest.fixture(scope="module")
def songs() -> dict[str, np.ndarray]:
    return {f"song{s}.wav": music(duration_s=SONG_S, sr=SR, seed=s) for s in SEEDS}


def _envelope_of(y: np.ndarray) -> np.ndarray:
    y8 = np.asarray(soxr.resample(y, SR, FP_SR, quality="HQ"), np.float32)
    return track_envelope(band_power(magnitude_frames(y8)))


def _stored(idx: FingerprintIndex) -> dict[int, np.ndarray]:
    """Each live track's envelope bytes as the segments hold them."""
    out = {}
    for seg in idx._segments:
        for row in np.flatnonzero(seg.alive):
            out[int(seg.track_ids[row])] = seg.envelope[seg.env_starts[row]:seg.env_starts[row + 1]].copy()
    return out


def _noisy(y: np.ndarray, start_s: float, length_s: float, snr_db: float, seed: int) -> np.ndarray:
    clip = y[int(start_s * SR):int((start_s + length_s) * SR)]
    noise = pink_noise(duration_s=len(clip) / SR, sr=SR, seed=seed)[:len(clip)]
    gain = np.sqrt(np.mean(clip**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (clip + gain * noise).astype(np.float32)


def test_a_track_keeps_its_envelope_of_a_byte_per_block(songs: dict[str, np.ndarray]) -> None:
    idx = FingerprintIndex.create(None)
    with idx.session() as s:
        for i, (path, y) in enumerate(songs.items()):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR, landmarks=landmarks(y, SR))
    ids = dict(zip(songs, s.track_ids))
    stored = _stored(idx)
    for path, y in songs.items():
        expected = _envelope_of(y)
        assert len(expected) == len(magnitude_frames(soxr.resample(y, SR, FP_SR))) // BLOCK_FRAMES
        assert stored[ids[path]].dtype == np.uint8
        np.testing.assert_array_equal(stored[ids[path]], expected)
    # The bytes count in the index's size: one a block, 8 bands of 96 ms.
    info = idx.info()
    assert sum(len(e) for e in stored.values()) == sum(len(_envelope_of(y)) for y in songs.values())
    without = FingerprintIndex.create(None)
    with without.session() as s:
        for i, (path, y) in enumerate(songs.items()):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR,
                        landmarks=replace(landmarks(y, SR), envelope=None))
    assert info["index_bytes"] - without.info()["index_bytes"] == sum(len(e) for e in stored.values())
    assert info["n_tracks_without_envelope"] == 0
    assert without.info()["n_tracks_without_envelope"] == len(songs)


def test_the_streamed_ingest_and_a_saved_extraction_keep_the_same_envelope(
    songs: dict[str, np.ndarray],
) -> None:
    y = songs["song21.wav"]
    whole = landmarks(y, SR)
    stream = stream_peaks.Fingerprint(SR)
    for i in range(0, len(y), 7777):  # chunks that cut frames and blocks anywhere
        stream.push(y[i:i + 7777])
    streamed = stream.finish()
    assert whole.envelope is not None and streamed.envelope is not None
    np.testing.assert_array_equal(streamed.envelope, whole.envelope)
    ex = Extracted("a.wav", "h", SONG_S, {}, landmarks=whole)
    back = Extracted.from_bytes(ex.to_bytes()).landmarks
    np.testing.assert_array_equal(back.envelope, whole.envelope)
    np.testing.assert_array_equal(back.hashes, whole.hashes)
    # A time-rescaled analysis (a query's) has no envelope of its own track.
    assert landmarks(y, SR, hop_scale=1.02).envelope is None


def test_compaction_keeps_each_live_tracks_envelope(songs: dict[str, np.ndarray]) -> None:
    idx = FingerprintIndex.create(None, max_segments=8)
    ids = [idx.add(path, y, SR) for path, y in songs.items()]  # a segment each
    before = _stored(idx)
    idx.remove_track(ids[1])
    idx.compact(full=True)
    assert len(idx._segments) == 1
    after = _stored(idx)
    assert sorted(after) == [ids[0], ids[2]]
    for tid in after:
        np.testing.assert_array_equal(after[tid], before[tid])


def test_a_clip_is_scored_by_its_envelope_at_the_right_track(songs: dict[str, np.ndarray]) -> None:
    idx = FingerprintIndex.create(None)
    ids = {path: idx.add(path, y, SR) for path, y in songs.items()}
    cal = calibrated.load()
    for k, (path, y) in enumerate(songs.items()):
        clip = _noisy(y, 9.0 + k, 5.0, 3.0, seed=k)
        v = idx.assess(clip, SR, min_confidence=0.0)
        m = v.best
        assert m is not None and m.track_id == ids[path]
        assert m.envelope_z is not None and m.envelope_z > 3.0
        # The same frames against another track at the same offset agree only by chance.
        y8 = np.asarray(soxr.resample(clip, SR, FP_SR, quality="HQ"), np.float32)
        other = next(p for p in songs if p != path)
        z_other = clip_z(magnitude_frames(y8), _envelope_of(songs[other]), offset_frames=m.offset_s / 0.032)
        assert z_other < m.envelope_z - 2.0
        assert m.confidence == pytest.approx(
            cal.confidence(m.log10_p, m.score, m.n_query_hashes, m.clip_s, m.noise, m.envelope_z))


def test_a_track_without_an_envelope_is_scored_as_before(
    tmp_path: Path, songs: dict[str, np.ndarray], stored_config: Callable[..., Any],
) -> None:
    """A version-3 index (its tracks have no envelope) opens, and its candidates take the
    calibration fitted without the envelope; tracks added since have one."""
    where = tmp_path / "v3"
    paths = list(songs)
    with FingerprintIndex.create(where) as idx, idx.session() as s:
        s.add_track(paths[0], content_hash="h0", duration_s=SONG_S,
                    landmarks=replace(landmarks(songs[paths[0]], SR), envelope=None))
    with stored_config(where) as config:
        config["format_version"] = 3
    with FingerprintIndex.open(where) as idx:
        new_id = idx.add(paths[1], songs[paths[1]], SR)
        old = calibrated.load(calibrated.WITHOUT_ENVELOPE)
        m = idx.assess(_noisy(songs[paths[0]], 5.0, 5.0, 10.0, seed=1), SR, min_confidence=0.0).best
        assert m is not None and m.path == paths[0] and m.envelope_z is None
        assert m.confidence == pytest.approx(old.confidence(m.log10_p, m.score, m.n_query_hashes, m.clip_s,
                                                            m.noise))
        m2 = idx.assess(_noisy(songs[paths[1]], 5.0, 5.0, 10.0, seed=2), SR, min_confidence=0.0).best
        assert m2 is not None and m2.track_id == new_id and m2.envelope_z is not None
        assert idx.info()["n_tracks_without_envelope"] == 1
        # After compaction the old track still has none and the new one keeps its own.
        idx.compact(full=True)
        stored = _stored(idx)
        assert len(stored[m.track_id]) == 0
        np.testing.assert_array_equal(stored[new_id], _envelope_of(songs[paths[1]]))
