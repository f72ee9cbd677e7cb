#!/usr/bin/env python
"""Redis shared-store benchmark (issue #14, part): the same Index on four backends, and datasketch.

On the data of ``benchmarks/knn.py`` (the clustered 200k x 128 cosine vectors with 1000 held-out
queries, and the 100k Jaccard sets), one ``Index`` per backend:

* ``embedded``: a temporary directory (SQLite + .npy segments),
* ``memory``: ``memory://NAME``,
* ``redis tcp``: ``redis://127.0.0.1:PORT/0?prefix=NAME`` (the shared store),
* ``redis unix``: ``unix://SOCK?prefix=NAME``,

each measured for build time (one ``add`` of all rows), the time a fresh handle takes to open
and load it, single-query latency p50/p95 and QPS over the queries one at a time (one warm-up
query first), recall@10 against the exact answer (``Index.query(..., exact=True)``), memory per
item (bytes on disk for the directory; for Redis the growth of ``INFO memory used_memory``
while the prefix was written), the commit time of one more 10k-row batch, and how long a reader
takes to see that commit.  On the sets, datasketch's ``MinHashLSH`` with its Redis storage and
in memory at the same ``num_perm``/threshold (queries: signature, LSH lookup, exact Jaccard
re-rank, as in knn.py).

The script starts its own ``redis-server`` (a free loopback TCP port and a unix socket in a
temporary folder, persistence off) and stops it by its process id at the end.

    python benchmarks/redis_store.py --quick                  # smoke run, ~30 s
    flock /tmp/audiolsh-bench.lock python benchmarks/redis_store.py --out r.json --md r.md
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from knn import clustered_data, load_avg, machine, set_data, versions  # noqa: I001
from redis_server import RedisServer

from audiolsh.index import Index

K = 10
RECALL_J = 0.5
BACKENDS = ("embedded", "memory", "redis tcp", "redis unix", "remote tcp", "remote unix")
REMOTE = ("remote tcp", "remote unix")
#: Query arguments of the extra readers (a remote fetch budget).
QUERY_KW: dict[str, dict[str, Any]] = {}
DS_REDIS = "datasketch redis"
DS_MEMORY = "datasketch memory"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measuring


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def recall_at_k(dist: np.ndarray, kth: np.ndarray) -> float:
    """A returned row counts when it is as near as the exact k-th (ties count); at most k."""
    d = np.asarray(dist, np.float64)[:, :K]
    return float(np.minimum((d <= kth[:, None] + 1e-5).sum(1), K).mean() / K)


def recall_close(ids: np.ndarray, exact_ids: np.ndarray, close: np.ndarray) -> float:
    """Share of the exact top-k rows with J >= 0.5 that were returned (sets only)."""
    found = sum(int(np.isin(exact_ids[q][close[q]], ids[q]).sum()) for q in range(len(ids)))
    return found / max(1, int(close.sum()))


def latencies(fn: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """Queries one at a time after one warm-up query: per-query seconds and the answers."""
    fn(0)
    out = []
    lat = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        out.append(fn(i))
        lat[i] = time.perf_counter() - t0
    return lat, out


def lat_stats(lat: np.ndarray) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(lat, 50) * 1e3), "p95_ms": float(np.percentile(lat, 95) * 1e3),
            "qps": float(len(lat) / lat.sum())}


class Dataset:
    """Rows, queries, the extra batch and exact answers of one dataset."""

    def __init__(self, name: str, metric: str, data: Any, queries: Any, batch: Any,
                 params: dict[str, Any]) -> None:
        self.name, self.metric, self.data, self.queries, self.batch = name, metric, data, queries, batch
        self.params = params
        self.n, self.nq = len(data), len(queries)
        self.exact_ids: np.ndarray | None = None
        self.kth: np.ndarray | None = None
        self.close: np.ndarray | None = None

    def query_row(self, i: int) -> Any:
        if self.metric == "jaccard":
            return self.queries.take(np.array([i]))
        return self.queries[i : i + 1]

    def set_exact(self, index: Index) -> None:
        t0 = time.perf_counter()
        res = index.query(self.queries, K, exact=True)
        self.exact_ids = res.ids
        dist = res.distances.astype(np.float64)
        self.kth = dist[:, K - 1]
        self.close = (dist <= 1.0 - RECALL_J + 1e-9) & (res.ids >= 0)
        log(f"{self.name}: exact answers in {time.perf_counter() - t0:.1f} s")


def build(ds: Dataset, backend: str, location: str, server: RedisServer) -> tuple[Index, dict]:
    """Create the index with one ``add`` of every row; its memory (Redis) or bytes on disk."""
    redis_backend = backend.startswith(("redis", "remote"))
    gc.collect()
    mem0 = server.used_memory() if redis_backend else 0
    t0 = time.perf_counter()
    writer = Index.create(location, metric=ds.metric, **ds.params)
    writer.add(ds.data)
    build_s = time.perf_counter() - t0
    if redis_backend:
        gc.collect()
        mem_bytes: int | None = server.used_memory() - mem0
    elif backend == "embedded":
        mem_bytes = dir_bytes(location)
    else:
        mem_bytes = None
    row = {"backend": backend, "build_s": build_s,
           "bytes_per_item": None if mem_bytes is None else mem_bytes / ds.n}
    log(f"{ds.name} {backend}: build {build_s:.1f} s, bytes/item {row['bytes_per_item']}")
    return writer, row


def open_reader(ds: Dataset, location: str, row: dict) -> Index:
    """A fresh handle, as another process would open it: its first query loads the segments."""
    t0 = time.perf_counter()
    reader = Index.open(location, readonly=True)
    reader.query(ds.query_row(0), K)
    row["open_s"] = time.perf_counter() - t0
    row["segments"] = len(reader.segments)
    return reader


def query_all(ds: Dataset, readers: dict[str, Index], rows: dict[str, dict]) -> None:
    """Single queries, one at a time, the backends interleaved (query i on every backend, in a
    rotating order) so that the load of the shared machine falls on all of them alike."""
    names = list(readers)
    for b in names:
        readers[b].query(ds.query_row(0), K, **QUERY_KW.get(b, {}))  # warm-up
    lat = {b: np.empty(ds.nq) for b in names}
    out: dict[str, list[Any]] = {b: [] for b in names}
    gc.collect()
    for i in range(ds.nq):
        q = ds.query_row(i)
        for j in range(len(names)):
            b = names[(i + j) % len(names)]
            t0 = time.perf_counter()
            res = readers[b].query(q, K, **QUERY_KW.get(b, {}))
            lat[b][i] = time.perf_counter() - t0
            out[b].append(res)
    for b in names:
        ids = np.concatenate([o.ids for o in out[b]])
        dist = np.concatenate([o.distances for o in out[b]])
        row = rows[b]
        row.update(lat_stats(lat[b]))
        row["recall"] = recall_at_k(dist, ds.kth)
        if ds.metric == "jaccard":
            row["recall_close"] = recall_close(ids, ds.exact_ids, ds.close)
        log(f"{ds.name} {b}: p50 {row['p50_ms']:.3f} ms p95 {row['p95_ms']:.3f} ms "
            f"QPS {row['qps']:.0f} recall {row['recall']:.3f}")


def count_round_trips(ds: Dataset, reader: Index, row: dict, server: RedisServer) -> None:
    """Round trips (packed sends of redis-py: a command or a whole pipeline) and commands the
    server ran for the client (EVALSHA; not the look-ups inside the script) per query, over
    every query once more."""
    import redis

    sends = [0]
    real = redis.connection.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        sends[0] += 1
        real(self, command, check_health)

    def calls() -> dict[str, int]:
        stats = server.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    reader.query(ds.query_row(0), K)
    before = calls()
    redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        for i in range(ds.nq):
            reader.query(ds.query_row(i), K)
    finally:
        redis.connection.AbstractConnection.send_packed_command = real  # type: ignore[method-assign]
    after = calls()
    sent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    sent.pop("info", None)
    row["round_trips_per_query"] = sends[0] / ds.nq
    row["commands_per_query"] = sent.get("evalsha", 0) / ds.nq
    row["script_lookups_per_query"] = {k: v / ds.nq for k, v in sent.items() if k != "evalsha"}
    log(f"{ds.name} {row['backend']}: {row['round_trips_per_query']:.3f} round trips and "
        f"{row['commands_per_query']:.3f} commands per query; inside the script "
        f"{row['script_lookups_per_query']}")


def commit_batch(ds: Dataset, writer: Index, reader: Index, row: dict) -> None:
    """One more batch committed into the existing index, and a reader catching up with it."""
    t0 = time.perf_counter()
    writer.add(ds.batch)
    row["commit_batch_s"] = time.perf_counter() - t0
    time.sleep(0.6)  # past the Redis handles' version cache (0.5 s)
    t0 = time.perf_counter()
    res = reader.query(ds.query_row(0), K)
    row["reader_sees_commit_s"] = time.perf_counter() - t0
    row["reader_n_after_commit"] = len(reader)
    assert res.ids.shape == (1, K) and row["reader_n_after_commit"] == ds.n + len(ds.batch)
    log(f"{ds.name} {row['backend']}: commit {row['commit_batch_s']:.2f} s, reader sees it in "
        f"{row['reader_sees_commit_s']:.2f} s")


def bench_datasketch(ds: Dataset, server: RedisServer, storage: str) -> dict[str, Any]:
    """datasketch MinHashLSH (same num_perm and threshold) with its Redis storage or in memory;
    a query is the query's signature, the LSH lookup and an exact Jaccard re-rank, as in knn.py."""
    from datasketch import MinHash, MinHashLSH

    num_perm, thr = ds.params["num_perm"], ds.params["threshold"]
    data, queries = ds.data, ds.queries
    sizes = np.diff(data.indptr)
    q_enc = [[int(x).to_bytes(8, "little") for x in queries[i]] for i in range(ds.nq)]
    enc = [[int(x).to_bytes(8, "little") for x in data[i]] for i in range(ds.n)]
    t0 = time.perf_counter()
    sigs = MinHash.bulk(enc, num_perm=num_perm, seed=1)
    sig_s = time.perf_counter() - t0
    del enc
    prefix = f"ds-{uuid.uuid4().hex[:8]}"
    config = None
    if storage == "redis":
        config = {"type": "redis", "basename": prefix.encode(),
                  "redis": {"host": "127.0.0.1", "port": server.port}}
    gc.collect()
    mem0 = server.used_memory()
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=thr, num_perm=num_perm, storage_config=config)
    with lsh.insertion_session() as session:
        for i, m in enumerate(sigs):
            session.insert(i, m, check_duplication=False)
    insert_s = time.perf_counter() - t0
    del sigs
    mem_bytes = server.used_memory() - mem0 if storage == "redis" else None

    def query(i: int) -> tuple[np.ndarray, np.ndarray]:
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch(q_enc[i])
        cand = np.fromiter(lsh.query(m), np.int64)
        qa = queries[i]
        out_ids = np.full(K, -1, np.int64)
        out_d = np.full(K, np.inf)
        if len(cand):
            inter = np.array([np.intersect1d(qa, data[j], assume_unique=True).size for j in cand],
                             dtype=np.float64)
            dist = 1.0 - inter / (qa.size + sizes[cand] - inter)
            top = np.argsort(dist, kind="stable")[:K]
            out_ids[: len(top)], out_d[: len(top)] = cand[top], dist[top]
        return out_ids, out_d

    lat, out = latencies(query, ds.nq)
    ids = np.stack([o[0] for o in out])
    dist = np.stack([o[1] for o in out])
    name = DS_REDIS if storage == "redis" else DS_MEMORY
    row = {
        "backend": name,
        "params": f"num_perm={num_perm} t={thr} b={lsh.b} r={lsh.r}",
        "build_s": sig_s + insert_s,
        "signature_s": sig_s,
        "insert_s": insert_s,
        "open_s": None,
        **lat_stats(lat),
        "recall": recall_at_k(dist, ds.kth),
        "recall_close": recall_close(ids, ds.exact_ids, ds.close),
        "bytes_per_item": None if mem_bytes is None else mem_bytes / ds.n,
        "redis_keys": int(server.client.dbsize()) if storage == "redis" else None,
    }
    log(f"sets {name}: build {row['build_s']:.1f}s p50 {row['p50_ms']:.3f}ms recall {row['recall']:.3f} "
        f"bytes/item {row['bytes_per_item']}")
    if storage == "redis":
        server.client.flushdb()
    return row


def warm_up(ds: Dataset) -> None:
    """Compile the kernels (numba) on a small private index first, so that no backend pays it."""
    n = min(ds.n, 6000)
    rows = ds.data.take(np.arange(n)) if ds.metric == "jaccard" else ds.data[:n]
    more = ds.batch.take(np.arange(min(len(ds.batch), 500))) if ds.metric == "jaccard" else ds.batch[:500]
    with Index.create(None, metric=ds.metric, **ds.params) as index:
        index.add(rows)
        index.query(ds.queries, K)
        index.query(ds.query_row(0), K)
        index.add(more)
        index.query(ds.query_row(0), K)
        index.query(ds.query_row(0), K, exact=True)


def bench_dataset(ds: Dataset, server: RedisServer, tmp: str, with_datasketch: bool,
                  budget: int = 0) -> list[dict]:
    """Every backend on one dataset; ``budget`` > 0 adds a reader of the remote index that
    queries with ``n_rerank=budget`` (the rows in the most probed buckets only)."""
    tag = uuid.uuid4().hex[:8]
    locations = {
        "embedded": os.path.join(tmp, f"{ds.name.split()[0]}-{tag}.idx"),
        "memory": f"memory://{ds.name.split()[0]}-{tag}",
        "redis tcp": f"redis://127.0.0.1:{server.port}/0?prefix={ds.name.split()[0]}-tcp-{tag}",
        "redis unix": f"unix://{server.sock}?prefix={ds.name.split()[0]}-unix-{tag}",
        "remote tcp": f"redis://127.0.0.1:{server.port}/0?prefix={ds.name.split()[0]}-rtcp-{tag}&mode=remote",
        "remote unix": f"unix://{server.sock}?prefix={ds.name.split()[0]}-runix-{tag}&mode=remote",
    }
    warm_up(ds)
    writers, rows, readers = {}, {}, {}
    for backend in BACKENDS:
        writers[backend], rows[backend] = build(ds, backend, locations[backend], server)
    for backend in BACKENDS:
        readers[backend] = open_reader(ds, locations[backend], rows[backend])
    ds.set_exact(readers["memory"])
    if budget:
        name = f"remote tcp n_rerank={budget}"
        readers[name] = Index.open(locations["remote tcp"], readonly=True)
        rows[name] = {"backend": name, "build_s": None, "bytes_per_item": None, "n_rerank": budget}
        QUERY_KW[name] = {"n_rerank": budget}
    query_all(ds, readers, rows)
    for backend in REMOTE:
        count_round_trips(ds, readers[backend], rows[backend], server)
    extra = [b for b in readers if b not in BACKENDS]
    for b in extra:
        readers.pop(b).close()
    for backend in BACKENDS:
        commit_batch(ds, writers[backend], readers[backend], rows[backend])
        readers[backend].close()
        writers[backend].close()
        loc = locations[backend]
        if backend.startswith(("redis", "remote")):
            server.drop(loc.split("prefix=")[1].split("&")[0])
        elif backend == "embedded":
            shutil.rmtree(loc, ignore_errors=True)
    del writers, readers
    gc.collect()
    out = [rows[b] for b in BACKENDS] + [rows[b] for b in extra]
    if ds.metric == "jaccard" and with_datasketch:
        out.append(bench_datasketch(ds, server, "memory"))
        out.append(bench_datasketch(ds, server, "redis"))
    return out


# --------------------------------------------------------------------------- library


def bench_library(corpus: Path, server: RedisServer, tmp: str, n_clips: int, workers: int) -> list[dict]:
    """``audiolsh index CORPUS`` into a directory and into ``redis://`` (wall time of the command),
    then ``similar --by combined`` for ``n_clips`` clips (10 s from 20 s in, analysed once): the
    library's part of the latency, in-process, the backends interleaved clip by clip."""
    from audiolsh.audio import find_audio, load
    from audiolsh.library import MIN_DURATION_S, SAMPLE_RATE, Library, analyse
    from audiolsh.query.similar import check_query
    from audiolsh.query.similar import similar as run_similar

    tag = uuid.uuid4().hex[:8]
    locations = {"embedded": os.path.join(tmp, f"lib-{tag}"),
                 "redis tcp": f"redis://127.0.0.1:{server.port}/0?prefix=lib-{tag}",
                 "remote tcp": f"redis://127.0.0.1:{server.port}/0?prefix=rlib-{tag}&mode=remote"}
    rows: dict[str, dict] = {}
    for backend, loc in locations.items():
        gc.collect()
        mem0 = server.used_memory()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "audiolsh", "index", str(corpus), "--index", loc,
                               "-j", str(workers)], capture_output=True, text=True)
        index_s = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"audiolsh index into {loc} failed:\n{proc.stderr[-2000:]}")
        nbytes = dir_bytes(loc) if backend == "embedded" else server.used_memory() - mem0
        rows[backend] = {"backend": backend, "index_s": index_s, "bytes": nbytes}
        log(f"library {backend}: indexed in {index_s:.0f} s, {nbytes / 2**20:.1f} MiB")
    libs = {b: Library.open(loc, readonly=True) for b, loc in locations.items()}
    first = next(iter(libs.values()))
    mode = check_query(first, "combined", None)
    cfg = first.config
    files = [str(p) for p in find_audio([corpus])]
    picked = files[:: max(1, len(files) // n_clips)][:n_clips]
    clips = []
    t0 = time.perf_counter()
    for f in picked:
        y, sr = load(f, sr=SAMPLE_RATE, offset_s=20.0, duration_s=10.0, min_duration_s=MIN_DURATION_S)
        clips.append(analyse(y, sr, modes=mode.needs, window_s=cfg.window_s, hop_s=cfg.hop_s, path=f))
    analyse_s = (time.perf_counter() - t0) / len(clips)
    for lib in libs.values():
        run_similar(lib, clips[0], by="combined", k=10)  # warm-up
    names = list(libs)
    lat = {b: np.empty(len(clips)) for b in names}
    answers: dict[str, list[list[int]]] = {b: [] for b in names}
    for i, clip in enumerate(clips):
        for j in range(len(names)):
            b = names[(i + j) % len(names)]
            t0 = time.perf_counter()
            found = run_similar(libs[b], clip, by="combined", k=10)
            lat[b][i] = time.perf_counter() - t0
            answers[b].append([int(getattr(r, "track_id", -1)) for r in found])
    differ = {b: sum(a != e for a, e in zip(answers[b], answers[names[0]])) for b in names}
    n_tracks = len(first.tracks()) if hasattr(first, "tracks") else None
    for b in names:
        rows[b].update(lat_stats(lat[b]), analyse_ms=analyse_s * 1e3, clips=len(clips),
                       same_answers=differ[b] == 0, clips_differing=differ[b], n_tracks=n_tracks)
        libs[b].close()
        log(f"library {b}: similar p50 {rows[b]['p50_ms']:.2f} ms p95 {rows[b]['p95_ms']:.2f} ms")
    server.drop(f"lib-{tag}")
    server.drop(f"rlib-{tag}")
    shutil.rmtree(locations["embedded"], ignore_errors=True)
    return list(rows.values())


def library_table(rows: list[dict]) -> list[str]:
    head = ["backend", "audiolsh index (s)", "size (MiB)", "similar p50 (ms)", "similar p95 (ms)",
            "clip analysis (ms, both)", "answers as embedded"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([r["backend"], fmt(r["index_s"], 0), fmt(r["bytes"] / 2**20, 1),
                                          fmt(r["p50_ms"], 2), fmt(r["p95_ms"], 2), fmt(r["analyse_ms"], 0),
                                          "yes" if r["same_answers"] else
                                          f"{r['clips_differing']} of {r['clips']} clips differ"]) + " |")
    return lines


# --------------------------------------------------------------------------- report


def fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def markdown_table(name: str, rows: list[dict]) -> list[str]:
    sets = any("recall_close" in r for r in rows)
    head = ["backend", "build (s)", "open+load (s)", "p50 (ms)", "p95 (ms)", "QPS", "recall@10"]
    if sets:
        head.append(f"recall J>={RECALL_J}")
    head += ["bytes/item", "commit 10k (s)", "reader sees it (s)", "round trips/query"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        label = r["backend"] + (f" ({r['params']})" if "params" in r else "")
        cells = [label, fmt(r["build_s"], 1), fmt(r.get("open_s"), 2), fmt(r["p50_ms"], 3),
                 fmt(r["p95_ms"], 3), fmt(r["qps"], 0), fmt(r["recall"], 3)]
        if sets:
            cells.append(fmt(r.get("recall_close"), 3))
        cells += [fmt(r["bytes_per_item"], 0), fmt(r.get("commit_batch_s"), 2),
                  fmt(r.get("reader_sees_commit_s"), 2), fmt(r.get("round_trips_per_query"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratios(results: dict[str, list[dict]]) -> tuple[dict[str, float], list[str]]:
    out: dict[str, float] = {}
    lines: list[str] = []

    def say(key: str, text: str, value: float, target: str) -> None:
        out[key] = value
        lines.append(f"- {text} = **{value:.2f}** (target {target})")

    for name, rows in results.items():
        by = {r["backend"]: r for r in rows}
        emb = by["embedded"]
        for b in ("redis tcp", "redis unix"):
            if b in by:
                for stat in ("p50", "p95"):
                    say(f"{name}_{b.replace(' ', '_')}_vs_embedded_{stat}",
                        f"{name}: {b} shared store / embedded, per-query latency {stat}",
                        by[b][f"{stat}_ms"] / emb[f"{stat}_ms"], "<= 1.2")
        if "redis tcp" in by and emb["bytes_per_item"]:
            say(f"{name}_redis_memory_vs_embedded_disk",
                f"{name}: Redis memory per item / embedded bytes on disk per item "
                f"({by['redis tcp']['bytes_per_item']:.0f} / {emb['bytes_per_item']:.0f} B)",
                by["redis tcp"]["bytes_per_item"] / emb["bytes_per_item"], "<= 2")
        for b in REMOTE:
            if b in by:
                say(f"{name}_{b.replace(' ', '_')}_round_trips_per_query",
                    f"{name}: {b} remote-probe, round trips per query", by[b]["round_trips_per_query"],
                    "== 1")
                if emb["bytes_per_item"]:
                    say(f"{name}_{b.replace(' ', '_')}_memory_vs_embedded_disk",
                        f"{name}: {b} Redis memory per item / embedded bytes on disk per item "
                        f"({by[b]['bytes_per_item']:.0f} / {emb['bytes_per_item']:.0f} B)",
                        by[b]["bytes_per_item"] / emb["bytes_per_item"], "<= 2")
        if DS_REDIS in by:
            ds = by[DS_REDIS]
            for b in ("redis tcp", "redis unix", *REMOTE):
                rec = "recall_close" if "recall_close" in ds else "recall"
                label = f"recall J>={RECALL_J}" if rec == "recall_close" else "recall@10"
                say(f"{name}_datasketch_redis_vs_ours_{b.replace(' ', '_')}_p50",
                    f"{name}: datasketch-on-Redis / ours on {b}, per-query latency p50 ({label} "
                    f"{ds[rec]:.3f} vs {by[b][rec]:.3f})",
                    ds["p50_ms"] / by[b]["p50_ms"], ">= 10")
            if ds["bytes_per_item"] and by["redis tcp"]["bytes_per_item"]:
                say(f"{name}_datasketch_redis_memory_vs_ours",
                    f"{name}: datasketch Redis memory per item / ours "
                    f"({ds['bytes_per_item']:.0f} / {by['redis tcp']['bytes_per_item']:.0f} B)",
                    ds["bytes_per_item"] / by["redis tcp"]["bytes_per_item"], "(for reference)")
    return out, lines


def print_tables(title: str, lines: list[str]) -> None:
    print(f"\n### {title}\n")
    print("\n".join(lines))
    sys.stdout.flush()


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="vectors,sets",
                    help="comma-separated: vectors (clustered, cosine), sets (Jaccard)")
    ap.add_argument("--n", type=int, default=200_000, help="rows of the clustered vectors")
    ap.add_argument("--n-sets", type=int, default=100_000, help="rows of the set data")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10_000, help="rows of the batch committed last")
    ap.add_argument("--num-perm", type=int, default=128, help="MinHash length (ours and datasketch)")
    ap.add_argument("--threshold", type=float, default=0.5, help="Jaccard threshold (both)")
    ap.add_argument("--no-datasketch", action="store_true")
    ap.add_argument("--remote-budget", type=int, default=2000, metavar="N",
                    help="vectors: also query the remote index with n_rerank=N (0: not)")
    ap.add_argument("--library", type=Path, metavar="CORPUS",
                    help="also index this music folder with `audiolsh index` into a directory and into"
                         " redis:// and time `similar --by combined` on 20 clips (minutes)")
    ap.add_argument("--clips", type=int, default=20, help="clips for --library")
    ap.add_argument("--workers", type=int, default=2, help="`audiolsh index -j` for --library")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20k vectors, 10k sets, 200 queries")
    ap.add_argument("--out", type=Path, help="write the rows and ratios as JSON")
    ap.add_argument("--md", type=Path, help="write the tables and ratios as markdown")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.n_sets, args.queries = min(args.n, 20_000), min(args.n_sets, 10_000), 200
        args.batch = min(args.batch, 2000)
    wanted = [d.strip() for d in args.data.split(",") if d.strip()]
    for d in wanted:
        if d not in ("vectors", "sets"):
            ap.error(f"unknown dataset {d!r}: vectors, sets")

    started = time.time()
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "versions": versions(),
        "load_avg_start": load_avg(),
        "datasets": {},
    }
    server = RedisServer(log)
    report["redis_server"] = server.version
    tmp = tempfile.mkdtemp(prefix="audiolsh-rbench-data-", dir=os.environ.get("AUDIOLSH_BENCH_TMP"))
    results: dict[str, list[dict]] = {}
    lib_rows: list[dict] = []
    try:
        for name in wanted:
            t0 = time.time()
            if name == "vectors":
                E = clustered_data(args.n + args.queries)  # as knn.py --data clustered --n N
                ds = Dataset(f"vectors {args.n // 1000}k x 128 cosine", "cosine", E[args.queries:],
                             E[: args.queries], clustered_data(args.batch, seed=1), {})
                del E
            else:
                data, queries, _ = set_data(args.n_sets, args.queries)
                batch, _, _ = set_data(args.batch, 1, seed=1)
                ds = Dataset(f"sets {args.n_sets // 1000}k jaccard", "jaccard", data, queries, batch,
                             {"num_perm": args.num_perm, "threshold": args.threshold})
            log(f"=== {ds.name}: {ds.n} rows, {ds.nq} queries, batch {len(ds.batch)}")
            results[ds.name] = bench_dataset(ds, server, tmp, not args.no_datasketch,
                                             args.remote_budget if name == "vectors" else 0)
            report["datasets"][ds.name] = {"rows": results[ds.name], "n": ds.n, "queries": ds.nq,
                                           "batch": len(ds.batch), "seconds": round(time.time() - t0, 1)}
            del ds
            gc.collect()
        if args.library:
            t0 = time.time()
            lib_rows = bench_library(args.library.expanduser(), server, tmp, args.clips, args.workers)
            report["library"] = {"corpus": str(args.library), "rows": lib_rows,
                                 "seconds": round(time.time() - t0, 1)}
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    values, ratio_lines = ratios(results)
    report["ratios"] = values
    report["load_avg_end"] = load_avg()
    report["wall_s"] = round(time.time() - started, 1)
    markdown = []
    for name, rows in results.items():
        table = markdown_table(name, rows)
        print_tables(name, table)
        markdown += [f"### {name}", "", *table, ""]
    if lib_rows:
        by = {r["backend"]: r for r in lib_rows}
        for b, target in (("redis tcp", "<= 1.2"), ("remote tcp", "(for reference)")):
            v = by[b]["p50_ms"] / by["embedded"]["p50_ms"]
            values[f"library_similar_{b.replace(' ', '_')}_vs_embedded_p50"] = v
            ratio_lines.append(f"- library ({args.library}): similar --by combined, {b} / embedded, p50 = "
                               f"**{v:.2f}** (target {target})")
        table = library_table(lib_rows)
        print_tables(f"library of {args.library}", table)
        markdown += [f"### Library of {args.library}", "", *table, ""]
    print_tables("target ratios", ratio_lines)
    markdown += ["### Target ratios", "", *ratio_lines, ""]
    log(f"total wall time {report['wall_s']} s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float))
    if args.md:
        args.md.write_text("\n".join(markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
