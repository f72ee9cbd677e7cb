#!/usr/bin/env python
"""Spark scale benchmark (issue #15): build and self-join throughput in local mode, against the
local build and against Spark MLlib's LSH joins on the same data.

Vectors: ``--n`` seeded 128-d rows of ``knn.clustered_data`` (cosine), per size:

* *local build*: ``Index.create`` + ``add`` of all rows in this process (one segment).
* *Spark build*: the build's floor on Spark: the driver reserves the ids, every task
  memory-maps the rows (a ``.npy`` file), runs ``build_segment`` on its share and saves the
  arrays (``.npy``) where the driver reads them, the driver attaches all segments in one commit
  (one segment per task).
* *spark vectors add*: the product's command on the same rows as ``--build-parts`` ``.npy``
  shards, ``--no-merge``: tasks read and hash the shards, build a segment each and ship it to
  the driver as bytes, one attach.  With it: the index's bytes per row and the Python workers'
  peak resident memory (the scale plan's inputs).
* *spark query*: batch k-NN of ``--queries`` rows of the data in ``--query-files`` files against
  the local build, beside one ``Index.query`` batch here.
* *our self-join*: ``spark_self_join`` (broadcast strategy; ``--shuffle-max-n``: also the
  shuffled one) and the local ``self_join`` at the ``--points`` (probes, rerank), k = 10,
  on the local build's index.
* *MLlib*: ``BucketedRandomProjectionLSH.approxSimilarityJoin`` (Euclidean distance: on unit
  rows it ranks as cosine does) at ``--mllib-grid`` (numHashTables, bucketLength) with the
  distance threshold that holds the exact 10th neighbour of 99 % of the sample, then the 10
  nearest per item (a window): the k-NN join MLlib can do.  A run longer than
  ``--mllib-cap-s`` is cancelled and reported as such; one whose join would explode into more
  than ``--mllib-max-pairs`` candidate pairs (``brp_pairs``: counted on the driver with
  the same hash law; every pair row carries both vectors through the shuffle) is not run.
  Because MLlib's joins explode (one projection per table, no AND of several, no
  multi-probe), the grid also runs at ``--mllib-n`` rows, where it finishes, beside ours at
  the same size: that is where the two are compared at equal recall.

Sets: ``--n-sets`` seeded sets of ``knn.set_data``; our join keeps every pair with Jaccard >=
0.5 (``min_similarity``) on MinHash indexes banded for ``--set-thresholds``; MLlib's
``MinHashLSH.approxSimilarityJoin`` at distance 0.5 with ``--minhash-tables``.

Recall: vectors, recall@10 of ``--sample`` items against the exact answer (a returned item
counts when no farther than the exact 10th); sets, the share of the sample's exact pairs with
J >= 0.5 that were found.  Shuffle bytes are read from Spark's status store (the stages of
each measured job group).  Times are wall-clock seconds on a shared 2-core machine.

    python benchmarks/spark_scale.py --quick                       # smoke run, a few minutes
    flock /tmp/audiolsh-bench.lock python benchmarks/spark_scale.py --n 100000 --mllib-n 3000 \
        --mllib-grid '2,0.02;4,0.05;8,0.05;8,0.1' --out s.json --md s.md
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from knn import clustered_data, load_avg, machine, set_data  # noqa: I001

from audiolsh.index import Index
from audiolsh.index.join import self_join
from audiolsh.search import kernels
from audiolsh.spark import spark_session, stop_session
from audiolsh.spark.join import spark_self_join

K = 10
SET_SIMILARITY = 0.5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Row:
    section: str
    n: int
    method: str
    params: str
    recall: float | None
    time_s: float | None
    shuffle_mb: float | None = None
    candidates_per_item: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def s_per_million(self) -> float | None:
        return None if self.time_s is None else self.time_s * 1e6 / self.n

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "s_per_million": self.s_per_million,
                "items_per_s": None if not self.time_s else self.n / self.time_s}


class Measured:
    """A job group: wall time, shuffle bytes written by its stages, cancelled after ``cap_s``."""

    def __init__(self, session: Any, name: str, cap_s: float | None = None) -> None:
        self.sc = session.sparkContext
        self.group = f"{name}-{time.monotonic_ns()}"
        self.cap_s = cap_s
        self.timed_out = False

    def __enter__(self) -> Measured:
        self.sc.setJobGroup(self.group, self.group, interruptOnCancel=True)
        self._timer = None
        if self.cap_s:
            self._timer = threading.Timer(self.cap_s, self._cancel)
            self._timer.start()
        self.t0 = time.perf_counter()
        return self

    def _cancel(self) -> None:
        self.timed_out = True
        self.sc.cancelJobGroup(self.group)

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        if self._timer is not None:
            self._timer.cancel()
        self.sc.setLocalProperty("spark.jobGroup.id", None)

    def shuffle_mb(self) -> float:
        store = self.sc._jsc.sc().statusStore()
        tracker = self.sc.statusTracker()
        total = 0
        for jid in tracker.getJobIdsForGroup(self.group):
            info = tracker.getJobInfo(jid)
            for sid in info.stageIds if info else []:
                try:
                    total += int(store.lastStageAttempt(sid).shuffleWriteBytes())
                except Exception:  # a skipped stage has no attempt
                    pass
        return total / 2**20


# --------------------------------------------------------------------------- vectors


class VectorTruth:
    def __init__(self, X: np.ndarray, sample: np.ndarray) -> None:
        self.X, self.sample = X, sample
        D = 1.0 - X[sample] @ X.T
        D[np.arange(len(sample)), sample] = np.inf
        self.kth = np.sort(np.partition(D, K, axis=1)[:, :K], axis=1)[:, K - 1].astype(np.float64)

    def recall(self, neighbours: dict[int, np.ndarray] | Any) -> float:
        hits = 0
        for i, item in enumerate(self.sample.tolist()):
            nb = neighbours(item)[:K]
            if len(nb):
                d = 1.0 - self.X[nb].astype(np.float64) @ self.X[item].astype(np.float64)
                hits += int((d <= self.kth[i] + 1e-6).sum())
        return hits / (K * len(self.sample))

    def threshold(self, quantile: float = 99.0) -> float:
        """Euclidean distance holding the exact 10th neighbour of ``quantile`` % of the sample."""
        return float(np.sqrt(2 * np.maximum(np.percentile(self.kth, quantile), 0)))


def _build_task(npy: str, staging: str, config: dict, first_id: int, bounds: list[tuple[int, int]],
                batches: Iterator[Any]) -> Iterator[Any]:
    import pyarrow as pa

    from audiolsh.index import IndexConfig, build_segment

    X = np.load(npy, mmap_mode="r")
    cfg = IndexConfig.from_dict(config)
    for batch in batches:
        for part in batch.column(0).to_numpy().tolist():
            lo, hi = bounds[part]
            build = build_segment(cfg, np.asarray(X[lo:hi]), np.arange(first_id + lo, first_id + hi))
            folder = Path(staging) / build.info.id
            folder.mkdir(parents=True)
            for name, a in build.arrays.items():
                np.save(folder / f"{name}.npy", a, allow_pickle=False)
            yield pa.RecordBatch.from_pylist([{"id": build.info.id, "n_items": build.info.n_items,
                                               "config": json.dumps(build.info.config), "lo": lo, "hi": hi}])


def spark_build(session: Any, X: np.ndarray, folder: Path, n_parts: int) -> tuple[float, float, int]:
    """This benchmark's distributed build; (seconds, shuffle MB, segments)."""
    import functools

    from audiolsh.index import ItemRows, SegmentBuild
    from audiolsh.storage import SegmentInfo

    npy = folder / "rows.npy"
    np.save(npy, X)
    staging = folder / "staging"
    staging.mkdir()
    with Measured(session, "spark-build") as m:
        index = Index.create(str(folder / "spark.idx"), metric="cosine")
        ids = index.reserve_ids(len(X))
        bounds = [(len(X) * p // n_parts, len(X) * (p + 1) // n_parts) for p in range(n_parts)]
        task = functools.partial(_build_task, str(npy), str(staging), asdict(index.config), int(ids[0]),
                                 bounds)
        done = session.range(0, n_parts, 1, n_parts).mapInArrow(
            task, "id string, n_items long, config string, lo long, hi long").collect()
        builds = []
        for r in done:
            arrays = {p.stem: np.load(p, mmap_mode="r") for p in (staging / r["id"]).glob("*.npy")}
            seg_ids = ids[r["lo"]:r["hi"]]
            keys = np.char.mod("%d", seg_ids).tolist()
            info = SegmentInfo(r["id"], r["n_items"], json.loads(r["config"]), time.time())
            items = ItemRows(seg_ids, keys, np.full(len(seg_ids), -1), np.full(len(seg_ids), np.nan),
                             [None] * len(seg_ids))
            builds.append(SegmentBuild(info, arrays, items=items))
        index.auto_compact = False
        index.attach(builds)
        n_segments = len(index.segments)
        index.close()
    return m.seconds, m.shuffle_mb(), n_segments


def _rss_task(batches: Iterator[Any]) -> Iterator[Any]:
    import resource

    import pyarrow as pa

    for _ in batches:
        pass
    yield pa.RecordBatch.from_pylist([{"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}])


def worker_peak_mb(session: Any) -> float:
    """The largest peak resident size of the Python workers (each reports its own, over its life)."""
    parts = int(session.sparkContext.defaultParallelism)
    got = session.range(0, parts, 1, parts).mapInArrow(_rss_task, "rss_mb double").collect()
    return max(r["rss_mb"] for r in got)


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def product_rows(session: Any, X: np.ndarray, folder: Path, args: argparse.Namespace, index: Index,
                 local_build_s: float) -> list[Row]:
    """The product's own commands on the same rows: ``spark vectors add`` of ``--build-parts``
    .npy shards (one segment per shard, ``--no-merge``, every segment shipped to the driver and
    attached in one commit) and ``spark query`` of the sample's rows as ``--query-files`` files,
    against ``vectors add`` / ``Index.query`` here; index bytes per row; the workers' peak
    resident memory."""
    from audiolsh.spark.vectors import add_shards, query_files

    n = len(X)
    out: list[Row] = []
    shard_dir = folder / "shards"
    shard_dir.mkdir()
    shards = []
    for p, part in enumerate(np.array_split(X, args.build_parts)):
        shards.append(str(shard_dir / f"part-{p:03d}.npy"))
        np.save(shards[-1], part)
    said: list[tuple[float, str]] = []
    with Measured(session, "spark-vectors-add") as m:
        t0 = time.perf_counter()
        report = add_shards(session, str(folder / "product.idx"), shards, partitions=args.build_parts,
                            merge=False, say=lambda msg: said.append((time.perf_counter() - t0, msg)))
    assert not report.failed, report.failed
    at = {msg.split()[0]: t for t, msg in said}  # reading, building, attaching, attached
    stages = {"scan_s": at["building"] - at["reading"], "build_stage_s": at["attaching"] - at["building"],
              "driver_attach_s": at["attached"] - at["attaching"]}
    idx_mb = folder_mb(folder / "local.idx")
    out.append(Row("build", n, "audiolsh spark vectors add (--no-merge)",
                   f"{args.build_parts} .npy shards, {report.n_segments} segments", None, m.seconds,
                   m.shuffle_mb(), extra={**stages, "local_build_s": local_build_s, "index_mb": idx_mb,
                                          "index_bytes_per_row": idx_mb * 2**20 / n,
                                          "worker_peak_mb": worker_peak_mb(session)}))
    log(f"build n={n}: spark vectors add {m.seconds:.1f} s ({stages}); index {idx_mb:.0f} MB")
    shutil.rmtree(folder / "product.idx", ignore_errors=True)
    queries = X[np.random.default_rng(2).choice(n, min(args.queries, n), replace=False)]
    files = []
    for p, part in enumerate(np.array_split(queries, args.query_files)):
        files.append(str(shard_dir / f"q-{p:03d}.npy"))
        np.save(files[-1], part)
    t0 = time.perf_counter()
    index.query(queries, K)
    local_s = time.perf_counter() - t0
    out.append(Row("query", n, "Index.query (local, one batch)", f"{len(queries):,} queries, k={K}", None,
                   local_s, extra={"queries_per_s": len(queries) / local_s}))
    with Measured(session, "spark-query") as m:
        got = list(query_files(session, str(folder / "local.idx"), files, K))
    assert not any(err for _f, _p, err in got), [err for _f, _p, err in got if err]
    out.append(Row("query", n, "audiolsh spark query", f"{len(queries):,} queries in {len(files)} files,"
                   f" k={K}", None, m.seconds, m.shuffle_mb(),
                   extra={"queries_per_s": len(queries) / m.seconds}))
    log(f"query n={n}: local {local_s:.1f} s, spark query {m.seconds:.1f} s")
    return out


def brp_pairs(X: np.ndarray, L: int, width: float) -> int:
    """Candidate pairs MLlib's BucketedRandomProjectionLSH join of X with itself explodes into:
    per table (one random unit direction v, bucket floor(x.v / width)) the sum of the squared
    bucket sizes, summed over the tables (pairs met in several tables counted in each, as
    the join produces them before its de-duplication).  Our own directions, MLlib's law."""
    rng = np.random.default_rng(1)
    V = rng.standard_normal((X.shape[1], L))
    V /= np.linalg.norm(V, axis=0)
    total = 0
    for t in range(L):
        _, counts = np.unique(np.floor(X @ V[:, t] / width).astype(np.int64), return_counts=True)
        total += int((counts.astype(np.int64) ** 2).sum())
    return total


def minhash_pairs(sets: Any, L: int) -> int:
    """The same count for MLlib's MinHashLSH join: per table one min-hash value is the bucket."""
    from audiolsh.hashing import MinHashLSH

    keys = MinHashLSH(num_perm=L, n_bands=L, n_rows=1, seed=1).keys(sets)
    total = 0
    for t in range(L):
        _, counts = np.unique(keys[:, t], return_counts=True)
        total += int((counts.astype(np.int64) ** 2).sum())
    return total


def too_many(section: str, n: int, method: str, params: str, pairs: int, budget: int) -> Row:
    log(f"{section} n={n}: {method} [{params}] not run: ~{pairs:,} candidate pairs (budget {budget:,})")
    return Row(section, n, method, params, None, None, note=f"not run: ~{pairs / 1e6:,.0f}M candidate pairs",
               extra={"estimated_pairs": pairs})


def mllib_vectors(session: Any, parquet: str, n: int, truth: VectorTruth, L: int, width: float,
                  cap_s: float, section: str) -> Row:
    from pyspark import StorageLevel
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    threshold = truth.threshold()
    params = f"numHashTables={L} bucketLength={width} threshold={threshold:.3f}"
    df = session.read.parquet(parquet).select("id", array_to_vector("v").alias("features"))
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    df.count()
    top = None
    try:
        with Measured(session, "mllib-brp", cap_s) as m:
            try:
                model = BucketedRandomProjectionLSH(inputCol="features", outputCol="hashes",
                                                    bucketLength=width, numHashTables=L, seed=1).fit(df)
                pairs = model.approxSimilarityJoin(df, df, threshold, distCol="dist").select(
                    F.col("datasetA.id").alias("a"), F.col("datasetB.id").alias("b"), "dist").where("a != b")
                rank = F.row_number().over(Window.partitionBy("a").orderBy("dist", "b"))
                top = pairs.withColumn("r", rank).where(f"r <= {K}").drop("r")
                top = top.persist(StorageLevel.MEMORY_AND_DISK)
                n_rows = top.count()
            except Exception as exc:
                if not m.timed_out:
                    raise
                log(f"MLlib {params}: cancelled after {cap_s:.0f} s ({type(exc).__name__})")
        if m.timed_out:
            return Row(section, n, "MLlib BucketedRandomProjectionLSH", params, None, None, m.shuffle_mb(),
                       note=f"cancelled after {cap_s:.0f} s")
        assert top is not None
        got = top.where(F.col("a").isin(truth.sample.tolist())).toArrow()
        a, b, dist = (np.asarray(got.column(c)) for c in ("a", "b", "dist"))
        order = np.lexsort((b, dist, a))
        a, b = a[order], b[order]

        def neighbours(item: int) -> np.ndarray:
            return b[np.searchsorted(a, item):np.searchsorted(a, item, "right")]

        return Row(section, n, "MLlib BucketedRandomProjectionLSH", params, truth.recall(neighbours),
                   m.seconds, m.shuffle_mb(), extra={"result_rows": n_rows})
    finally:
        if top is not None:
            top.unpersist()
        df.unpersist()


def knn_rows(session: Any, parquet: str, X: np.ndarray, index: Index, sample: np.ndarray, grid: list,
             points: list, section: str) -> list[Row]:
    """Single-query k-NN: MLlib's ``approxNearestNeighbors`` (one Spark job per query, every row
    hashed and filtered) against ``Index.query`` one query at a time, on the same items (each
    its own query, itself left out), recall@10 against exact."""
    from pyspark import StorageLevel
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector
    from pyspark.ml.linalg import Vectors

    n = len(X)
    truth = VectorTruth(X, sample)
    out = []
    for P, R in points:
        search = {"n_probes": P, "n_rerank": R} if P else {}
        t0 = time.perf_counter()
        found = {}
        for item in sample.tolist():
            res = index.query(X[item][None, :], K + 1, **search)
            found[item] = np.asarray([i for i in res.ids[0].tolist() if i != item and i >= 0][:K])
        ours_s = time.perf_counter() - t0
        params = f"probes={P} rerank={R}" if P else "the index's defaults"
        out.append(Row(section, n, "audiolsh Index.query (one query at a time)",
                       f"{params}, {len(sample)} queries, k={K}", truth.recall(lambda item, f=found: f[item]),
                       ours_s / len(sample), note="time: seconds per query"))
    df = session.read.parquet(parquet).select("id", array_to_vector("v").alias("features"))
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    df.count()
    try:
        for L, width in grid:
            model = BucketedRandomProjectionLSH(inputCol="features", outputCol="hashes", bucketLength=width,
                                                numHashTables=L, seed=1).fit(df)
            hashed = model.transform(df).persist(StorageLevel.MEMORY_AND_DISK)
            hashed.count()
            got = {}
            with Measured(session, "mllib-ann") as m:
                for item in sample.tolist():
                    rows = model.approxNearestNeighbors(hashed, Vectors.dense(X[item].astype(np.float64)),
                                                        K + 1).select("id").collect()
                    got[item] = np.asarray([r["id"] for r in rows if r["id"] != item][:K], np.int64)
            hashed.unpersist()
            out.append(Row(section, n, "MLlib BucketedRandomProjectionLSH.approxNearestNeighbors",
                           f"numHashTables={L} bucketLength={width}, {len(sample)} queries, k={K}",
                           truth.recall(lambda item, got=got: got[item]), m.seconds / len(sample),
                           note="time: seconds per query (dataset hashed beforehand)"))
            ml = out[-1]
            log(f"{section} n={n}: MLlib approxNearestNeighbors [{L}, {width}] {ml.time_s:.2f} s per query,"
                f" recall {ml.recall:.3f}")
    finally:
        df.unpersist()
    return out


def ours_vectors(session: Any, location: str, index: Index, n: int, truth: VectorTruth, points: list,
                 section: str, *, local: bool, shuffle: bool) -> list[Row]:
    rows = []
    for i, (P, R) in enumerate(points):
        params = f"k={K} probes={P} rerank={R}"
        with Measured(session, "ours") as m:
            done = spark_self_join(session, location, k=K, n_probes=P, n_rerank=R)
        res = done.result
        assert res is not None
        found = res.neighbours_of
        ours = Row(section, n, "audiolsh spark join (broadcast)", params,
                   truth.recall(lambda item, found=found: found(item)[0]), m.seconds, m.shuffle_mb(),
                   done.stats.n_candidates / n)
        rows.append(ours)
        log(f"{section} n={n}: {ours.method} [{params}] {ours.time_s:.1f} s recall {ours.recall:.3f}")
        if shuffle and i == 0:
            with Measured(session, "ours-shuffle") as m:
                sh = spark_self_join(session, location, k=K, n_probes=P, n_rerank=R, strategy="shuffle")
            same = sh.result is not None and sh.result.same_pairs(res)
            rows.append(Row(section, n, "audiolsh spark join (shuffle)", params,
                            ours.recall if same else None, m.seconds, m.shuffle_mb(),
                            sh.stats.n_candidates / n,
                            note="same pairs as broadcast" if same else "DIFFERS from broadcast"))
            log(f"{section} n={n}: shuffle strategy {m.seconds:.1f} s, {rows[-1].shuffle_mb:.0f} MB shuffled")
        if local:
            t0 = time.perf_counter()
            loc = self_join(index, k=K, n_probes=P, n_rerank=R)
            el = time.perf_counter() - t0
            same = loc.same_pairs(res)
            rows.append(Row(section, n, "audiolsh self_join (local, 2 threads)", params,
                            ours.recall if same else None, el, None, loc.stats.n_candidates / n,
                            note="same pairs as Spark" if same else "DIFFERS from Spark"))
            log(f"{section} n={n}: local self_join {el:.1f} s")
    return rows


def vector_section(session: Any, n: int, args: argparse.Namespace, work: Path, *, builds: bool,
                   mllib_grid: list, section: str) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    log(f"{section}: n={n}: data")
    X = clustered_data(n, seed=0)
    rng = np.random.default_rng(1)
    truth = VectorTruth(X, np.sort(rng.choice(n, min(args.sample, n), replace=False)))
    folder = Path(tempfile.mkdtemp(prefix=f"spark-scale-{n}-", dir=work))
    rows: list[Row] = []
    try:
        location = str(folder / "local.idx")
        t0 = time.perf_counter()
        index = Index.create(location, metric="cosine")
        index.add(X)
        build_s = time.perf_counter() - t0
        fam = index.info()["segments"][0]["family"]
        desc = (f"kmeans L={fam['n_tables']} cells={fam['n_cells']}" if fam["family"] == "kmeans"
                else f"L={fam['n_tables']} K={fam['n_bits']} whiten={fam['whiten']}")
        if builds:
            rows.append(Row("build", n, "local build (Index.create + add)", desc + ", 1 segment", None,
                            build_s))
            log(f"build n={n}: local {build_s:.1f} s")
            seconds, shuffle, n_seg = spark_build(session, X, folder, args.build_parts)
            rows.append(Row("build", n, "Spark build (tasks run build_segment, one attach)",
                            f"{args.build_parts} tasks, {n_seg} segments", None, seconds, shuffle))
            log(f"build n={n}: Spark {seconds:.1f} s")
            rows += product_rows(session, X, folder, args, index, build_s)
        if args.points:
            rows += ours_vectors(session, location, index, n, truth, args.points, section,
                                 local=n <= args.local_max_n, shuffle=n <= args.shuffle_max_n)
        parquet = str(folder / "rows.parquet")
        if mllib_grid or (builds and args.knn_queries and args.knn_grid):
            pq.write_table(pa.table({"id": np.arange(n), "v": pa.FixedSizeListArray.from_arrays(
                pa.array(X.ravel()), X.shape[1])}), parquet)
        if builds and args.knn_queries and args.knn_grid:
            sample = truth.sample[:args.knn_queries]
            rows += knn_rows(session, parquet, X, index, sample, args.knn_grid, args.knn_points, "knn")
        index.close()
        if mllib_grid:
            for L, width in mllib_grid:
                pairs = brp_pairs(X, L, width)
                if pairs > args.mllib_max_pairs:
                    params = f"numHashTables={L} bucketLength={width} threshold={truth.threshold():.3f}"
                    rows.append(too_many(section, n, "MLlib BucketedRandomProjectionLSH", params, pairs,
                                         args.mllib_max_pairs))
                    continue
                row = mllib_vectors(session, parquet, n, truth, L, width, args.mllib_cap_s, section)
                row.extra["estimated_pairs"] = pairs
                rows.append(row)
                log(f"{section} n={n}: MLlib [{row.params}] {row.time_s} s recall {row.recall} {row.note}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


# --------------------------------------------------------------------------- sets


def set_section(session: Any, n: int, args: argparse.Namespace, work: Path) -> list[Row]:
    from pyspark import StorageLevel
    from pyspark.ml.feature import MinHashLSH
    from pyspark.ml.linalg import SparseVector, VectorUDT
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    log(f"sets: n={n}: data")
    sets, _, _ = set_data(n, 1, seed=0)
    rng = np.random.default_rng(2)
    sample = np.sort(rng.choice(n, min(args.sample, n), replace=False))
    q = sets.take(sample)
    ids, dist = kernels.jaccard_all(q.indptr, q.elements, sets.indptr, sets.elements, np.ones(n, np.uint8),
                                    64)
    true_pairs = {(int(s), int(j)) for s, row_i, row_d in zip(sample, ids, dist)
                  for j, d in zip(row_i, row_d) if d <= 1 - SET_SIMILARITY and j != s}
    assert all(dist[:, -1] > 1 - SET_SIMILARITY), "a sample item has more than 63 true neighbours"

    def recall(found: set[tuple[int, int]]) -> float:
        return len(found & true_pairs) / max(1, len(true_pairs))

    folder = Path(tempfile.mkdtemp(prefix=f"spark-scale-sets-{n}-", dir=work))
    rows: list[Row] = []
    try:
        for threshold in args.set_thresholds:
            location = str(folder / f"sets-{threshold}.idx")
            with Index.create(location, metric="jaccard", threshold=threshold) as index:
                index.add(sets)
                fam = index.info()["segments"][0]["family"]
            params = f"min_similarity={SET_SIMILARITY} bands={fam['n_bands']} rows={fam['n_rows']}"
            with Measured(session, "ours-sets") as m:
                done = spark_self_join(session, location, k=None, min_similarity=SET_SIMILARITY)
            res = done.result
            found = {(int(s), int(j)) for s in sample for j in res.neighbours_of(int(s))[0]}
            rows.append(Row("sets", n, "audiolsh spark join (broadcast)", params, recall(found), m.seconds,
                            m.shuffle_mb(), done.stats.n_candidates / n))
            log(f"sets n={n}: ours [{params}] {m.seconds:.1f} s recall {rows[-1].recall:.3f}")
        if args.minhash_tables:
            # MLlib's input: sparse vectors over a dense numbering of the elements (built per row:
            # MLlib takes no other form; data preparation, not timed).
            universe, dense = np.unique(sets.elements, return_inverse=True)
            schema = StructType([StructField("id", LongType()), StructField("features", VectorUDT())])
            rows_py = [(i, SparseVector(len(universe), dense[sets.indptr[i]:sets.indptr[i + 1]].tolist(),
                                        [1.0] * int(sets.indptr[i + 1] - sets.indptr[i]))) for i in range(n)]
            df = session.createDataFrame(rows_py, schema, verifySchema=False).repartition(8)
            df = df.persist(StorageLevel.MEMORY_AND_DISK)
            df.count()
            del rows_py
            for L in args.minhash_tables:
                params = f"numHashTables={L} threshold={SET_SIMILARITY}"
                estimate = minhash_pairs(sets, L)
                if estimate > args.mllib_max_pairs:
                    rows.append(too_many("sets", n, "MLlib MinHashLSH", params, estimate,
                                         args.mllib_max_pairs))
                    continue
                pairs = None
                with Measured(session, "mllib-minhash", args.mllib_cap_s) as m:
                    try:
                        model = MinHashLSH(inputCol="features", outputCol="hashes", numHashTables=L,
                                           seed=1).fit(df)
                        joined = model.approxSimilarityJoin(df, df, SET_SIMILARITY + 1e-9, distCol="dist")
                        pairs = joined.select(
                            F.col("datasetA.id").alias("a"), F.col("datasetB.id").alias("b")).where("a != b")
                        pairs = pairs.persist(StorageLevel.MEMORY_AND_DISK)
                        n_pairs = pairs.count()
                    except Exception:
                        if not m.timed_out:
                            raise
                if m.timed_out:
                    rows.append(Row("sets", n, "MLlib MinHashLSH", params, None, None, m.shuffle_mb(),
                                    note=f"cancelled after {args.mllib_cap_s:.0f} s"))
                else:
                    assert pairs is not None
                    got = pairs.where(F.col("a").isin(sample.tolist())).toArrow()
                    a, b = np.asarray(got.column("a")).tolist(), np.asarray(got.column("b")).tolist()
                    rows.append(Row("sets", n, "MLlib MinHashLSH", params, recall(set(zip(a, b))), m.seconds,
                                    m.shuffle_mb(), extra={"pairs": n_pairs}))
                if pairs is not None:
                    pairs.unpersist()
                log(f"sets n={n}: MLlib [{params}] {rows[-1].time_s} s recall {rows[-1].recall}")
            df.unpersist()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


QUICK: dict[str, Any] = {
    "n": "20000", "mllib_n": 2000, "n_sets": 3000, "sample": 200, "queries": 2000, "knn_queries": 5,
    "knn_grid": "4,0.05", "knn_points": "0,0", "mllib_grid": "4,0.05", "mllib_at_n": "2,0.01",
    "minhash_tables": "5", "mllib_cap_s": 120.0, "set_thresholds": "0.35", "points": "128,300",
}
"""``--quick``'s sizes and grids: a smoke run of every method in a few minutes."""


def warm_up(session: Any, work: Path) -> None:
    """One small join, add and query first: the workers start and load the compiled kernels and
    the readers, untimed (a new session pays it once: its first job runs ~10 s longer)."""
    X = clustered_data(3000, seed=5)
    with Index.create(str(work / "warm.idx"), metric="cosine") as index:
        index.add(X)
    spark_self_join(session, str(work / "warm.idx"), k=K, n_probes=64, n_rerank=300)
    from audiolsh.spark.vectors import add_shards, query_files

    parts = int(session.sparkContext.defaultParallelism)
    shards = []
    for p, part in enumerate(np.array_split(X, parts)):
        shards.append(str(work / f"warm-{p}.npy"))
        np.save(shards[-1], part)
    add_shards(session, str(work / "warm-add.idx"), shards, partitions=parts, merge=False,
               say=lambda _m: None)
    list(query_files(session, str(work / "warm.idx"), shards, K))
    with Index.create(str(work / "warm-sets.idx"), metric="jaccard") as index:
        index.add(set_data(2000, 1, seed=5)[0])
    spark_self_join(session, str(work / "warm-sets.idx"), k=None, min_similarity=SET_SIMILARITY)


# --------------------------------------------------------------------------- report


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(rows: list[Row]) -> list[str]:
    out = ["| section | rows | method | params | recall | time (s) | s per 1M rows | shuffle (MB) |"
           " candidates/item | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.section} | {r.n:,} | {r.method} | {r.params} | {fmt(r.recall, 3)} |"
                   f" {fmt(r.time_s)} | {fmt(r.s_per_million)} | {fmt(r.shuffle_mb)} |"
                   f" {fmt(r.candidates_per_item, 0)} | {r.note} |")
    return out


def costs(rows: list[Row]) -> list[str]:
    """The scale plan's inputs: per size, build and query cost per row, index bytes, memory."""
    out = ["| rows | local build (s/1M) | Spark build floor (s/1M) | spark vectors add (s/1M) |"
           " add / local | index bytes/row | worker peak (MB) | local query (q/s) | spark query (q/s) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for n in sorted({r.n for r in rows if r.section == "build"}):
        at = {r.method: r for r in rows if r.n == n and r.section in ("build", "query")}
        local = at.get("local build (Index.create + add)")
        floor = at.get("Spark build (tasks run build_segment, one attach)")
        add = at.get("audiolsh spark vectors add (--no-merge)")
        lq, sq = at.get("Index.query (local, one batch)"), at.get("audiolsh spark query")
        if not (local and floor and add and lq and sq):
            continue
        out.append(f"| {n:,} | {fmt(local.s_per_million)} | {fmt(floor.s_per_million)} |"
                   f" {fmt(add.s_per_million)} | {fmt((add.time_s or 0) / (local.time_s or 1), 2)} |"
                   f" {fmt(add.extra['index_bytes_per_row'], 0)} | {fmt(add.extra['worker_peak_mb'], 0)} |"
                   f" {fmt(lq.extra['queries_per_s'], 0)} | {fmt(sq.extra['queries_per_s'], 0)} |")
    return out if len(out) > 2 else []


def comparisons(rows: list[Row]) -> list[str]:
    """Per section and size: MLlib's time over ours at the fastest point of ours with at least
    MLlib's recall (and the other way round)."""
    out = []
    for n in sorted({r.n for r in rows if r.section == "knn"}):
        at = [r for r in rows if r.section == "knn" and r.n == n]
        for ml in (r for r in at if r.method.startswith("MLlib")):
            fit = [r for r in at if r.method.startswith("audiolsh") and r.time_s and r.recall is not None
                   and ml.recall is not None and r.recall >= ml.recall - 1e-9]
            ours = min(fit, key=lambda r: r.time_s or np.inf, default=None)
            if ours is None:
                out.append(f"- knn {n:,}: MLlib approxNearestNeighbors [{ml.params}] recall {ml.recall} beats"
                           " every point of ours")
            elif ours.time_s and ml.time_s and ours.recall is not None and ml.recall is not None:
                out.append(f"- knn {n:,}: MLlib approxNearestNeighbors [{ml.params}] recall {ml.recall:.3f},"
                           f" {ml.time_s:.2f} s per query; ours [{ours.params}] recall {ours.recall:.3f},"
                           f" {ours.time_s * 1000:.2f} ms per query: {ml.time_s / ours.time_s:,.0f}x faster")
    for section in ("vectors", "vectors-small", "sets"):
        for n in sorted({r.n for r in rows if r.section == section}):
            ours = [r for r in rows if r.section == section and r.n == n
                    and "spark join (broadcast)" in r.method and r.recall is not None]
            for ml in (r for r in rows if r.section == section and r.n == n and r.method.startswith("MLlib")):
                if ml.recall is None and ml.note.startswith("not run"):
                    best = max(ours, key=lambda r: r.recall or 0, default=None)
                    if best:
                        out.append(f"- {section} {n:,}: MLlib [{ml.params}] {ml.note}; ours at recall"
                                   f" {best.recall:.3f} took {best.time_s:.1f} s")
                    continue
                if ml.recall is None:
                    best = max(ours, key=lambda r: r.recall or 0, default=None)
                    if best:
                        cap = float(ml.note.split()[-2])
                        out.append(f"- {section} {n:,}: MLlib [{ml.params}] did not finish in {cap:.0f} s;"
                                   f" ours at recall {best.recall:.3f} took {best.time_s:.1f} s: more than"
                                   f" {cap / best.time_s:.1f}x")
                    continue
                fit = [r for r in ours if (r.recall or 0) >= ml.recall - 1e-9]
                if fit:
                    best = min(fit, key=lambda r: r.time_s or np.inf)
                    out.append(f"- {section} {n:,}: MLlib [{ml.params}] recall {ml.recall:.3f} in"
                               f" {ml.time_s:.1f} s; ours [{best.params}] recall {best.recall:.3f} in"
                               f" {best.time_s:.1f} s:"
                               f" {ml.time_s / best.time_s:.1f}x faster")
                else:
                    out.append(f"- {section} {n:,}: MLlib [{ml.params}] recall {ml.recall:.3f} beats every"
                               " point of ours")
    return out


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("audiolsh", "numpy", "numba", "pyspark", "pyarrow", "pandas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="100000", help="vector rows, comma-separated sizes")
    ap.add_argument("--mllib-n", type=int, default=3000, help="rows where MLlib's grid runs beside ours")
    ap.add_argument("--n-sets", type=int, default=100_000, help="sets (0: skip the sets)")
    ap.add_argument("--points", default="64,0;256,300;256,0",
                    help="ours: probes,rerank;... ('': builds and queries only)")
    ap.add_argument("--mllib-grid", default="2,0.02;4,0.05;8,0.05;8,0.1",
                    help="MLlib: numHashTables,bucketLength;...")
    ap.add_argument("--mllib-at-n", default="4,0.05", help="MLlib at the --n sizes (capped); '' to skip")
    ap.add_argument("--mllib-cap-s", type=float, default=600.0, help="cancel an MLlib run after this long")
    ap.add_argument("--mllib-max-pairs", type=int, default=20_000_000,
                    help="skip an MLlib run whose join would explode into more candidate pairs (each row"
                         " carries both vectors: a 10k-row run at ~100M filled 70 GB of disk)")
    ap.add_argument("--knn-queries", type=int, default=20,
                    help="single queries of MLlib approxNearestNeighbors and ours (0: skip)")
    ap.add_argument("--knn-grid", default="4,0.05;8,0.1", help="MLlib approxNearestNeighbors: numHashTables,"
                    "bucketLength;...")
    ap.add_argument("--knn-points", default="0,0;1024,3000;2048,10000;4096,30000",
                    help="ours, single queries: probes,rerank;... (0,0: the index's defaults)")
    ap.add_argument("--minhash-tables", default="5,10", help="MLlib MinHashLSH numHashTables, comma list")
    ap.add_argument("--set-thresholds", default="0.35,0.25", help="our MinHash banding thresholds")
    ap.add_argument("--sample", type=int, default=500, help="items whose recall is measured")
    ap.add_argument("--build-parts", type=int, default=2, help="tasks of the Spark build")
    ap.add_argument("--queries", type=int, default=20_000, help="rows of the batch k-NN query set")
    ap.add_argument("--query-files", type=int, default=8, help="files the query set is split into")
    ap.add_argument("--local-max-n", type=int, default=1_000_000, help="run the local join up to this size")
    ap.add_argument("--shuffle-max-n", type=int, default=100_000, help="run the shuffle strategy up to here")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--quick", action="store_true", help="small sizes, short caps: a smoke run")
    ap.add_argument("--out", type=Path, help="JSON results")
    ap.add_argument("--md", type=Path, help="markdown tables")
    args = ap.parse_args(argv)
    if args.quick:  # smaller defaults; flags given on the command line still win
        ap.set_defaults(**QUICK)
        args = ap.parse_args(argv)
    args.points = [tuple(int(x) for x in p.split(",")) for p in args.points.split(";") if p]
    grid = [(int(p.split(",")[0]), float(p.split(",")[1])) for p in args.mllib_grid.split(";") if p]
    at_n = [(int(p.split(",")[0]), float(p.split(",")[1])) for p in args.mllib_at_n.split(";") if p]
    args.knn_grid = [(int(p.split(",")[0]), float(p.split(",")[1])) for p in args.knn_grid.split(";") if p]
    args.knn_points = [tuple(int(x) for x in p.split(",")) for p in args.knn_points.split(";") if p]
    args.minhash_tables = [int(x) for x in args.minhash_tables.split(",") if x]
    args.set_thresholds = [float(x) for x in args.set_thresholds.split(",") if x]
    sizes = [int(x) for x in args.n.split(",") if x]

    report: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                              "machine": machine(), "versions": versions(), "load_avg_start": load_avg(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="audiolsh-spark-scale-", dir=os.environ.get("AUDIOLSH_BENCH_TMP")))
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "src"))
    session = spark_session(args.master, app="audiolsh spark_scale",
                            conf={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "8"})
    rows: list[Row] = []
    try:
        warm_up(session, work)
        if args.mllib_n and grid:
            rows += vector_section(session, args.mllib_n, args, work, builds=False, mllib_grid=grid,
                                   section="vectors-small")
        for n in sizes:
            rows += vector_section(session, n, args, work, builds=True, mllib_grid=at_n, section="vectors")
        if args.n_sets:
            rows += set_section(session, args.n_sets, args, work)
    finally:
        stop_session(session)
        shutil.rmtree(work, ignore_errors=True)
    report.update(load_avg_end=load_avg(), wall_s=round(time.perf_counter() - t_start, 1),
                  rows=[r.to_dict() for r in rows])
    lines = table(rows)
    cost_lines = costs(rows)
    if cost_lines:
        lines += ["", *cost_lines]
    ratios = comparisons(rows)
    report["comparisons"] = ratios
    print("\n".join([*lines, "", *ratios]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    if args.md:
        args.md.write_text("\n".join([f"Command: `{report['command']}`", "",
                                      f"Machine: {report['machine']}; load {report['load_avg_start']} ->"
                                      f" {report['load_avg_end']}; {report['wall_s']} s", "", *lines, "",
                                      *ratios, ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
