"""The Spark scale benchmark still runs end to end on tiny sizes and measures every method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "spark_scale.py"


@pytest.mark.slow
@pytest.mark.spark
def test_tiny_run_measures_every_method(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--n", "4000", "--mllib-n", "800", "--n-sets", "1200",
         "--sample", "100", "--mllib-grid", "2,0.02", "--mllib-at-n", "", "--mllib-cap-s", "120",
         "--out", str(out), "--md", str(tmp_path / "s.md")],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert {"local build (Index.create + add)", "audiolsh spark join (broadcast)",
            "audiolsh spark join (shuffle)", "audiolsh self_join (local, 2 threads)",
            "MLlib BucketedRandomProjectionLSH", "MLlib MinHashLSH",
            "audiolsh spark vectors add (--no-merge)", "audiolsh spark query",
            "MLlib BucketedRandomProjectionLSH.approxNearestNeighbors",
            "audiolsh Index.query (one query at a time)"} <= methods
    assert all(r["note"] != "DIFFERS from Spark" for r in rows)
    # the sizes given beside --quick are the ones run (--quick only changes the defaults)
    assert {r["n"] for r in rows if r["section"] == "vectors"} == {4000}
    assert {r["n"] for r in rows if r["section"] == "vectors-small"} == {800}
    assert {r["n"] for r in rows if r["section"] == "sets"} == {1200}
    ours = [r for r in rows if r["method"] == "audiolsh spark join (broadcast)"]
    assert all(r["recall"] > 0.5 for r in ours)
