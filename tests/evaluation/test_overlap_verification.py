"""Overlap-aware scoring: a match on an unindexed clip whose audio is really in the reported track
is a verified overlap, counted apart from false matches; negatives from held-out packages."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolsh.audio import synth
from audiolsh.cli.evaluate_cmds import report_markdown
from audiolsh.errors import ParameterError
from audiolsh.evaluation.distortions import CONDITIONS
from audiolsh.evaluation.identify import (
    Answer,
    BuildStats,
    Clip,
    ClipByClip,
    checked_length_s,
    corpus_packages,
    run_protocol,
    score_system,
    split_tracks,
)
from audiolsh.evaluation.overlaps import (
    MIN_OVERLAP_NCC,
    OVERLAP_RULE,
    VERIFY_SR,
    OverlapCheck,
    aligned_ncc,
    hits_to_check,
    is_overlap,
    min_overlap_ncc,
    verify_hits,
)

SR = 22050


@pytest.fixture(scope="module")
def reuse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``theme``; ``battle``: its own music with 6 s of theme (from 4 s) reused at 8 s, under
    other parts at -6 dB; ``other``: unrelated."""
    root = tmp_path_factory.mktemp("reuse")
    theme = synth.music(duration_s=16.0, sr=SR, seed=1)
    battle = 0.5 * synth.music(duration_s=20.0, sr=SR, seed=2)
    battle[8 * SR : 14 * SR] += theme[4 * SR : 10 * SR]
    paths = {}
    other = synth.music(duration_s=16.0, sr=SR, seed=3)
    for name, y in (("theme", theme), ("battle", battle), ("other", other)):
        paths[name] = str(root / f"{name}.wav")
        sf.write(paths[name], y / np.max(np.abs(y)) * 0.9, SR, subtype="PCM_16")
    return paths


def test_aligned_ncc_finds_the_passage_within_the_lag_window() -> None:
    ref = np.random.default_rng(0).standard_normal(5000)
    x = ref[2000:2400]
    assert aligned_ncc(x, ref, start=2030, max_lag=50) == pytest.approx(1.0)
    assert aligned_ncc(x, ref, start=2100, max_lag=50) < 0.3  # the true lag is outside the window
    assert aligned_ncc(x, ref, start=4900, max_lag=10) == 0.0  # no full window fits
    assert aligned_ncc(x, np.zeros(5000), start=2000, max_lag=50) == 0.0


def test_verifier_accepts_a_reused_passage_and_rejects_unrelated_audio(reuse: dict[str, str]) -> None:
    checks = [OverlapCheck(reuse["theme"], 5.0, 3.0, reuse["battle"], 9.0),  # the reused passage
              OverlapCheck(reuse["theme"], 5.0, 3.0, reuse["battle"], 9.3),  # its offset a little off
              OverlapCheck(reuse["theme"], 5.0, 1.0, reuse["battle"], 9.0),  # a 1-s clip of it
              OverlapCheck(reuse["theme"], 5.0, 3.0, reuse["battle"], 2.0),  # battle's own music
              OverlapCheck(reuse["theme"], 5.0, 3.0, reuse["other"], 9.0),  # an unrelated track
              OverlapCheck(reuse["theme"], 12.0, 3.0, reuse["battle"], 16.0)]  # theme past the reused part
    ncc = verify_hits(checks)
    assert ncc[0] > 0.7 and ncc[1] > 0.7 and ncc[2] > 0.7
    assert np.all(ncc[3:] < MIN_OVERLAP_NCC)
    missing = verify_hits([OverlapCheck(reuse["theme"] + ".gone", 1.0, 1.0, reuse["battle"], 1.0)])
    assert np.isnan(missing[0])
    assert VERIFY_SR == 8000


def layered(root: Path, gain: float = 0.25) -> dict[str, str]:
    """``theme``; ``layer``: other music with ``theme`` under it at ``gain`` of its level, in time (a
    quiet layer of the mix shared, which correlates about ``gain`` at any length); ``other``."""
    theme = synth.music(duration_s=24.0, sr=SR, seed=1)
    rest = synth.music(duration_s=24.0, sr=SR, seed=4)
    tracks = {"theme": theme, "layer": rest / np.std(rest) + gain * theme / np.std(theme),
              "other": synth.music(duration_s=24.0, sr=SR, seed=11)}
    paths = {}
    for name, y in tracks.items():
        paths[name] = str(root / f"{name}.wav")
        sf.write(paths[name], y / np.max(np.abs(y)) * 0.9, SR, subtype="PCM_16")
    return paths


def test_a_long_excerpt_needs_less_correlation_to_be_an_overlap(tmp_path: Path) -> None:
    """Chance correlation falls with the excerpt's length, so the threshold does: a shared layer
    that correlates 0.2-0.3 is an overlap over 10 s and not over 1 s, where unrelated audio reaches
    as much; unrelated 10-s excerpts stay below their threshold."""
    p = layered(tmp_path)
    lengths = [1.0, 10.0, 10.0, 10.0]
    ncc = verify_hits([OverlapCheck(p["theme"], 2.0, 1.0, p["layer"], 2.0),
                       OverlapCheck(p["theme"], 2.0, 10.0, p["layer"], 2.0),
                       OverlapCheck(p["theme"], 2.0, 10.0, p["other"], 2.0),
                       OverlapCheck(p["theme"], 9.0, 10.0, p["other"], 4.0)])
    assert 0.15 < ncc[0] < MIN_OVERLAP_NCC and 0.15 < ncc[1] < MIN_OVERLAP_NCC
    assert is_overlap(ncc, lengths).tolist() == [False, True, False, False]
    need = min_overlap_ncc([0.5, 1.0, 4.0, 10.0])
    assert need[0] == need[1] == MIN_OVERLAP_NCC and need[2] == pytest.approx(MIN_OVERLAP_NCC / 2)
    assert np.all(np.diff(need[1:]) < 0)
    assert is_overlap([None, math.nan], [10.0, 10.0]).tolist() == [False, False]  # not checked


def test_only_hits_that_can_count_are_checked() -> None:
    scores = np.array([9.0, 1.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 0.5])
    asked: list[list[int]] = []

    def verify(idx: np.ndarray) -> np.ndarray:
        asked.append(sorted(idx.tolist()))
        return np.where(np.isin(idx, [100, 102]), 0.9, 0.1)  # the two best hits are overlaps

    cand = np.arange(100, 110)
    # 100 negatives, at most 1 % false: from the top down until 2 checked hits are not overlaps.
    out = hits_to_check(scores, cand, fixed=[], equal_fm=True, n_neg=100, max_rate=0.01, verify=verify)
    assert np.flatnonzero(~np.isnan(out)).tolist() == [0, 2, 3, 4]
    assert out[0] == out[2] == 0.9 and out[3] == out[4] == 0.1
    # A fixed threshold of 5: every hit scored 5 or more, and nothing below.
    asked.clear()
    out = hits_to_check(scores, cand, fixed=[5.0], equal_fm=False, n_neg=100, max_rate=0.01, verify=verify)
    assert asked == [[100, 102, 103, 104, 105]] and np.isnan(out[[1, 6, 7, 8, 9]]).all()
    # Hits correlating 0.2 are overlaps over 10 s, not over 1 s: only over 10 s does the check go on.
    weak = lambda idx: np.where(np.isin(idx, [100, 102]), 0.2, 0.05)  # noqa: E731
    out = hits_to_check(scores, cand, fixed=[], equal_fm=True, n_neg=100, max_rate=0.01, verify=weak,
                        length_s=np.full(10, 10.0))
    assert np.flatnonzero(~np.isnan(out)).tolist() == [0, 2, 3, 4]
    out = hits_to_check(scores, cand, fixed=[], equal_fm=True, n_neg=100, max_rate=0.01, verify=weak,
                        length_s=1.0)
    assert np.flatnonzero(~np.isnan(out)).tolist() == [0, 2]


def clip(source: str, *, positive: bool, condition: str = "clean") -> Clip:
    return Clip(f"{source}-{condition}", f"/c/{source}.wav", source, positive, condition, 5.0, 10.0)


def test_verified_overlaps_are_counted_apart_from_false_matches() -> None:
    cs = [clip("a", positive=True)] + [clip(s, positive=False) for s in "xyz"]
    answers = [Answer("a", 10.0, 9.0), Answer("a", 3.0, 7.0), Answer("a", 12.0, 8.0), Answer(None, None, 0.0)]
    overlap = np.array([False, False, True, False])
    outside = np.array([False, True, True, False])
    r = score_system("s", cs, answers, threshold=-math.inf, overlap=overlap, outside=outside)
    (cell,) = r.cells
    assert (cell.n_neg, cell.n_false, cell.n_overlap, cell.fm_rate) == (3, 1, 1, pytest.approx(1 / 3))
    assert r.overall["n_overlap"] == 1 and r.overall["n_false"] == 1
    o = r.overall
    assert (o["n_neg_outside"], o["n_false_outside"], o["n_overlap_outside"]) == (2, 1, 1)
    # Without the check, both are false; the equal-FM threshold ignores a verified overlap.
    assert score_system("s", cs, answers, threshold=-math.inf).overall["n_false"] == 2
    assert score_system("s", cs, answers, threshold=None, max_false_match_rate=0.0).threshold == 9.0
    r = score_system("s", cs, answers, threshold=None, max_false_match_rate=0.0, overlap=overlap)
    assert r.threshold == 8.0 and (r.overall["n_false"], r.overall["n_overlap"]) == (0, 1)


def test_split_holds_out_whole_packages_and_keeps_the_indexed_share() -> None:
    paths = [f"/m/{pkg}/t{i}.ogg" for pkg, n in (("big", 30), ("mid", 12), ("small", 4), ("tiny", 2))
             for i in range(n)]
    packages = {p: p.split("/")[2] for p in paths}
    for seed in range(6):
        indexed, unindexed = split_tracks(paths, seed=seed, packages=packages)
        assert len(indexed) == 32 and sorted(indexed + unindexed) == sorted(paths)
        held = {packages[p] for p in unindexed} - {packages[p] for p in indexed}
        assert held and sum(packages[p] in held for p in paths) <= round(0.6 * len(paths) / 3)
    indexed, unindexed = split_tracks(paths, seed=0, packages=packages, holdout_packages=["mid"])
    assert not any(packages[p] == "mid" for p in indexed) and len(indexed) == 32
    with pytest.raises(Exception, match="nowhere"):
        split_tracks(paths, seed=0, packages=packages, holdout_packages=["nowhere"])
    assert split_tracks(paths, seed=0) != split_tracks(paths, seed=0, packages=packages)


def test_corpus_packages_come_from_the_manifest_else_the_first_folder(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("path,package,bytes,sha1\npkg-a/x.ogg,game-a-music,1,0\n")
    tracks = [str(tmp_path / "pkg-a" / "x.ogg"), str(tmp_path / "pkg-b" / "sub" / "y.ogg"),
              str(tmp_path / "z.ogg")]
    assert corpus_packages(tmp_path, tracks) == {tracks[0]: "game-a-music", tracks[1]: "pkg-b", tracks[2]: ""}


class KnowsTheClips(ClipByClip):
    """A stand-in system that reads the protocol's clip manifest at build, to answer from it."""

    truth: dict[str, Clip]

    def build(self, track_paths: Sequence[str], workdir: Path) -> BuildStats:
        manifest = json.loads((workdir.parent / "clips" / "clips.json").read_text())
        self.truth = {c["path"]: Clip(**c) for c in manifest["clips"]}
        return BuildStats(len(track_paths), 16.0, 1.0, 1, 1000)


class AnswersTheme(KnowsTheClips):
    """Answers every clip with the track holding ``theme``'s audio at the clip's own offset: right for
    positives, a true overlap for clips of the reused track, false for the others."""

    name = "theme"

    def __init__(self, theme: str) -> None:
        self.theme = theme
        self.thresholds = {"any": 0.0}
        self.truth: dict[str, Clip] = {}

    def identify(self, clip_wav_path: str, y: np.ndarray, sr: int) -> tuple[str | None, float | None, float]:
        return self.theme, self.truth[clip_wav_path].offset_s, 5.0


def test_protocol_reports_a_reused_track_as_overlaps_and_others_as_false(tmp_path: Path) -> None:
    theme = synth.music(duration_s=16.0, sr=SR, seed=1)
    paths = {}
    for pkg, name, y in (("a", "theme", theme), ("b", "theme-cover", 0.7 * theme + 0.3 * synth.music(
            duration_s=16.0, sr=SR, seed=4)), ("c", "filler", synth.music(duration_s=16.0, sr=SR, seed=5))):
        (tmp_path / pkg).mkdir(exist_ok=True)
        paths[name] = str(tmp_path / pkg / f"{name}.wav")
        sf.write(paths[name], y / np.max(np.abs(y)) * 0.9, SR, subtype="PCM_16")
    corpus = list(paths.values())
    packages = corpus_packages(tmp_path, corpus)
    report = run_protocol(corpus, [AnswersTheme(paths["theme"])], tmp_path / "w", lengths_s=(3.0,),
                          conditions=("clean", "white10"), seed=0, indexed_fraction=0.34, packages=packages,
                          holdout_packages=["b", "c"])
    assert report.corpus["indexed"] == [paths["theme"]] and report.corpus["held_out_packages"] == ["b", "c"]
    (r,) = report.results
    # 2 clips of the cover: overlaps; 2 of the filler: false matches.
    assert (r.overall["n_neg"], r.overall["n_overlap"], r.overall["n_false"]) == (4, 2, 2)
    assert (r.overall["n_neg_outside"], r.overall["n_overlap_outside"]) == (4, 2)
    md = report_markdown(report)
    assert "theme (any): the verified overlaps" in md and md.count("| theme-cover.wav at ") == 2
    assert "| filler.wav at " not in md
    ncc = report.overlap_ncc["theme"]
    for c, x in zip(report.clips, ncc):
        assert math.isnan(x) if c.positive else (x >= MIN_OVERLAP_NCC) == (c.source == paths["theme-cover"])


def test_the_protocol_counts_a_shared_layer_as_an_overlap_by_its_length(tmp_path: Path) -> None:
    """A 10-s clip of ``layer`` (``theme`` under other music, package b) named as ``theme`` at its own
    place correlates under 0.4 but far above chance at 10 s: a verified overlap; a clip of the
    unrelated ``other`` (package c) is a false match."""
    for pkg in "abc":
        (tmp_path / pkg).mkdir()
    made = layered(tmp_path)
    paths = {}
    for pkg, name in (("a", "theme"), ("b", "layer"), ("c", "other")):
        paths[name] = str(tmp_path / pkg / f"{name}.wav")
        Path(made[name]).rename(paths[name])
    corpus = list(paths.values())
    packages = corpus_packages(tmp_path, corpus)
    report = run_protocol(corpus, [AnswersTheme(paths["theme"])], tmp_path / "w", lengths_s=(10.0,),
                          conditions=("clean", "white10"), seed=0, indexed_fraction=0.34, packages=packages,
                          holdout_packages=["b", "c"])
    assert report.corpus["indexed"] == [paths["theme"]]
    (r,) = report.results
    assert (r.overall["n_neg"], r.overall["n_overlap"], r.overall["n_false"]) == (4, 2, 2)
    layer = [x for c, x in zip(report.clips, report.overlap_ncc["theme"]) if c.source == paths["layer"]]
    assert len(layer) == 2 and max(layer) < MIN_OVERLAP_NCC  # one threshold for every length: false
    md = report_markdown(report)
    assert md.count("| layer.wav at ") == 2 and "| other.wav at " not in md and OVERLAP_RULE in md
    assert report.protocol["overlap_rule"] == OVERLAP_RULE
    # The length checked is the original audio a clip holds: more than the clip when played faster.
    fast = dataclasses.replace(report.clips[0], condition="speed+8", length_s=10.0)
    assert checked_length_s(fast) == pytest.approx(10.0 * CONDITIONS["speed+8"].time_factor, abs=1e-3)
    assert checked_length_s(fast) > 10.0


def test_the_calibration_fit_spends_its_false_match_budget_on_real_false_matches_only(tmp_path: Path) -> None:
    """Refitting from a saved report: negatives whose hit is a verified overlap do not count against
    the default threshold's false-match budget (they would raise it)."""
    from audiolsh.evaluation.calibration import fit_from_report, load_report
    from audiolsh.evaluation.identify import IdentifyReport

    rng = np.random.default_rng(4)
    n = 2400
    positive = rng.random(n) < 2 / 3
    chance = np.where(positive, rng.uniform(0.0, 12.0, n), rng.uniform(-1.0, 2.0, n))
    right = positive & (rng.random(n) < 1 / (1 + np.exp(-2.0 * (chance - 2.0))))
    overlap = ~positive & (rng.random(n) < 0.02)
    chance[overlap] = rng.uniform(8.0, 12.0, int(overlap.sum()))  # strong hits on shared passages
    clips = [Clip(f"c{i}", f"c{i}.wav", f"t{i % 40}.ogg", bool(positive[i]), "clean", 10.0, 0.0)
             for i in range(n)]
    answers = [Answer(c.source if right[i] else f"t{(i + 1) % 40}.ogg", 0.0, 0.5)
               for i, c in enumerate(clips)]
    rows = [[-float(c), 20.0 + 4.0 * max(float(c), 0.0), 2000.0, 3.0, 0.1, math.nan] for c in chance]
    ncc = [0.2 if o else math.nan for o in overlap]  # over 10 s a partial overlap, far above chance

    def report(ncc: list[float]) -> IdentifyReport:
        return IdentifyReport({}, {"seed": 1}, [], {}, {}, {"audiolsh": {"candidates": rows}}, clips,
                              {"audiolsh": answers}, overlap_ncc={"audiolsh": ncc})

    budget = 0.0025
    aware = fit_from_report(report(ncc), budget=budget)
    blind = fit_from_report(report([math.nan] * n), budget=budget)
    assert aware.meta["operating_point"]["n_negative"] == int((~positive).sum() - overlap.sum())
    assert aware.default_min_confidence < blind.default_min_confidence
    # The same read back from the report's JSON.
    path = tmp_path / "report.json"
    written = report(ncc).to_dict()
    assert set(written["overlap_ncc"]) == {"audiolsh"}  # the rule is in the protocol, not beside the lists
    # Reports of sessions before 2026-12-06 wrote the rule beside the lists: not a system either.
    written["overlap_ncc"].update(min_ncc=written["protocol"].get("min_overlap_ncc", 0.5), rule="older")
    path.write_text(json.dumps(written).replace("NaN", "null"))
    loaded = load_report(path)
    assert set(loaded.overlap_ncc) == {"audiolsh"}
    again = fit_from_report(loaded, budget=budget)
    assert again.default_min_confidence == aware.default_min_confidence
    # A report of an engine before the energy envelope (five quantities a clip) cannot be refitted.
    rows[:] = [r[:5] for r in rows]
    with pytest.raises(ParameterError, match="predate the energy envelope; run evaluate identify again"):
        fit_from_report(report(ncc), budget=budget)


# --------------------------------------------------------------------------- same audio on positives


def test_a_positive_named_as_a_track_carrying_its_audio_is_a_verified_same_audio_answer(
        reuse: dict[str, str]) -> None:
    """``battle`` holds 6 s of ``theme`` (from 4 s) at 8 s: a clip of theme at 5 s named as battle at
    9 s is wrong for top-1 but carries the same audio; elsewhere in battle it is just wrong."""
    from audiolsh.evaluation.identify import check_overlaps

    theme, battle = reuse["theme"], reuse["battle"]
    cs = [Clip(f"c{i}", f"/c/c{i}.wav", theme, True, "clean", 3.0, 5.0) for i in range(4)]
    cs.append(Clip("n", "/c/n.wav", reuse["other"], False, "clean", 3.0, 2.0))
    answers = [Answer(battle, 9.0, 5.0),  # the shared passage
               Answer(battle, 2.0, 5.0),  # battle's own music
               Answer(battle, 9.0, 1.0),  # the shared passage, below the threshold: not checked
               Answer(theme, 5.0, 5.0),  # right
               Answer(None, None, -math.inf)]
    ncc = check_overlaps({"default": 3.0}, cs, answers)
    assert ncc[0] >= MIN_OVERLAP_NCC and ncc[1] < MIN_OVERLAP_NCC
    assert np.isnan(ncc[2:]).all()
    r = score_system("s", cs, answers, threshold=3.0, overlap=ncc >= MIN_OVERLAP_NCC)
    o = r.overall
    assert (o["top1"], o["n_same_audio"], o["top1_with_same_audio"]) == (0.25, 1, 0.5)
    assert (o["n_false"], o["n_overlap"]) == (0, 0)
    (cell,) = r.cells
    assert (cell.n_same_audio, cell.top1, cell.top1_with_same_audio) == (1, 0.25, 0.5)
    # Below the threshold a same-audio answer is no match, like any other.
    low = score_system("s", cs, answers, threshold=6.0, overlap=ncc >= MIN_OVERLAP_NCC)
    assert (low.overall["n_same_audio"], low.overall["top1_with_same_audio"]) == (0, 0.0)


class NamesTheCopy(KnowsTheClips):
    """Names ``copy`` (``source`` from ``start_s`` on) for every clip of ``source``, at the clip's place
    in it; right for the other indexed tracks' clips, nothing for unindexed ones."""

    name = "copycat"

    def __init__(self, source: str, copy: str, start_s: float, indexed: Sequence[str]) -> None:
        self.source, self.copy, self.start_s, self.indexed = source, copy, start_s, set(indexed)
        self.thresholds = {"any": 0.0, "equal FM": None}
        self.truth: dict[str, Clip] = {}

    def identify(self, clip_wav_path: str, y: np.ndarray, sr: int) -> tuple[str | None, float | None, float]:
        c = self.truth[clip_wav_path]
        if c.source == self.source:
            return self.copy, c.offset_s - self.start_s, 5.0
        return (c.source, c.offset_s, 5.0) if c.source in self.indexed else (None, None, -math.inf)


def test_the_protocol_reports_answers_naming_a_copy_apart_in_every_table(tmp_path: Path) -> None:
    """``menu_enhanced`` is ``menu`` from 1 s on, remastered (gain, a little noise): both indexed. Clips of
    menu named as menu_enhanced are wrong for top-1, verified same audio, and shown in every table."""
    rng = np.random.default_rng(7)
    menu = synth.music(duration_s=16.0, sr=SR, seed=1)
    enhanced = 1.3 * menu[SR:] + 0.01 * rng.standard_normal(15 * SR)
    (tmp_path / "game").mkdir()
    (tmp_path / "other").mkdir()
    paths = {"menu": tmp_path / "game" / "menu.wav", "menu_enhanced": tmp_path / "game" / "menu_enhanced.wav",
             "filler": tmp_path / "game" / "filler.wav", "outsider": tmp_path / "other" / "outsider.wav"}
    tracks = {"menu": menu, "menu_enhanced": enhanced, "filler": synth.music(duration_s=16.0, sr=SR, seed=5),
              "outsider": synth.music(duration_s=16.0, sr=SR, seed=6)}
    for name, p in paths.items():
        sf.write(p, tracks[name] / np.max(np.abs(tracks[name])) * 0.9, SR, subtype="PCM_16")
    corpus = sorted(str(p) for p in paths.values())
    packages = corpus_packages(tmp_path, corpus)
    indexed = [str(paths[n]) for n in ("menu", "menu_enhanced", "filler")]
    system = NamesTheCopy(str(paths["menu"]), str(paths["menu_enhanced"]), 1.0, indexed)
    report = run_protocol(corpus, [system], tmp_path / "w", lengths_s=(3.0,), conditions=("clean", "white10"),
                          seed=0, indexed_fraction=0.75, packages=packages, holdout_packages=["other"])
    assert sorted(report.corpus["indexed"]) == sorted(indexed)
    menu_clips = [c for c in report.clips if c.source == str(paths["menu"])]
    assert len(menu_clips) == 2 and all(c.offset_s >= 1.0 for c in menu_clips)
    for r in report.results:  # 6 positives: 4 right, 2 named as the copy; the outsider never matched
        o = r.overall
        assert (o["n_pos"], o["top1"], o["n_same_audio"]) == (6, pytest.approx(4 / 6), 2)
        assert (o["top1_with_same_audio"], o["n_false"], o["n_overlap"]) == (1.0, 0, 0)
    ncc = report.overlap_ncc["copycat"]
    for c, x in zip(report.clips, ncc):
        assert (x >= MIN_OVERLAP_NCC) if c.source == str(paths["menu"]) else math.isnan(x)
    md = report_markdown(report)
    assert "copycat (any): the verified same-audio answers" in md
    assert md.count("| menu_enhanced.wav at ") == 4  # both thresholds' tables
    assert "| 66.7 (100.0) | 66.7 (100.0) |" in md  # side by side: without and with them, per cell
    assert "/ 0.0 +1 sa |" in md
    # The same read back from the report's JSON and scored again.
    from audiolsh.evaluation.calibration import load_report
    from audiolsh.evaluation.identify import rescore, write_json

    write_json(report, tmp_path / "r.json")
    stored = json.loads((tmp_path / "r.json").read_text())
    blind = dict(stored, overlap_ncc={"min_ncc": MIN_OVERLAP_NCC})  # as written before this check
    blind["protocol"] = {k: v for k, v in stored["protocol"].items() if k != "overlap_rule"}
    (tmp_path / "old.json").write_text(json.dumps(blind))
    again = rescore(load_report(tmp_path / "old.json"), stored["results"], corpus_dir=tmp_path)
    assert again.protocol["overlap_rule"] == OVERLAP_RULE  # checked anew, by today's rule
    assert [r.overall for r in again.results] == [r.overall for r in report.results]
    assert again.results[0].build == report.results[0].build
    # And from the command line: the stored run's answers, this protocol's checks.
    from click.testing import CliRunner

    import audiolsh.cli.evaluate_cmds  # noqa: F401  (attaches `evaluate` to the group)
    from audiolsh.cli import cli

    args = ["evaluate", "identify", str(tmp_path), "--rescore", str(tmp_path / "old.json"),
            "--md", str(tmp_path / "again.md"), "--format", "json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "again.md").read_text().count("| menu_enhanced.wav at ") == 4
