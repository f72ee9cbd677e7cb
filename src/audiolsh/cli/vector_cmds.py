"""vectors add / vectors query: k-NN over embeddings from .npy, .csv or AudioSet TFRecords."""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, cast

import click
import numpy as np
from rich.markup import escape

from audiolsh.audio import content_hash
from audiolsh.cli import EXIT_ERROR, cli
from audiolsh.cli.inputs import say_problem
from audiolsh.cli.options import Finite, index_option
from audiolsh.cli.output import emit_object, emit_records, err_console, format_option
from audiolsh.cli.progress import FileProgress
from audiolsh.errors import AudiolshError, InputFormatError
from audiolsh.files import shown
from audiolsh.index import Index
from audiolsh.index.autotune import DEFAULT_MAX_TABLE_BYTES
from audiolsh.index.build import DEFAULT_TARGET_RECALL
from audiolsh.index.families import AUTO, FAMILIES
from audiolsh.library.locations import check_vectors_location
from audiolsh.query import jsonl
from audiolsh.query.records import rounded_array, vector_records
from audiolsh.search.compact import RERANK_DTYPES
from audiolsh.storage import storage_exists
from audiolsh.vectors import read_vectors


@cli.group()
def vectors() -> None:
    """k-NN over vectors: audio embeddings, feature tables."""


@vectors.command("add")
@index_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--metric", type=click.Choice(["cosine", "euclidean"]), default="cosine",
              show_default=True, help="Distance, fixed when the index is created.")
@click.option("--per-second/--clip-mean", default=True, show_default=True,
              help="TFRecords: one vector per second, or the mean of each clip.")
@click.option("--id-column", default=None,
              help="CSV, Parquet: the column holding the ids (default: first; Parquet: when it holds"
                   " strings or integers).")
@click.option("--tables", "n_tables", type=click.IntRange(1, 256), default=None,
              help="Hash tables, when the index is created; without --family it asks for"
                   " hyperplanes [default: kmeans: 1; hyperplane: chosen per segment for the"
                   " target recall].")
@click.option("--family", type=click.Choice((AUTO, *FAMILIES)),
              default=AUTO, show_default=True,
              help="Hash family, when the index is created: kmeans (learned cells, as IVF),"
                   " random hyperplanes (p-stable for euclidean) or cross-polytope (cosine);"
                   " auto: kmeans, or hyperplane when --tables is given.")
@click.option("--target-recall", type=Finite(0, 1, min_open=True, max_open=True),
              default=None, help="Recall@10 every segment is built for, when the index is created"
                                 f" (hyperplane: its shape and probes; kmeans: its probes)"
                                 f" [default: {DEFAULT_TARGET_RECALL}].")
@click.option("--max-table-bytes", type=Finite(0, min_open=True), default=None,
              help="Hash-table bytes per item a tuned segment may hold, when the index is created"
                   f" [default: {DEFAULT_MAX_TABLE_BYTES:g}].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--rerank-dtype", type=click.Choice(RERANK_DTYPES), default=None,
              help="Type of the rows the exact re-rank reads: float16 or int8 keep a compact copy"
                   " in memory (2x, 4x smaller) beside the float32 rows; float16 also scans"
                   " faster where the rows come from memory [default: float32;"
                   " given for an existing index, its segments are rebuilt].")
@format_option
def vectors_add(index_path: str, files: tuple[Path, ...], metric: str, per_second: bool,
                id_column: str | None, n_tables: int | None, family: str, target_recall: float | None,
                max_table_bytes: float | None, seed: int, rerank_dtype: str | None, fmt: str) -> None:
    """Add the vectors of FILES (.npy, .csv/.tsv, .tfrecord, .parquet) to the index.

    A file already added (same content) is skipped; a bad file is reported and the others
    go on (exit status 2 at the end). --format json|jsonl|csv prints every file's outcome.
    """
    outcomes: list[dict[str, Any]] = []
    check_vectors_location(index_path, writes=True)
    params: dict[str, Any] = {"metric": metric, "family": family, "seed": seed,
                              "rerank_dtype": rerank_dtype or "float32"}
    if n_tables is not None:
        params["n_tables"] = n_tables
    if target_recall is not None:
        params["target_recall"] = target_recall
    if max_table_bytes is not None:
        params["max_table_bytes"] = max_table_bytes
    with contextlib.ExitStack() as stack:
        # A new index is made with the first file that reads: a batch of which none does
        # leaves no empty index behind (its queries answered nothing, its tune failed).
        index = (_open_for_adding(stack, index_path, params, rerank_dtype) if storage_exists(index_path)
                 else None)
        with FileProgress("added", total=len(files)) as progress:
            for path in files:
                first = None
                if index is None:
                    try:
                        first = read_vectors(path, per_second=per_second, id_column=id_column)
                    except AudiolshError as exc:
                        outcomes.append(_failed(path, exc))
                        progress.advance(str(path), failed=True)
                        continue
                    index = _open_for_adding(stack, index_path, params, rerank_dtype)
                outcomes.append(_add_file(index, path, per_second=per_second, id_column=id_column,
                                          batch=first))
                progress.advance(str(path), failed=outcomes[-1]["status"] == "failed")
        n_vectors = 0 if index is None else len(index)
    if index is None:
        err_console.print(f"index {index_path}: not created, as no file could be added", highlight=False,
                          markup=False)
        emit_added(outcomes, fmt, index_path=index_path, n_vectors=0)
        return
    err_console.print(f"index {index_path}: {n_vectors} vectors", highlight=False, markup=False)
    emit_added(outcomes, fmt, index_path=index_path, n_vectors=n_vectors)


def emit_vector_records(records: list[dict[str, Any]], fmt: str, *, k: int) -> None:
    """vectors query's records; a table or csv has one row per neighbour."""
    flat = [{"query": r["query"], "rank": i + 1, "id": h["id"], "distance": h["distance"]}
            for r in records for i, h in enumerate(r["results"])] if fmt in ("table", "csv") else []
    emit_records(records, fmt, flat_rows=flat, title=f"{k} nearest")


def vector_jsonl(queries: list[str], table: list[str | None], slots: np.ndarray,
                 distances: np.ndarray) -> str:
    """The jsonl lines of ``vector_records`` (finite distances) of the answers' keys
    ``table[slots]`` (``Index.key_table``), as ``json.dumps`` writes them: each key and query
    encoded once by its C encoder, the lines in one compiled pass (``query.jsonl``)."""
    rounded_d = rounded_array(distances)
    slots = np.asarray(slots).reshape(distances.shape)
    named = cast("list[str]", table)
    if None in table:  # -1 or removed: no answer
        missing = np.array([key is None for key in table] + [True])
        slots = np.where(missing[slots], -1, slots)
        named = [key if key is not None else "" for key in table]
    if jsonl.fits(rounded_d[slots >= 0]):
        k_bytes, k_offsets = jsonl.joined(list(map(encode_basestring_ascii, named)))
        return jsonl.lines(list(map(encode_basestring_ascii, queries)), k_bytes, k_offsets, slots,
                           rounded_d, quote=False)
    keys = [table[j] if j >= 0 else None for j in slots.ravel().tolist()]
    present = [key for key in keys if key is not None]
    quoted_of = dict(zip(present, map(encode_basestring_ascii, present)))
    hits = [f'{{"id": {quoted_of[key]}, "distance": {d!r}}}' if key is not None else ""
            for key, d in zip(keys, rounded_d.ravel().tolist())]
    k = distances.shape[1]
    return "".join(
        f'{{"query": {query}, "results": [{", ".join(h for h in hits[i * k: (i + 1) * k] if h)}]}}\n'
        for i, query in enumerate(map(encode_basestring_ascii, queries)))


def emit_added(outcomes: list[dict[str, Any]], fmt: str, *, index_path: str, n_vectors: int) -> None:
    """With json, jsonl or csv each file's outcome (``{path, status, n_vectors, error}``) on
    stdout; exit status 2 when a file failed."""
    failed = sum(o["status"] == "failed" for o in outcomes)
    if fmt != "table":
        summary = {"index": index_path, "n_vectors": n_vectors, "failed": failed, "files": outcomes}
        emit_object(summary, fmt, flat_rows=outcomes, table=lambda: None)
    if failed:
        sys.exit(EXIT_ERROR)


def _open_for_adding(stack: contextlib.ExitStack, index_path: str, params: dict[str, Any],
                     rerank_dtype: str | None) -> Index:
    """The index ``vectors add`` writes (made with ``params`` if new), with a note of each
    setting it keeps that differs from the one asked for."""
    index = stack.enter_context(Index.open_or_create(index_path, **params))
    if index.config.metric != params["metric"] and index.config.metric in ("cosine", "euclidean"):
        err_console.print(f"note: the index uses the {index.config.metric} metric")
    if params["family"] != AUTO and index.config.family != params["family"]:
        err_console.print(f"note: the index hashes with the {index.config.family} family")
    if rerank_dtype is not None and rerank_dtype != index.config.rerank_dtype:
        err_console.print(f"note: re-rank rows {index.config.rerank_dtype} -> {rerank_dtype}")
        index.set_params(rerank_dtype=rerank_dtype)
    return index


def _failed(path: Path, exc: AudiolshError) -> dict[str, Any]:
    say_problem(str(exc))
    return {"path": shown(path), "status": "failed", "n_vectors": 0, "error": str(exc)}


def _add_file(index: Index, path: Path, *, per_second: bool, id_column: str | None,
              batch: Any = None) -> dict[str, Any]:
    """Add one file's vectors (``batch``: read already); its outcome (said on stderr too):
    added, skipped or failed."""
    out: dict[str, Any] = {"path": shown(path), "status": "failed", "n_vectors": 0, "error": None}
    try:
        digest = content_hash(path)
        if index.track_by_hash(digest) is not None:
            err_console.print(f"{escape(shown(path))}: already indexed, skipped", highlight=False)
            return {**out, "status": "skipped"}
        if batch is None:
            batch = read_vectors(path, per_second=per_second, id_column=id_column)
        check_dim(path, batch.dim, index)
        with index.session() as s:
            handle = s.add_track(shown(path.resolve()), content_hash=digest, kind="vectors",
                                 meta={"dim": batch.dim})
            s.add(batch.vectors, batch.keys, track=handle, meta=batch.meta)
    except AudiolshError as exc:
        return _failed(path, exc)
    err_console.print(f"{escape(shown(path))}: added {len(batch)} vectors of dimension {batch.dim}",
                      highlight=False)
    return {**out, "status": "added", "n_vectors": len(batch)}


def check_dim(path: Path, dim: int, index: Index) -> None:
    """Vectors of another dimension than the index's are refused, naming their file."""
    want = index.config.dim
    if want is not None and index.config.metric != "jaccard" and dim != want:
        raise InputFormatError(path, f"vectors of dimension {dim}, but the index {index.location}"
                                     f" holds vectors of dimension {want}")


@vectors.command("query")
@index_option
@click.argument("file", type=click.Path(path_type=Path, readable=False))
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--probes", "n_probes", type=click.IntRange(min=1), default=None,
              help="Buckets probed per query (default: the index's tuned value).")
@click.option("--rerank", "n_rerank", type=click.IntRange(min=0), default=None,
              help="Measure at most this many candidates per segment (cosine: nearest by hash"
                   " code; a Redis ?mode=remote index: found in the most probed buckets;"
                   " 0: all; default: the index's value).")
@click.option("--recall", type=Finite(0, 1, min_open=True, max_open=True), default=None,
              help="Recall@10 to probe for, instead of the one the index was built for (segments"
                   " built for a target recall; --probes overrides it).")
@click.option("--recheck", type=click.IntRange(min=0), default=None,
              help="An index with float16 or int8 re-rank rows: measure its best N again on the"
                   " float32 rows (N random reads a query; int8 loses recall near the k-th"
                   " neighbour without it) [default: 2k for int8, 0 for float16].")
@click.option("--exact", is_flag=True, help="Brute force instead of LSH (the baseline).")
@click.option("--per-second/--clip-mean", default=True, show_default=True)
@click.option("--id-column", default=None)
@format_option
def vectors_query(index_path: str, file: Path, k: int, n_probes: int | None, n_rerank: int | None,
                  recall: float | None, recheck: int | None, exact: bool, per_second: bool,
                  id_column: str | None, fmt: str) -> None:
    """For every row of FILE, the k nearest indexed vectors with their distances."""
    t_load = time.perf_counter()
    check_vectors_location(index_path, writes=False)
    batch = read_vectors(file, per_second=per_second, id_column=id_column)
    with Index.open(index_path, readonly=True) as index:
        check_dim(file, batch.dim, index)
        # The segments and the compiled kernels (the serial one for a few rows, the parallel
        # one for more) load here: timed with the loading, not with the queries.
        options: dict[str, Any] = {
            "n_probes": n_probes, "n_rerank": n_rerank, "exact": exact, "recall": recall,
            "recheck": recheck}
        index.load_kernels(batch.vectors, k, **options)
        # What is loaded now lives until the end: kept out of the collections that the
        # answers' objects (k per query) trigger, each of which would walk it all again.
        gc.freeze()
        click.get_current_context().call_on_close(gc.unfreeze)  # a caller in process goes on
        load_ms = (time.perf_counter() - t_load) * 1e3
        t0 = time.perf_counter()
        result = index.query(batch.vectors, k, **options)
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        # Keys by array indexing: no catalogue read, no Hit objects (only keys are printed).
        if fmt == "jsonl" and np.isfinite(result.distances[result.ids >= 0]).all():
            raw = index.key_bytes(result.ids)  # plain keys go from their bytes to the lines
            text = None if raw is None else jsonl.plain_lines(batch.keys, *raw, result.distances)
            if text is None:
                text = vector_jsonl(batch.keys, *index.key_table(result.ids), result.distances)
            sys.stdout.write(text)
            records = None
        else:
            table, slots = index.key_table(result.ids)
            keys = [table[j] for j in slots.ravel().tolist()]
            records = vector_records(batch.keys, keys, result.distances)
    if records is not None:
        emit_vector_records(records, fmt, k=k)
    err_console.print(
        f"loaded in {load_ms:.0f} ms (the index, {shown(file.name)}, the search kernels);"
        f" {len(batch)} queries in {elapsed_ms:.1f} ms"
        f" ({elapsed_ms / max(1, len(batch)):.3f} ms each, {'exact' if exact else 'LSH'});"
        f" {float(np.mean(result.n_candidates)):.0f} candidates per query"
    )
