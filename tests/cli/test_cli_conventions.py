"""One set of conventions for every command: --format, one JSON vocabulary, errors in the
user's words, the chosen tune row marked, progress lines off a terminal."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from rich.console import Console

from audiolsh.audio import synth
from audiolsh.cli import cli
from audiolsh.cli.progress import EVERY_ENV, FileProgress, every_s_from_env
from audiolsh.errors import ParameterError

SR = 22050
EVERY_FILE = {EVERY_ENV: "0"}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("music")
    for i in range(4):
        sf.write(root / f"song{i}.wav", synth.music(duration_s=12.0, sr=SR, seed=40 + i), SR)
    return root


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, music: Path) -> tuple[Path, str, str]:
    """A timbre library of ``music``, with what `index` said (stdout, stderr) building it."""
    idx = tmp_path_factory.mktemp("lib") / "idx"
    code, out, err = run("index", str(music), "--index", str(idx), "-j", "1", "--modes", "timbre",
                         "--format", "json", env=EVERY_FILE)
    assert code == 0, err
    return idx, out, err


def test_index_prints_plain_progress_off_a_terminal_and_a_json_summary(
        indexed: tuple[Path, str, str], music: Path) -> None:
    idx, out, err = indexed
    # The hashes read first (with -j 1, one file ahead of the analysis), then one line per
    # file analysed (the interval at 0): counts, both rates, the file just done, and the
    # hashes beside them while they still come.
    lines = err.splitlines()
    assert lines[0].startswith("hashed 1/4 files, ") and "now: " in lines[0]
    indexed = [line for line in lines if line.startswith("indexed ")]
    counts = [line.split(" files,")[0] for line in indexed]
    assert counts == sorted(counts) and set(counts) == {f"indexed {n}/4" for n in range(1, 5)}
    assert all("files/s" in line and "x real time" in line and "now: " in line for line in indexed)
    assert any(line.endswith("; hashed 2/4") for line in indexed)  # analysis began before hashing ended
    assert not indexed[-1].count("hashed")
    done = {line.split("now: ")[1].split(";")[0].rpartition("/")[2] for line in indexed}
    assert done == {f"song{i}.wav" for i in range(4)}
    summary = json.loads(out)
    assert (summary["added"], summary["skipped"], summary["failed"], summary["n_tracks"]) == (4, 0, 0, 4)
    assert sorted(Path(f["path"]).name for f in summary["files"] if f["status"] == "added") == \
        [f"song{i}.wav" for i in range(4)]
    # A re-run skips everything: the files hashed, nothing indexed; csv: one row per file.
    code, out, err = run("index", str(music), "--index", str(idx), "-j", "2", "--modes", "timbre",
                         "--format", "csv", env=EVERY_FILE)
    assert code == 0 and "indexed " not in err and "4 already indexed" in err
    assert [line.split(" files,")[0] for line in err.splitlines() if line.startswith("hashed ")] == \
        [f"hashed {n}/4" for n in range(1, 5)]  # all a resumed run does, shown as it goes
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["status"] for r in rows] == ["skipped"] * 4


def drawn(n_files: int, *, every_s: float, terminal: bool, step_s: float, failed_at: int = -1) -> str:
    """What FileProgress writes for ``n_files`` files of 100 s of audio done ``step_s`` apart
    (a test clock, not the machine's)."""
    buf = io.StringIO()
    now = [100.0]
    console = Console(file=buf, force_terminal=terminal, width=200)
    with FileProgress("indexed", total=n_files, every_s=every_s, console=console, clock=lambda: now[0]) as p:
        for i in range(n_files):
            now[0] += step_s
            p.advance(f"/music/f{i}.wav", duration_s=None if i == failed_at else 100.0, failed=i == failed_at)
    return buf.getvalue()


def test_progress_lines_follow_the_interval() -> None:
    # A file every 4 s, a line every 10 s: at the 3rd file (12 s) and the 6th (24 s).
    lines = drawn(7, every_s=10.0, terminal=False, step_s=4.0, failed_at=5).splitlines()
    # The failed 6th file is counted and not named (its error line names it); no line at the end.
    assert lines == ["indexed 3/7 files, 0.2 files/s, 25x real time, now: /music/f2.wav",
                     "indexed 6/7 files (1 failed), 0.2 files/s, 21x real time, now: /music/f4.wav"]


def test_progress_in_a_terminal_is_a_bar_with_the_rates_and_the_current_file() -> None:
    shown = drawn(3, every_s=0.0, terminal=True, step_s=2.0)  # the bar's last frame, drawn as it stops
    assert "3/3" in shown and "0.5 files/s, 50x real time" in shown and "f2.wav" in shown
    assert "indexed 3/3 files," not in shown  # no plain lines in a terminal


def test_hashes_show_alone_then_beside_the_files_analysed() -> None:
    buf, now = io.StringIO(), [0.0]
    console = Console(file=buf, force_terminal=False, width=200)
    with FileProgress("indexed", every_s=0.0, console=console, clock=lambda: now[0]) as p:
        p.set_total(4)
        for i in range(2):  # two files hashed, 1 s apart; the second cannot be read
            now[0] += 1.0
            p.hashed(f"/music/f{i}.wav", 4, failed=i == 1)
        p.set_total(3)
        now[0] += 8.0
        p.extracted("/music/f0.wav", 100.0)
        now[0] += 5.0
        p.hashed("/music/f2.wav", 4)
        p.hashed("/music/f3.wav", 4)
    assert buf.getvalue().splitlines() == [
        "hashed 1/4 files, 1.0 files/s, now: /music/f0.wav",
        "hashed 2/4 files, 1.0 files/s, now: /music/f0.wav",
        "indexed 1/3 files, 0.1 files/s, 10x real time, now: /music/f0.wav; hashed 2/4",
        "indexed 1/3 files, 0.1 files/s, 7x real time, now: /music/f0.wav; hashed 3/4",
        "indexed 1/3 files, 0.1 files/s, 7x real time, now: /music/f0.wav"]


def test_the_bar_shows_the_hashes_beside_the_files_while_they_come() -> None:
    buf = io.StringIO()
    with FileProgress("indexed", console=Console(file=buf, force_terminal=True, width=200)) as p:
        p.set_total(3)
        p.hashed("/music/f0.wav", 3)
        p.hashed("/music/f1.wav", 3)
        p.extracted("/music/f0.wav", 100.0)
    assert "1/3" in buf.getvalue() and "hashed 2/3" in buf.getvalue()  # the frame drawn as it stops


def test_a_stage_of_hashes_counts_them_as_its_files() -> None:
    buf, now = io.StringIO(), [0.0]
    console = Console(file=buf, force_terminal=False, width=200)
    with FileProgress("hashed", every_s=0.0, console=console, clock=lambda: now[0]) as p:
        for i in range(2):
            now[0] += 2.0
            p.hashed(f"/music/f{i}.wav", 2)
    assert buf.getvalue().splitlines() == ["hashed 1/2 files, 0.5 files/s, now: /music/f0.wav",
                                           "hashed 2/2 files, 0.5 files/s, now: /music/f1.wav"]


def test_progress_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVERY_ENV, "2.5")
    assert every_s_from_env() == 2.5
    monkeypatch.setenv(EVERY_ENV, "often")
    with pytest.raises(ParameterError, match=EVERY_ENV):
        every_s_from_env()


def test_info_formats_and_the_deprecated_json_flag(indexed: tuple[Path, str, str]) -> None:
    idx = str(indexed[0])
    code, out, _ = run("info", "--index", idx, "--tracks", "--format", "json")
    assert code == 0
    data = json.loads(out)
    track = data["tracks"][0]
    assert data["n_tracks"] == 4 and {"track_id", "path"} <= set(track) and "id" not in track
    assert json.loads(run("info", "--index", idx, "--tracks", "--json")[1]) == data
    code, out, _ = run("info", "--index", idx, "--format", "jsonl")
    assert code == 0 and len(out.splitlines()) == 1 and json.loads(out)["n_tracks"] == 4
    code, out, _ = run("info", "--index", idx, "--tracks", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "track_id,path,title,artist,album,year,duration_s,windows"
    assert "--json" not in run("info", "--help")[1]


def test_clusters_speak_the_records_vocabulary_numbered_from_one(indexed: tuple[Path, str, str]) -> None:
    idx = str(indexed[0])
    code, out, err = run("clusters", "--by", "timbre", "-n", "2", "--index", idx, "--format", "json")
    assert code == 0, err
    groups = json.loads(out)
    assert [g["cluster"] for g in groups] == [1, 2]
    members = [m for g in groups for m in g["members"]]
    assert all(set(m) == {"track_id", "path", "distance"} for m in members)
    assert sorted(Path(m["path"]).name for m in members) == [f"song{i}.wav" for i in range(4)]
    code, out, _ = run("clusters", "--by", "timbre", "-n", "2", "--index", idx, "--format", "csv")
    assert out.splitlines()[0] == "cluster,track_id,path,distance"
    assert {r["cluster"] for r in csv.DictReader(io.StringIO(out))} <= {"1", "2"}


def test_remove_prints_what_it_removed_in_the_format_asked(tmp_path: Path, music: Path) -> None:
    idx = tmp_path / "idx"
    assert run("index", str(music / "song0.wav"), str(music / "song1.wav"), "--index", str(idx), "-j", "1",
               "--modes", "timbre")[0] == 0
    code, out, err = run("remove", str(music / "song0.wav"), "nowhere.wav", "--index", str(idx),
                         "--format", "json")
    assert code == 2 and "not in the library: nowhere.wav" in err
    data = json.loads(out)
    assert [Path(r["path"]).name for r in data["removed"]] == ["song0.wav"]
    assert data["missing"] == ["nowhere.wav"]
    assert {"track_id", "path"} <= set(data["removed"][0])


def test_errors_say_the_problem_without_internal_names(tmp_path: Path,
                                                       indexed: tuple[Path, str, str]) -> None:
    idx = str(indexed[0])
    short = tmp_path / "short.wav"
    sf.write(short, synth.music(duration_s=0.5, sr=SR, seed=3), SR)
    for fmt in ("table", "json"):
        code, out, err = run("similar", str(short), "--by", "timbre", "--index", idx, "--format", fmt)
        assert code == 2 and out == ""  # no "(no results)", no "[]" beside the error
        (line,) = err.strip().splitlines()
        assert "short.wav" in line and "too short" in line and "min_duration_s" not in line
    code, out, err = run("nearest", str(tmp_path / "missing.wav"), "--index", idx)
    assert code == 2 and "(no results)" not in out + err
    code, _, err = run("index", str(short), "--index", str(tmp_path / "new"), "--window", "200")
    assert code == 2 and "--window" in err and "window_s" not in err


def test_tune_marks_the_setting_it_chose(tmp_path: Path, rng: np.random.Generator) -> None:
    centres = rng.standard_normal((20, 8))
    X = (centres[rng.integers(0, 20, 400)] + 0.2 * rng.standard_normal((400, 8))).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    idx = str(tmp_path / "vec")
    code, _, err = run("vectors", "add", str(tmp_path / "x.npy"), "--index", idx, "--family", "hyperplane")
    assert code == 0, err
    args = ["tune", "--index", idx, "--dry-run", "--tables", "2", "--bits", "4", "--validation", "50",
            "--target-recall", "0.5", "-k", "5"]
    code, out, err = run(*args, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    chosen = [r for r in report["rows"] if r["chosen"]]
    assert len(report["rows"]) > 1 and len(chosen) == 1
    assert {k: v for k, v in chosen[0].items() if k != "chosen"} == report["best"]
    assert sum(r["chosen"] for r in map(json.loads, run(*args, "--format", "jsonl")[1].splitlines())) == 1
    code, out, _ = run(*args)
    assert code == 0 and "marks the chosen" in out
    marked = [line for line in out.splitlines() if line.startswith("│ *")]
    assert len(marked) == 1


def test_vectors_add_progress_and_outcomes(tmp_path: Path, rng: np.random.Generator) -> None:
    np.save(tmp_path / "a.npy", rng.standard_normal((30, 8)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal((20, 8)).astype(np.float32))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    files = [str(tmp_path / n) for n in ("a.npy", "bad.npy", "b.npy")]
    code, out, err = run("vectors", "add", *files, "--index", str(tmp_path / "vec"), "--format", "json",
                         env=EVERY_FILE)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("added ")]
    assert [line.split(", ")[0] for line in lines] == ["added 1/3 files", "added 2/3 files (1 failed)",
                                                       "added 3/3 files (1 failed)"]
    assert all("files/s" in line and "real time" not in line for line in lines)  # no audio here
    data = json.loads(out)
    assert [(Path(f["path"]).name, f["status"], f["n_vectors"]) for f in data["files"]] == \
        [("a.npy", "added", 30), ("bad.npy", "failed", 0), ("b.npy", "added", 20)]
    assert data["n_vectors"] == 50 and "bad.npy" in data["files"][1]["error"]
    code, out, err = run("remove", "--keys", "nope", "--index", str(tmp_path / "vec"), "--format", "json")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["error: no item has any of the keys ['nope']"]  # no "removed 0"


def test_evaluate_identify_takes_index_like_every_command(tmp_path: Path) -> None:
    help_text = run("evaluate", "identify", "--help")[1]
    assert "--index " in help_text and "--index-dir" not in help_text and "--format" in help_text
    # The old name still parses (hidden): the corpus is refused after the options are read.
    sf.write(tmp_path / "one.wav", synth.music(duration_s=3.0, sr=SR, seed=1), SR)
    code, _, err = run("evaluate", "identify", str(tmp_path), "--index-dir", str(tmp_path / "i"),
                       "--no-audfprint")
    assert code == 2 and "needs at least 3 audio files" in err
    assert "--format" in run("evaluate", "excerpts", "--help")[1]


@pytest.mark.parametrize(("args", "said"), [
    (["evaluate", "identify", "{corpus}", "--out", "{tmp}/none/r.json"],
     "--out {tmp}/none/r.json: the folder"),
    (["evaluate", "identify", "{corpus}", "--fit-confidence", "{tmp}/none/c.json"], "--fit-confidence"),
    (["evaluate", "identify", "{corpus}", "--reliability-png", "{tmp}/none/r.png"], "--reliability-png"),
    (["evaluate", "excerpts", "{corpus}", "--md", "{tmp}/none/r.md"], "--md {tmp}/none/r.md: the folder")])
def test_an_evaluation_refuses_an_output_it_could_not_write_before_it_runs(tmp_path: Path, args: list[str],
                                                                           said: str) -> None:
    """An output path in a folder that does not exist failed only when written, after the whole
    run (an hour of evaluation, and with --fit-confidence the printed report too)."""
    corpus = tmp_path / "corpus"
    for seed in range(3):
        song = synth.music(duration_s=12.0, sr=SR, seed=seed)
        corpus.mkdir(exist_ok=True)
        sf.write(corpus / f"t{seed}.wav", song, SR)
    given = [a.format(corpus=corpus, tmp=tmp_path) for a in args]
    code, out, err = run(*given)
    assert code == 2 and said.format(tmp=tmp_path) in err and "does not exist" in err
    assert out == "" and not (tmp_path / "none").exists()
