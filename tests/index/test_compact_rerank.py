"""Compact re-rank copies (issue #18): float16 / int8 rows for the exact pass, stored with a
format version, older indexes still open; and an open index memory-maps its rows."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audiolsh.cli import cli
from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.index import Index
from audiolsh.search import VectorLSH
from audiolsh.search.compact import compact_rows, kernel_rows
from audiolsh.search.kernels import SERIAL_BELOW

DIM = 32
K = 10


def planted(rng: np.random.Generator, n: int = 3000, n_queries: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Random unit rows, and queries each with K planted neighbours at cosine distances
    0.01, 0.03, ..., 0.19: gaps of 0.02, ten times an int8 row's error."""
    X = rng.standard_normal((n, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q = X[:n_queries].copy()
    for qi in range(n_queries):
        q = Q[qi]
        for r in range(K):
            d = 0.01 + 0.02 * r
            u = rng.standard_normal(DIM)
            u -= (u @ q) * q
            u /= np.linalg.norm(u)
            X[n_queries + qi * K + r] = (1 - d) * q + np.sqrt(1 - (1 - d) ** 2) * u
    return X, Q


def truth(X: np.ndarray, Q: np.ndarray) -> np.ndarray:
    return np.argsort(-(Q @ X.T), axis=1, kind="stable")[:, :K]


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_compact_rerank_gives_the_float32_top_k(rng: np.random.Generator, dtype: str) -> None:
    X, Q = planted(rng)
    with Index.create(None, metric="cosine", rerank_dtype=dtype, n_probes=64,
                      target_recall=None) as compact, \
            Index.create(None, metric="cosine", n_probes=64,
                      target_recall=None) as full:
        ids = compact.add(X)
        full.add(X)
        seg = compact.segments[0]
        assert seg.config["rerank"] == {"dtype": dtype, "format_version": 1}
        searcher = compact._segments[0].searcher
        assert searcher.rerank_.dtype == np.dtype(dtype)
        want = full.query(Q, K)
        assert np.array_equal(ids[truth(X, Q)], want.ids)  # the float32 answer is the exact one
        got = compact.query(Q, K)  # the parallel kernel
        lone = [compact.query(Q[i], K) for i in range(SERIAL_BELOW - 1)]  # the one-call kernel
        assert np.array_equal(got.ids, want.ids)
        assert np.array_equal(np.concatenate([r.ids for r in lone]), want.ids[: SERIAL_BELOW - 1])
        assert np.allclose(got.distances, want.distances, atol=0.01)
        # Exact scans and stored rows still read the float32 rows.
        assert np.array_equal(compact.rows(ids[:5]), full.rows(ids[:5]))
        assert np.array_equal(compact.query(Q, K, exact=True).ids, want.ids)


def test_compact_rows_are_smaller_and_close(rng: np.random.Generator) -> None:
    X = rng.standard_normal((500, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    assert compact_rows(X, "float32") == {}
    for dtype, size in (("float16", 2), ("int8", 1)):
        arrays = compact_rows(X, dtype)
        assert arrays["rerank"].nbytes == X.size * size
        rows, aux = kernel_rows(X, arrays["rerank"], arrays.get("rerank_scale"),
                                arrays.get("rerank_offset"))
        decoded = aux[rows] if dtype == "float16" else rows * aux[:DIM] + aux[DIM:]
        step = np.ptp(X, axis=0) / 254 if dtype == "int8" else np.abs(X) * 2.0**-10
        assert np.all(np.abs(decoded - X) <= step / 2 + 1e-6)
    # One-signed features use all 255 steps (a symmetric scale would waste half of them).
    codes = compact_rows(np.abs(X), "int8")["rerank"]
    assert codes.min() == -127 and codes.max() == 127
    with pytest.raises(ParameterError, match="rerank_dtype"):
        compact_rows(X, "int4")


def test_searcher_fit_with_compact_rows_matches(rng: np.random.Generator) -> None:
    from audiolsh.hashing import HyperplaneLSH

    X, Q = planted(rng, n=2000, n_queries=8)
    fam = HyperplaneLSH(DIM, n_tables=8, n_bits=8, seed=0)
    full = VectorLSH(fam).fit(X).search(Q, K, n_probes=64)
    small = VectorLSH(fam).fit(X, rerank_dtype="int8")
    assert small.rerank_nbytes == X.size + 8 * DIM  # int8 rows, a scale and offset a dimension
    assert np.array_equal(small.search(Q, K, n_probes=64).ids, full.ids)


def test_an_index_without_the_setting_opens_and_migrates_on_write(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """An index written before the setting existed (no rerank_dtype in its config, no compact
    copy in its segments) opens as float32; choosing int8 rebuilds its segments."""
    X, Q = planted(rng, n=2000, n_queries=6)
    loc = tmp_path / "old.idx"
    with Index.create(loc, metric="cosine", n_probes=64) as index:
        index.add(X)
        want = index.query(Q, K).ids
        old = {k: v for k, v in index.storage.config().items() if k != "rerank_dtype"}
        with index.storage.write() as w:
            w.set_config(old)
    with Index.open(loc) as index:
        assert index.config.rerank_dtype == "float32"
        assert "rerank" not in index.segments[0].config
        assert np.array_equal(index.query(Q, K).ids, want)
        index.set_params(rerank_dtype="int8")
    with Index.open(loc, readonly=True) as index:
        assert index.segments[0].config["rerank"]["dtype"] == "int8"
        assert index._segments[0].searcher.rerank_.dtype == np.int8
        assert np.array_equal(index.query(Q, K).ids, want)


def test_a_newer_compact_layout_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    X, _ = planted(rng, n=500, n_queries=2)
    loc = tmp_path / "new.idx"
    with Index.create(loc, metric="cosine", rerank_dtype="float16") as index:
        index.add(X)
        seg = index.segments[0].id
    db = sqlite3.connect(loc / "catalogue.sqlite")
    db.execute("UPDATE segments SET config = json_set(config, '$.rerank.format_version', 9)"
               " WHERE id = ?", (seg,))
    db.commit()
    db.close()
    with pytest.raises(IndexFormatError, match="re-rank copy format version 9 is newer"):
        with Index.open(loc) as index:
            len(index)


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's memory maps of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_open_maps_the_rows_and_a_compact_query_never_reads_them(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """Opening reads no row: the float32 rows are a memory map with nothing resident; a query
    of an int8 index without a recheck reads the compact copy, not the float32 rows."""
    X = rng.standard_normal((20_000, DIM)).astype(np.float32)
    loc = tmp_path / "mapped.idx"
    with Index.create(loc, metric="cosine", rerank_dtype="int8") as index:
        index.add(X)
        seg = index.segments[0].id
    vectors = (loc / "segments" / seg / "vectors.npy").resolve()
    rerank = (loc / "segments" / seg / "rerank.npy").resolve()
    with Index.open(loc, readonly=True) as index:
        assert len(index) == len(X)
        searcher = index._segments[0].searcher
        assert isinstance(searcher.vectors_, np.memmap)
        assert _mapped_kb(vectors) == 0  # mapped, none of it read
        index.query(X[:3], K, recheck=0)
        index.query(X[:64], K, recheck=0)
        assert _mapped_kb(vectors) == 0
        assert _mapped_kb(rerank) > 0
        index.query(X[:3], K)  # by default int8 rechecks its best 2k on the float32 rows
        assert _mapped_kb(vectors) > 0


def test_cli_rerank_dtype(tmp_path: Path, rng: np.random.Generator) -> None:
    X, _ = planted(rng, n=1000, n_queries=3)
    np.save(tmp_path / "x.npy", X)
    loc = tmp_path / "cli.idx"
    runner = CliRunner()
    res = runner.invoke(cli, ["vectors", "add", "--index", str(loc), "--rerank-dtype", "float16",
                              str(tmp_path / "x.npy")])
    assert res.exit_code == 0, res.output
    with Index.open(loc, readonly=True) as index:
        assert index.config.rerank_dtype == "float16"
        assert index.segments[0].config["rerank"]["dtype"] == "float16"
    info = runner.invoke(cli, ["info", "--index", str(loc), "--format", "json"])
    assert info.exit_code == 0 and '"rerank_dtype": "float16"' in info.output
    shown = runner.invoke(cli, ["info", "--index", str(loc)])
    assert "re-rank rows" in shown.output and "float16" in shown.output
    bad = runner.invoke(cli, ["vectors", "add", "--index", str(loc), "--rerank-dtype", "int4",
                              str(tmp_path / "x.npy")])
    assert bad.exit_code == 2 and "int4" in bad.output and "Traceback" not in bad.output


def test_redis_stores_keep_the_compact_copy(redis_url: str, rng: np.random.Generator) -> None:
    """A shared Redis store keeps the int8 copy beside the rows (a reader re-ranks on it); in
    remote-probe mode the copy stays in Redis, unread: the rows the probe fetches are float32."""
    X, Q = planted(rng, n=1500, n_queries=6)
    want = truth(X, Q)
    shared = Index.create(redis_url, metric="cosine", rerank_dtype="int8", n_probes=64)
    shared.add(X)
    with Index.open(redis_url, readonly=True) as reader:
        searcher = reader._segments[0].searcher
        assert searcher.rerank_.dtype == np.int8
        assert np.array_equal(reader.query(Q, K).ids, want)
    shared.close()
    remote_url = redis_url.replace("prefix=", "prefix=remote-") + "&mode=remote"
    with Index.create(remote_url, metric="cosine", rerank_dtype="int8", n_probes=64) as remote:
        remote.add(X)
        assert remote.info()["segments"][0]["remote"] is True
        assert np.array_equal(remote.query(Q, K).ids, want)


def clustered(rng: np.random.Generator, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight isotropic clusters (as knn_scale.py's data): a query's 10th and 11th neighbours
    are closer than an int8 row's error, so int8 re-ranking swaps them."""
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    X = centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    Q = centres[rng.integers(0, 40, n_queries)] + 0.35 * rng.standard_normal((n_queries, DIM))
    return X.astype(np.float32), Q.astype(np.float32)


def recall_of(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / K for g, w in zip(got.tolist(), want.tolist())]))


def test_kmeans_compact_rows_reopen_merge_and_recheck(tmp_path: Path, rng: np.random.Generator) -> None:
    """The default (k-means) family with float16 / int8 re-rank rows: two segments merged
    into one keep the compact copy in the rows' cell order, the reopened index answers the
    same, float16 costs no recall, and int8's loss near the 10th neighbour is undone by
    measuring its best few again on the float32 rows (``recheck``)."""
    X, Q = clustered(rng, 12_000, 100)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    exact = np.argsort(-(Qn @ Xn.T), axis=1, kind="stable")[:, :K]
    recall: dict[str, float] = {}
    for dtype in ("float32", "float16", "int8"):
        loc = tmp_path / dtype
        with Index.create(loc, metric="cosine", rerank_dtype=dtype) as index:
            ids = np.concatenate([index.add(X[:6000]), index.add(X[6000:])])
            index.compact(full=True)
            (seg,) = index._segments
            assert seg.info.config["family"]["family"] == "kmeans"
            searcher = seg.searcher
            assert searcher.family.n_cells > 1 and searcher._cells is not None
            if dtype != "float32":
                assert seg.info.config["rerank"] == {"dtype": dtype, "format_version": 1}
                rows, aux = kernel_rows(searcher.vectors_, searcher.rerank_, searcher.rerank_scale_,
                                        searcher.rerank_offset_)
                decoded = aux[rows] if dtype == "float16" else rows * aux[:DIM] + aux[DIM:]
                assert np.abs(decoded - searcher.vectors_).max() < 0.01  # row i is row i, cell order
            before = index.query(Q, K, recheck=0)
            lone = index.query(Q[0], K, recheck=0)
        with Index.open(loc, readonly=True) as index:
            again = index.query(Q, K, recheck=0)
            assert np.array_equal(again.ids, before.ids)
            assert np.array_equal(index.query(Q[0], K, recheck=0).ids, lone.ids)
            assert np.array_equal(lone.ids[0], again.ids[0])
            recall[dtype] = recall_of(again.ids, ids[exact])
            checked = index.query(Q, K, recheck=30)
            recall[dtype + "+recheck"] = recall_of(checked.ids, ids[exact])
            single = np.concatenate([index.query(Q[i], K, recheck=30).ids for i in range(3)])
            assert np.array_equal(single, checked.ids[:3])
            assert np.all(np.diff(checked.distances, axis=1) >= 0)
            # by default int8 rows recheck their best 2k, float16 rows none
            default = index.query(Q, K).ids
            assert np.array_equal(default, index.query(Q, K, recheck=2 * K if dtype == "int8" else 0).ids)
    assert recall["float32"] >= 0.95
    assert recall["float32+recheck"] == recall["float32"]  # nothing to recheck
    assert recall["float16"] >= recall["float32"] - 0.01
    assert recall["int8"] < recall["float32"] - 0.02  # this data is one where int8 costs recall
    assert recall["int8+recheck"] >= recall["float32"] - 0.005
    assert recall["float16+recheck"] >= recall["float32"] - 0.005


def test_recheck_leaves_float32_rows_and_refuses_named_rows(rng: np.random.Generator) -> None:
    from audiolsh.hashing import KMeansLSH

    X, Q = clustered(rng, 4000, 5)
    fam = KMeansLSH(DIM, n_cells=32, seed=0)
    full = VectorLSH(fam).fit(X)
    assert np.array_equal(full.search(Q, K, n_probes=4, recheck=20).ids, full.search(Q, K, n_probes=4).ids)
    small = VectorLSH(KMeansLSH(DIM, n_cells=32, seed=0)).fit(X, rerank_dtype="int8")
    named = small.search(Q, K, n_probes=4, recheck=20)
    assert np.array_equal(named.ids, full.search(Q, K, n_probes=4).ids)
    small.name_rows(np.arange(len(X)) + 100)
    with pytest.raises(ParameterError, match="recheck"):
        small.search(Q, K, recheck=20)


def test_cli_query_recheck(tmp_path: Path, rng: np.random.Generator) -> None:
    X, Q = clustered(rng, 3000, 4)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "q.npy", Q)
    loc = tmp_path / "cli.idx"
    runner = CliRunner()
    assert runner.invoke(cli, ["vectors", "add", "--index", str(loc), "--rerank-dtype", "int8",
                               str(tmp_path / "x.npy")]).exit_code == 0
    res = runner.invoke(cli, ["vectors", "query", "--index", str(loc), "--recheck", "30",
                              "--format", "json", str(tmp_path / "q.npy")])
    assert res.exit_code == 0, res.output
    with Index.open(loc, readonly=True) as index:
        want = index.query(Q, K, recheck=30)
        keys = index.keys(want.ids)
    for key in keys[:K]:
        assert f'"{key}"' in res.output
