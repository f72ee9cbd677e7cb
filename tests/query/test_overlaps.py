"""Overlaps: a passage planted from one synthetic song into another, a full duplicate in another
container at another gain, and the self-join's arrays (exact pairing, capped skew, sampling that
does not depend on order, chunking that does not change the answer)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.errors import ParameterError
from audiolsh.library import Library, index_audio
from audiolsh.query.overlaps import Overlap, join_hashes, library_overlaps, overlaps_of

SR = 22050
DURATION_S = 40.0
FROM_S, LENGTH_S, INTO_S = 5.0, 8.0, 12.0


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five seeded songs: b holds 8 s of a (from 5 s) at 12 s; c_copy is c as FLAC at 70 % gain."""
    root = tmp_path_factory.mktemp("overlaps")
    songs = {name: synth.music(duration_s=DURATION_S, sr=SR, seed=300 + i)
             for i, name in enumerate(["a", "b", "c", "d", "e"])}
    songs["b"][round(INTO_S * SR):round((INTO_S + LENGTH_S) * SR)] = \
        songs["a"][round(FROM_S * SR):round((FROM_S + LENGTH_S) * SR)]
    files = {}
    for name, y in songs.items():
        files[name] = root / f"{name}.wav"
        sf.write(files[name], y, SR)
    files["c_copy"] = root / "c_copy.flac"
    sf.write(files["c_copy"], 0.7 * songs["c"], SR, format="FLAC", subtype="PCM_16")
    return files


@pytest.fixture(scope="module")
def library(music: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("lib") / "lib"
    with Library.create(where, modes=("fingerprint",)) as lib:
        report = index_audio(lib, [music["a"].parent], workers=1)
    assert len(report.added) == 6 and not report.failed
    return where


def _names(o: Overlap) -> tuple[str, str]:
    return Path(o.path_a).stem, Path(o.path_b).stem


def _oriented(o: Overlap, first: str) -> tuple[float, float, float]:
    """(offset in ``first``, offset in the other track, length) whichever track is a."""
    if Path(o.path_a).stem == first:
        return o.offset_a_s, o.offset_b_s, o.length_s
    return o.offset_b_s, o.offset_a_s, o.length_s


def test_the_planted_passage_and_the_duplicate_and_nothing_else(library: Path) -> None:
    with Library.open(library, readonly=True) as lib:
        found = library_overlaps(lib)
    pairs = sorted(tuple(sorted(_names(o))) for o in found)
    assert pairs == [("a", "b"), ("c", "c_copy")], [(_names(o), o.confidence) for o in found]
    passage = next(o for o in found if set(_names(o)) == {"a", "b"})
    in_a, in_b, length = _oriented(passage, "a")
    # The span is that of the agreeing hashes: within a block of peak picking (16 frames, 0.5 s)
    # of the splice, the two tracks pick different peaks.
    assert FROM_S <= in_a <= FROM_S + 0.5
    assert INTO_S <= in_b <= INTO_S + 0.5
    assert in_b - in_a == pytest.approx(INTO_S - FROM_S, abs=0.05)
    assert length == pytest.approx(LENGTH_S, abs=1.0)
    assert passage.kind == "passage" and passage.confidence >= 0.999
    duplicate = next(o for o in found if set(_names(o)) == {"c", "c_copy"})
    assert duplicate.kind == "duplicate"
    assert duplicate.offset_a_s == pytest.approx(0.0, abs=0.2)
    assert duplicate.offset_b_s == pytest.approx(0.0, abs=0.2)
    assert duplicate.length_s == pytest.approx(DURATION_S, abs=1.0)
    assert duplicate.track_a < duplicate.track_b and passage.track_a < passage.track_b


def test_min_seconds_drops_the_shorter_stretch(library: Path) -> None:
    with Library.open(library, readonly=True) as lib:
        found = library_overlaps(lib, min_seconds=12.0)
        assert [set(_names(o)) for o in found] == [{"c", "c_copy"}]
        with pytest.raises(ParameterError, match="--min-seconds"):
            library_overlaps(lib, min_seconds=-1.0)


def test_the_arrays_give_what_the_library_gives_in_any_chunks(library: Path) -> None:
    """The library's two passes (counting, then keeping only dense cells) lose nothing, and
    neither the chunking nor the order of the landmarks changes the answer."""
    with Library.open(library, readonly=True) as lib:
        fp = lib.fingerprint
        assert fp is not None
        tids, times, hashes = next(fp.landmark_chunks(1))
        ids, frames = fp.track_frames()
        lib_ids = lib.resolve_tracks("fingerprint", tids)
        order = np.argsort(lib.resolve_tracks("fingerprint", ids))
        track_frames = (lib.resolve_tracks("fingerprint", ids)[order], frames[order])
        shuffle = np.random.default_rng(1).permutation(len(tids))
        plain = overlaps_of(lib_ids[shuffle], times[shuffle], hashes[shuffle], track_frames=track_frames,
                            min_frames=round(3.0 / 0.032))
        got = [(o.track_a, o.track_b, o.offset_a_s, o.offset_b_s, o.length_s, o.score)
               for o in library_overlaps(lib)]
        chunked = [(o.track_a, o.track_b, o.offset_a_s, o.offset_b_s, o.length_s, o.score)
                   for o in library_overlaps(lib, chunk_landmarks=5000)]
    want = [(int(plain.track_a[i]), int(plain.track_b[i]), float(plain.start_a[i]) * 0.032,
             float(plain.start_b[i]) * 0.032, float(plain.length[i]) * 0.032, int(plain.score[i]))
            for i in range(len(plain))]
    assert len(want) == 2
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(chunked, want)


def test_a_removed_track_shares_nothing(music: dict[str, Path]) -> None:
    with Library.create(None, modes=("fingerprint",)) as lib:
        index_audio(lib, [music["a"], music["b"], music["d"]], workers=1)
        assert [set(_names(o)) for o in library_overlaps(lib)] == [{"a", "b"}]
        b = next(t for t in lib.tracks() if Path(t.path).stem == "b")
        lib.remove_track(b.id)
        assert library_overlaps(lib) == []


def test_a_library_without_fingerprints_is_refused() -> None:
    with Library.create(None, modes=("timbre",)) as lib, pytest.raises(ParameterError, match="fingerprint"):
        library_overlaps(lib)


# The self-join's arrays --------------------------------------------------------------------


def _brute(track_ids: np.ndarray, times: np.ndarray, hashes: np.ndarray) -> list[tuple[int, ...]]:
    out = []
    for i, j in combinations(range(len(hashes)), 2):
        if hashes[i] == hashes[j] and track_ids[i] != track_ids[j]:
            lo, hi = (i, j) if track_ids[i] < track_ids[j] else (j, i)
            out.append((int(track_ids[lo]), int(track_ids[hi]), int(times[lo]), int(times[hi]),
                        int(hashes[i])))
    return sorted(out)


def _votes(pairs) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    return sorted(zip(pairs.tracks[pairs.a].tolist(), pairs.tracks[pairs.b].tolist(),
                      pairs.time_a.tolist(), pairs.time_b.tolist(), pairs.hashes.tolist()))


@pytest.mark.parametrize("seed", range(5))
def test_join_pairs_every_entry_of_a_hash_across_tracks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    track_ids = rng.choice([3, 8, 20, 21, 40], n)
    times = rng.integers(0, 500, n)
    hashes = rng.integers(0, 40, n).astype(np.uint32)
    pairs = join_hashes(track_ids, times, hashes, max_per_hash=n)
    assert (pairs.a < pairs.b).all()
    assert _votes(pairs) == _brute(track_ids, times, hashes)


def test_a_common_hash_is_sampled_to_the_cap_whatever_the_order() -> None:
    rng = np.random.default_rng(0)
    n = 2000  # one hash value in 2000 tracks (a drone), and a few ordinary ones
    track_ids = np.concatenate([np.arange(n), [0, 1, 2]])
    times = np.concatenate([rng.integers(0, 1000, n), [5, 6, 7]])
    hashes = np.concatenate([np.full(n, 7), [9, 9, 9]]).astype(np.uint32)
    cap = 16
    pairs = join_hashes(track_ids, times, hashes, max_per_hash=cap)
    assert (pairs.hashes == 7).sum() == cap * (cap - 1) // 2
    assert (pairs.hashes == 9).sum() == 3
    shuffle = rng.permutation(len(hashes))
    again = join_hashes(track_ids[shuffle], times[shuffle], hashes[shuffle], max_per_hash=cap)
    assert _votes(again) == _votes(pairs)
    other = join_hashes(track_ids, times, hashes, max_per_hash=cap, seed=1)
    assert _votes(other) != _votes(pairs)
    with pytest.raises(ParameterError, match="max_per_hash"):
        join_hashes(track_ids, times, hashes, max_per_hash=1)


def test_a_shared_stretch_in_arrays_is_found_at_its_offsets() -> None:
    """Two random 'tracks' of landmarks sharing 200 frames: found at the right offsets, and two
    unrelated ones are not."""
    rng = np.random.default_rng(5)
    frames = np.array([3000, 3000, 3000, 3000])

    def track(n: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.sort(rng.integers(0, 3000, n))
        return t, rng.integers(0, 1 << 21, n).astype(np.uint32)

    tracks = [track(9000) for _ in range(4)]
    t0, h0 = tracks[0]
    stretch = (t0 >= 1000) & (t0 < 1200)
    t1 = np.concatenate([tracks[1][0], t0[stretch] - 1000 + 2500])
    h1 = np.concatenate([tracks[1][1], h0[stretch]])
    ids = np.concatenate([np.full(len(t0), 0), np.full(len(t1), 1), np.full(9000, 2), np.full(9000, 3)])
    found = overlaps_of(ids, np.concatenate([t0, t1, tracks[2][0], tracks[3][0]]),
                        np.concatenate([h0, h1, tracks[2][1], tracks[3][1]]),
                        track_frames=(np.arange(4), frames))
    assert len(found) == 1
    assert (found.track_a[0], found.track_b[0]) == (0, 1)
    assert found.start_a[0] == pytest.approx(1000, abs=3)
    assert found.start_b[0] == pytest.approx(2500, abs=3)
    assert 195 <= found.length[0] <= 200 + 64  # the last anchor's pair reaches up to 63 frames on
