"""The hash-level copies that grow a fingerprint index to thousands of hours, and the
out-of-core segment build they go through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiolsh.audio.synth import music
from audiolsh.evaluation import fingerprint_scale as fs
from audiolsh.features.landmarks import FP_SR, landmarks
from audiolsh.index.fingerprint import FingerprintIndex
from audiolsh.index.fingerprint_build import build_segment

SONG_S = 40.0


@pytest.fixture(scope="module")
def sources() -> list[fs.Source]:
    out = []
    for seed in (31, 32, 33):
        lm = landmarks(music(duration_s=SONG_S, sr=FP_SR, seed=seed), FP_SR)
        out.append(fs.Source(f"song{seed}.wav", lm.hashes, lm.times, SONG_S, lm.envelope))
    return out


def test_copies_are_deterministic_and_differ_from_their_source(sources: list[fs.Source]) -> None:
    src = sources[0]
    assert fs.synthetic_copy(src, fs.copy_spec(0, 0)) is src
    a, b = (fs.synthetic_copy(src, fs.copy_spec(0, 1, seed=5)) for _ in range(2))
    assert np.array_equal(a.hashes, b.hashes) and np.array_equal(a.times, b.times)
    c = fs.synthetic_copy(src, fs.copy_spec(0, 2, seed=5))
    assert not np.array_equal(a.hashes, c.hashes)
    specs = [fs.copy_spec(0, k) for k in range(1, 40)]
    assert all(fs.FREQ_RATIO[0] <= s.freq_ratio <= fs.FREQ_RATIO[1] for s in specs)
    assert len({round(s.freq_ratio, 6) for s in specs}) == len(specs)
    # Never the source's landmark at the source's time: an anchor bin moves by 12 % or more.
    pairs = set(zip(src.hashes.tolist(), src.times.tolist()))
    for s in specs[:5]:
        cp = fs.synthetic_copy(src, s)
        shared = sum((h, t) in pairs for h, t in zip(cp.hashes.tolist(), cp.times.tolist()))
        assert shared < 0.01 * len(cp.hashes)
        assert np.all(np.diff(cp.times) >= 0) and cp.duration_s == pytest.approx(SONG_S * s.time_ratio)


def test_copies_keep_their_sources_hash_statistics(sources: list[fs.Source]) -> None:
    for i, src in enumerate(sources):
        for k in (1, 2, 3):
            st = fs.copy_statistics(src, fs.synthetic_copy(src, fs.copy_spec(i, k)))
            assert st["rate_copy"] == pytest.approx(st["rate_src"], rel=0.1), st
            # How clumped a track's hashes are (loops, held notes).
            assert 0.7 <= st["repeat_copy"] / st["repeat_src"] <= 1.5, st
            assert st["single_copy"] == pytest.approx(st["single_src"], abs=0.1), st


def test_plan_continues_where_an_index_stopped() -> None:
    durations = [100.0, 200.0, 300.0]
    whole = fs.plan(durations, hours=0.5)
    assert [(s.source, s.k) for s in whole[:4]] == [(0, 0), (1, 0), (2, 0), (0, 1)]
    assert sum(durations[s.source] * s.time_ratio for s in whole) >= 1800
    first = fs.plan(durations, hours=0.25)
    assert first + fs.plan(durations, hours=0.5, start=len(first)) == whole


def test_grown_index_is_what_one_in_memory_build_makes(tmp_path: Path, sources: list[fs.Source],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "CHUNK", 20_000)  # several spills into the range files
    idx = FingerprintIndex.create(tmp_path / "fp")
    assert fs.grow(idx, sources, hours=0.05, workdir=tmp_path / "work") == 5
    added = fs.grow(idx, sources, hours=0.1, workdir=tmp_path / "work")
    specs = fs.plan([s.duration_s for s in sources], hours=0.1)
    assert added == len(specs) - 5 and len(idx) == len(specs) and len(idx._segments) == 2
    copies = [fs.synthetic_copy(sources[s.source], s) for s in specs[5:]]
    want = build_segment([{"path": c.name, "content_hash": c.name, "duration_s": c.duration_s}
                          for c in copies], [fs_landmarks(c) for c in copies])
    seg = idx._segments[1]
    for name in ("indptr", "low", "pos"):
        assert np.array_equal(getattr(seg.table, name), want.arrays[name]), name
    assert np.array_equal(seg.per_track, want.arrays["track_hashes"])
    assert np.array_equal(seg.frames, want.arrays["track_frames"])
    # A copy's envelope is random bytes of its length; a real track keeps its own.
    assert np.array_equal(np.diff(seg.env_starts), [c.n_frames // 3 for c in copies])
    real = idx._segments[0]
    for row, src in enumerate(sources):
        assert np.array_equal(real.envelope[real.env_starts[row]:real.env_starts[row + 1]], src.envelope)
    clip = music(duration_s=SONG_S, sr=FP_SR, seed=32)[8 * FP_SR: 13 * FP_SR]
    m = idx.identify(clip, FP_SR)
    assert m is not None and m.path == "song32.wav" and abs(m.offset_s - 8.0) < 0.1
    assert m.envelope_z is not None and m.envelope_z > 3.0
    idx.close()


def fs_landmarks(c: fs.Source):  # type: ignore[no-untyped-def]
    from audiolsh.features.landmarks import Landmarks
    return Landmarks(c.hashes, c.times)
