"""similar's answers as a person reads them: one [0, 1] score scale for every mode (the raw value
kept), a track in one list only, the passages that matched, and the stored scale of the library."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from audiolsh.audio import load, synth
from audiolsh.library import Library, analyse, index_audio
from audiolsh.library.scale import LEVELS, SCALE_CONFIG, SCALE_VERSION, Table
from audiolsh.query.similar import similar

SR = 22050
#: every answer kind of similar: (by, method)
KINDS = [("rhythm", None), ("timbre", None), ("chroma", None), ("chroma", "vote"), ("peaks", None),
         ("combined", None)]


def _analyse(lib: Library, y: np.ndarray):
    return analyse(y, SR, modes=lib.modes, window_s=lib.config.window_s, hop_s=lib.config.hop_s)


def _clip(lib: Library, music_dir: Path, name: str, offset_s: float):
    return _analyse(lib, load(music_dir / name, sr=SR, offset_s=offset_s, duration_s=12.0)[0])


@pytest.mark.parametrize(("by", "method"), KINDS)
def test_scores_are_in_0_1_and_follow_the_raw_scores(lib_dir: Path, music_dir: Path, by: str,
                                                     method: str | None) -> None:
    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(lib, music_dir, "song1.wav", 6.0)
        most = similar(lib, clip, by=by, method=method, k=3)
        least = [] if by == "peaks" else similar(lib, clip, by=by, method=method, k=3, worst=True)
    assert len(most) == 3 and (by == "peaks" or least)
    for found in (most, least):
        assert all(0.0 <= r.score <= 1.0 and r.raw_score is not None for r in found)
    # The order is the raw scores' (best first), and the score never goes against it.
    raw, score = [r.raw_score for r in most], [r.score for r in most]
    assert raw == sorted(raw, reverse=True) and score == sorted(score, reverse=True)
    if least:
        raw, score = [r.raw_score for r in least], [r.score for r in least]
        # least similar first: the lowest score; the vote's raw value counts votes against
        assert score == sorted(score)
        assert raw == (sorted(raw, reverse=True) if method == "vote" else sorted(raw))
        # no large bar for the least similar: below the median of the collection's pairs
        assert least[0].score < 0.5 < most[0].score
    # The clip's own track, first, is more alike than nearly every pair of different tracks.
    assert Path(most[0].path).name == "song1.wav" and most[0].score > 0.9


@pytest.mark.parametrize(("by", "method"), [k for k in KINDS if k[0] != "peaks"])
def test_no_track_is_in_both_lists(lib_dir: Path, music_dir: Path, by: str, method: str | None) -> None:
    with Library.open(lib_dir, readonly=True) as lib:
        clip = _clip(lib, music_dir, "drone2.flac", 4.0)
        most = similar(lib, clip, by=by, method=method, k=4)
        least = similar(lib, clip, by=by, method=method, k=4, worst=True)
        # the caller's most-similar list gives the same answer as the one made inside
        again = similar(lib, clip, by=by, method=method, k=4, worst=True, most=[r.track_id for r in most])
    assert again == least and least
    assert not {r.track_id for r in most} & {r.track_id for r in least}
    # seven tracks, four of them most similar: the least similar list has the other three at most
    # (the vote lists only the tracks voted for)
    assert (len(most), len(least)) <= (4, 3) if method == "vote" else len(most) == 4 and len(least) <= 3


@pytest.mark.parametrize(("by", "method"), KINDS)
def test_the_matched_passages_of_a_planted_excerpt(lib_dir: Path, music_dir: Path, by: str,
                                                   method: str | None) -> None:
    # Seconds 20-30 of song3 planted at second 10 of a clip of quiet noise.
    y, _ = load(music_dir / "song3.wav", sr=SR)
    clip = synth.white_noise(duration_s=25.0, sr=SR, seed=7, amplitude=0.01)
    clip[10 * SR: 20 * SR] += y[20 * SR: 30 * SR]
    with Library.open(lib_dir, readonly=True) as lib:
        found = similar(lib, _analyse(lib, clip), by=by, method=method, k=7)
    # (the vote's noise frames vote too, so its song3 need not be first)
    top = found[0] if method != "vote" else next(r for r in found if r.path.endswith("song3.wav"))
    assert Path(top.path).name == "song3.wav"
    if method == "vote":  # the alignment most frames vote for, from a frame of the planted stretch
        assert 9.5 <= top.query_offset_s < 20.0 and abs(top.offset_s - top.query_offset_s - 10.0) <= 0.5
    else:
        assert (top.query_offset_s, top.offset_s) == (10.0, 20.0)


def test_percentiles_of_a_table() -> None:
    # Half the sampled pairs share nothing (Jaccard 0): ties count half.
    raw = np.r_[np.zeros(5000), np.linspace(0.01, 0.2, 5000)]
    table = Table.fit(raw)
    assert len(table.values) == len(LEVELS) and table.n_pairs == 10_000
    got = table.percentile(np.array([-1.0, 0.0, 0.105, 0.2, 0.5]))
    assert got[0] == 0.0 and got[-1] == 1.0 and got[3] == 1.0
    assert abs(got[1] - 0.25) < 0.01 and abs(got[2] - 0.75) < 0.01
    x = np.linspace(-0.1, 0.3, 500)
    assert np.all(np.diff(table.percentile(x)) >= 0)


def test_the_scale_is_stored_and_older_libraries_sample_it(lib_dir: Path, music_dir: Path,
                                                           tmp_path: Path) -> None:
    where = tmp_path / "lib"
    shutil.copytree(lib_dir, where)
    with Library.open(where) as lib:
        stored = lib.catalogue.config(SCALE_CONFIG)
        assert stored["format_version"] == SCALE_VERSION and stored["n_tracks"] == 7
        assert set(stored["kinds"]) == {"rhythm", "timbre", "chroma", "peaks", "combined", "vote",
                                        "vote_worst"}
        clip = _clip(lib, music_dir, "song0.wav", 3.0)
        before = similar(lib, clip, by="combined", k=3)
        with lib.catalogue.write() as w:  # as a library written before the scale existed
            w.set_config({}, SCALE_CONFIG)
    with Library.open(where, readonly=True) as old:
        # sampled on first use, the same (seeded) scale; a reader writes nothing
        assert similar(old, clip, by="combined", k=3) == before
        assert old.catalogue.config(SCALE_CONFIG) == {}
    with Library.open(where) as lib:  # a scale of another version is sampled again too
        with lib.catalogue.write() as w:
            flat = {k: {**t, "values": [0.0] * len(t["values"])} for k, t in stored["kinds"].items()}
            w.set_config({**stored, "format_version": SCALE_VERSION + 1, "kinds": flat}, SCALE_CONFIG)
        assert similar(lib, clip, by="combined", k=3) == before
    with Library.open(where) as lib:
        lib.remove_track(before[-1].track_id)  # the next write stores it
        again = lib.catalogue.config(SCALE_CONFIG)
        assert again["format_version"] == SCALE_VERSION and again["n_tracks"] == 6
        assert all(0.0 <= r.score <= 1.0 for r in similar(lib, clip, by="combined", k=3))


def test_a_run_that_adds_nothing_stores_a_missing_scale(lib_dir: Path, music_dir: Path,
                                                        tmp_path: Path) -> None:
    """A run killed between its last commit and the scale's leaves none; the resumed run adds
    nothing (every file is there), and stored nothing either: every reader sampled it again."""
    where = tmp_path / "lib"
    shutil.copytree(lib_dir, where)
    with Library.open(where) as lib:
        stored = lib.catalogue.config(SCALE_CONFIG)
        with lib.catalogue.write() as w:
            w.set_config({}, SCALE_CONFIG)
        report = index_audio(lib, [music_dir], workers=1)
        assert not report.added and len(report.skipped) == 7
        assert lib.catalogue.config(SCALE_CONFIG) == stored  # seeded: the same tables
