"""Right by default: segments built for a target recall, query-time recall, adaptive probing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audiolsh.cli import cli
from audiolsh.evaluation.metrics import recall_at_k
from audiolsh.index import Index, autotune
from audiolsh.search import BruteForce

N, DIM, N_QUERIES = 4000, 32, 200


def isotropic(n: int, seed: int = 1) -> np.ndarray:
    """Gaussian clusters, the same spread in every direction."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, DIM))
    return (centres[rng.integers(0, 64, n)] + 0.35 * rng.standard_normal((n, DIM))).astype(np.float32)


def anisotropic(n: int, seed: int = 2) -> np.ndarray:
    """A mixture whose variance decays over the directions, randomly rotated (like embeddings)."""
    rng = np.random.default_rng(seed)
    spectrum = np.arange(1, DIM + 1) ** -1.0
    rotation = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    centres = 3 * rng.standard_normal((40, DIM)) * spectrum
    X = centres[rng.integers(0, 40, n)] + rng.standard_normal((n, DIM)) * spectrum
    return (X @ rotation.T).astype(np.float32)


def split(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indexed rows and fresh queries from the same distribution (never indexed)."""
    return X[:N], X[N:]


def recall(index: Index, X: np.ndarray, Q: np.ndarray, **options: object) -> tuple[float, np.ndarray]:
    truth = BruteForce(index.config.metric).fit(X).search(Q, 10).ids
    res = index.query(Q, 10, **options)  # type: ignore[arg-type]
    return float(recall_at_k(res.ids, truth).mean()), res.n_probes


def vectors_add(runner: CliRunner, tmp_path: Path, X: np.ndarray, location: str, *options: str):  # type: ignore[no-untyped-def]
    """``vectors add`` of the rows X (saved under tmp_path) with the options."""
    np.save(tmp_path / "rows.npy", X)
    return runner.invoke(cli, ["vectors", "add", "--index", location, *options, str(tmp_path / "rows.npy")])


EASY_GROUPS, GROUP = 40, 12


@pytest.fixture(scope="module")
def iso_index() -> tuple[Index, np.ndarray, np.ndarray]:
    X, Q = split(isotropic(N + N_QUERIES))
    # Planted easy cases: tight groups of GROUP rows, each group's 10 nearest far nearer
    # than anything else.
    rng = np.random.default_rng(4)
    centres = 2 * rng.standard_normal((EASY_GROUPS, DIM))
    X[:EASY_GROUPS * GROUP] = (np.repeat(centres, GROUP, axis=0)
                               + 0.01 * rng.standard_normal((EASY_GROUPS * GROUP, DIM)))
    # 12 bits: buckets small enough that the target needs probing beyond the home buckets.
    index = Index.create(None, metric="cosine", n_bits=12)
    index.add(X)
    return index, X, Q


@pytest.mark.parametrize(("make", "metric"), [(isotropic, "cosine"), (anisotropic, "cosine"),
                                             (isotropic, "euclidean")])
def test_a_default_build_reaches_the_target_recall_on_fresh_queries(make, metric) -> None:  # type: ignore[no-untyped-def]
    X, Q = split(make(N + N_QUERIES))
    with Index.create(None, metric=metric, family="hyperplane") as index:  # the hyperplane tuner
        index.add(X)
        (seg,) = index._segments
        point = seg.info.config["operating_point"]
        assert point["version"] == autotune.VERSION and point["target_recall"] == 0.95
        got, probes = recall(index, X, Q)
    assert got >= 0.95
    assert probes.max() <= point["n_probes"]
    if point["stop"] > 0:  # adaptive: not every query probes the same number of buckets
        assert probes.min() < probes.max()
    else:  # the home buckets alone reach the target
        assert (probes == seg.info.config["family"]["n_tables"]).all()
    # Inside the default byte budget; the estimate (from a sample's distinct keys) errs high.
    assert index.info()["table_bytes_per_item"] <= point["max_table_bytes"] == 64
    assert index.info()["table_bytes_per_item"] <= 1.02 * point["table_bytes_estimate"]


def test_a_lower_recall_probes_fewer_buckets_and_each_reaches_its_target(iso_index) -> None:  # type: ignore[no-untyped-def]
    index, X, Q = iso_index
    low, low_probes = recall(index, X, Q, recall=0.8)
    high, high_probes = recall(index, X, Q, recall=0.99)
    assert low >= 0.8 and high >= 0.99
    assert low_probes.sum() < high_probes.sum()


def test_vectors_query_recall_option(tmp_path: Path, iso_index) -> None:  # type: ignore[no-untyped-def]
    _, X, Q = iso_index
    np.save(tmp_path / "queries.npy", Q)
    runner = CliRunner()
    location = str(tmp_path / "idx")
    added = vectors_add(runner, tmp_path, X, location, "--target-recall", "0.9")
    assert added.exit_code == 0, added.output
    truth = BruteForce("cosine").fit(X).search(Q, 10).ids
    candidates = {}
    for r in ("0.8", "0.99"):
        out = runner.invoke(cli, ["vectors", "query", "--index", location, "--recall", r,
                                  "--format", "json", str(tmp_path / "queries.npy")])
        assert out.exit_code == 0, out.output
        records = json.loads(out.stdout)
        ids = np.array([[int(h["id"].rsplit(":", 1)[1]) for h in rec["results"]] for rec in records])
        assert recall_at_k(ids, truth).mean() >= float(r)
        candidates[r] = float(out.stderr.split(" candidates per query")[0].rsplit(" ", 1)[1])
    assert candidates["0.8"] < candidates["0.99"]
    with Index.open(location) as index:
        assert index.config.target_recall == 0.9
    bad = runner.invoke(cli, ["vectors", "query", "--index", location, "--recall", "1.5",
                              str(tmp_path / "queries.npy")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_the_operating_point_survives_a_reopen(tmp_path: Path) -> None:
    X, Q = split(anisotropic(N + N_QUERIES))
    with Index.create(tmp_path / "idx", metric="cosine", target_recall=0.9) as index:
        index.add(X)
        point = index._segments[0].info.config["operating_point"]
        before = index.query(Q, 10)
    with Index.open(tmp_path / "idx", readonly=True) as again:
        assert again.config.target_recall == 0.9
        assert again._segments[0].info.config["operating_point"] == point
        after = again.query(Q, 10)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.n_probes, before.n_probes)
    # Another target rebuilds the segments for it.
    with Index.open(tmp_path / "idx") as index:
        index.set_params(target_recall=0.99)
        assert index._segments[0].info.config["operating_point"]["target_recall"] == 0.99


def test_an_index_from_before_tuned_builds_opens_and_keeps_its_fixed_builds(tmp_path: Path) -> None:
    """Configs without ``target_recall`` and segments without an operating point were written
    by earlier versions: they open, answer with the fixed probes, and new segments of such an
    index are built as before."""
    X, Q = split(isotropic(N + N_QUERIES))
    with Index.create(tmp_path / "idx", metric="cosine", family="hyperplane", target_recall=None) as index:
        index.add(X[:2000])
        config = index.storage.config()
        assert config is not None
        old = {k: v for k, v in config.items() if k != "target_recall"}
        old["n_tables"] = 8
        with index.storage.write() as w:
            w.set_config(old)
    with Index.open(tmp_path / "idx") as index:
        assert index.config.target_recall is None
        fixed = index.query(Q, 10)
        assert (fixed.n_probes == 4 * 8).all()  # the old default: 4 probes per table
        index.add(X[2000:])
        assert all("operating_point" not in s.config for s in index.segments)


@pytest.mark.parametrize("n_queries", [1, 8])  # the one-call path and the batch path
def test_adaptive_probing_answers_easy_queries_as_full_probing_with_fewer_probes(  # type: ignore[no-untyped-def]
        iso_index, n_queries) -> None:
    index, X, _ = iso_index
    (seg,) = index._segments
    cap, stop = autotune.pick(seg.info.config["operating_point"], None)
    assert stop > 0
    # Easy: a planted group's centre, its 10 nearest in the group close by.
    easy = X[:EASY_GROUPS * GROUP].reshape(EASY_GROUPS, GROUP, DIM).mean(axis=1)
    searcher = seg.searcher
    for lo in range(0, len(easy), n_queries):
        Q = easy[lo:lo + n_queries]
        full = searcher.search(Q, 10, n_probes=cap)
        adaptive = searcher.search(Q, 10, n_probes=cap, stop=stop)
        np.testing.assert_array_equal(adaptive.ids, full.ids)
        assert (full.n_probes == cap).all()
        assert (adaptive.n_probes < cap).all()
        assert (adaptive.n_candidates <= full.n_candidates).all()


def test_the_tune_command_keeps_a_margin_above_its_target() -> None:
    """``tune``'s pick must clear the target by the standard errors and the margin: the mean
    alone reached 0.951 on its validation queries and 0.946 on fresh ones."""
    from audiolsh.evaluation.tune import tune_vectors

    report = tune_vectors(isotropic(N), target_recall=0.9, tables=(8,), bits=(8, 10),
                          probes_per_table=(1, 2), rerank_per_k=(0,))
    assert report.best is not None
    assert report.best.recall >= 0.9 + autotune.MARGIN
    # A row just above the target in the mean is there, and was not good enough.
    assert any(0.9 <= r.recall < 0.9 + autotune.MARGIN for r in report.rows)


@pytest.mark.parametrize("make", [isotropic, anisotropic])
def test_a_tighter_byte_budget_gives_smaller_tables_that_still_reach_the_target(make) -> None:  # type: ignore[no-untyped-def]
    X, Q = split(make(N + N_QUERIES))
    with Index.create(None, metric="cosine", family="hyperplane", max_table_bytes=20) as index:
        index.add(X)
        point = index._segments[0].info.config["operating_point"]
        assert point["max_table_bytes"] == 20
        assert index.info()["table_bytes_per_item"] <= 20
        # Shapes over the budget are sized, never scored.
        assert point["shapes_scored"] < point["shapes_tried"]
        got, _ = recall(index, X, Q)
    assert got >= 0.95


def test_a_budget_no_point_fits_builds_the_best_recall_inside_it_and_says_so(caplog) -> None:  # type: ignore[no-untyped-def]
    X, _ = split(isotropic(N + N_QUERIES))
    with caplog.at_level("WARNING", logger="audiolsh.index.autotune"):
        with Index.create(None, metric="cosine", family="hyperplane", max_table_bytes=12,
                          target_recall=0.999) as index:
            index.add(X)
            point = index._segments[0].info.config["operating_point"]
            assert index.info()["table_bytes_per_item"] <= 12
    assert point["recall_estimate"] < 0.999
    assert any("no operating point within 12 table bytes per item reaches recall 0.999" in r.getMessage()
               for r in caplog.records)


def test_the_byte_budget_is_validated_and_older_configs_get_the_default() -> None:
    from audiolsh.errors import ParameterError
    from audiolsh.index.build import IndexConfig

    for bad in (0, -5, "64", True):
        with pytest.raises(ParameterError, match="max_table_bytes"):
            IndexConfig(max_table_bytes=bad).validate()  # type: ignore[arg-type]
    old = {k: v for k, v in IndexConfig().__dict__.items() if k != "max_table_bytes"}
    assert IndexConfig.from_dict(old).max_table_bytes == autotune.DEFAULT_MAX_TABLE_BYTES


def test_the_tuner_scores_few_shapes_and_measures_a_bounded_exact_pass(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Its cost in counts: the held-out queries' exact pass is held to QUERY_FLOPS
    multiply-adds (MIN_QUERIES at least), and only a handful of shapes are scored."""
    monkeypatch.setattr(autotune, "QUERY_FLOPS", 80 * N * DIM)
    X, Q = split(anisotropic(N + N_QUERIES))
    with Index.create(None, metric="cosine", family="hyperplane") as index:
        index.add(X)
        point = index._segments[0].info.config["operating_point"]
        got, _ = recall(index, X, Q)
    assert point["n_queries"] == 80
    assert point["shapes_scored"] <= 6 and point["shapes_tried"] <= 9
    assert got >= 0.95


def test_sample_bucket_counts_by_one_bincount_match_the_lookup_per_table() -> None:
    rng = np.random.default_rng(5)
    bits, L = 10, 6
    sample = rng.integers(0, 2**bits, (2000, L)).astype(np.uint64)
    keys = rng.integers(0, 2**bits, (50, 40)).astype(np.uint64)
    tables = rng.integers(0, L, (50, 40))
    by_bincount = autotune._sample_counts(sample, keys, tables, bits)
    by_lookup = autotune._sample_counts(sample, keys, tables, None)
    np.testing.assert_array_equal(by_bincount, by_lookup)
    assert by_lookup.sum() > 0


def test_vectors_add_max_table_bytes_option(tmp_path: Path) -> None:
    X, _ = split(isotropic(N + N_QUERIES))
    runner = CliRunner()
    location = str(tmp_path / "idx")
    added = vectors_add(runner, tmp_path, X, location, "--max-table-bytes", "20")
    assert added.exit_code == 0, added.output
    with Index.open(location, readonly=True) as index:
        assert index.config.max_table_bytes == 20
        assert index.info()["table_bytes_per_item"] <= 20
    bad = vectors_add(runner, tmp_path, X, str(tmp_path / "other"), "--max-table-bytes", "0")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
