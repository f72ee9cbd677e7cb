"""The k-NN benchmark still runs end to end (its --quick mode) and measures every method."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "knn.py"


@pytest.mark.slow
@pytest.mark.parametrize("data", ["iso,aniso", "sets"])
def test_quick_run_measures_every_method(tmp_path: Path, data: str) -> None:
    out = tmp_path / "knn.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--data", data, "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    if data != "sets":  # issue #18's datasets: both in one run, and its summary table
        assert list(report["datasets"]) == ["iso", "aniso"]
        assert set(report["issue18"]) == {"iso (n=20,000)", "aniso (n=20,000)"}
        assert "Issue #18 summary" in proc.stdout
        # the table reads the confirmation's figures: every method re-timed, interleaved
        assert all(c["QPS figures"].startswith("confirmed") for c in report["issue18"].values())
        # speed and build at once: the fastest k-means point within 0.2x hnswlib's build
        assert all("k-means kernel, build <= 0.2x hnswlib's: point" in c
                   for c in report["issue18"].values())
        confirmed = report["datasets"]["iso"]["confirmed"]
        assert {"brute force", "faiss IVFFlat", "hnswlib"} <= {c["method"] for c in confirmed}
        assert all(c["best_qps"] >= c["median_qps"] > 0 and c["passes"] == 2 for c in confirmed)
        data = "iso"
    rows = report["datasets"][data]["rows"]
    methods = {r["method"].split(" ")[0] for r in rows}
    expected = {"brute", "audiolsh", "datasketch"} if data == "sets" else {
        "brute", "audiolsh", "faiss", "annoy", "hnswlib"
    }
    assert expected <= methods
    if data == "iso":  # the peers and the Index as built by default
        names = {r["method"] for r in rows}
        indexes = {"audiolsh Index (default build)", "audiolsh Index kmeans (default build)"}
        assert {"faiss IVFFlat", "faiss IVF-SQfp16", "faiss IndexLSH+refine", *indexes} <= names
        # the k-means kernel also scans a float16 copy of its rows, as IVF-SQfp16 does
        assert any(r["method"] == "audiolsh kmeans" and r["extra"].get("rows") == "float16"
                   for r in rows)
        default = [r for r in rows if r["params"].endswith("(default)")]
        assert sorted(r["method"] for r in default) == sorted(indexes)  # one default each
        assert all(0 < r["recall"] <= 1 for r in default)
    ours = [r for r in rows if r["method"].startswith("audiolsh")]
    assert all(0.0 <= r["recall"] <= 1.0 and r["single_qps"] > 0 for r in ours)
    # Exact search is the reference: it must find the exact answer.
    brute = next(r for r in rows if r["method"] == "brute force")
    assert brute["recall"] == pytest.approx(1.0)
