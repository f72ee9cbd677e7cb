"""The cross-polytope and k-means families in an index: built deterministically, saved and
reopened with the same answers, probed best first, and a row's cell whatever its batch."""

from __future__ import annotations

from dataclasses import asdict
from itertools import pairwise
from pathlib import Path

import numba
import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.hashing import CrossPolytopeLSH, KMeansLSH, kmeans
from audiolsh.index import Index, families
from audiolsh.index.build import IndexConfig, build_segment
from audiolsh.search import VectorLSH, prepare

DIM = 24


def _clustered(seed: int, n: int = 1500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, DIM)) * 3
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


@pytest.mark.parametrize(("family", "metric"), [("kmeans", "cosine"), ("kmeans", "euclidean"),
                                                ("cross-polytope", "cosine")])
def test_two_builds_are_equal_and_a_reopened_index_answers_alike(
    tmp_path: Path, family: str, metric: str
) -> None:
    X = _clustered(1)
    # k-means: 32 cells (segments this small are one cell by default: nothing to compare)
    cells = {"n_bits": 5} if family == "kmeans" else {}
    config = IndexConfig(metric=metric, family=family, n_tables=2, **cells).validate()
    ids = np.arange(len(X), dtype=np.int64)
    a, b = build_segment(config, X, ids), build_segment(config, X, ids)
    assert a.info.config == b.info.config
    assert a.info.config["family"]["family"] == family
    assert sorted(a.arrays) == sorted(b.arrays)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name])
    with Index.create(tmp_path / "idx", metric=metric, family=family, **cells) as index:
        index.add(X[:1000])
        index.add(X[1000:])
        before = index.query(X[:40], k=5)
        assert index.config.n_tables == (1 if family == "kmeans" else 8)
    with Index.open(tmp_path / "idx") as index:
        assert [s["family"]["family"] for s in index.info()["segments"]] == [family, family]
        assert [s["family"].get("n_cells", 32) for s in index.info()["segments"]] == [32, 32]
        after = index.query(X[:40], k=5)
        np.testing.assert_array_equal(after.ids, before.ids)
        np.testing.assert_array_equal(after.distances, before.distances)
        # each row finds itself
        assert np.mean(after.ids[:, 0] == np.arange(40)) >= 0.95


def test_set_params_rebuilds_with_another_family(tmp_path: Path) -> None:
    X = _clustered(2, 800)
    with Index.create(tmp_path / "idx") as index:
        index.add(X)
        index.set_params(family="kmeans")
        assert {s["family"]["family"] for s in index.info()["segments"]} == {"kmeans"}
        assert index.query(X[:10], k=1).ids[:, 0].tolist() == list(range(10))


def test_an_index_written_before_families_opens_as_hyperplane(tmp_path: Path) -> None:
    X = _clustered(3, 500)
    with Index.create(tmp_path / "idx") as index:
        index.add(X)
        expected = index.query(X[:10], k=3).ids
        old = asdict(index.config)
        del old["family"]
        with index.storage.write() as w:
            w.set_config(old)
    assert "family" not in old
    with Index.open(tmp_path / "idx") as index:
        assert index.config.family == "hyperplane"
        np.testing.assert_array_equal(index.query(X[:10], k=3).ids, expected)


@pytest.mark.parametrize(
    ("params", "message"),
    [({"family": "cross-polytope", "metric": "euclidean"}, "cosine"),
     ({"family": "kmeans", "metric": "jaccard"}, "MinHash"),
     ({"family": "annoy"}, "family must be one of")],
)
def test_bad_family_is_refused(params: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        Index.create(None, **params)


def test_kmeans_keys_do_not_depend_on_the_batch_at_ties() -> None:
    """Rows exactly between two centroids: their cell is decided in float64 the same way
    in any batch, alone or among others."""
    fam = KMeansLSH(DIM, n_tables=2, n_cells=16, seed=4).fit(prepare(_clustered(4, 800), "cosine"))
    assert fam.centroids_ is not None
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 16, (300, 2))
    C = fam.centroids_[0]
    T = prepare(C[pairs[:, 0]] + C[pairs[:, 1]], "cosine")
    rows = np.concatenate([T, prepare(_clustered(5, 300), "cosine")])
    keys = fam.keys(rows)
    alone = np.concatenate([fam.keys(rows[i]) for i in range(len(rows))])
    np.testing.assert_array_equal(alone, keys)
    for size in (2, 7, 255, 256, 600):
        pick = rng.integers(0, len(rows), size)
        np.testing.assert_array_equal(fam.keys(rows[pick]), keys[pick])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one numba thread: no workers")
def test_kmeans_cells_and_keys_are_the_same_with_worker_threads(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Blocks assigned by several worker threads (from a memory map) give the cells and keys
    of one thread, tie rows included."""
    X = prepare(_clustered(6, 2000), "cosine")
    C0 = KMeansLSH(DIM, n_cells=16, seed=4).fit(X).centroids_
    assert C0 is not None
    T = prepare(C0[0, np.arange(16)] + C0[0, np.arange(16) - 1], "cosine")  # between two cells
    rows = np.concatenate([T, X])
    np.save(tmp_path / "rows.npy", rows)
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    monkeypatch.setattr(kmeans, "ASSIGN_BLOCK", 64 * 16)  # 64 rows a block: 32 blocks
    runs = []
    for threads in (1, 2):
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            fam = KMeansLSH(DIM, n_tables=2, n_cells=16, seed=4).fit(mapped)
            runs.append((fam.centroids_, fam.keys(mapped)))
        finally:
            numba.set_num_threads(before)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    alone = np.concatenate([fam.keys(r) for r in rows[:40]] + [fam.keys(rows[40:])])
    np.testing.assert_array_equal(runs[1][1], alone)


def test_a_kmeans_build_of_mapped_rows_reorders_them_on_disk(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Memory-mapped rows too big to copy into memory are stored cell by cell through a
    temporary file: the segment is the one an in-memory build makes."""
    X = prepare(_clustered(7, 900), "cosine")
    np.save(tmp_path / "rows.npy", X)
    ids = np.arange(900, dtype=np.int64)
    config = IndexConfig(family="kmeans", n_bits=4).validate()
    in_memory = build_segment(config, X, ids, prepared=True)
    monkeypatch.setattr(families, "SPILL_BYTES", 0)
    monkeypatch.setattr(families, "GATHER_ROWS", 100)
    mapped = build_segment(config, np.load(tmp_path / "rows.npy", mmap_mode="r"), ids, prepared=True)
    assert isinstance(mapped.arrays["vectors"], np.memmap)
    assert not isinstance(in_memory.arrays["vectors"], np.memmap)
    assert in_memory.arrays.keys() == mapped.arrays.keys()
    for name, a in in_memory.arrays.items():
        np.testing.assert_array_equal(mapped.arrays[name], a, err_msg=name)


def _gaps(fam: KMeansLSH, X: np.ndarray, n_probes: int) -> np.ndarray:
    keys, tables = fam.probes(X, n_probes)
    S = fam.scores(X).astype(np.float64)
    home = fam.keys(X).astype(np.int64)
    top = np.take_along_axis(S, home[:, :, None], axis=2)[:, :, 0]
    gaps = top[np.arange(len(X))[:, None], tables] - S[
        np.arange(len(X))[:, None], tables, keys.astype(np.int64)]
    return gaps


def test_kmeans_probes_go_best_first() -> None:
    X = prepare(_clustered(6, 900), "cosine")
    fam = KMeansLSH(DIM, n_tables=3, n_cells=20, seed=1).fit(X)
    gaps = _gaps(fam, X[:100], 25)
    assert np.all(gaps[:, :3] == 0)  # the home cells
    assert np.all(np.diff(gaps[:, 3:], axis=1) >= 0)


def test_cross_polytope_probes_go_best_first() -> None:
    X = _clustered(7, 60)
    fam = CrossPolytopeLSH(DIM, n_tables=4, n_bits=14, seed=2)  # 2 hashes: 32 and 16 coordinates
    keys, tables = fam.probes(X, 60)
    R = fam.rotate(X)
    shifts, widths = fam._shifts, fam._widths

    def score(i: int, t: int, key: int) -> float:
        total = 0.0
        for c in reversed(range(fam.n_hashes)):
            v = key & ((1 << int(shifts[c])) - 1)
            key >>= int(shifts[c])
            y = R[i, t, c, : widths[c]]
            yv = y[v] if v < widths[c] else -y[v - widths[c]]
            total += float(np.abs(y).max() - yv) ** 2
        return total

    for i in range(len(X)):
        s = [score(i, int(t), int(k)) for k, t in zip(keys[i], tables[i])]
        assert s[:4] == [0.0] * 4
        assert all(a <= b + 1e-4 for a, b in pairwise(s))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_kmeans_lone_queries_answer_as_the_batch(metric: str) -> None:
    """The one-call path for a few queries gives the general path's ids and distances."""
    X = _clustered(8, 3000)
    fam = KMeansLSH(DIM, n_tables=2, n_cells=40, seed=0, spherical=metric == "cosine")
    s = VectorLSH(fam, metric=metric).fit(X)
    Q = _clustered(9, 60)
    batch = s._search(Q, 10, 7, 0)
    for i in range(len(Q)):
        one = s.search(Q[i], 10, n_probes=7)
        np.testing.assert_array_equal(one.ids[0], batch.ids[i])
        np.testing.assert_array_equal(one.distances[0], batch.distances[i])
        np.testing.assert_array_equal(one.n_candidates[0], batch.n_candidates[i])
    with pytest.raises(ParameterError):
        s.search(np.full(DIM, np.nan, np.float32), 3)


def test_a_kmeans_segment_stores_its_rows_cell_by_cell(tmp_path: Path) -> None:
    """Rows of one cell are contiguous (a probed cell is one read); ids follow their rows."""
    X = _clustered(10, 900)
    ids = np.arange(100, 1000, dtype=np.int64)
    build = build_segment(IndexConfig(family="kmeans", n_bits=4).validate(), X, ids)
    stored = build.arrays["ids"]
    assert sorted(stored.tolist()) == ids.tolist() and not np.array_equal(stored, ids)
    np.testing.assert_array_equal(build.arrays["vectors"], prepare(X, "cosine")[stored - 100])
    np.testing.assert_array_equal(build.arrays["members"][: len(X)], np.arange(len(X)))  # table 0
    with Index.create(tmp_path / "idx", family="kmeans", n_bits=4) as index:
        got = index.add(X)
        found = index.query(X[:50], k=1).ids[:, 0]
        np.testing.assert_array_equal(found, got[:50])
        assert index.remove([str(got[0])]) == 1
        assert got[0] not in index.query(X[:1], k=5).ids


@pytest.mark.parametrize("family", families.FAMILIES)
def test_an_empty_batch_of_queries_has_empty_answers(family: str) -> None:
    """No query rows: no answers, of the right shape, from a tuned segment of every family."""
    X = np.random.default_rng(3).standard_normal((3000, 16)).astype(np.float32)
    with Index.create(None, family=family) as index:
        index.add(X)
        found = index.query(np.zeros((0, 16), np.float32), 5)
        assert found.ids.shape == found.distances.shape == (0, 5)
