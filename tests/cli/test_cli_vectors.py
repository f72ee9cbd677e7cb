"""The CLI end to end on vectors: add, query, tune, info, remove, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from audiolsh.cli import cli
from audiolsh.cli.vector_cmds import vector_jsonl
from audiolsh.index import Index
from audiolsh.query.records import vector_records


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((20, 16)) * 4
    X = (centres[rng.integers(0, 20, 2000)] + rng.standard_normal((2000, 16))).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, X)
    return path, X


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_add_query_jsonl_finds_each_row_itself(tmp_path: Path, data) -> None:
    path, X = data
    idx = tmp_path / "idx"
    code, _, err = run("vectors", "add", str(path), "--index", str(idx))
    assert code == 0, err
    q = tmp_path / "q.npy"
    np.save(q, X[:5])
    code, out, err = run("vectors", "query", str(q), "--index", str(idx), "-k", "3", "--format", "jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == [f"q:{i}" for i in range(5)]
    for i, line in enumerate(lines):
        assert len(line["results"]) == 3
        assert line["results"][0] == {"id": f"emb:{i}", "distance": pytest.approx(0.0, abs=1e-5)}
        d = [r["distance"] for r in line["results"]]
        assert d == sorted(d)


@pytest.mark.parametrize("plain", [True, False])
def test_jsonl_is_the_json_records_line_by_line(tmp_path: Path, data, plain: bool) -> None:
    """Plain keys go from their stored bytes into the lines in one compiled pass; keys to
    escape are encoded by Python: either way each line is json.dumps of json's record."""
    _, X = data
    names = [f"row-{i}" if plain else f'r"\u00f6{i}\\' for i in range(300)]
    with Index.create(tmp_path / "idx", metric="cosine") as index:
        index.add(X[:150], names[:150])
        index.add(X[150:300], names[150:])
        index.remove([names[3]])
        assert (index.key_bytes(np.arange(4)) is None) is False
    q = tmp_path / "q.npy"
    np.save(q, X[:6])
    args = ("vectors", "query", str(q), "--index", str(tmp_path / "idx"), "-k", "4")
    code, out, err = run(*args, "--format", "jsonl")
    assert code == 0, err
    code, as_json, err = run(*args, "--format", "json")
    assert code == 0, err
    records = json.loads(as_json)
    assert out == "".join(json.dumps(r) + "\n" for r in records)
    assert [len(r["results"]) for r in records] == [4] * 6
    assert json.dumps(names[3]) not in out and json.dumps(names[5]) in out


def test_adding_the_same_file_twice_indexes_it_once(tmp_path: Path, data) -> None:
    path, X = data
    idx = tmp_path / "idx"
    assert run("vectors", "add", str(path), "--index", str(idx))[0] == 0
    code, _, err = run("vectors", "add", str(path), "--index", str(idx))
    assert code == 0 and "already indexed" in err
    with Index.open(idx) as index:
        assert len(index) == len(X)
        assert len(index.tracks()) == 1


def test_csv_and_exact_agree_with_lsh_on_top_hit(tmp_path: Path, data) -> None:
    _, X = data
    csv_path = tmp_path / "table.csv"
    lines = ["track_id," + ",".join(f"f{j}" for j in range(X.shape[1]))]
    lines += [f"t{i}," + ",".join(f"{v:.6f}" for v in row) for i, row in enumerate(X[:300])]
    csv_path.write_text("\n".join(lines) + "\n")
    idx = tmp_path / "idx"
    assert run("vectors", "add", str(csv_path), "--index", str(idx), "--metric", "euclidean")[0] == 0
    for extra in ([], ["--exact"]):
        code, out, err = run("vectors", "query", str(csv_path), "--index", str(idx), "-k", "1",
                             "--format", "csv", *extra)
        assert code == 0, err
        rows = out.strip().splitlines()[1:]
        assert len(rows) == 300
        assert all(r.split(",")[0] == r.split(",")[2] for r in rows)


def test_bad_file_gives_message_and_exit_2_and_the_rest_goes_on(tmp_path: Path, data) -> None:
    path, X = data
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"not numpy at all")
    idx = tmp_path / "idx"
    code, _, err = run("vectors", "add", str(bad), str(path), "--index", str(idx))
    assert code == 2
    assert "broken.npy" in err and "Traceback" not in err
    with Index.open(idx) as index:
        assert len(index) == len(X)


def test_bad_parameters_exit_2_without_traceback(tmp_path: Path, data) -> None:
    path, _ = data
    idx = tmp_path / "idx"
    run("vectors", "add", str(path), "--index", str(idx))
    code, out, err = run("vectors", "query", str(path), "--index", str(idx), "-k", "0")
    assert code == 2 and "Traceback" not in out + err
    code, _, err = run("info", "--index", str(tmp_path / "nothing"))
    assert code == 2 and "no index here" in err
    wrong_dim = tmp_path / "wrong.npy"
    np.save(wrong_dim, np.ones((3, 5), np.float32))
    code, _, err = run("vectors", "query", str(wrong_dim), "--index", str(idx))
    assert code == 2 and "dimension" in err


def test_tune_stores_a_setting_that_reaches_the_target(tmp_path: Path, data) -> None:
    path, X = data
    idx = tmp_path / "idx"
    run("vectors", "add", str(path), "--index", str(idx), "--family", "hyperplane")  # tables, bits
    code, out, err = run("tune", "--index", str(idx), "--target-recall", "0.9", "--tables", "2,4",
                         "--validation", "100", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    best = report["best"]
    assert best["recall"] >= 0.9
    assert len(report["rows"]) >= 4
    with Index.open(idx) as index:
        assert index.config.n_tables == best["n_tables"]
        assert index.config.n_bits == best["n_bits"]
        assert index.config.n_probes == best["n_probes"]
        assert index.config.tuned is not None
        # The rebuilt tables answer with the stored setting.
        assert {s["family"]["n_tables"] for s in index.info()["segments"]} == {best["n_tables"]}
        assert len(index) == len(X)
    code, out, _ = run("info", "--index", str(idx), "--format", "json")
    assert json.loads(out)["config"]["n_probes"] == best["n_probes"]


def test_remove_by_key_and_by_path(tmp_path: Path, data) -> None:
    path, X = data
    idx = tmp_path / "idx"
    run("vectors", "add", str(path), "--index", str(idx))
    assert run("remove", "--keys", "emb:0", "emb:1", "--index", str(idx))[0] == 0
    with Index.open(idx) as index:
        assert len(index) == len(X) - 2 and "emb:0" not in index and "emb:2" in index
    # A key that names nothing is said, even when others are removed (exit 2 at the end).
    code, out, err = run("remove", "--keys", "emb:2", "nosuchkey", "emb:0", "--index", str(idx),
                         "--format", "json")
    assert code == 2 and "removed 1 items" in err and "no item has the keys: nosuchkey, emb:0" in err
    assert json.loads(out) == {"removed_items": 1, "missing": ["nosuchkey", "emb:0"]}
    with Index.open(idx) as index:
        assert len(index) == len(X) - 3 and "emb:2" not in index
    assert run("remove", str(path.resolve()), "--index", str(idx))[0] == 0
    with Index.open(idx) as index:
        assert len(index) == 0 and index.tracks() == []
    code, _, err = run("remove", "no-such-track", "--index", str(idx))
    assert code == 2 and "not in the index" in err


@pytest.mark.parametrize(("options", "family", "tables"), [
    ((), "kmeans", 1),  # the default for dense vectors
    (("--metric", "euclidean"), "kmeans", 1),
    (("--family", "kmeans"), "kmeans", 1),
    (("--tables", "4"), "hyperplane", 4),  # hyperplane tables asked for without a family
    (("--family", "kmeans", "--tables", "2"), "kmeans", 2),
    (("--family", "hyperplane"), "hyperplane", None),
])
def test_add_builds_the_family_asked_for_and_kmeans_by_default(
    tmp_path: Path, data, options: tuple[str, ...], family: str, tables: int | None
) -> None:
    path, X = data
    idx = tmp_path / "idx"
    code, _, err = run("vectors", "add", str(path), "--index", str(idx), *options)
    assert code == 0, err
    assert "note:" not in err
    with Index.open(idx) as index:
        assert (index.config.family, index.config.n_tables) == (family, tables)
        assert {s["family"]["family"] for s in index.info()["segments"]} == {family}
        assert index.query(X[:5], k=1).ids[:, 0].tolist() == list(range(5))
    metric = options[: 2] if "--metric" in options else ()
    # Adding to it later without a family keeps its family, silently.
    code, _, err = run("vectors", "add", str(path), "--index", str(idx), *metric)
    assert code == 0 and "note:" not in err
    # Another family asked for on an existing index is a note, not a rebuild.
    code, _, err = run("vectors", "add", str(path), "--index", str(idx), *metric, "--family",
                       "kmeans" if family == "hyperplane" else "hyperplane")
    assert code == 0 and f"the index hashes with the {family} family" in err


def test_add_help_says_what_the_default_family_is() -> None:
    code, out, _ = run("vectors", "add", "--help")
    assert code == 0 and "[default: auto]" in out and "auto: kmeans" in " ".join(out.split())


@pytest.mark.parametrize("family", ["kmeans", "cross-polytope"])
def test_tune_picks_the_probes_of_a_learned_or_cross_polytope_index(tmp_path: Path, family: str) -> None:
    # tune swept hyperplane tables and bits whatever the family, and stored them: the
    # family's own settings stay now, and the probes it needs for the target are stored.
    # Unclustered rows: the home buckets alone do not reach the target.
    path = tmp_path / "iso.npy"
    np.save(path, np.random.default_rng(7).standard_normal((2000, 16)).astype(np.float32))
    idx = tmp_path / "idx"
    assert run("vectors", "add", str(path), "--index", str(idx), "--family", family)[0] == 0
    with Index.open(idx) as index:
        before = (index.config.n_tables, [s["id"] for s in index.info()["segments"]])
    code, out, err = run("tune", "--index", str(idx), "--target-recall", "0.9", "--validation", "100",
                         "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    best = report["best"]
    assert report["family"] == family and f"({family})" in err
    probes = [r["n_probes"] for r in report["rows"]]
    assert len(probes) > 1 and probes == sorted(set(probes)) and best["recall"] >= 0.9
    assert {r["n_rerank"] for r in report["rows"]} == {0}
    if family == "kmeans":
        assert max(probes) <= report["n_cells"] and "cells probed per query" in err
    with Index.open(idx) as index:
        assert index.config.n_probes == best["n_probes"] and index.config.tuned["family"] == family
        # a query setting: the segments are not rebuilt
        assert (index.config.n_tables, [s["id"] for s in index.info()["segments"]]) == before
    code, out, err = run("tune", "--index", str(idx), "--tables", "2,4")
    assert code == 2 and "Traceback" not in out + err
    (line,) = err.strip().splitlines()
    assert family in line and "--tables does not apply" in line


def test_cross_polytope_for_euclidean_is_refused_in_one_line(tmp_path: Path, data) -> None:
    path, _ = data
    code, out, err = run("vectors", "add", str(path), "--index", str(tmp_path / "idx"),
                         "--metric", "euclidean", "--family", "cross-polytope")
    assert code == 2
    assert "cross-polytope family is for the cosine metric" in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def _table(keys: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    """``Index.key_table``'s form of a key per answer: the distinct keys and each one's place."""
    table = list(dict.fromkeys(keys))
    return table, np.array([table.index(key) for key in keys])


def test_jsonl_lines_are_what_json_dumps_writes() -> None:
    # vectors query writes jsonl from strings encoded once each: the same text, byte for byte.
    keys = ['a"b', "c\\", None, "clé", 'x", "y', "tab\t", "ok", None, None]
    D = np.array([[0.1234567, 0.5, np.inf], [1 / 3, 2.0000004, 1e-9], [0.25, np.inf, np.inf]],
                 np.float32)
    queries = ["q0", 'q"1', "ünï"]
    want = "".join(json.dumps(r) + "\n" for r in vector_records(queries, keys, D))
    assert vector_jsonl(queries, *_table(keys[:D.size]), D) == want
    assert json.loads(want.splitlines()[1])["results"][0] == {"id": "clé", "distance": 0.333333}


@pytest.mark.parametrize("scale", [1.0, 1e-4, 1e9])
def test_compiled_jsonl_writes_each_distance_as_repr(scale: float) -> None:
    """The compiled lines write a rounded distance as repr does: trailing zeros dropped, an
    exponent below 1e-4, -0.0; from 1e9 on Python writes them (``query.jsonl.fits``)."""
    rng = np.random.default_rng(3)
    D = np.concatenate([rng.random((60, 4)) * scale, rng.integers(0, 3000, (60, 4)) / 1e6 * scale])
    D[0] = [0.0, -1e-9, 1e-4, 5e-6]
    D[1] = [1.2e-5, 9.95e-5, 2.0, 1234.5]
    keys = [f"k{i % 37}" for i in range(D.size)]
    queries = [f"q{i}" for i in range(len(D))]
    want = "".join(json.dumps(r) + "\n" for r in vector_records(queries, keys, D))
    assert vector_jsonl(queries, *_table(keys), D) == want
    assert '"distance": -0.0}' in want and '"distance": 1.2e-05}' in want


def test_a_batch_of_which_no_file_reads_makes_no_index(tmp_path: Path, data) -> None:
    """None of the files reads: no empty index is left (its queries answered nothing and exit
    0, its tune failed); the first file that reads makes it."""
    path, X = data
    idx = tmp_path / "idx"
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    code, out, err = run("vectors", "add", str(tmp_path / "bad.npy"), str(tmp_path / "gone.npy"),
                         "--index", str(idx), "--format", "json")
    assert code == 2 and not idx.exists() and "not created, as no file could be added" in err
    assert [f["status"] for f in json.loads(out)["files"]] == ["failed", "failed"]
    code, _, err = run("vectors", "add", str(tmp_path / "bad.npy"), str(path), "--index", str(idx))
    assert code == 2 and "bad.npy" in err
    with Index.open(idx) as index:
        assert len(index) == len(X)
