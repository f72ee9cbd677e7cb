"""What lets the fingerprint index grow: the narrowed two-stage search, lookups restricted to
some tracks, posting counts, and per-track hash counts stored with each segment."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiolsh.audio.synth import music, pink_noise
from audiolsh.features.landmarks import HASH_BITS, landmarks
from audiolsh.index.fingerprint import FingerprintIndex
from audiolsh.search.fingerprint import HashTable

SR = 16000
SONG_S = 30.0


@pytest.fixture(scope="module")
def songs() -> dict[str, np.ndarray]:
    return {f"song{s}.wav": music(duration_s=SONG_S, sr=SR, seed=s) for s in range(21, 29)}


def _add_all(idx: FingerprintIndex, songs: dict[str, np.ndarray]) -> FingerprintIndex:
    with idx.session() as s:
        for i, (path, y) in enumerate(songs.items()):
            s.add_track(path, content_hash=f"h{i}", duration_s=len(y) / SR, landmarks=landmarks(y, SR))
    return idx


def _clips(songs: dict[str, np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = []
    for i, y in enumerate(songs.values()):
        start = int(rng.uniform(0, SONG_S - 6) * SR)
        clip = y[start: start + 5 * SR]
        if i % 2:  # half of them noisy
            noise = pink_noise(duration_s=5.0, sr=SR, seed=i)
            clip = clip + noise * np.sqrt(np.mean(clip**2) / np.mean(noise**2))
        out.append(clip.astype(np.float32))
    return out


def test_narrowed_search_gives_the_full_answer(songs: dict[str, np.ndarray],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    idx = _add_all(FingerprintIndex.create(None, max_matches=0), songs)
    positives = _clips(songs)
    negatives = [music(duration_s=5.0, sr=SR, seed=s) for s in (91, 92, 93)]
    full = [idx.identify(c, SR, threshold=0.0) for c in positives + negatives]
    narrowed_calls: list[int] = []
    narrowed = FingerprintIndex._match_narrowed

    def spy(self: FingerprintIndex, *args: Any) -> Any:
        narrowed_calls.append(1)
        return narrowed(self, *args)

    monkeypatch.setattr(FingerprintIndex, "_match_narrowed", spy)
    idx.params.max_matches = 800  # fewer than any clip's lookups gather
    again = [idx.identify(c, SR, threshold=0.0) for c in positives + negatives]
    assert len(narrowed_calls) >= len(positives) + len(negatives)
    # Every indexed track is among its clip's candidates: the very same answer.
    assert again[: len(positives)] == full[: len(positives)]
    assert [m.path for m in full[: len(positives)] if m] == list(songs)
    # Narrowing only drops candidates: never a more confident answer than the full search.
    for f, a in zip(full[len(positives):], again[len(positives):]):
        assert a is None or (f is not None and a.log10_p >= f.log10_p)


@pytest.mark.parametrize("sorted_postings", [True, False])
def test_lookup_rows_is_lookup_tracks_restricted(rng: np.random.Generator, sorted_postings: bool) -> None:
    hashes = rng.integers(0, 300, size=5000).astype(np.uint32)
    pos = rng.integers(0, 4000, size=len(hashes)).astype(np.uint32)
    if sorted_postings:
        order = np.argsort(pos, kind="stable")
        hashes, pos = hashes[order], pos[order]
    table = HashTable.build(hashes, pos, hash_bits=HASH_BITS)
    starts = np.array([0, 1000, 1500, 3000], np.int64)
    frames = np.diff(np.append(starts, 4000))
    q = rng.integers(0, 320, size=200).astype(np.uint32)
    assert np.array_equal(table.posting_counts(q), np.bincount(hashes, minlength=320)[q])
    for cap in (0, 20):
        rows = np.array([1, 3], np.int64)
        alive = np.isin(np.arange(4), rows)
        want = table.lookup_tracks(q, starts, alive, max_postings=cap)
        got = table.lookup_rows(q, starts, frames, rows, max_postings=cap, sorted_postings=sorted_postings)
        as_set = [sorted(zip(*(a.tolist() for a in x))) for x in (want, got)]
        assert as_set[0] == as_set[1] and len(as_set[0]) > 0


def test_segments_without_stored_hash_counts_still_open(tmp_path: Path, songs: dict[str, np.ndarray]) -> None:
    """Segments written before per-track hash counts (and position-sorted postings) were stored
    open with the same counts and answers; their lookups scan instead of bisecting."""
    where = tmp_path / "fp"
    clips = _clips(songs)[:3]
    with _add_all(FingerprintIndex.create(where), songs) as idx:
        before = [idx.identify(c, SR) for c in clips]
        n_hashes = idx.n_hashes()
    for f in where.glob("segments/*/track_hashes.npy"):
        f.unlink()
    db = sqlite3.connect(where / "catalogue.sqlite")
    for seg_id, config in db.execute("SELECT id, config FROM segments").fetchall():
        old = {k: v for k, v in json.loads(config).items() if k != "sorted_postings"}
        db.execute("UPDATE segments SET config = ? WHERE id = ?", (json.dumps(old), seg_id))
    db.commit()
    db.close()
    with FingerprintIndex.open(where, readonly=True) as idx:
        assert idx.n_hashes() == n_hashes
        assert not any(s.sorted_postings for s in idx._segments)
        assert [idx.identify(c, SR) for c in clips] == before
        idx.params.max_matches = 800
        assert [idx.identify(c, SR) for c in clips] == before


@pytest.mark.parametrize(("hours", "found"), [(1.0, 0), (16.0, 60)])
def test_posting_cap_grows_with_the_segment(hours: float, found: int) -> None:
    """A hash stored 60 times is common in an hour of music (over ``max_postings`` = 48, not
    looked up) and ordinary in 16 hours (the cap doubles past ``POSTINGS_REF_HOURS`` = 8)."""
    from audiolsh.features.landmarks import Landmarks

    h = np.uint32(12345)
    lm = Landmarks(np.full(60, h, np.uint32), (np.arange(60) * 100).astype(np.int32))
    idx = FingerprintIndex.create(None, max_matches=0)
    with idx.session() as s:
        s.add_track("long.wav", content_hash="h", duration_s=hours * 3600, landmarks=lm)
    q = np.array([h], np.uint32)
    qidx, _, frames = idx._match_hashes(q, np.zeros(1, np.int64), np.zeros(1, np.int64))
    assert len(qidx) == found and (found == 0 or sorted(frames.tolist()) == lm.times.tolist())
