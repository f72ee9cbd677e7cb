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


def test_a_run_ingests_every_track_in_a_fresh_process(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        sf.write(corpus / f"t{i}.flac", music(duration_s=6.0, sr=22050, seed=i), 22050)
    out = tmp_path / "ab.json"
    monkeypatch.setattr(sys, "argv", ["ingest_ab.py", str(corpus), "--engine", f"one={SRC}", "--engine",
                                      f"two={SRC}", "--tracks", "2", "--workers", "1", "--rounds", "2",
                                      "--work", str(tmp_path / "w"), "--out", str(out)])
    ia.main()
    report = json.loads(out.read_text())
    assert report["tracks"] == [str(corpus / "t0.flac"), str(corpus / "t1.flac")]
    assert [len(v) for v in report["runs"].values()] == [2, 2]
    for runs in report["runs"].values():
        assert all(r["n_tracks"] == 2 and r["audio_s"] == pytest.approx(12.0, abs=0.01) for r in runs)
        assert all(r["index_bytes"] > 0 and r["cpu_s"] > 0 for r in runs)
    assert sorted(p.name for p in (tmp_path / "w" / "tracks").iterdir()) == ["t0000.wav", "t0001.wav"]
    assert np.isfinite([s["paired"] for s in report["summary"]]).all()
