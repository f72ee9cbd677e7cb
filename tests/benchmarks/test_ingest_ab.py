"""ingest_ab.py: engines run in turn on the same WAV copies, and the summary pairs each round."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ingest_ab as ia
from audiolsh.audio.synth import music

SRC = Path(__file__).resolve().parents[2] / "src"


def _run(audio_s: float, wall_s: float, cpu_s: float = 1.0) -> dict[str, float]:
    return {"audio_s": audio_s, "wall_s": wall_s, "cpu_s": cpu_s, "workers": 2, "index_bytes": 3600.0,
            "n_tracks": 2}


def test_the_summary_pairs_each_engine_with_the_first_in_the_same_round() -> None:
    rows = {"a": [_run(100, 1.0), _run(100, 2.0), _run(100, 1.0)],   # round 2 ran on a busy machine
            "b": [_run(100, 1.25), _run(100, 2.5), _run(100, 0.5)]}
    a, b = ia.summarise(rows)
    assert a["paired"] == 1.0
    assert b["paired"] == pytest.approx(0.8)  # 0.8, 0.8, 2.0
    assert b["x_core_median"] == pytest.approx(40.0) and b["x_core_min"] == pytest.approx(20.0)
    assert a["mb_per_hour"] == pytest.approx(3600.0 / 1e6 / (100 / 3600))
    assert ia.markdown([a, b]).splitlines()[3].startswith("| b | 3 | 40 (20-100) | 0.800 |")


def test_engines_are_named_and_must_hold_the_package(tmp_path: Path) -> None:
    assert ia._engines([f"x={SRC}"]) == {"x": SRC}
    with pytest.raises(SystemExit, match="LABEL=SRC_DIR"):
        ia._engines([str(SRC)])
    with pytest.raises(SystemExit, match="holds no audiolsh package"):
        ia._engines([f"x={tmp_path}"])
    with pytest.raises(SystemExit, match="given twice"):
        ia._engines([f"x={SRC}", f"x={SRC}"])


STUB = """
import os, sys
from pathlib import Path
from types import SimpleNamespace
def wav_ingest(tracks, workdir, *, workers=1):
    with open(Path(__file__).parent / "calls.txt", "a") as f:
        f.write(f"{len(tracks)} {workers} {Path(workdir).name == 'warm'}\\n")
    return SimpleNamespace(audio_s=10.0 * len(tracks), wall_s=1.0, workers=workers, index_bytes=123,
                           n_tracks=len(tracks))
"""


def _stub_engine(root: Path) -> Path:
    """A checkout whose ``wav_ingest`` only records its calls: each engine's run imports its own."""
    pkg = root / "src" / "audiolsh"
    (pkg / "evaluation").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "evaluation" / "__init__.py").write_text("")
    (pkg / "evaluation" / "identify.py").write_text(STUB)
    return root / "src"


@pytest.mark.parametrize("fresh", [False, True])
def test_each_engine_runs_its_own_package_in_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  fresh: bool) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        sf.write(corpus / f"t{i}.flac", music(duration_s=6.0, sr=22050, seed=i), 22050)
    stub = _stub_engine(tmp_path / "stub")
    out = tmp_path / "ab.json"
    monkeypatch.setattr(sys, "argv", ["ingest_ab.py", str(corpus), "--engine", f"stub={stub}", "--engine",
                                      f"repo={SRC}", "--tracks", "2", "--workers", "1", "--rounds", "2",
                                      "--work", str(tmp_path / "w"), "--out", str(out),
                                      *(["--fresh"] if fresh else [])])
    ia.main()
    report = json.loads(out.read_text())
    assert report["tracks"] == [str(corpus / "t0.flac"), str(corpus / "t1.flac")] and report["fresh"] is fresh
    stub_runs, repo_runs = report["runs"]["stub"], report["runs"]["repo"]
    assert len(stub_runs) == len(repo_runs) == 2
    assert all(r["index_bytes"] == 123 and r["package"].startswith(str(stub)) for r in stub_runs)
    assert all(r["n_tracks"] == 2 and r["audio_s"] == pytest.approx(12.0, abs=0.01) for r in repo_runs)
    assert all(r["index_bytes"] > 1000 and r["cpu_s"] > 0 for r in repo_runs)
    assert all(r["package"].startswith(str(SRC)) for r in repo_runs)
    # the stub: an untimed first run (it is the first engine), then a warm-up and a timed ingest a round
    calls = (stub / "audiolsh" / "evaluation" / "calls.txt").read_text().split("\n")[:-1]
    assert calls == ["1 1 True", "2 1 False"] * 3
    assert sorted(p.name for p in (tmp_path / "w" / "tracks").iterdir()) == ["t0000.wav", "t0001.wav"]
    assert np.isfinite([s["paired"] for s in report["summary"]]).all()


CLI_STUB = """
import os, sys
from pathlib import Path
def main():
    args = sys.argv[1:]
    with open(Path(__file__).parent / "calls.txt", "a") as f:
        f.write(" ".join(os.path.basename(a) for a in args) + "\\n")
    index = Path(args[args.index("--index") + 1])
    index.mkdir()
    (index / "data").write_bytes(b"x" * 77)
    print('{"added": %d}' % sum(a.endswith(".wav") for a in args))
"""


def test_the_cli_mode_times_each_engines_own_audiolsh_index(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[int] = []  # --cold: the page cache emptied before each timed run (not here: root)
    monkeypatch.setattr(ia, "drop_page_cache", lambda: dropped.append(1))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(2):
        sf.write(corpus / f"t{i}.flac", music(duration_s=6.0, sr=22050, seed=i), 22050)
    stub = _stub_engine(tmp_path / "stub")
    (stub / "audiolsh" / "cli").mkdir()
    (stub / "audiolsh" / "cli" / "__init__.py").write_text(CLI_STUB)
    out = tmp_path / "ab.json"
    monkeypatch.setattr(sys, "argv", ["ingest_ab.py", str(corpus), "--engine", f"repo={SRC}", "--engine",
                                      f"stub={stub}", "--tracks", "2", "--workers", "2", "--rounds", "1",
                                      "--work", str(tmp_path / "w"), "--out", str(out), "--cli", "--cold"])
    ia.main()
    report = json.loads(out.read_text())
    assert report["cli"] is True and report["cold"] is True and len(dropped) == 2
    (repo,), (stub_run,) = report["runs"]["repo"], report["runs"]["stub"]
    # the real command indexed both copies: their audio, a library on disk, CPU of its workers
    assert repo["n_tracks"] == 2 and repo["audio_s"] == pytest.approx(12.0, abs=0.01)
    assert repo["index_bytes"] > 1000 and repo["cpu_s"] > 0 and repo["package"].startswith(str(SRC))
    assert stub_run["index_bytes"] == 77 and stub_run["package"].startswith(str(stub))
    calls = (stub / "audiolsh" / "cli" / "calls.txt").read_text().splitlines()
    assert calls == ["index --index cli-warm --modes fingerprint -j 1 --format json t0000.wav",
                     "index --index cli --modes fingerprint -j 2 --format json t0000.wav t0001.wav"]


def test_cold_goes_with_the_cli_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["ingest_ab.py", str(tmp_path), "--engine", f"repo={SRC}",
                                      "--work", str(tmp_path / "w"), "--cold"])
    with pytest.raises(SystemExit, match="--cold goes with --cli"):
        ia.main()


def test_a_cli_run_that_adds_fewer_files_than_given_is_refused(tmp_path: Path) -> None:
    stub = _stub_engine(tmp_path / "stub")
    (stub / "audiolsh" / "cli").mkdir()
    (stub / "audiolsh" / "cli" / "__init__.py").write_text(CLI_STUB)  # counts only .wav names
    with pytest.raises(SystemExit, match="added 1 of 2 files"):
        ia._cli(stub, tmp_path / "idx", 1, [str(tmp_path / "a.wav"), str(tmp_path / "b.flac")])
