"""The Redis store benchmark still runs end to end (its --quick mode) and measures every backend."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "redis_store.py"
BACKENDS = ("embedded", "memory", "redis tcp", "redis unix")


@pytest.mark.slow
def test_quick_run_measures_every_backend(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: `make system-deps` (or apt-get install redis-server)")
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    # Smaller than --quick's defaults, to stay well under a minute on 2 cores.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--n", "8000", "--n-sets", "4000", "--batch", "1000",
         "--out", str(out), "--md", str(md)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    datasets = report["datasets"]
    assert len(datasets) == 2
    for name, data in datasets.items():
        rows = {r["backend"]: r for r in data["rows"]}
        expected = set(BACKENDS) | ({"datasketch redis", "datasketch memory"} if "sets" in name else set())
        assert expected <= set(rows), name
        for b in BACKENDS:
            r = rows[b]
            for key in ("build_s", "open_s", "p50_ms", "p95_ms", "qps", "recall", "commit_batch_s"):
                assert math.isfinite(r[key]) and r[key] >= 0, (name, b, key, r[key])
            assert r["p95_ms"] >= r["p50_ms"] > 0
            assert r["reader_n_after_commit"] == data["n"] + data["batch"]
            if b != "memory":
                assert r["bytes_per_item"] > 0
        # Every backend holds the same index: the same answers, so the same recall.
        assert len({rows[b]["recall"] for b in BACKENDS}) == 1
        if "sets" in name:
            assert rows["datasketch redis"]["bytes_per_item"] > 0
    assert all(math.isfinite(v) for v in report["ratios"].values())
    # The tables print (stdout) with every backend, and the ratios.
    for b in (*BACKENDS, "datasketch redis"):
        assert f"| {b}" in proc.stdout
    assert "target ratios" in proc.stdout and "nan" not in proc.stdout.lower()
    assert md.read_text().count("| embedded |") == 2
