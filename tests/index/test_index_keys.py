"""Keys stored with their segment (``index.keyfile``): a query's ids map to keys with no
catalogue read; removed keys stay removed; older segments read the catalogue until rewritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiolsh.index import Index, keyfile
from audiolsh.index import vector as vector_module

DIM = 12


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _names(n: int, start: int = 0) -> list[str]:
    # non-ASCII and empty keys: byte offsets are not character offsets
    return [f"clé-{i}" if i % 7 == 0 else ("" if i == 5 else f"k{i}") for i in range(start, start + n)]


def _statements(index: Index) -> list[str]:
    seen: list[str] = []
    index.storage._db.set_trace_callback(seen.append)  # type: ignore[attr-defined]
    return seen


@pytest.mark.parametrize("family", ["hyperplane", "kmeans"])
def test_keys_come_from_the_segments_without_a_catalogue_read(tmp_path: Path, family: str) -> None:
    names = _names(300)
    with Index.create(tmp_path / "idx", family=family) as index:
        ids = np.concatenate([index.add(_rows(200), names[:200]), index.add(_rows(100, 1), names[200:])])
        assert all("keys" in s.config for s in index.segments)
        shuffled = np.random.default_rng(2).permutation(ids)  # a k-means segment reorders its rows
        index.keys(ids[:1])
        seen = _statements(index)
        got = index.keys(np.concatenate([shuffled, [-1, 10_000], shuffled[:4]]).reshape(-1, 2))
        assert seen == []
        assert got == [names[i] for i in shuffled] + [None, None] + [names[i] for i in shuffled[:4]]
        res = index.query(_rows(4, 3), 5)
        assert index.keys(res.ids) == [h.key for row in index.hits(res) for h in row]
        index.remove(["k1"])
        index.compact(full=True)  # the merged rows' keys copied in the new row order
        assert index.keys(shuffled) == [None if i == 1 else names[i] for i in shuffled]


def test_a_removed_key_never_comes_back(tmp_path: Path) -> None:
    names = _names(200)
    with Index.create(tmp_path / "idx") as index:
        ids = index.add(_rows(200), names)
        index.add(_rows(20, 1), _names(20, 200))
        assert index.remove(["k3", "clé-7"]) == 2
        assert index.keys(ids[[3, 7, 8]]) == [None, None, "k8"]
    with Index.open(tmp_path / "idx", readonly=True) as reader:
        assert reader.keys(ids[[3, 7, 8]]) == [None, None, "k8"]
        got = reader.query(_rows(200)[[3, 7]], 3)
        assert not set(reader.keys(got.ids)) & {"k3", "clé-7"}
    with Index.open(tmp_path / "idx") as index:
        index.compact(full=True)  # the merged segment's keys are written without them
        [info] = index.segments
        assert "keys" in info.config
        arrays = index.storage.load_arrays(info.id)
        stored = keyfile.decode(arrays[keyfile.OFFSETS], arrays[keyfile.BYTES], np.arange(len(arrays["ids"])))
        assert "k3" not in stored and "clé-7" not in stored and len(stored) == 218
        assert index.keys(ids[[3, 7, 8]]) == [None, None, "k8"]


def test_segments_without_key_arrays_read_the_catalogue_until_rewritten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = _names(150)
    with monkeypatch.context() as m:  # an index written before the key arrays
        m.setattr(vector_module, "_with_keys", lambda build, row_keys: build)
        with Index.create(tmp_path / "idx") as index:
            ids = np.concatenate([index.add(_rows(100), names[:100]), index.add(_rows(50, 1), names[100:])])
    with Index.open(tmp_path / "idx") as index:
        assert not any("keys" in s.config for s in index.segments)
        seen = _statements(index)
        assert index.keys(ids[::-1]) == names[::-1]
        assert any("FROM items" in s for s in seen)
        ids = np.concatenate([ids, index.add(_rows(30, 2), _names(30, 150))])  # one with them
        names += _names(30, 150)
        index.remove(["k2"])
        index.compact(full=True)  # the next rewrite stores them
        assert all("keys" in s.config for s in index.segments)
        del seen[:]
        assert index.keys(ids) == [None if n == "k2" else n for n in names] and seen == []


def test_a_newer_key_layout_is_read_from_the_catalogue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = _names(60)
    with monkeypatch.context() as m:
        m.setattr(keyfile, "config", lambda: {"format_version": keyfile.KEYS_FORMAT + 1})
        with Index.create(tmp_path / "idx") as index:
            ids = index.add(_rows(60), names)
    with Index.open(tmp_path / "idx", readonly=True) as index:
        [seg] = index._segments
        assert seg.key_arrays is None
        seen = _statements(index)
        assert index.keys(ids) == names and seen


@pytest.mark.parametrize("mode", ["", "&mode=remote"])
def test_keys_of_a_redis_index(redis_url: str, mode: str) -> None:
    # A remote segment's keys stay in Redis (read with the catalogue), a local one's are loaded.
    names = _names(80)
    with Index.create(redis_url + mode) as index:
        ids = index.add(_rows(80), names)
        index.remove(["k3"])
    with Index.open(redis_url + mode, readonly=True) as reader:
        [seg] = reader._segments
        assert (seg.key_arrays is None) == bool(mode)
        assert reader.keys(ids[::-1]) == [None if n == "k3" else n for n in names[::-1]]


@pytest.mark.parametrize("span", [vector_module.ROW_TABLE_SPAN, 0])
def test_ids_find_their_rows_by_table_or_by_sort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 span: int) -> None:
    """A segment finds an id's row in a table over the ids' span, or (ids spread wider than
    ROW_TABLE_SPAN times their count) in a sort order: the same rows, -1 for any other id."""
    monkeypatch.setattr(vector_module, "ROW_TABLE_SPAN", span)
    names = _names(400)
    with Index.create(tmp_path / "idx", family="kmeans", n_bits=3) as index:
        ids = index.add(_rows(400), names)
        index.remove([names[i] for i in range(0, 400, 3)])
        index.compact(full=True)  # live ids with gaps, in cell order
        [seg] = index._segments
        assert (np.diff(seg.ids) < 0).any()
        probe = np.concatenate([ids, [-5, -1, ids.max() + 1, 10**12], ids[::-7]])
        rows = seg.positions(probe)
        want = np.array([np.flatnonzero(seg.ids == i)[0] if i in seg.ids else -1 for i in probe])
        np.testing.assert_array_equal(rows, want)
        assert (seg._rows_by_id[1] is None) == (span == 0)
        assert index.keys(probe) == [None if i < 0 or i > 399 or i % 3 == 0 else names[i] for i in probe]


def test_key_bytes_are_the_key_table_in_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each id's slot names its key's bytes (-1 where ``keys`` says None), over segments and
    removals; a segment with its keys in the catalogue only gives None (strings then)."""
    names = _names(300)
    with Index.create(tmp_path / "idx", family="kmeans") as index:
        ids = np.concatenate([index.add(_rows(200), names[:200]), index.add(_rows(100, 1), names[200:])])
        index.remove(["k1", "k250"])
        probe = np.concatenate([ids[::-3], [-1, 10_000], ids[:6], ids[249:252]]).reshape(-1, 3)
        offsets, blob, slots = index.key_bytes(probe)  # type: ignore[misc]
        assert slots.shape == probe.shape
        got = [bytes(blob[offsets[s]: offsets[s + 1]]).decode() if s >= 0 else None for s in slots.ravel()]
        assert got == index.keys(probe)
        assert len(offsets) - 1 == len({k for k in got if k is not None})  # each key once
    with monkeypatch.context() as m:
        m.setattr(vector_module, "_with_keys", lambda build, row_keys: build)
        with Index.create(tmp_path / "old") as index:
            ids = index.add(_rows(10), names[:10])
    with Index.open(tmp_path / "old") as index:
        assert index.key_bytes(ids) is None
