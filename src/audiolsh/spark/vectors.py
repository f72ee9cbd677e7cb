"""``spark vectors add`` and ``spark query``: the vector index's build and search on Spark,
giving the index and the answers ``vectors add`` and ``vectors query`` give for the same files.

Adding shards takes two Spark stages.  The first reads every shard in a task (the project's
own readers) and returns its content hash, rows and dimension.  The driver then skips shards
already indexed or seen earlier in the list, reserves one contiguous range of item ids and
gives each shard its part of it in shard order, as ``vectors add`` of the same files would
allocate them.  In the second stage each partition reads its shards again and builds their
segment with ``build_segment``, written as a file to a staging folder beside a directory index
that the driver memory-maps (or returned through Spark as bytes for other locations;
``index.transfer``: ``.npy`` arrays and JSON, never pickled).  The driver attaches every segment
in one commit, with the tracks and items ``vectors add`` writes, and by default merges them into
one segment: the segment one build of the same rows gives.

A query task opens the index read-only (memory-mapped for a directory), reads its share of the
query files and searches them with the local search; records come back in file and row order,
those of ``vectors query --format jsonl``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.audio import content_hash
from audiolsh.errors import AudiolshError, InputFormatError, ParameterError
from audiolsh.index import Index, IndexConfig, ItemRows, SegmentBuild, build_segment
from audiolsh.index.build import concat_rows
from audiolsh.index.transfer import build_from_bytes, build_from_file, build_to_bytes, build_to_file
from audiolsh.query.records import vector_record
from audiolsh.search import prepare
from audiolsh.storage import SegmentInfo
from audiolsh.storage.factory import split
from audiolsh.vectors import read_vectors

log = logging.getLogger(__name__)

#: Partitions per Spark job when results stream back to the driver, per core of the cluster:
#: enough to keep every core busy, few enough that the driver holds one wave's results.
WAVE_PER_CORE = 4
QUERY_FORMATS = ("jsonl", "parquet")


class TaskError(AudiolshError, RuntimeError):
    """What went wrong in a Spark task, in the task's own words."""


@dataclass(frozen=True)
class ReadOptions:
    """How shards are read (as ``read_vectors`` takes them)."""

    per_second: bool = True
    id_column: str | None = None

    def read(self, path: str) -> Any:
        return read_vectors(path, per_second=self.per_second, id_column=self.id_column)


@dataclass(frozen=True)
class PlannedShard:
    """A shard the driver decided to add: its content and the item ids it gets."""

    path: str
    content_hash: str
    first_id: int
    n_rows: int
    dim: int


@dataclass
class ShardOutcome:
    """What became of one shard: ``added``, ``skipped`` (already indexed) or ``failed``."""

    path: str
    status: str
    n_rows: int = 0
    dim: int = 0
    error: str | None = None


@dataclass
class AddReport:
    shards: list[ShardOutcome] = field(default_factory=list)
    n_segments: int = 0

    @property
    def failed(self) -> list[ShardOutcome]:
        return [s for s in self.shards if s.status == "failed"]

    @property
    def n_added(self) -> int:
        return sum(s.n_rows for s in self.shards if s.status == "added")


# the tasks ----------------------------------------------------------------------------------

def _same(rows: Iterator[Any]) -> Iterator[Any]:
    return rows


def _scan(options: ReadOptions,
          shards: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str, int, int, str]]:
    """Stage 1: (position, content hash, rows, dimension, error) of each shard."""
    for position, path in shards:
        try:
            digest = content_hash(path)
            batch = options.read(path)
            yield position, digest, len(batch), batch.dim, ""
        except (AudiolshError, OSError) as exc:
            yield position, "", 0, 0, str(exc)


def build_shards(config: IndexConfig, shards: Sequence[PlannedShard], options: ReadOptions) -> SegmentBuild:
    """One segment of the shards' rows with their planned ids, tracks and items: what
    ``vectors add`` of the same files commits (rows prepared per file, as a session does)."""
    rows: list[np.ndarray] = []
    keys: list[str] = []
    metas: list[dict[str, Any] | None] = []
    for s in shards:
        if content_hash(s.path) != s.content_hash:
            raise InputFormatError(s.path, "changed while it was being added; run the add again")
        batch = options.read(s.path)
        if (len(batch), batch.dim) != (s.n_rows, s.dim):
            raise InputFormatError(s.path, f"read as {len(batch)} x {batch.dim} vectors, counted as"
                                           f" {s.n_rows} x {s.dim}")
        rows.append(prepare(batch.vectors, config.metric))
        keys += batch.keys
        metas += batch.meta if batch.meta is not None else [None] * len(batch)
    ids = np.concatenate([np.arange(s.first_id, s.first_id + s.n_rows, dtype=np.int64) for s in shards])
    build = build_segment(config, concat_rows(rows, config.metric), ids, prepared=True)
    build.tracks = [{"path": s.path, "content_hash": s.content_hash, "duration_s": None, "kind": "vectors",
                     "meta": {"dim": s.dim}, "n_items": None} for s in shards]
    owners = np.repeat(-2 - np.arange(len(shards), dtype=np.int64), [s.n_rows for s in shards])
    build.items = ItemRows(ids, keys, owners, np.full(len(ids), np.nan), metas)
    return build


def _build(config: dict[str, Any], options: ReadOptions, staging: str | None,
           groups: Iterable[list[PlannedShard]]) -> Iterator[tuple[bytes, str, str]]:
    """Stage 2: each group's segment (as bytes, or the file in ``staging`` it was written to),
    or the error that stopped it."""
    cfg = IndexConfig.from_dict(config)
    for group in groups:
        try:
            build = build_shards(cfg, group, options)
            if staging is None:
                yield build_to_bytes(build), "", ""
            else:
                path = os.path.join(staging, f"{uuid.uuid4().hex}.build")
                build_to_file(build, path)
                yield b"", path, ""
        except (AudiolshError, OSError) as exc:
            yield b"", "", str(exc)


def _records(records: list[dict[str, Any]], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    import pyarrow as pa

    sink = io.BytesIO()
    table = pa.Table.from_pylist(records, schema=record_schema())
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _search(location: str, k: int, search: dict[str, Any], options: ReadOptions, fmt: str,
            files: Iterable[tuple[int, str]]) -> Iterator[tuple[int, bytes, str]]:
    """A query task: (position, the file's records encoded, error) per query file."""
    index: Index | None = None
    try:
        for position, path in files:
            try:
                if index is None:
                    index = Index.open(location, readonly=True)
                batch = options.read(path)
                result = index.query(batch.vectors, k, **search)
                records = [vector_record(key, row) for key, row in zip(batch.keys, index.hits(result))]
                yield position, _records(records, fmt), ""
            except (AudiolshError, OSError) as exc:
                yield position, b"", str(exc)
    finally:
        if index is not None:
            index.close()


# the driver ---------------------------------------------------------------------------------

def _run(session: Any, rdd: Any, name: str, *, wave: int | None = None) -> Iterator[Any]:
    """The rows of ``rdd`` in partition order, computed by jobs of ``wave`` partitions (all at
    once by default) whose stages carry ``name`` in the progress lines."""
    sc = session.sparkContext
    n = rdd.getNumPartitions()
    step = wave or n
    sc.setLocalProperty("callSite.short", name)
    try:
        for start in range(0, n, step):
            try:
                rows = sc.runJob(rdd, _same, partitions=list(range(start, min(n, start + step))))
            except AudiolshError:
                raise
            except Exception as exc:  # a worker died, a bug: Spark's report is pages long
                raise TaskError(f"Spark job {name!r} failed: {_brief(exc)}") from exc
            yield from rows
    finally:
        sc.setLocalProperty("callSite.short", None)


_PY_ERROR = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)|Killed|MemoryError)\b.*")


def _brief(exc: BaseException) -> str:
    """The Python error at the bottom of a failed task's traceback, else Spark's first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    found = [line for line in lines
             if _PY_ERROR.match(line) and not line.startswith(("at ", "org.", "java."))]
    return (found[-1] if found else lines[0] if lines else type(exc).__name__)[:300]


def _wave(session: Any) -> int:
    return WAVE_PER_CORE * max(1, int(session.sparkContext.defaultParallelism))


def _groups(n: int, partitions: int | None) -> list[np.ndarray]:
    """Positions 0..n-1 in contiguous groups: one per item, or ``partitions`` of them."""
    count = n if partitions is None else max(1, min(n, partitions))
    return [g for g in np.array_split(np.arange(n), count) if len(g)]


def task_location(location: str, *, what: str) -> str:
    """The location as every task can name it: a directory made absolute; memory is refused."""
    scheme, rest = split(location)
    if scheme == "memory":
        raise ParameterError(f"{location}: a memory:// index lives in one process and Spark tasks"
                             f" cannot open it; {what} needs a directory on a shared filesystem or"
                             " a redis:// location")
    if scheme == "file":
        return os.path.abspath(rest)
    return location


def _in_shard_order(builds: list[SegmentBuild]) -> None:
    """Stamp the builds here, 1 ms apart, so that the index lists their segments in shard order
    as a local add of the same files would (tasks build them in any order)."""
    now = time.time()
    for i, build in enumerate(builds):
        at = now + i * 1e-3
        build.info = SegmentInfo(f"{int(at * 1000):013d}-{uuid.uuid4().hex[:8]}", build.info.n_items,
                                 build.info.config, at)


def query_location(location: str) -> str:
    """The index location as the query tasks will open it, checked from here: a missing or
    unreachable index is one message before any task starts."""
    location = task_location(location, what="a Spark query")
    with Index.open(location, readonly=True):
        pass
    return location


def add_shards(
    session: Any, location: str, shards: Sequence[str | os.PathLike[str]], *, metric: str = "cosine",
    n_tables: int | None = None, seed: int = 0, per_second: bool = True, id_column: str | None = None,
    partitions: int | None = None, merge: bool = True, say: Callable[[str], None] | None = None,
    staging: str | os.PathLike[str] | None = "auto",
) -> AddReport:
    """Add the vectors of ``shards`` (.npy, .csv/.tsv, .parquet, .tfrecord files; a folder: its
    .parquet files, see ``expand_sources``) to the index at
    ``location`` (created with ``metric``, ``n_tables`` and ``seed`` when absent) on Spark:
    the catalogue and, once merged, the segment that ``vectors add`` of the same files gives.

    ``partitions``: contiguous groups of shards, one segment each (default: one per shard).
    ``merge``: merge the index into one segment at the end (``compact(full=True)``); without it
    every partition's segment is kept as built.  A shard already indexed (same content) is
    skipped, so an interrupted add runs again from the start and adds what is missing.

    ``staging``: a folder every task can write and the driver read (a shared filesystem) where
    tasks leave their segments for the driver to memory-map, instead of sending them through
    Spark; "auto": a new folder beside a directory index (removed at the end), none for other
    locations; None: segments travel through Spark as bytes.
    """
    say = say or log.info
    options = ReadOptions(per_second, id_column)
    report = AddReport([ShardOutcome(path, "failed" if error else "pending", error=error or None)
                        for path, error in expand_sources(shards)])
    with Index.open_or_create(location, metric=metric, n_tables=n_tables, seed=seed) as index:
        if index.config.metric not in ("cosine", "euclidean"):
            raise ParameterError(f"{index.location}: a {index.config.metric} index holds sets, not vectors")
        todo = []
        for position, outcome in enumerate(report.shards):
            if outcome.status == "pending":
                todo.append((position, str(Path(outcome.path).resolve())))
        if not todo:
            return report
        sc = session.sparkContext
        say(f"reading {len(todo)} shards on Spark ({sc.master})")
        rdd = sc.parallelize(todo, len(_groups(len(todo), partitions))).mapPartitions(partial(_scan, options))
        scans = sorted(_run(session, rdd, "count rows"))
        resolved = dict(todo)
        plan: list[PlannedShard] = []
        positions: list[int] = []
        seen: set[str] = set()
        dim = index.config.dim
        next_id = 0
        for position, digest, n_rows, shard_dim, error in scans:
            outcome = report.shards[position]
            if error:
                outcome.status, outcome.error = "failed", error
            elif digest in seen or index.track_by_hash(digest) is not None:
                outcome.status = "skipped"
            elif dim is not None and shard_dim != dim:
                outcome.status = "failed"
                outcome.error = (f"{outcome.path}: vectors of dimension {shard_dim} cannot go into an index"
                                 f" of dimension {dim}")
            else:
                dim = shard_dim
                seen.add(digest)
                plan.append(PlannedShard(resolved[position], digest, next_id, n_rows, shard_dim))
                positions.append(position)
                next_id += n_rows
        if not plan:
            return report
        first = int(index.reserve_ids(next_id)[0])
        plan = [PlannedShard(s.path, s.content_hash, first + s.first_id, s.n_rows, s.dim) for s in plan]
        groups = _groups(len(plan), partitions)
        say(f"building {len(groups)} segments of {next_id} vectors in {len(plan)} shards")
        config = asdict(index.config)
        with _staging_folder(location, staging) as folder:
            rdd = sc.parallelize([[plan[i] for i in g] for g in groups], len(groups)).mapPartitions(
                partial(_build, config, options, folder))
            builds: list[SegmentBuild] = []
            for g, (blob, path, error) in zip(groups, _run(session, rdd, "build segments",
                                                           wave=_wave(session))):
                for i in g:
                    outcome = report.shards[positions[i]]
                    if error:
                        outcome.status, outcome.error = "failed", error
                    else:
                        outcome.status, outcome.n_rows, outcome.dim = "added", plan[i].n_rows, plan[i].dim
                if not error:
                    where = f"the segment of {plan[g[0]].path}"
                    builds.append(build_from_file(path, where=where) if path
                                  else build_from_bytes(blob, where=where))
            if not builds:
                return report
            _in_shard_order(builds)
            say(f"attaching {len(builds)} segments of {sum(b.info.n_items for b in builds)} vectors")
            index.auto_compact = False  # one merge at the end, or none
            index.attach(builds)
        report.n_segments = len(builds)
        say(f"attached {len(builds)} segments to {index.location} in one commit")
        if merge and len(index.segments) > 1:
            index.compact(full=True)
            say(f"merged into one segment of {len(index)} vectors")
    return report


@contextlib.contextmanager
def _staging_folder(location: str, staging: str | os.PathLike[str] | None) -> Iterator[str | None]:
    """Where the build tasks leave their segments (see ``add_shards``), removed afterwards."""
    if staging == "auto":
        scheme, rest = split(location)
        if scheme != "file":
            yield None
            return
        target = Path(rest).resolve()
        parent = target.parent
        prefix = f".{target.name}.staging-"
    elif staging is None:
        yield None
        return
    else:
        parent, prefix = Path(staging).resolve(), "audiolsh-build-"
        if not parent.is_dir():
            raise ParameterError(f"{staging}: staging folder not found")
    folder = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def expand_sources(sources: Sequence[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    """(file, error) for every file the sources name, in order: a file as given; a folder (a
    Parquet table) as its ``.parquet`` files in path order, hidden and ``_``-prefixed ones (like
    Spark's ``_SUCCESS``) left out; a missing source or an empty folder as its error."""
    out: list[tuple[str, str]] = []
    for source in sources:
        shown = os.fspath(source)
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not any(
                part.startswith(("_", ".")) for part in p.relative_to(path).parts))
            out += [(str(p), "") for p in found] or [(shown, f"{shown}: a folder without .parquet files")]
        elif path.is_file():
            out.append((shown, ""))
        else:
            out.append((shown, f"{shown}: {'not a file' if path.exists() else 'file not found'}"))
    return out


def record_schema() -> Any:
    """The Arrow schema of query records: ``query``, ``results`` [{``id``, ``distance``}]."""
    import pyarrow as pa

    hit = pa.struct([("id", pa.string()), ("distance", pa.float64())])
    return pa.schema([("query", pa.string()), ("results", pa.list_(hit))])


def query_files(
    session: Any, location: str, files: Sequence[str], k: int, *, n_probes: int | None = None,
    n_rerank: int | None = None, exact: bool = False, per_second: bool = True,
    id_column: str | None = None, partitions: int | None = None, fmt: str = "jsonl",
) -> Iterator[tuple[str, bytes, str]]:
    """The k nearest items of every row of ``files`` in the index at ``location``, searched in
    Spark tasks: (file, its records encoded, error) per file in order.  ``fmt`` "jsonl": the
    lines ``vectors query --format jsonl`` prints; "parquet": an Arrow IPC stream of the same
    records (``record_schema``)."""
    if fmt not in QUERY_FORMATS:
        raise ParameterError(f"format must be one of {QUERY_FORMATS}, got {fmt!r}")
    location = query_location(location)
    if not files:
        return
    search = {"n_probes": n_probes, "n_rerank": n_rerank, "exact": exact}
    groups = _groups(len(files), partitions)
    rdd = session.sparkContext.parallelize(list(enumerate(files)), len(groups)).mapPartitions(
        partial(_search, location, k, search, ReadOptions(per_second, id_column), fmt))
    for position, payload, error in _run(session, rdd, "query", wave=_wave(session)):
        yield files[position], payload, error


def out_format(path: str | os.PathLike[str]) -> str:
    """The records' format a file name asks for: ``.jsonl`` or ``.parquet``."""
    suffix = Path(path).suffix.lower()
    formats = {".jsonl": "jsonl", ".parquet": "parquet"}
    if suffix not in formats:
        raise ParameterError(f"{os.fspath(path)}: the output must be a .jsonl or .parquet file")
    return formats[suffix]


def write_records(path: str | os.PathLike[str], payloads: Iterable[bytes], fmt: str) -> int:
    """Write the records ``query_files`` encoded to ``path`` (whole or not at all: a temporary
    file renamed at the end); returns how many records."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    n = 0
    try:
        if fmt == "jsonl":
            with open(tmp, "wb") as f:
                for payload in payloads:
                    f.write(payload)
                    n += payload.count(b"\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, record_schema()) as writer:
                for payload in payloads:
                    table = pa.ipc.open_stream(payload).read_all()
                    writer.write_table(table)
                    n += table.num_rows
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return n
