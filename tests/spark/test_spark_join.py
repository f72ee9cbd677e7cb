"""spark join: the brute-force join when the probes cover every bucket, the local join's
answer bit for bit (both strategies), the same twice for a seed, and a bucket cap that keeps
a planted crowd from exploding the pairs and says what it left out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from audiolsh.errors import ParameterError
from audiolsh.index import Index
from audiolsh.index.join import self_join
from audiolsh.search.brute import jaccard_rows

pytestmark = pytest.mark.spark


def brute_join(D: np.ndarray, ids: np.ndarray, *, k: int | None, max_distance: float = np.inf
               ) -> list[np.ndarray]:
    """Exact all-pairs join from a dense distance matrix (rows in ``ids`` order, ids
    ascending): per item its neighbours nearest first, ties by id."""
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    ranked = np.lexsort((np.broadcast_to(ids, D.shape), D), axis=-1)
    out = []
    for row, r in zip(D, ranked):
        r = r[row[r] <= max_distance]
        out.append(ids[r[:k] if k is not None else r])
    return out


def same_neighbours(result: Any, ids: np.ndarray, want: list[np.ndarray]) -> bool:
    return np.array_equal(result.ids, ids) and all(
        np.array_equal(result.neighbours_of(int(i))[0], w) for i, w in zip(ids, want))


@pytest.fixture(scope="module")
def cosine_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray, np.ndarray]:
    """1,500 seeded 12-d rows in two segments, 3 tables of 3 bits: 24 probes reach every bucket."""
    X = np.random.default_rng(15).standard_normal((1500, 12)).astype(np.float32)
    path = str(tmp_path_factory.mktemp("join") / "cos.idx")
    with Index.create(path, metric="cosine", n_tables=3, n_bits=3, whiten=0.0) as index:
        index.add(X[:900])
        index.add(X[900:])
        data, ids = index.live_data()
    return path, data, ids


@pytest.mark.parametrize("strategy", ["broadcast", "shuffle"])
def test_join_with_every_bucket_probed_is_the_brute_force_join(spark: Any, cosine_index: Any,
                                                               strategy: str) -> None:
    from audiolsh.spark.join import spark_self_join

    path, data, ids = cosine_index
    done = spark_self_join(spark, path, k=6, n_probes=24, strategy=strategy)
    D = 1.0 - data.astype(np.float64) @ data.T.astype(np.float64)
    assert same_neighbours(done.result, ids, brute_join(D, ids, k=6))
    with Index.open(path, readonly=True) as index:
        assert done.result.same_pairs(self_join(index, k=6, n_probes=24))  # and bit-equal distances
    assert done.stats.n_pairs == 6 * 1500 and done.stats.n_segments == 2


def test_sets_above_a_similarity_are_the_brute_force_pairs(spark: Any, tmp_path: Path) -> None:
    from audiolsh.spark.join import spark_self_join

    rng = np.random.default_rng(7)
    sets = []
    for _ in range(60):  # near-duplicate groups (60-95 % of a base kept) among random sets
        base = rng.choice(10**6, int(rng.integers(40, 80)), replace=False)
        sets.append(base)
        for _ in range(int(rng.integers(1, 4))):
            keep = rng.random(len(base)) < rng.uniform(0.6, 0.95)
            sets.append(np.concatenate([base[keep], rng.choice(10**6, int((~keep).sum()), replace=False)]))
    sets += [rng.choice(10**6, 60, replace=False) for _ in range(200)]
    path = str(tmp_path / "sets.idx")
    with Index.create(path, metric="jaccard", threshold=0.1) as index:  # many bands: J >= 0.5 always meets
        index.add(sets)
        batch, ids = index.live_data()
        local = self_join(index, k=None, min_similarity=0.5)
    n = len(batch)
    D = (1.0 - jaccard_rows(batch, batch, np.tile(np.arange(n), (n, 1)))).astype(np.float32)
    done = spark_self_join(spark, path, k=None, min_similarity=0.5)
    assert same_neighbours(done.result, ids, brute_join(D, ids, k=None, max_distance=np.float32(0.5)))
    assert done.result.same_pairs(local) and done.stats.n_pairs > 100


@pytest.mark.parametrize("family", ["hyperplane", "kmeans"])  # kmeans: the default
def test_realistic_buckets_with_many_probes_find_nearly_every_neighbour(spark: Any, tmp_path: Path,
                                                                       family: str) -> None:
    from audiolsh.spark.join import spark_self_join

    rng = np.random.default_rng(3)
    centres = rng.standard_normal((30, 24))
    X = (centres[rng.integers(0, 30, 2500)] + 0.4 * rng.standard_normal((2500, 24))).astype(np.float32)
    path = str(tmp_path / "real.idx")
    # Buckets as the index chooses them (hyperplanes: 7 bits here), probed 400 deep.
    with Index.create(path, metric="cosine", family=family) as index:
        index.add(X)
        data, ids = index.live_data()
        data = data[np.argsort(ids)]  # rows by item id (a k-means segment keeps them by cell)
        local = self_join(index, k=10, n_probes=400)
    done = spark_self_join(spark, path, k=10, n_probes=400, strategy="shuffle", n_partitions=3)
    assert done.result.same_pairs(local)
    D = 1.0 - data.astype(np.float64) @ data.T.astype(np.float64)
    np.fill_diagonal(D, np.inf)
    kth = np.sort(D, axis=1)[:, 9]
    got = done.result.neighbours.reshape(-1, 10)
    found = 1.0 - np.einsum("nkd,nd->nk", data[got].astype(np.float64), data.astype(np.float64))
    assert np.mean(found <= kth[:, None] + 1e-6) >= 0.99


@pytest.fixture(scope="module")
def crowded_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    """2,000 rows, 500 of them near-copies of one: a bucket of 500+ in every table."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((2000, 16)).astype(np.float32)
    X[:500] = X[0] + 1e-4 * rng.standard_normal((500, 16)).astype(np.float32)
    path = str(tmp_path_factory.mktemp("crowd") / "crowd.idx")
    with Index.create(path, metric="cosine", n_tables=4, n_bits=8, whiten=0.0) as index:
        index.add(X)
    return path


def test_the_cap_is_deterministic_for_a_seed_and_bounds_the_pairs(spark: Any, crowded_index: str,
                                                                  tmp_path: Path) -> None:
    from audiolsh.spark.join import spark_self_join

    free = spark_self_join(spark, crowded_index, k=5, n_probes=16)
    runs = [spark_self_join(spark, crowded_index, k=5, n_probes=16, max_bucket=30, seed=9,
                            out=str(tmp_path / f"run{i}.jsonl")) for i in range(2)]
    assert (tmp_path / "run0.jsonl").read_bytes() == (tmp_path / "run1.jsonl").read_bytes()
    st = runs[0].stats
    assert st == runs[1].stats
    assert free.stats.largest_bucket >= 500 and free.stats.n_pairs_dropped == 0
    assert st.n_capped_buckets >= 4 and st.n_members_dropped >= 4 * (500 - 30)
    assert st.n_pairs_dropped > 0
    # The crowd's 500 x 499 pairs become at most 500 x 4 tables x 30 sampled members.
    assert st.n_candidates <= free.stats.n_candidates - 500 * (499 - 4 * 30)
    assert st.n_candidates <= 2000 * 16 * 30
    with Index.open(crowded_index, readonly=True) as index:
        local = self_join(index, k=5, n_probes=16, max_bucket=30, seed=9)
    records = [json.loads(line) for line in (tmp_path / "run0.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == local.ids.tolist()
    assert all([nb["id"] for nb in r["neighbours"]] == local.neighbours_of(r["id"])[0].tolist()
               for r in records)
    assert local.stats.n_pairs_dropped == st.n_pairs_dropped
    other = spark_self_join(spark, crowded_index, k=5, n_probes=16, max_bucket=30, seed=10)
    assert not other.result.same_pairs(local)  # another seed, another sample


def test_cli_writes_records_and_says_what_the_cap_dropped(spark: Any, crowded_index: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import audiolsh.spark
    from audiolsh.cli import cli

    monkeypatch.setattr(audiolsh.spark, "stop_session", lambda session: None)  # the tests' session goes on
    out = tmp_path / "pairs.parquet"
    result = CliRunner().invoke(cli, ["spark", "join", "--index", crowded_index, "-k", "3", "--probes", "16",
                                      "--max-bucket", "30", "--seed", "9", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "bucket cap 30 (seed 9)" in result.output and "left out" in result.output
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.column_names == ["id", "key", "neighbours"] and table.num_rows == 2000
    with Index.open(crowded_index, readonly=True) as index:
        local = self_join(index, k=3, n_probes=16, max_bucket=30, seed=9)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["key"] == "0"
    assert [nb["id"] for nb in first["neighbours"]] == local.neighbours_of(0)[0].tolist()
    # On stdout (--format json: the records, jsonl's by default, gathered in one array)
    stdout = CliRunner().invoke(cli, ["spark", "join", "--index", crowded_index, "--min-similarity", "0.999",
                                      "--probes", "16", "--format", "json"])
    assert stdout.exit_code == 0, stdout.output
    lines = json.loads(stdout.stdout)
    assert len(lines) == 2000 and len(lines[1]["neighbours"]) > 100  # a near-copy of the crowd
    assert set(lines[1]) == {"id", "key", "neighbours"}


def test_help_states_the_recall_cost_of_the_cap() -> None:
    from audiolsh.cli import cli

    text = CliRunner().invoke(cli, ["spark", "join", "--help"]).output
    assert "--max-bucket" in text and "probability" in text and "--strategy" in text


def test_a_memory_index_is_refused(spark: Any) -> None:
    from audiolsh.spark.join import spark_self_join

    with pytest.raises(ParameterError, match="cannot open a memory index"):
        spark_self_join(spark, "memory://x")
