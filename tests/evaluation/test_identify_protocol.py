"""Protocol 2 bookkeeping: split, clips and their offsets, scoring, adapters, the CLI."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import audiolsh.cli.evaluate_cmds  # noqa: F401  (attaches `evaluate` to the group)
from audiolsh.audio import load, synth
from audiolsh.cli import cli
from audiolsh.errors import AudiolshError
from audiolsh.evaluation import distortions
from audiolsh.evaluation.audfprint import AudfprintSystem, audfprint_from_env
from audiolsh.evaluation.identify import (
    CLIP_SR,
    Answer,
    AudiolshSystem,
    BuildStats,
    Clip,
    ClipByClip,
    equal_fm_threshold,
    make_clips,
    run_protocol,
    score_system,
    split_tracks,
    track_family,
)
from audiolsh.evaluation.olaf import OlafSystem, olaf_from_env
from audiolsh.index.confidence import Calibration

SR = 22050
N_TRACKS = 6
TRACK_S = 16.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("corpus")
    paths = []
    for i in range(N_TRACKS):
        p = root / f"song {i}.wav"  # a space, as in real libraries
        sf.write(p, synth.music(duration_s=TRACK_S, sr=SR, seed=100 + i), SR, subtype="PCM_16")
        paths.append(str(p))
    return paths


# --------------------------------------------------------------------------- split


def test_split_is_deterministic_disjoint_and_complete() -> None:
    paths = [f"/music/album/track{i:02d}.ogg" for i in range(30)]
    a = split_tracks(paths, seed=3)
    assert a == split_tracks(list(reversed(paths)), seed=3)
    indexed, unindexed = a
    assert sorted(indexed + unindexed) == sorted(paths) and not set(indexed) & set(unindexed)
    assert len(indexed) == 20
    assert split_tracks(paths, seed=4) != a


def test_split_keeps_a_track_family_on_one_side() -> None:
    assert track_family("/m/w/menu_enhanced.opus") == track_family("/m/w/menu.opus") == "w/menu"
    assert track_family("/m/x/frantic-old.ogg") == "x/frantic"
    assert track_family("/m/x/track3.opus") != track_family("/m/x/track13.opus")
    paths = [f"/m/w/track{i}.opus" for i in range(12)] + ["/m/w/menu.opus", "/m/w/menu_enhanced.opus"]
    for seed in range(10):
        indexed, _ = split_tracks(paths, seed=seed)
        assert ("/m/w/menu.opus" in indexed) == ("/m/w/menu_enhanced.opus" in indexed)


# --------------------------------------------------------------------------- clips


@pytest.fixture(scope="module")
def clips(corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Clip], Path]:
    out = tmp_path_factory.mktemp("clips")
    indexed, unindexed = split_tracks(corpus, seed=0)
    cs = make_clips(indexed, unindexed, out, lengths_s=(3.0, 5.0), conditions=("clean", "white10", "speed+3"),
                    clips_per_track=2, seed=5)
    return cs, out


def test_clip_plan_covers_every_track_length_condition(corpus: list[str], clips: tuple[list[Clip], Path]
                                                       ) -> None:
    cs, _ = clips
    indexed, _ = split_tracks(corpus, seed=0)
    assert len(cs) == N_TRACKS * 2 * 3 * 2
    assert {c.positive for c in cs if c.source in indexed} == {True}
    assert {c.positive for c in cs if c.source not in indexed} == {False}
    assert len({c.clip_id for c in cs}) == len(cs)
    for c in cs:
        info = sf.info(c.path)
        assert info.samplerate == CLIP_SR and info.frames == round(c.length_s * CLIP_SR)
        widest = max(x.time_factor for x in distortions.CONDITIONS.values())
        assert 0.0 <= c.offset_s <= TRACK_S - c.length_s * widest
    # One excerpt per (track, length, k), the same under every condition.
    by_excerpt: dict[tuple[str, float, str], set[float]] = {}
    for c in cs:
        by_excerpt.setdefault((c.source, c.length_s, c.clip_id[-1]), set()).add(c.offset_s)
    assert all(len(offsets) == 1 for offsets in by_excerpt.values())
    assert len({c.offset_s for c in cs}) > N_TRACKS  # offsets are drawn, not fixed


def test_clip_audio_starts_at_its_offset_in_the_original(clips: tuple[list[Clip], Path]) -> None:
    cs, _ = clips
    clean = next(c for c in cs if c.condition == "clean" and c.length_s == 5.0)
    y, _ = sf.read(clean.path, dtype="float32")
    src, _ = load(clean.source, sr=CLIP_SR, offset_s=clean.offset_s, duration_s=clean.length_s)
    scale = np.dot(y, src) / np.dot(src, src)  # the clip may be scaled to its peak limit
    assert np.max(np.abs(y - scale * src)) < 2e-4
    # A sped-up clip holds length * 1.03 s of the original from the same offset.
    fast = next(c for c in cs if c.condition == "speed+3" and c.source == clean.source and c.length_s == 5.0
                and c.clip_id[-1] == clean.clip_id[-1])
    assert fast.offset_s == clean.offset_s
    yf, _ = sf.read(fast.path, dtype="float32")
    src, _ = load(fast.source, sr=CLIP_SR, offset_s=fast.offset_s, duration_s=5.0 * 1.03)
    expect = distortions.speed(src, CLIP_SR, percent=3.0)[: yf.size]
    corr = np.dot(yf, expect) / np.linalg.norm(yf) / np.linalg.norm(expect)
    assert corr > 0.999


def test_clips_are_deterministic_and_reused(corpus: list[str], clips: tuple[list[Clip], Path],
                                           tmp_path: Path) -> None:
    cs, out = clips
    indexed, unindexed = split_tracks(corpus, seed=0)
    kw = {"lengths_s": (3.0, 5.0), "conditions": ("clean", "white10", "speed+3"), "clips_per_track": 2}
    again = make_clips(indexed, unindexed, tmp_path, seed=5, **kw)  # type: ignore[arg-type]
    assert [c.offset_s for c in again] == [c.offset_s for c in cs]
    noisy = next(c for c in cs if c.condition == "white10")
    np.testing.assert_array_equal(sf.read(noisy.path)[0], sf.read(tmp_path / Path(noisy.path).name)[0])
    other = make_clips(indexed, unindexed, tmp_path / "other", seed=6, **kw)  # type: ignore[arg-type]
    assert [c.offset_s for c in other] != [c.offset_s for c in cs]
    stamp = Path(noisy.path).stat().st_mtime_ns
    assert make_clips(indexed, unindexed, out, seed=5, **kw) == cs  # type: ignore[arg-type]
    assert Path(noisy.path).stat().st_mtime_ns == stamp


def test_a_run_of_other_conditions_reuses_the_clips_already_made(corpus: list[str],
                                                                 clips: tuple[list[Clip], Path]) -> None:
    cs, out = clips
    indexed, unindexed = split_tracks(corpus, seed=0)
    kw = {"lengths_s": (3.0, 5.0), "clips_per_track": 2, "seed": 5}
    noisy = next(c for c in cs if c.condition == "white10")
    stamp = Path(noisy.path).stat().st_mtime_ns
    more = make_clips(indexed, unindexed, out, conditions=("white10", "silence-tail"), **kw)  # type: ignore[arg-type]
    assert Path(noisy.path).stat().st_mtime_ns == stamp  # reused, not rewritten
    assert [c for c in more if c.condition == "white10"] == [c for c in cs if c.condition == "white10"]
    tail = [c for c in more if c.condition == "silence-tail"]
    assert len(tail) == len(cs) // 3 and all(Path(c.path).exists() for c in tail)
    # The excerpt does not depend on the conditions run: the offsets are those of the first run.
    excerpt = lambda c: (c.source, c.length_s, c.offset_s)  # noqa: E731
    assert {excerpt(c) for c in tail} == {excerpt(c) for c in cs}
    again = make_clips(indexed, unindexed, out, conditions=("clean", "white10", "speed+3"), **kw)  # type: ignore[arg-type]
    assert again == cs and Path(noisy.path).stat().st_mtime_ns == stamp


# --------------------------------------------------------------------------- scoring


def clip(source: str, *, positive: bool, condition: str = "clean", length_s: float = 5.0,
         offset_s: float = 10.0) -> Clip:
    return Clip(f"{source}-{condition}-{length_s}", f"/c/{source}.wav", source, positive, condition, length_s,
                offset_s)


def test_score_bookkeeping_per_cell() -> None:
    cs = [clip(s, positive=True) for s in "abcd"] + [clip(s, positive=False) for s in "xy"]
    answers = [Answer("a", 10.2, 9.0), Answer("b", 12.0, 9.0), Answer("a", 10.0, 9.0),
               Answer(None, None, 0.0), Answer("a", 3.0, 8.0), Answer(None, None, 0.0)]
    r = score_system("s", cs, answers, threshold=-math.inf)
    (cell,) = r.cells
    assert (cell.n_pos, cell.n_neg, cell.n_false) == (4, 2, 1)
    assert cell.top1 == 0.5  # a right, b right track (offset wrong), c wrong, d none
    assert cell.offset_acc == 0.25
    assert cell.fm_rate == 0.5
    assert r.overall["top1"] == 0.5 and r.overall["n_false"] == 1
    # A fixed threshold above the false match's score removes it, and nothing else.
    r = score_system("s", cs, answers, threshold=8.5)
    assert r.overall["fm_rate"] == 0.0 and r.overall["top1"] == 0.5


def test_equal_false_match_threshold_is_the_smallest_with_at_most_1_percent() -> None:
    neg = np.arange(1.0, 11.0)  # 10 answered negatives out of 200 scored 1..10
    cand = np.concatenate([neg, [2.5, 7.5, 20.0]])
    assert equal_fm_threshold(neg, 200, cand) == 9.0  # scores 9 and 10 pass: 2/200 = 1 %
    assert equal_fm_threshold(neg, 100, cand) == 10.0  # 1/100
    assert equal_fm_threshold(neg, 10, cand) == 20.0  # none may pass
    assert equal_fm_threshold(neg[:0], 50, cand) == -math.inf
    cs = [clip(f"p{i}", positive=True) for i in range(3)]
    cs += [clip(f"n{i}", positive=False) for i in range(100)]
    answers = [Answer(f"p{i}", 10.0, s) for i, s in enumerate((3.0, 6.0, 12.0))]
    answers += [Answer("p0", 0.0, float(i % 7)) for i in range(100)]  # negatives score 0..6
    r = score_system("s", cs, answers, threshold=None)
    assert r.threshold == 12.0  # 14 negatives score 6 (14 %): the next candidate up is 12
    assert r.overall["n_false"] == 0 and r.overall["top1"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- adapters


class Oracle(ClipByClip):
    """Knows every clip (from the clip manifest): the true answer for positives, none for negatives."""

    name = "oracle"

    def __init__(self, *, offset_error_s: float = 0.0, answer_negatives: bool = False) -> None:
        self.offset_error_s = offset_error_s
        self.answer_negatives = answer_negatives
        self.truth: dict[str, Clip] = {}
        self.indexed: list[str] = []

    def build(self, track_paths: Sequence[str], workdir: Path) -> BuildStats:
        self.indexed = list(track_paths)
        manifest = json.loads((workdir.parent / "clips" / "clips.json").read_text())
        self.truth = {c["path"]: Clip(**c) for c in manifest["clips"]}
        return BuildStats(len(track_paths), 100.0, 1.0, 1, 1000)

    def identify(self, clip_wav_path: str, y: np.ndarray, sr: int) -> tuple[str | None, float | None, float]:
        assert y.size == round(self.truth[clip_wav_path].length_s * sr)
        c = self.truth[clip_wav_path]
        if c.positive:
            return c.source, c.offset_s + self.offset_error_s, 1.0
        return (self.indexed[0], 0.0, 1.0) if self.answer_negatives else (None, None, 0.0)


class NeverMatches(Oracle):
    name = "never"

    def identify(self, clip_wav_path: str, y: np.ndarray, sr: int) -> tuple[str | None, float | None, float]:
        return None, None, 0.0


def run(corpus: list[str], tmp_path: Path, system: object, **kw: object) -> object:
    params = {"lengths_s": (3.0, 5.0), "conditions": ("clean", "speed+3"), "seed": 1, **kw}
    return run_protocol(corpus, [system], tmp_path, **params)  # type: ignore[arg-type, list-item]


def test_oracle_scores_perfectly_and_never_matches_scores_nothing(corpus: list[str], tmp_path: Path) -> None:
    report = run(corpus, tmp_path, Oracle())
    (r,) = report.results  # type: ignore[attr-defined]
    assert r.overall["top1"] == 1.0 and r.overall["offset_acc"] == 1.0 and r.overall["fm_rate"] == 0.0
    assert len(r.cells) == 4 and all(c.n_pos == 4 and c.n_neg == 2 for c in r.cells)
    assert r.query_ms["length_s"] == 5.0 and r.query_ms["p50"] >= 0.0
    (r,) = run(corpus, tmp_path, NeverMatches()).results  # type: ignore[attr-defined]
    assert r.overall["top1"] == 0.0 and r.overall["fm_rate"] == 0.0 and r.overall["offset_acc"] == 0.0


def test_offsets_are_checked_within_half_a_second(corpus: list[str], tmp_path: Path) -> None:
    (near,) = run(corpus, tmp_path, Oracle(offset_error_s=0.4)).results  # type: ignore[attr-defined]
    (far,) = run(corpus, tmp_path, Oracle(offset_error_s=0.7)).results  # type: ignore[attr-defined]
    assert near.overall["offset_acc"] == 1.0
    assert far.overall["top1"] == 1.0 and far.overall["offset_acc"] == 0.0


def test_answering_negatives_counts_false_matches(corpus: list[str], tmp_path: Path) -> None:
    (r,) = run(corpus, tmp_path, Oracle(answer_negatives=True)).results  # type: ignore[attr-defined]
    assert r.overall["fm_rate"] == 1.0 and r.overall["top1"] == 1.0


def test_subsets_of_query_tracks(corpus: list[str], tmp_path: Path) -> None:
    report = run(corpus, tmp_path, Oracle(), positive_tracks=2, negative_tracks=1)
    assert report.corpus["n_indexed"] == 4  # type: ignore[attr-defined]
    assert report.protocol["n_pos"] == 2 * 4 and report.protocol["n_neg"] == 1 * 4  # type: ignore[attr-defined]


def test_audiolsh_adapter_identifies_clean_clips(corpus: list[str], tmp_path: Path) -> None:
    from audiolsh.evaluation.calibration import calibration_summary, fit_from_report
    from audiolsh.index.confidence import load

    system = AudiolshSystem(workers=1, min_confidence=0.0)
    report = run(corpus, tmp_path, system, lengths_s=(5.0,), conditions=("clean",), clips_per_track=2)
    default, zero, _ = report.results  # type: ignore[attr-defined]
    assert [r.label for r in report.results] == ["default", "min confidence 0", "equal FM"]  # type: ignore
    # The threshold axis is the calibrated probability: the default is the shipped operating point.
    assert default.threshold == load().default_min_confidence and zero.threshold == 0.0
    answers, clips = report.answers["audiolsh"], report.clips  # type: ignore[attr-defined]
    answered = [a for a in answers if a.track is not None]
    assert all(0.0 <= a.score <= 1.0 for a in answered)
    assert zero.overall["n_false"] == sum(not c.positive for a, c in zip(answers, clips) if a.track)
    rows = report.systems["audiolsh"]["candidates"]  # type: ignore[attr-defined]
    assert len(rows) == len(clips) and all(r[3] == pytest.approx(5.0, abs=0.1) for r in rows)
    # The sixth quantity: the envelope's z at the candidate's alignment, high where it is right.
    assert all(len(r) == 6 for r in rows)
    assert all(r[5] > 2.0 for r, a, c in zip(rows, answers, clips) if a.track == c.source)
    moved = report.systems["audiolsh"]["transforms"]  # type: ignore[attr-defined]
    assert len(moved) == len(clips)
    assert all(t == [1.0, 1.0, 1.0] for t, a, c in zip(moved, answers, clips) if a.track == c.source)
    summary = calibration_summary(clips, answers)
    assert summary["n"] == len(answered) and 0.0 <= summary["ece"] <= 1.0
    assert fit_from_report(report).meta["fitted_on"]["n_clips"] == len(answered)  # type: ignore[arg-type]
    assert default.overall["top1"] >= 0.75 and default.overall["offset_acc"] >= 0.75
    assert default.build.n_tracks == 4 and default.build.audio_s == pytest.approx(4 * TRACK_S, abs=0.1)
    assert default.build.index_bytes > 0 and default.build.x_realtime_per_core > 0
    assert default.query_ms["p95"] >= default.query_ms["p50"] > 0


FAKE_AUDFPRINT = textwrap.dedent('''
    """A stand-in for audfprint.py: same command line and output format, answers from the file names."""
    import sys
    args = sys.argv[1:]
    opt = lambda name: args[args.index(name) + 1]
    files = open(opt("--list")).read().split()
    if args[0] == "new":
        open(opt("--dbase"), "w").write("\\n".join(files))
        print("Saved fprints for", len(files), "files")
    else:
        refs = open(opt("--dbase")).read().split()
        lines = []
        for q in files:
            print("Sat Nov 21 08:11:17 2026 Analyzed #0", q, "of 5.0 s to 211 hashes", flush=True)
            if "_pos_" in q:
                lines.append(f"Matched {q} 5.0 sec 211 raw hashes as {refs[0]} at   12.5 s "
                             f"with    51 of   131 common hashes at rank  0")
            else:
                lines.append(f"NOMATCH {q} 5.0 sec 12 raw hashes")
        open(opt("--opfile"), "w").write("\\n".join(lines) + "\\n")
''')


@pytest.fixture
def fake_audfprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "audfprint.py"
    script.write_text(FAKE_AUDFPRINT)
    monkeypatch.setenv("AUDFPRINT", str(script))
    monkeypatch.setenv("AUDFPRINT_PYTHON", sys.executable)
    return script


def test_audfprint_adapter_runs_batches_and_parses_answers(corpus: list[str], tmp_path: Path,
                                                         fake_audfprint: Path) -> None:
    python, script = audfprint_from_env()
    system = AudfprintSystem(name="fake", python=python, script=script, options=("--density", "7"), workers=2)
    seen: list[int] = []
    report = run_protocol(corpus, [system], tmp_path / "w", lengths_s=(3.0,), conditions=("clean",), seed=1,
                          on_progress=lambda stage, done, total: seen.append(done))
    (r,) = report.results
    indexed = report.corpus["indexed"]
    # Every positive is answered with the first indexed track (the fake's answer), mapped back from
    # audfprint's space-free link name to the real path; negatives get no match.
    (first,) = r.cells
    assert first.n_pos == 4 and first.top1 == pytest.approx(1 / 4) and first.fm_rate == 0.0
    assert r.build is not None and r.build.n_tracks == len(indexed) and r.build.workers == 2
    assert r.query_ms["3s_mean_per_core"] > 0
    assert max(seen) == 6  # progress counted from the log lines of both processes


@pytest.mark.parametrize(("env", "from_env", "missing"), [("AUDFPRINT", audfprint_from_env, "no such file"),
                                                         ("OLAF", olaf_from_env, "no such executable")])
def test_a_missing_peer_is_reported_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str,
                                                from_env: Callable[[], object], missing: str) -> None:
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(AudiolshError, match=f"{env} is not set"):
        from_env()
    monkeypatch.setenv(env, str(tmp_path / "nowhere"))
    with pytest.raises(AudiolshError, match=missing):
        from_env()


FAKE_OLAF = textwrap.dedent('''\
    #!PYTHON
    """A stand-in for olaf: same command line, config file and output format; answers from the names."""
    import json, os, sys

    config = json.load(open(os.path.join(os.environ["HOME"], ".olaf", "olaf_config.json")))
    cmd, listfile = sys.argv[1], sys.argv[-1]
    files = [ln.strip() for ln in open(listfile) if ln.strip()]
    if cmd == "store":
        os.makedirs(config["db_folder"], exist_ok=True)
        open(os.path.join(config["db_folder"], "data.mdb"), "w").write("\\n".join(files))
        for i, f in enumerate(files):
            print(f"{i + 1}/{len(files)} Stored 10 fp's from 16.0s", file=sys.stderr)
    else:
        refs = open(os.path.join(config["db_folder"], "data.mdb")).read().split("\\n")
        print("query_index, total_queries, query_path, query_offset, match_count, query_start, query_stop, "
              "path, match_identifier, reference_start, reference_stop")
        for i, q in enumerate(files):
            print(f"Matched 100 fp's from 3.0s", file=sys.stderr)
            if "_pos_" in q:
                print(f"{i + 1} ,{len(files)} ,{q}, 0.000, 17 ,0.250 ,2.900, {refs[0]}, 123, 12.750, 15.400")
            else:
                print(f"{i + 1} ,{len(files)} ,{q}, 0.000, 0 ,0.000 ,0.000, , 0, 0.000, 0.000")
''')


@pytest.fixture
def fake_olaf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "olaf"
    exe.write_text(FAKE_OLAF.replace("PYTHON", sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv("OLAF", str(exe))
    return exe


def test_olaf_adapter_stores_queries_and_parses_answers(corpus: list[str], tmp_path: Path,
                                                       fake_olaf: Path) -> None:
    system = OlafSystem(exe=olaf_from_env(), workers=2)
    report = run_protocol(corpus, [system], tmp_path / "w", lengths_s=(3.0,), conditions=("clean",), seed=1)
    (r,) = report.results
    (first,) = r.cells
    # Positives are all answered with the first indexed track, mapped back from its link name, at
    # reference start - query start; a count of 0 is no match.
    assert first.n_pos == 4 and first.top1 == pytest.approx(1 / 4) and first.fm_rate == 0.0
    answers = report.answers["olaf"]
    assert {a.track for a, c in zip(answers, report.clips) if c.positive} == {report.corpus["indexed"][0]}
    assert {(a.offset_s, a.score) for a in answers if a.track} == {(12.5, 17.0)}
    assert all(a.track is None for a, c in zip(answers, report.clips) if not c.positive)
    config = json.loads((tmp_path / "w" / "olaf" / "home" / ".olaf" / "olaf_config.json").read_text())
    assert config["min_match_count"] == 1 and config["db_folder"].startswith(str(tmp_path / "w"))
    assert r.build is not None and r.build.index_bytes > 0 and r.query_ms["3s_mean_per_core"] > 0


def test_cli_evaluate_identify_writes_json_and_markdown(corpus: list[str], tmp_path: Path,
                                                        fake_audfprint: Path, fake_olaf: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    corpus_dir = str(Path(corpus[0]).parent)
    args = ["evaluate", "identify", corpus_dir, "--lengths", "5", "--conditions", "clean,white10",
            "--work-dir", str(tmp_path / "w"), "-j", "1", "--audfprint-configs", "audfprint",
            "--out", str(out), "--md", str(md), "--fit-confidence", str(tmp_path / "fit.json"),
            "--reliability-png", str(tmp_path / "rel.png")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    fit = Calibration.from_json(json.loads((tmp_path / "fit.json").read_text()))
    assert fit.meta["fitted_on"]["seed"] == 0 and fit.meta["command"].startswith("audiolsh")
    assert (tmp_path / "rel.png").read_bytes()[:4] == b"\x89PNG"
    assert "reliability of its confidence" in md.read_text()
    data = json.loads(out.read_text())
    titles = [f"{r['name']} ({r['label']})" for r in data["results"]]
    assert titles == ["audiolsh (default)", "audiolsh (equal FM)", "audfprint (equal FM)", "olaf (equal FM)"]
    assert data["protocol"]["n_clips"] == N_TRACKS * 2 and data["machine"]["cpus"] >= 1
    assert len(data["clips"]) == N_TRACKS * 2 and len(data["answers"]["audfprint"]) == N_TRACKS * 2
    assert "| audiolsh (default) |" in md.read_text() and "summary" in result.output
    assert "| false matches | verified overlaps | FM outside |" in md.read_text()
    # Without $AUDFPRINT, audfprint is skipped with a warning; audiolsh still runs.
    # --index names audiolsh's library as every command does; --format json prints the report.
    monkeypatch.delenv("AUDFPRINT")
    monkeypatch.delenv("OLAF")
    library = tmp_path / "lib"
    result = CliRunner().invoke(cli, [*args[:-4], "--out", str(out), "--index", str(library),
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "AUDFPRINT is not set" in result.stderr and "OLAF is not set" in result.stderr
    assert len(json.loads(out.read_text())["results"]) == 2
    assert json.loads(result.stdout)["results"] == json.loads(out.read_text())["results"]
    assert library.is_dir()


def test_cli_refuses_unknown_conditions(corpus: list[str]) -> None:
    result = CliRunner().invoke(cli, ["evaluate", "identify", str(Path(corpus[0]).parent), "--conditions",
                                      "clean,underwater"])
    assert result.exit_code == 2 and "underwater" in result.output
