#!/usr/bin/env python
"""k-NN benchmark (issues #2, #18): audiolsh against brute force, faiss, Annoy, hnswlib, datasketch.

Issue #18's three datasets, every method in one run each (``--data iso,aniso,real``):

* ``iso`` (A): 1M x 128 isotropic Gaussian clusters (``iso_data``), cosine.
* ``aniso`` (B): 300k x 128 from a mixture with a decaying spectrum and random rotations, like
  real embeddings (``clustered_data`` with its calibrated settings), cosine.
* ``real`` (C): the per-second log-mel embeddings of the dev corpus (below), at most 32k rows.

Beside the kernel (``VectorLSH`` at hand-picked L, K, probes, re-rank; the k-means one also
scanning a float16 copy of its rows), hnswlib, faiss IVFFlat, faiss IVF-SQfp16 (its IVF on
float16 rows), faiss IndexLSH+refine and brute force, the ``Index`` as built by default (no
``tune``), queried through the Python API one query at a time; then the issue's summary table of ratios (see
``issue_table``).  Earlier datasets:

* ``real``: per-second 128-d log-mel embeddings of the dev corpus (cached as
  ``~/.cache/audiolsh-bench/real_embeddings.npy``), cosine; 1000 held-out rows are the queries.
* ``clustered``: ``--n`` seeded draws from a Gaussian mixture built to resemble the real
  embeddings (see ``clustered_data``), L2-normalised, cosine (= Euclidean ranking on the sphere);
  1000 held-out draws from the same mixture are the queries.
* ``sets``: seeded integer sets with planted near-duplicate groups, Jaccard; audiolsh's MinHash
  LSH against datasketch's and an exact scan.

Every method is run at a few operating points; each prints recall@10 against the exact answer,
single-query QPS (queries one at a time), batch QPS (all queries in one call), build time and
the bytes per item its index needs beyond the raw vectors.  Then, per method, the fastest
operating point with recall@10 >= 0.95, and the ratios the project targets.

Confirmation (vectors): one pass a point is noisy for 20-40 µs queries on a shared machine
(a point can come out faster than a cheaper one of the same index).  So after the sweep each
method's fastest points at recall@10 >= 0.95 (``--confirm-top``, and the default-built
Index's default point) are timed again, every method in turn over the same queries, the
order rotated each round (``--confirm-rounds``, ``interleaved_passes``); each keeps its best
pass, the median is reported beside it, and issue #18's table reads these figures.

    python benchmarks/knn.py --quick                       # smoke run, ~30 s
    python benchmarks/knn.py --data all --out knn.json     # the full run (~15 minutes, 2 cores)
    python benchmarks/knn.py --data real,clustered,clustered-flat   # several in one run
    python benchmarks/knn.py --data iso,aniso,real --md issue18.md # issue #18's table
    python benchmarks/knn.py --combine iso.json aniso.json real.json # ... of separate runs
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from audiolsh.hashing import CrossPolytopeLSH, HyperplaneLSH, KMeansLSH, MinHashLSH, PStableLSH, SetBatch
from audiolsh.search import BruteForce, SetLSH, VectorLSH, prepare
from audiolsh.search.compact import compact_rows

K = 10
TARGET_RECALL = 0.95
N_THREADS = 2
CACHE_DIR = Path(os.environ.get("AUDIOLSH_BENCH_CACHE", "~/.cache/audiolsh-bench")).expanduser()
REAL_CACHE = CACHE_DIR / "real_embeddings.npy"

# Groups in the summary: the method family an operating point belongs to.
OURS = "audiolsh hyperplane"
OURS_PSTABLE = "audiolsh p-stable"
OURS_SETS = "audiolsh MinHash search()"
OURS_SETS_LOOKUP = "audiolsh MinHash candidates only"
BRUTE = "brute force"
FAISS_LSH = "faiss IndexLSH+refine"
FAISS_MH = "faiss BinaryMultiHash+rerank"
ANNOY = "annoy"
HNSW = "hnswlib"
IVF = "faiss IVFFlat"
IVF_SQ16 = "faiss IVF-SQfp16"
INDEX = "audiolsh Index (default build)"
INDEX_KMEANS = "audiolsh Index kmeans (default build)"
DATASKETCH = "datasketch MinHashLSH"
FAISS_GROUPS = (FAISS_LSH, FAISS_MH)
BUILD_VS_HNSW = 0.2  # issue #18: a build at least 5x faster than hnswlib's
# Issue #18's families, and the peer the learned one answers to.
OURS_CP = "audiolsh cross-polytope"
OURS_KMEANS = "audiolsh kmeans"


@dataclass
class Row:
    method: str
    params: str
    recall: float
    single_qps: float | None
    batch_qps: float | None
    build_s: float
    bytes_per_item: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Budget:
    """Time caps that keep slow operating points from dominating the run."""

    single_s: float = 4.0  # one pass of single queries stops after this long
    single_max: int = 1000  # ... or after this many queries
    passes: int = 2  # best of this many passes (more on a loaded machine: short passes vary)
    batch_repeat_below_s: float = 3.0  # repeat a batch (best of 2) when it took less
    # Confirmation after the sweep (``VectorBench.confirm``): each method's fastest points at
    # the target recall, timed again in interleaved rounds; 0 rounds: none.
    confirm_rounds: int = 5
    confirm_top: int = 3  # points per method (a noisy sweep may rank its points wrongly)
    confirm_size: int = 300  # single queries a pass (a pass stops after single_s)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- timing


def time_single(fn: Callable[[int], Any], n_queries: int, budget: Budget) -> float:
    """Queries one at a time: best QPS of up to ``budget.passes`` passes (a pass stops at the
    time cap)."""
    fn(0)  # warm-up
    best = 0.0
    for _ in range(budget.passes):
        done = 0
        t0 = time.perf_counter()
        for i in range(min(n_queries, budget.single_max)):
            fn(i)
            done += 1
            if time.perf_counter() - t0 > budget.single_s:
                break
        elapsed = time.perf_counter() - t0
        best = max(best, done / elapsed)
        if elapsed > budget.single_s:  # slow: one pass is enough
            break
    return best


def time_batch(fn: Callable[[], Any], n_queries: int, budget: Budget) -> tuple[Any, float]:
    """All queries in one call: (result of the first call, best QPS of up to two calls)."""
    t0 = time.perf_counter()
    result = fn()
    best = time.perf_counter() - t0
    if best < budget.batch_repeat_below_s:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return result, n_queries / best


def interleaved_passes(fns: dict[str, Callable[[int], Any]], n_queries: int, rounds: int,
                       size: int, cap_s: float) -> dict[str, list[float]]:
    """QPS of each function's pass in each of ``rounds`` rounds.  A round gives every function
    one pass over the same ``size`` queries (the next ones each round), in an order rotated by
    one each round, so a burst of load falls on each method in turn; a pass stops after
    ``cap_s`` seconds.  ``fn(i)`` answers query i; warm the functions first."""
    names = list(fns)
    qps: dict[str, list[float]] = {n: [] for n in names}
    size = max(1, min(size, n_queries))
    for r in range(rounds):
        lo = (r * size) % max(n_queries - size + 1, 1)
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            fn, done = fns[name], 0
            t0 = time.perf_counter()
            for i in range(lo, lo + size):
                fn(i)
                done += 1
                if time.perf_counter() - t0 > cap_s:
                    break
            qps[name].append(done / (time.perf_counter() - t0))
    return qps


def file_size(save: Callable[[str], Any]) -> int:
    with tempfile.TemporaryDirectory(dir=os.environ.get("AUDIOLSH_BENCH_TMP")) as d:
        path = os.path.join(d, "index.bin")
        save(path)
        return os.path.getsize(path)


# --------------------------------------------------------------------------- data


def _embed_file(path: str) -> np.ndarray:
    try:
        from audiolsh.audio import load
    except ImportError:  # the decoder module is missing: soundfile + librosa directly
        import librosa
        import soundfile as sf

        y, sr = sf.read(path, dtype="float32", always_2d=True)
        y, sr = librosa.resample(y.mean(axis=1), orig_sr=sr, target_sr=22050), 22050
    else:
        y, sr = load(path, sr=22050)
    from audiolsh.features import logmel_embeddings

    emb, _ = logmel_embeddings(y, sr=sr)
    return emb.astype(np.float32)


def corpus_files(corpus: Path) -> list[str]:
    try:
        from audiolsh.audio import find_audio

        return [str(p) for p in find_audio([corpus])]
    except ImportError:
        exts = {".ogg", ".opus", ".oga", ".flac", ".wav", ".mp3"}
        return sorted(str(p) for p in corpus.rglob("*") if p.suffix.lower() in exts)


def real_embeddings(corpus: Path, *, max_files: int | None = None) -> tuple[np.ndarray, dict]:
    """(n, 128) float32 embeddings of every audio file of the corpus, cached for reruns."""
    if max_files is None and REAL_CACHE.exists():
        meta_path = REAL_CACHE.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        log(f"real: cached embeddings {REAL_CACHE}")
        return np.load(REAL_CACHE), meta
    files = corpus_files(corpus)
    if not files:
        raise SystemExit(f"no audio files under {corpus}: set --corpus or $AUDIOLSH_CORPUS")
    files = files[:max_files] if max_files else files
    log(f"real: embedding {len(files)} files from {corpus} with {N_THREADS} processes")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(N_THREADS) as ex:
        parts = list(ex.map(_embed_file, files))
    E = np.concatenate(parts)
    meta = {
        "corpus": str(corpus),
        "n_files": len(files),
        "n_rows": len(E),
        "seconds_to_compute": round(time.perf_counter() - t0, 1),
        "extensions": sorted({Path(f).suffix.lower() for f in files}),
    }
    if max_files is None:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.save(REAL_CACHE, E)
        REAL_CACHE.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    log(f"real: {len(E)} rows in {meta['seconds_to_compute']} s")
    return E, meta


CLUSTERED = {
    "n_clusters": 1000,
    "rank": 32,  # each cluster spans a random 32-d subspace ...
    "decay": 1.0,  # ... with per-direction std ~ i^-1 (power law), random rotation
    "within": 0.1,  # total within-cluster variance (the centres' total variance is 1)
    "noise": 0.03,  # isotropic noise std, total over all dimensions
    "global_rank": 16,  # the centres lie in a random 16-d subspace ...
    "global_decay": 1.5,  # ... with per-direction std ~ i^-1.5
    "weights_alpha": 2.0,  # cluster weights ~ Dirichlet(2)
}


CLUSTERED_PRESETS: dict[str, dict[str, float]] = {
    "calibrated": {},
    "flat": {"rank": 16, "global_rank": 32, "global_decay": 0.5, "within": 0.3, "noise": 0.02},
}


def clustered_data(n: int, d: int = 128, seed: int = 0, **overrides: float) -> np.ndarray:
    """Seeded Gaussian mixture whose statistics resemble the real log-mel embeddings.

    Centres c_j = g_j B, g_j ~ N(0, diag(s^2)), s_i ~ i^-global_decay (scaled to total variance
    1), B a random orthonormal (global_rank x d) basis.  A point of cluster j is
    c_j + z U_j^T + e: U_j a random orthonormal (d x rank) basis, z ~ N(0, diag(t^2)) with
    t_i ~ i^-decay scaled to total variance ``within`` x U(0.5, 2), e ~ N(0, noise^2/d I).
    Cluster weights ~ Dirichlet(alpha).  Rows are L2-normalised.

    With the defaults, a 26,989-row sample (the size of the real set) has a relative contrast
    (mean cosine distance / mean distance to the 10th neighbour) of 8.3 against 7.4 for the real
    embeddings, and half of its variance in 1 principal direction, 80 % in 8 (real: 2 and 10;
    95 %: 83 against 37).  ``CLUSTERED_PRESETS["flat"]`` spreads the variance over many more
    directions (9 / 31 / 93) at a lower contrast (5.7).
    """
    p = {**CLUSTERED, **overrides}
    rng = np.random.default_rng([seed, 0xC1])
    gr, rank, nc = int(p["global_rank"]), int(p["rank"]), int(p["n_clusters"])
    basis = np.linalg.qr(rng.standard_normal((d, gr)))[0].T
    gs = np.arange(1, gr + 1) ** -p["global_decay"]
    gs /= np.sqrt((gs**2).sum())
    centres = ((rng.standard_normal((nc, gr)) * gs) @ basis).astype(np.float32)
    labels = rng.choice(nc, size=n, p=rng.dirichlet(np.full(nc, p["weights_alpha"])))
    base = np.arange(1, rank + 1) ** -p["decay"]
    X = np.empty((n, d), np.float32)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=nc)
    pos = 0
    for c in range(nc):
        m = int(counts[c])
        U = np.linalg.qr(rng.standard_normal((d, rank)))[0].astype(np.float32)
        t = base * np.sqrt(p["within"] * rng.uniform(0.5, 2.0) / (base**2).sum())
        Z = rng.standard_normal((m, rank), dtype=np.float32) * t.astype(np.float32)
        E = rng.standard_normal((m, d), dtype=np.float32) * np.float32(p["noise"] / np.sqrt(d))
        X[order[pos : pos + m]] = centres[c] + Z @ U.T + E
        pos += m
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


ISO = {"n_clusters": 1000, "spread": 0.35}
ISO_BLOCK = 65_536


def iso_data(n: int, d: int = 128, seed: int = 0, **overrides: float) -> np.ndarray:
    """Seeded isotropic Gaussian clusters (dataset A of issue #18): ``n_clusters`` centres
    ~ N(0, I/d) (unit length on average), equal weights; a point is its centre plus
    N(0, spread^2 I/d) noise, L2-normalised.  Made in blocks of ISO_BLOCK rows (``iso_block``),
    so that a file of any size can be written block by block (``knn_scale.py``)."""
    p = {**ISO, **overrides}
    centres = iso_centres(d, seed, int(p["n_clusters"]))
    X = np.empty((n, d), np.float32)
    for lo in range(0, n, ISO_BLOCK):
        X[lo : lo + ISO_BLOCK] = iso_block(centres, lo // ISO_BLOCK, min(ISO_BLOCK, n - lo), seed,
                                           p["spread"])
    return X


def iso_centres(d: int, seed: int, n_clusters: int) -> np.ndarray:
    centres = np.random.default_rng([seed, 0x150]).standard_normal((n_clusters, d))
    return (centres / np.sqrt(d)).astype(np.float32)


def iso_block(centres: np.ndarray, block: int, m: int, seed: int, spread: float,
              stream: int = 0x151) -> np.ndarray:
    """``m`` rows of ``iso_data``'s block ``block``; another ``stream``: fresh draws (queries)."""
    rng = np.random.default_rng([seed, stream, block])
    nc, d = centres.shape
    B = centres[rng.integers(0, nc, m)]
    B += rng.standard_normal((m, d), dtype=np.float32) * np.float32(spread / np.sqrt(d))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    return B


def set_data(n: int, n_queries: int, seed: int = 0) -> tuple[SetBatch, SetBatch, dict]:
    """Sets of 50-200 random ints; groups of near-duplicates (Jaccard 0.5-0.9 to a base set).

    ``n // 6.7`` groups hold a base set and 1-6 variants each (about 2/3 of the rows); random
    sets fill the rest.  Queries are fresh variants (not indexed) of ``n_queries`` groups.
    A variant of a base of size s keeps round(2 s j / (1 + j)) of its elements and adds fresh
    ones up to size s, so its Jaccard similarity to the base is j ~ U(0.5, 0.9).
    """
    rng = np.random.default_rng([seed, 0x5E7])
    universe = 2**31

    def fresh(size: int) -> np.ndarray:
        return rng.integers(0, universe, size, dtype=np.int64)

    def variant(base: np.ndarray) -> np.ndarray:
        j = rng.uniform(0.5, 0.9)
        keep = round(2 * len(base) * j / (1 + j))
        kept = rng.choice(base, keep, replace=False)
        return np.unique(np.concatenate([kept, fresh(len(base) - keep)]))

    n_groups = max(n_queries, int(n / 6.7))
    sets: list[np.ndarray] = []
    bases: list[np.ndarray] = []
    for _ in range(n_groups):
        base = np.unique(fresh(int(rng.integers(50, 201))))
        bases.append(base)
        sets.append(base)
        sets.extend(variant(base) for _ in range(int(rng.integers(1, 7))))
    n_grouped = len(sets)
    while len(sets) < n:
        sets.append(np.unique(fresh(int(rng.integers(50, 201)))))
    sets = sets[:n]
    order = rng.permutation(len(sets))
    chosen = rng.choice(n_groups, n_queries, replace=False)
    queries = [variant(bases[g]) for g in chosen]
    info = {"n_groups": n_groups, "n_grouped_rows": min(n_grouped, n), "universe": universe}
    return to_batch([sets[i] for i in order]), to_batch(queries), info


def to_batch(arrays: Sequence[np.ndarray]) -> SetBatch:
    lengths = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return SetBatch(indptr, np.concatenate(arrays).astype(np.uint64))


# --------------------------------------------------------------------------- vectors


class Truth:
    """Exact answers; recall counts a returned row if it is no farther than the exact 10th."""

    def __init__(self, X: np.ndarray, Q: np.ndarray, ids: np.ndarray) -> None:
        self.X, self.Q = X, Q
        self.kth = self.distances(ids)[:, K - 1]

    def distances(self, ids: np.ndarray) -> np.ndarray:
        """Exact cosine distances in float64 (rows are unit length); inf for -1."""
        ids = np.asarray(ids, dtype=np.int64)
        safe = np.where(ids >= 0, ids, 0)
        d = 1.0 - np.einsum(
            "qkd,qd->qk", self.X[safe].astype(np.float64), self.Q.astype(np.float64)
        )
        return np.where(ids >= 0, d, np.inf)

    def recall(self, ids: np.ndarray) -> float:
        ids = np.asarray(ids)[:, :K]
        hits = self.distances(ids) <= self.kth[:, None] + 1e-6
        # A row returned twice counts once.
        dup = np.zeros_like(hits)
        s = np.sort(ids, axis=1)
        dup[:, 1:] = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        return float(np.minimum(hits.sum(axis=1) - dup.sum(axis=1), K).mean() / K)


@dataclass
class VectorGrid:
    # (L, K, variant, [(n_probes, n_rerank), ...]); n_rerank 0 = all.  variant: "" (random
    # planes through the origin), "no center" (the same, said explicitly), "center" (through
    # the mean) or "white=A" (partially whitened planes, HyperplaneLSH(whiten=A)).
    ours: list[tuple[int, int, str, list[tuple[int, int]]]]
    pstable: list[tuple[int, int, float, list[int]]]  # (L, K, width x heuristic, n_probes)
    faiss_lsh: list[tuple[int, list[int]]]  # (nbits, k_factor list)
    faiss_mh: list[tuple[int, int, int, int, int]]  # (nbits, nhash, b, nflip, k_factor)
    annoy: list[tuple[int, list[int]]]  # (n_trees, search_k list)
    hnsw: list[tuple[int, int, list[int]]]  # (M, ef_construction, ef list)
    # (nlist, nprobe list); nlist 0 = 4 sqrt(n), faiss's usual choice
    ivf: list[tuple[int, list[int]]] = field(
        default_factory=lambda: [(0, [2, 4, 8, 16, 32, 64])])
    # The Index as built by default, queried at these multiples of its default probes.
    index_probes: list[int] = field(default_factory=lambda: [1, 2, 4, 8])


GRIDS = {
    "real": VectorGrid(
        ours=[
            (8, 10, "no center", [(8, 0)]),  # uncentred planes, to show why centring matters
            (8, 10, "center", [(32, 0), (64, 0), (128, 0), (128, 200)]),
            (12, 12, "center", [(96, 0), (192, 0), (192, 200)]),
            (16, 10, "center", [(32, 0), (64, 0), (64, 200)]),
            (8, 10, "white=0.5", [(64, 0), (128, 0)]),  # whitening does not pay here
        ],
        pstable=[(8, 8, 1.0, [16, 32, 64])],
        faiss_lsh=[(256, [10, 50]), (512, [10, 50])],
        faiss_mh=[
            (256, 16, 10, 1, 10), (256, 16, 10, 1, 50), (256, 8, 16, 2, 50), (512, 32, 12, 1, 10)
        ],
        annoy=[(50, [500, 2000, 5000])],
        hnsw=[(16, 200, [10, 20, 40, 80]), (32, 200, [10, 20, 40, 80])],
    ),
    "clustered": VectorGrid(
        ours=[
            (8, 16, "", [(16, 0), (64, 1000)]),  # random planes: the previous best point
            (12, 20, "", [(96, 1000)]),
            (8, 16, "white=0.5", [(256, 300), (320, 300), (384, 500)]),
            (8, 16, "white=0.6", [(256, 300), (288, 300), (320, 300), (384, 300), (512, 500)]),
            (8, 18, "white=0.7", [(1024, 500)]),  # > 64 B/item, for the record
        ],
        pstable=[(8, 10, 1.0, [8]), (12, 16, 1.0, [12, 48])],
        faiss_lsh=[(256, [10, 20, 30, 50]), (512, [10, 50])],
        faiss_mh=[
            (256, 16, 16, 0, 50), (256, 16, 16, 1, 10), (256, 8, 24, 1, 50), (256, 8, 24, 2, 10),
            (256, 8, 24, 2, 50), (512, 16, 16, 0, 50), (512, 16, 16, 1, 10), (512, 8, 24, 2, 10),
        ],
        annoy=[(50, [1000, 2000, 5000, 20000])],
        hnsw=[(16, 100, [10, 20, 40, 80, 160])],
    ),
}
GRIDS["clustered-flat"] = VectorGrid(
    ours=[
        (8, 16, "", [(8, 0), (16, 0), (32, 0), (32, 100)]),
        (12, 16, "", [(12, 0), (48, 0)]),
        (12, 18, "", [(12, 0), (24, 100), (48, 0), (48, 300)]),
        (16, 20, "", [(16, 0), (32, 100), (64, 0)]),
        (8, 16, "white=0.5", [(32, 0), (64, 0)]),
    ],
    pstable=[(12, 16, 1.0, [12, 48])],
    faiss_lsh=GRIDS["clustered"].faiss_lsh,
    faiss_mh=GRIDS["clustered"].faiss_mh,
    annoy=GRIDS["clustered"].annoy,
    hnsw=GRIDS["clustered"].hnsw,
)

# Issue #18: A (isotropic clusters) and B (the calibrated mixture at 300k).  Only the methods of
# the issue's table: the kernel, hnswlib, IVFFlat, IndexLSH+refine (and brute force, the Index).
GRIDS["iso"] = VectorGrid(
    ours=[
        (8, 16, "", [(16, 0), (64, 0), (128, 500)]),
        (12, 18, "", [(24, 0), (96, 0), (192, 500)]),
        (16, 20, "", [(32, 0), (128, 0), (256, 1000)]),
    ],
    pstable=[],
    faiss_lsh=[(256, [10, 50]), (512, [10, 50])],
    faiss_mh=[],
    annoy=[],
    hnsw=[(16, 100, [10, 20, 40, 80])],
)
GRIDS["aniso"] = replace(GRIDS["clustered"], pstable=[], faiss_mh=[], annoy=[])

QUICK_GRID = VectorGrid(
    ours=[(8, 12, "center", [(8, 0), (32, 0), (32, 100)]), (12, 14, "center", [(24, 0), (96, 0)]),
          (8, 12, "white=0.5", [(64, 0), (128, 100)])],
    pstable=[(8, 8, 1.0, [16, 64])],
    faiss_lsh=[(256, [10, 50])],
    faiss_mh=[(256, 16, 12, 1, 10), (256, 8, 20, 2, 50)],
    annoy=[(20, [1000, 5000])],
    hnsw=[(16, 100, [20, 80])],
)


@dataclass
class FamilyGrid:
    """Issue #18's families and faiss IVFFlat, beside ``VectorGrid`` (one per dataset)."""

    cross_polytope: list[tuple[int, int, list[int]]]  # (L, n_bits, n_probes list)
    kmeans: list[tuple[int, int, list[int]]]  # (L, n_cells, n_probes list)
    ivf: list[tuple[int, list[int]]]  # (nlist, nprobe list)
    # adaptive probing of every k-means build above: (probe cap, stop list)
    kmeans_adaptive: list[tuple[int, list[float]]] = field(default_factory=list)
    # k-means builds whose scan reads a float16 copy of the rows (half the bytes), and
    # faiss's IVF with float16 rows (IndexIVFScalarQuantizer QT_fp16), its like
    kmeans_f16: list[tuple[int, int, list[int]]] = field(default_factory=list)
    ivf_sq16: list[tuple[int, list[int]]] = field(default_factory=list)


FAMILY_GRIDS = {
    "real": FamilyGrid(
        cross_polytope=[(8, 12, [16, 64])],
        kmeans=[(1, 256, [4, 8, 12, 16]), (1, 512, [8, 12, 16, 24])],
        ivf=[(256, [4, 8, 12, 16]), (512, [8, 12, 16, 24])],
        kmeans_adaptive=[(24, [0.5, 0.7, 1.0])],
        kmeans_f16=[(1, 512, [8, 12, 16])],
        ivf_sq16=[(512, [8, 12, 16])],
    ),
    "clustered": FamilyGrid(
        cross_polytope=[(8, 20, [16, 64])],
        kmeans=[(1, 1024, [1, 2, 3]), (1, 2048, [1, 2, 3, 4])],
        ivf=[(1024, [1, 2, 3]), (2048, [1, 2, 3, 4])],
    ),
}
FAMILY_GRIDS["clustered-flat"] = FAMILY_GRIDS["clustered"]
# Issue #18's generated sets (iso 1M, aniso 300k): cells about 2-4 sqrt(n), as IVF is sized;
# cross-polytope lags far behind on clustered rows and its 1M build is long, so not here.
FAMILY_GRIDS["aniso"] = FamilyGrid(
    cross_polytope=[],
    kmeans=[(1, 1024, [1, 2, 3, 4]), (1, 2048, [1, 2, 3, 4])],
    ivf=[(1024, [1, 2, 3, 4]), (2048, [1, 2, 3, 4])],
    # recall at 2 probes sits near 0.95 (0.947-0.960 over k-means seeds, faiss's alike): the
    # stops step between 2 and 3 probes' recall
    kmeans_adaptive=[(6, [0.3, 0.5, 0.6, 0.7, 0.8])],
    kmeans_f16=[(1, 1536, [2, 3]), (1, 2048, [2, 3])],
    ivf_sq16=[(2048, [2, 3])],
)
FAMILY_GRIDS["iso"] = FamilyGrid(
    cross_polytope=[],
    kmeans=[(1, 2048, [1, 2, 4, 8]), (1, 4096, [1, 2, 4, 8])],
    ivf=[(2048, [1, 2, 4, 8]), (4096, [1, 2, 4, 8])],
    kmeans_adaptive=[(8, [0.05, 0.1, 0.2, 0.3, 0.5])],  # 0.3 already reads recall 1.000
    kmeans_f16=[(1, 2048, [2, 4])],
    ivf_sq16=[(2048, [2, 4])],
)
QUICK_FAMILY_GRID = FamilyGrid(
    cross_polytope=[(8, 12, [16, 64])], kmeans=[(1, 128, [2, 8])], ivf=[(128, [2, 8])],
    kmeans_adaptive=[(8, [0.7])], kmeans_f16=[(1, 128, [8])], ivf_sq16=[(128, [8])],
)


class VectorBench:
    """One vector dataset: exact answers, then every method's operating points."""

    def __init__(self, name: str, X: np.ndarray, Q: np.ndarray, budget: Budget) -> None:
        self.name = name
        self.X = prepare(X, "cosine")
        self.Q = prepare(Q, "cosine")
        self.n, self.d = self.X.shape
        self.nq = len(self.Q)
        self.budget = budget
        self.rows: list[Row] = []
        self.truth: Truth | None = None
        self.compact: list[str] = []  # re-rank types measured beside float32 (--compact)
        # Per method, its fastest points at the target recall so far, with a single query's
        # call (which holds the index alive), for ``confirm``; the default-built Index's
        # default point is always kept (its own row in the issue's table).
        self.candidates: dict[str, list[tuple[Row, Callable[[int], Any]]]] = {}
        self.closers: list[Callable[[], Any]] = []  # indexes to close after ``confirm``

    def keep(self, row: Row, single: Callable[[int], Any], always: bool = False) -> None:
        """Hold ``single`` for ``confirm`` if ``row`` is among its method's fastest points at
        the target recall (up to ``budget.confirm_top``), or ``always``."""
        if self.budget.confirm_rounds <= 0:
            return
        if always:
            self.candidates.setdefault(f"{row.method} [{row.params}]", []).append((row, single))
            return
        if row.recall < TARGET_RECALL or not row.single_qps:
            return
        kept = self.candidates.setdefault(row.method, [])
        kept.append((row, single))
        kept.sort(key=lambda rs: -(rs[0].single_qps or 0))
        del kept[self.budget.confirm_top :]

    def confirm(self) -> list[dict[str, Any]]:
        """Every kept point timed again, all methods interleaved (``interleaved_passes``,
        ``budget.confirm_rounds`` rounds): per point its best and median pass, with the
        sweep's figure beside them."""
        points = {f"{r.method} [{r.params}]": (r, fn)
                  for kept in self.candidates.values() for r, fn in kept}
        if not points:
            return []
        log(f"{self.name}: confirming {len(points)} points, {self.budget.confirm_rounds} rounds")
        for _, fn in points.values():
            fn(0)  # warm
        qps = interleaved_passes({k: fn for k, (_, fn) in points.items()}, self.nq,
                                 self.budget.confirm_rounds, self.budget.confirm_size,
                                 self.budget.single_s)
        out = [{"method": r.method, "params": r.params, "recall": r.recall,
                "sweep_qps": r.single_qps, "best_qps": max(qps[k]),
                "median_qps": float(np.median(qps[k])), "passes": len(qps[k]),
                "build_s": r.build_s, "bytes_per_item": r.bytes_per_item}
               for k, (r, _) in points.items()]
        self.candidates.clear()
        for close in self.closers:
            close()
        self.closers.clear()
        return out

    def add(self, row: Row) -> None:
        self.rows.append(row)
        single = "-" if row.single_qps is None else f"{row.single_qps:.0f}"
        nbytes = "-" if row.bytes_per_item is None else f"{row.bytes_per_item:.1f}"
        log(f"{self.name}: {row.method} [{row.params}] recall {row.recall:.3f} single {single} "
            f"batch {row.batch_qps or 0:.0f} build {row.build_s:.1f}s bytes/item {nbytes}")

    def point(self, method: str, params: str, search: Callable[[np.ndarray], np.ndarray],
              build_s: float, bytes_per_item: float | None, confirm_always: bool = False,
              **extra: Any) -> None:
        """Time one operating point: ``search(queries) -> ids`` for a batch or a single row."""
        Q = self.Q
        search(Q[:8])  # warm up (the first call of a compiled kernel compiles it)
        ids, batch = time_batch(lambda: search(Q), self.nq, self.budget)

        def one(i: int) -> Any:
            return search(Q[i : i + 1])

        single = time_single(one, self.nq, self.budget)
        assert self.truth is not None
        self.add(Row(method, params, self.truth.recall(ids), single, batch, build_s,
                     bytes_per_item, extra))
        self.keep(self.rows[-1], one, confirm_always)

    def brute(self) -> None:
        t0 = time.perf_counter()
        brute = BruteForce("cosine").fit(self.X)
        build = time.perf_counter() - t0
        res, batch = time_batch(lambda: brute.search(self.Q, K), self.nq, self.budget)
        self.truth = Truth(self.X, self.Q, res.ids)
        def one(i: int) -> Any:
            return brute.search(self.Q[i], K)

        single = time_single(one, self.nq, self.budget)
        self.add(Row(BRUTE, "numpy BLAS, float32", self.truth.recall(res.ids), single, batch,
                     build, 0.0))
        self.keep(self.rows[-1], one)

    def ours(self, L: int, n_bits: int, center: str, points: list[tuple[int, int]]) -> None:
        """``points``: (n_probes, n_rerank); n_rerank 0 measures every candidate exactly, R > 0
        only the R nearest by Hamming distance of their hyperplane codes.  ``center``: the
        grid's variant string (see ``VectorGrid``)."""
        whiten = float(center.split("=")[1]) if center.startswith("white=") else 0.0
        fam = HyperplaneLSH(self.d, n_tables=L, n_bits=n_bits, seed=0,
                            center=center == "center", whiten=whiten)
        t0 = time.perf_counter()
        s = VectorLSH(fam, metric="cosine").fit(self.X)
        build = time.perf_counter() - t0
        self._ours_points(s, L, n_bits, center, points, build, OURS)
        for dtype in self.compact:  # the same tables, the exact pass on a compact copy
            t0 = time.perf_counter()
            c = VectorLSH(fam, metric="cosine").load(self.X, s.tables_, codes=s.codes_,
                                                     **compact_rows(self.X, dtype))
            extra = time.perf_counter() - t0
            self._ours_points(c, L, n_bits, center, points, build + extra, f"{OURS}, {dtype} re-rank")

    def _ours_points(self, s: VectorLSH, L: int, n_bits: int, center: str,
                     points: list[tuple[int, int]], build: float, method: str) -> None:
        fam = s.family
        for P, R in points:
            cand: list[float] = []

            def search(q: np.ndarray, P: int = P, R: int = R, cand: list[float] = cand
                       ) -> np.ndarray:
                res = s.search(q if len(q) > 1 else q[0], K, n_probes=P, n_rerank=R)
                if len(q) == self.nq:
                    cand.append(float(res.n_candidates.mean()))
                return res.ids

            label = f"L={L} K={n_bits} P={P}" + (f" R={R}" if R else "") + (
                f" {center}" if center else "")
            self.point(method, label, search, build, s.index_nbytes / self.n)
            self.rows[-1].extra.update(candidates=cand[0] if cand else None, L=L, K=n_bits, P=P,
                                       n_rerank=R, center=fam.center, whiten=fam.whiten,
                                       rerank_bytes_per_item=s.rerank_nbytes / self.n)

    def pstable(self, L: int, n_hashes: int, width_factor: float, probes: list[int]) -> None:
        from audiolsh.index.build import estimate_bucket_width

        w = estimate_bucket_width(self.X, 0) * width_factor
        fam = PStableLSH(self.d, n_tables=L, n_hashes=n_hashes, bucket_width=w, seed=0)
        t0 = time.perf_counter()
        s = VectorLSH(fam, metric="euclidean").fit(self.X)
        build = time.perf_counter() - t0
        for P in probes:
            def search(q: np.ndarray, P: int = P) -> np.ndarray:
                return s.search(q if len(q) > 1 else q[0], K, n_probes=P).ids

            self.point(OURS_PSTABLE, f"L={L} K={n_hashes} w={w:.2f} P={P}", search, build,
                       s.index_nbytes / self.n)

    def cross_polytope(self, L: int, n_bits: int, probes: list[int]) -> None:
        """FALCONN's family: ``n_bits`` key bits per table, its multi-probe sequence; centred
        as an index centres it ("auto": when the rows share a dominant direction)."""
        from audiolsh.hashing.hyperplane import needs_centering

        center = needs_centering(self.X)
        fam = CrossPolytopeLSH(self.d, n_tables=L, n_bits=n_bits, seed=0, center=center)
        t0 = time.perf_counter()
        s = VectorLSH(fam, metric="cosine").fit(self.X)
        build = time.perf_counter() - t0
        for P in probes:
            cand: list[float] = []

            def search(q: np.ndarray, P: int = P, cand: list[float] = cand) -> np.ndarray:
                res = s.search(q if len(q) > 1 else q[0], K, n_probes=P)
                if len(q) == self.nq:
                    cand.append(float(res.n_candidates.mean()))
                return res.ids

            self.point(OURS_CP, f"L={L} bits={n_bits} P={P}" + (" center" if center else ""),
                       search, build, s.index_nbytes / self.n)
            self.rows[-1].extra.update(P=P, L=L, n_bits=n_bits, center=center,
                                       candidates=cand[0] if cand else None)

    def kmeans(self, L: int, n_cells: int, probes: list[int],
               adaptive: Sequence[tuple[int, list[float]]] = (), rows: str = "float32") -> None:
        """Learned spherical k-means cells (IVF as a hash family), rows stored cell by cell as
        an index segment keeps them (``index.families.by_cell``); the build includes the fit.
        ``adaptive``: (cap, stops) probed adaptively (``VectorLSH.search``'s ``stop``).
        ``rows`` float16: the scan reads the float16 copy (``rerank_dtype``), 2 bytes a value
        more beside the float32 rows (bytes/item counts the tables, as for every method)."""
        from audiolsh.index.families import by_cell
        from audiolsh.search.compact import compact_rows

        fam = KMeansLSH(self.d, n_tables=L, n_cells=n_cells, seed=0)
        t0 = time.perf_counter()
        s, order = by_cell(VectorLSH(fam, metric="cosine").fit(self.X, prepared=True))
        if rows != "float32":  # made once from the rows in cell order, as an index build does
            s.load(s.vectors_, s.tables_, **compact_rows(s.vectors_, rows))
        s.name_rows(order)  # answers in the rows' original numbers, mapped in the kernel
        build = time.perf_counter() - t0
        nbytes = s.index_nbytes + fam.learned_arrays()["centroids"].nbytes + order.nbytes
        tag = "" if rows == "float32" else f" rows={rows}"
        for P in probes:
            def search(q: np.ndarray, P: int = P) -> np.ndarray:
                return s.search(q if len(q) > 1 else q[0], K, n_probes=P).ids

            self.point(OURS_KMEANS, f"L={L} cells={n_cells} P={P}{tag}", search, build,
                       nbytes / self.n)
            self.rows[-1].extra.update(P=P, L=L, n_cells=n_cells, rows=rows)
        for cap, stops in adaptive:
            for stop in stops:
                def walk(q: np.ndarray, cap: int = cap, stop: float = stop) -> np.ndarray:
                    return s.search(q if len(q) > 1 else q[0], K, n_probes=cap, stop=stop).ids

                self.point(OURS_KMEANS, f"L={L} cells={n_cells} cap={cap} stop={stop}{tag}", walk,
                           build, nbytes / self.n)
                used = s.search(self.Q, K, n_probes=cap, stop=stop).n_probes
                self.rows[-1].extra.update(P=cap, stop=stop, L=L, n_cells=n_cells, rows=rows,
                                           mean_probes=round(float(np.mean(used)), 2))

    def faiss_lsh(self, nbits: int, k_factors: list[int],
                  multihash: list[tuple[int, int, int, int, int]]) -> None:
        """IndexLSH (random rotation, per-bit median thresholds) + IndexRefineFlat; then
        IndexBinaryMultiHash over the same codes with an exact re-rank of k_factor * k."""
        import faiss

        t0 = time.perf_counter()
        base = faiss.IndexLSH(self.d, nbits, True, True)
        index = faiss.IndexRefineFlat(base)
        index.train(self.X)
        index.add(self.X)
        build = time.perf_counter() - t0
        nbytes = len(faiss.serialize_index(base))  # codes + rotation; the refine holds raw rows
        for kf in k_factors:
            def search(q: np.ndarray, kf: int = kf) -> np.ndarray:
                faiss.omp_set_num_threads(1 if len(q) == 1 else N_THREADS)
                index.k_factor = kf
                return index.search(q, K)[1]

            self.point(FAISS_LSH, f"nbits={nbits} k_factor={kf}", search, build,
                       nbytes / self.n)
        codes = faiss.vector_to_array(base.codes).reshape(self.n, -1)
        for nb, nhash, b, nflip, kf in multihash:
            if nb != nbits:
                continue
            t0 = time.perf_counter()
            mh = faiss.IndexBinaryMultiHash(nbits, nhash, b)
            mh.nflip = nflip
            mh.add(codes)
            mh_build = build + time.perf_counter() - t0  # the encoding happened in IndexLSH
            mh_bytes = len(faiss.serialize_index_binary(mh))

            def search_mh(q: np.ndarray, mh: Any = mh, kf: int = kf) -> np.ndarray:
                faiss.omp_set_num_threads(1 if len(q) == 1 else N_THREADS)
                _, cand = mh.search(base.sa_encode(q), K * kf)
                return rerank(self.X, q, cand)

            self.point(FAISS_MH, f"nbits={nbits} nhash={nhash} b={b} nflip={nflip} k_factor={kf}",
                       search_mh, mh_build, mh_bytes / self.n)

    def annoy(self, n_trees: int, search_ks: list[int]) -> None:
        """Angular; a batch is 2 threads over halves of the queries (annoy releases the GIL)."""
        from annoy import AnnoyIndex

        t0 = time.perf_counter()
        ann = AnnoyIndex(self.d, "angular")
        for i in range(self.n):
            ann.add_item(i, self.X[i])
        ann.build(n_trees, n_jobs=N_THREADS)
        build = time.perf_counter() - t0
        nbytes = file_size(ann.save) - self.n * self.d * 4
        for sk in search_ks:
            def one(v: np.ndarray, sk: int = sk) -> list[int]:
                return ann.get_nns_by_vector(v, K, search_k=sk)  # type: ignore[no-any-return]

            def search(q: np.ndarray, one: Callable = one) -> np.ndarray:
                out = np.full((len(q), K), -1, np.int64)
                if len(q) == 1:
                    r = one(q[0])
                    out[0, : len(r)] = r
                    return out

                def part(t: int) -> None:
                    for i in range(t, len(q), N_THREADS):
                        r = one(q[i])
                        out[i, : len(r)] = r

                with ThreadPoolExecutor(N_THREADS) as ex:
                    list(ex.map(part, range(N_THREADS)))
                return out

            self.point(ANNOY, f"n_trees={n_trees} search_k={sk}", search, build,
                       nbytes / self.n)

    def hnsw(self, M: int, ef_construction: int, efs: list[int]) -> None:
        import hnswlib

        t0 = time.perf_counter()
        h = hnswlib.Index(space="cosine", dim=self.d)
        h.init_index(max_elements=self.n, M=M, ef_construction=ef_construction, random_seed=0)
        h.add_items(self.X, num_threads=N_THREADS)
        build = time.perf_counter() - t0
        nbytes = file_size(h.save_index) - self.n * self.d * 4
        for ef in efs:
            def search(q: np.ndarray, ef: int = ef) -> np.ndarray:
                h.set_ef(ef)
                return h.knn_query(q, K, num_threads=1 if len(q) == 1 else N_THREADS)[0]

            self.point(HNSW, f"M={M} ef_construction={ef_construction} ef={ef}", search, build,
                       nbytes / self.n)


    def ivf(self, nlist: int, nprobes: list[int], fp16: bool = False) -> None:
        """faiss IndexIVFFlat, inner product on unit rows (= cosine), k-means on up to 64
        rows per list; ``fp16``: IndexIVFScalarQuantizer with float16 rows instead."""
        import faiss

        nlist = nlist or max(16, int(4 * np.sqrt(self.n)))
        t0 = time.perf_counter()
        quantizer = faiss.IndexFlatIP(self.d)
        if fp16:
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.d, nlist,
                                                  faiss.ScalarQuantizer.QT_fp16,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, self.d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = self.X[np.sort(rng.choice(self.n, min(self.n, 64 * nlist), replace=False))]
        index.train(train)
        index.add(self.X)
        build = time.perf_counter() - t0
        nbytes = len(faiss.serialize_index(index)) - self.n * self.d * (2 if fp16 else 4)
        for nprobe in nprobes:
            if nprobe > nlist:
                continue

            def search(q: np.ndarray, nprobe: int = nprobe) -> np.ndarray:
                faiss.omp_set_num_threads(1 if len(q) == 1 else N_THREADS)
                index.nprobe = nprobe
                return index.search(q, K)[1]

            self.point(IVF_SQ16 if fp16 else IVF, f"nlist={nlist} nprobe={nprobe}", search, build,
                       nbytes / self.n)

    def index(self, multiples: list[int], family: str = "hyperplane") -> None:
        """``Index.create`` + ``add`` with every setting at its default (no ``tune``), queried
        through the Python API (``Index.query``); at its default probes and multiples of them.
        ``family``: the one setting given (the default family's label is ``INDEX``)."""
        from audiolsh.index import Index

        t0 = time.perf_counter()
        index = Index.create(None, metric="cosine", family=family)
        ids = index.add(self.X)
        build = time.perf_counter() - t0
        seg = index._segments[0]
        default = index._default_probes(seg)
        row_of = np.full(int(ids.max()) + 2, -1, np.int64)  # item id -> row; -1 stays -1
        row_of[ids] = np.arange(self.n)
        fam = seg.family.to_config()
        info = index.info()
        for m in multiples:
            probes = default * m

            def search(q: np.ndarray, probes: int | None = None if m == 1 else probes) -> np.ndarray:
                # the default row as a user gets it: the operating point's probes and stop
                return row_of[index.query(q, K, n_probes=probes).ids]

            self.point(INDEX if family == "hyperplane" else INDEX_KMEANS,
                       f"defaults, probes={probes}" + (" (default)" if m == 1 else ""),
                       search, build, info["table_bytes_per_item"], confirm_always=m == 1,
                       L=fam["n_tables"], K=fam.get("n_bits", fam.get("n_cells")),
                       whiten=fam.get("whiten"), P=probes)
        self.closers.append(index.close)  # after ``confirm``, which may query it again


def bench_vectors(
    name: str, X: np.ndarray, Q: np.ndarray, grid: VectorGrid, budget: Budget,
    families_only: bool = False,
    compact: Sequence[str] = (),
) -> tuple[list[Row], dict, list[dict[str, Any]]]:
    """Every method's grid on one dataset, then the confirmation of each method's fastest
    points (``VectorBench.confirm``); ``families_only``: brute force, issue #18's families,
    faiss IVFFlat and hnswlib."""
    import faiss

    faiss.omp_set_num_threads(N_THREADS)
    b = VectorBench(name, X, Q, budget)
    b.compact = list(compact)
    b.brute()
    assert b.truth is not None
    stats = data_stats(b.X, b.Q, b.truth)
    log(f"{name}: n={b.n} d={b.d} queries={b.nq} {stats}")
    if families_only:
        bench_families(b, QUICK_FAMILY_GRID if grid is QUICK_GRID else FAMILY_GRIDS.get(name))
        # Right by default: each family's index as ``add`` builds it, at its tuned probes.
        b.index([1, 2], family="kmeans")
        gc.collect()
        b.index([1])
        gc.collect()
        M, efc, efs = grid.hnsw[0]
        b.hnsw(M, efc, efs)
        return b.rows, stats, b.confirm()
    for L, n_bits, center, points in grid.ours:
        b.ours(L, n_bits, center, points)
        gc.collect()
    for L, n_hashes, wf, probes in grid.pstable:
        b.pstable(L, n_hashes, wf, probes)
        gc.collect()
    bench_families(b, QUICK_FAMILY_GRID if grid is QUICK_GRID else FAMILY_GRIDS.get(name))
    for nbits, kfs in grid.faiss_lsh:
        b.faiss_lsh(nbits, kfs, grid.faiss_mh)
        gc.collect()
    for n_trees, sks in grid.annoy:
        b.annoy(n_trees, sks)
        gc.collect()
    for M, efc, efs in grid.hnsw:
        b.hnsw(M, efc, efs)
        gc.collect()
    for nlist, nprobes in grid.ivf:
        b.ivf(nlist, nprobes)
        gc.collect()
    if grid.index_probes:
        b.index([1, 2], family="kmeans")  # the default family
        gc.collect()
        b.index(grid.index_probes)
        gc.collect()
    return b.rows, stats, b.confirm()


def bench_families(b: VectorBench, grid: FamilyGrid | None) -> None:
    """Issue #18's families and faiss IVFFlat on one dataset."""
    if grid is None:
        return
    for L, n_bits, probes in grid.cross_polytope:
        b.cross_polytope(L, n_bits, probes)
        gc.collect()
    for L, n_cells, probes in grid.kmeans:
        b.kmeans(L, n_cells, probes, grid.kmeans_adaptive)
        gc.collect()
    for L, n_cells, probes in grid.kmeans_f16:
        b.kmeans(L, n_cells, probes, grid.kmeans_adaptive, rows="float16")
        gc.collect()
    for nlist, nprobes in grid.ivf:
        b.ivf(nlist, nprobes)
        gc.collect()
    for nlist, nprobes in grid.ivf_sq16:
        b.ivf(nlist, nprobes, fp16=True)
        gc.collect()


def rerank(X: np.ndarray, Q: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Exact top-k (cosine on unit rows) among candidate ids (-1 = none)."""
    safe = np.where(cand >= 0, cand, 0)
    sims = np.einsum("qkd,qd->qk", X[safe], Q)
    sims[cand < 0] = -np.inf
    kk = min(K, cand.shape[1])
    top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1), 1)
    out = np.take_along_axis(cand, top, 1)
    return np.where(np.take_along_axis(sims, top, 1) > -np.inf, out, -1)


def data_stats(X: np.ndarray, Q: np.ndarray, truth: Truth) -> dict:
    """Difficulty: relative contrast (mean distance / 10th-NN distance) and PCA spread."""
    rng = np.random.default_rng(1)
    sample = X[rng.choice(len(X), min(len(X), 5000), replace=False)]
    mean_d = 1.0 - (Q.astype(np.float64) @ sample.T.astype(np.float64)).mean()
    centred = sample - sample.mean(axis=0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2
    cum = np.cumsum(var) / var.sum()
    return {
        "mean_cos_dist": round(float(mean_d), 4),
        "d10_cos_dist": round(float(truth.kth.mean()), 4),
        "relative_contrast": round(float(mean_d / truth.kth.mean()), 2),
        "pca_dims_for_50_80_95pct": [int(np.searchsorted(cum, p)) + 1 for p in (0.5, 0.8, 0.95)],
    }


# --------------------------------------------------------------------------- sets


SET_THRESHOLDS = (0.5, 0.35)  # LSH thresholds; recall is always of neighbours with J >= 0.5
RECALL_J = 0.5


def bench_sets(n: int, nq: int, budget: Budget, num_perm: int = 128) -> tuple[list[Row], dict]:
    import pickle

    from datasketch import MinHash
    from datasketch import MinHashLSH as DSLSH

    from audiolsh.hashing import as_sets

    data, queries, info = set_data(n, nq)
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        single = "-" if row.single_qps is None else f"{row.single_qps:.0f}"
        log(f"sets: {row.method} [{row.params}] recall {row.recall:.3f} "
            f"J>={RECALL_J} {row.extra.get('recall_thr', float('nan')):.3f} single {single} "
            f"batch {row.batch_qps or 0:.0f} build {row.build_s:.1f}s")

    q_single = [queries.take(np.array([i])) for i in range(nq)]

    # Exact: the compiled merge scan behind BruteForce("jaccard").
    t0 = time.perf_counter()
    brute = BruteForce("jaccard").fit(data)
    build = time.perf_counter() - t0
    exact, bq = time_batch(lambda: brute.search(queries, K), nq, budget)
    sq = time_single(lambda i: brute.search(q_single[i], K), nq, budget)
    true_d = exact.distances.astype(np.float64)
    kth = true_d[:, K - 1]
    true_close = (true_d <= 1.0 - RECALL_J + 1e-9) & (exact.ids >= 0)

    def recalls(ids: np.ndarray, dist: np.ndarray) -> dict[str, float]:
        """recall@10 (a row counts if it is as similar as the exact 10th; ties count) and the
        recall of the exact top-10 rows with J >= 0.5."""
        dist = np.where(ids >= 0, dist, np.inf)
        r10 = float(np.minimum((dist <= kth[:, None] + 1e-6).sum(1), K).mean() / K)
        found = sum(int(np.isin(exact.ids[q][true_close[q]], ids[q]).sum()) for q in range(nq))
        return {"recall": r10, "recall_thr": found / max(1, int(true_close.sum()))}

    stats = {
        **info,
        "n": n,
        "queries": nq,
        "mean_set_size": round(float(np.diff(data.indptr).mean()), 1),
        "true_neighbours_J>=0.5_per_query": round(float(true_close.sum() / nq), 2),
        "mean_J_of_exact_10th": round(float(1 - kth.mean()), 3),
    }
    log(f"sets: {stats}")
    r = recalls(exact.ids, exact.distances)
    add(Row(BRUTE, "compiled merge scan, 2 threads", r["recall"], sq, bq, build, 0.0,
            {"recall_thr": r["recall_thr"]}))

    # What turning Python int lists into the CSR batch costs (measured on up to 20k sets).
    lists = [data[i].tolist() for i in range(min(n, 20000))]
    t0 = time.perf_counter()
    as_sets(lists)
    stats["as_sets_from_python_lists_s_per_100k"] = round(
        (time.perf_counter() - t0) * 100_000 / len(lists), 1
    )
    del lists

    # audiolsh MinHash LSH: search(), and the same tables through the internal candidate lookup
    # without the exact fallback search() takes for queries with fewer than k candidates.
    for thr in SET_THRESHOLDS:
        fam = MinHashLSH(num_perm=num_perm, threshold=thr, seed=0)
        t0 = time.perf_counter()
        s = SetLSH(fam).fit(data)
        build = time.perf_counter() - t0
        bands = f"num_perm={num_perm} t={thr} b={fam.n_bands} r={fam.n_rows}"
        nbytes = s.tables_.nbytes / n

        def lookup(qs: SetBatch, s: SetLSH = s, fam: MinHashLSH = fam) -> Any:
            return s._lookup(qs, fam.probes(qs, fam.n_bands), K)

        lookup(queries.take(np.arange(8)))
        lookup(q_single[0])
        res, bq = time_batch(lambda lookup=lookup: lookup(queries), nq, budget)
        sq = time_single(lambda i, lookup=lookup: lookup(q_single[i]), nq, budget)
        short = float(((res.ids >= 0).sum(axis=1) < K).mean())
        r = recalls(res.ids, res.distances)
        add(Row(OURS_SETS_LOOKUP, bands, r["recall"], sq, bq, build, nbytes,
                {"recall_thr": r["recall_thr"], "candidates": float(res.n_candidates.mean()),
                 "share_of_queries_with_fewer_than_k_candidates": short}))

        res, bq = time_batch(lambda s=s: s.search(queries, K), nq, budget)
        sq = time_single(lambda i, s=s: s.search(q_single[i], K), nq, budget)
        r = recalls(res.ids, res.distances)
        add(Row(OURS_SETS, bands, r["recall"], sq, bq, build, nbytes,
                {"recall_thr": r["recall_thr"], "candidates": float(res.n_candidates.mean())}))
        del s
        gc.collect()

    # datasketch: element ids as 8-byte strings (encoding untimed), signatures, LSH inserts.
    enc = [[int(x).to_bytes(8, "little") for x in data[i]] for i in range(n)]
    q_enc = [[int(x).to_bytes(8, "little") for x in queries[i]] for i in range(nq)]
    t0 = time.perf_counter()
    sigs = MinHash.bulk(enc, num_perm=num_perm, seed=1)
    sig_s = time.perf_counter() - t0
    del enc
    stats["datasketch_signature_s"] = round(sig_s, 1)
    for thr in SET_THRESHOLDS:
        t0 = time.perf_counter()
        lsh = DSLSH(threshold=thr, num_perm=num_perm)
        with lsh.insertion_session() as session:
            for i, m in enumerate(sigs):
                session.insert(i, m, check_duplication=False)
        insert_s = time.perf_counter() - t0
        ds_bytes = len(pickle.dumps(lsh, protocol=pickle.HIGHEST_PROTOCOL)) / n

        def ds_query(i: int, lsh: Any = lsh) -> tuple[np.ndarray, np.ndarray]:
            """Signature of the query, LSH candidates, exact Jaccard re-rank to the top k."""
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch(q_enc[i])
            cand = np.fromiter(lsh.query(m), np.int64)
            qa = queries[i]
            inter = np.array([np.intersect1d(qa, data[j], assume_unique=True).size
                              for j in cand], dtype=np.float64)
            sizes = np.diff(data.indptr)[cand] if len(cand) else np.zeros(0)
            dist = 1.0 - inter / (qa.size + sizes - inter) if len(cand) else np.zeros(0)
            top = np.argsort(dist, kind="stable")[:K]
            ids = np.full(K, -1, np.int64)
            dd = np.full(K, np.inf)
            ids[: len(top)], dd[: len(top)] = cand[top], dist[top]
            return ids, dd

        ds_query(0)
        t0 = time.perf_counter()
        out = [ds_query(i) for i in range(nq)]
        loop_qps = nq / (time.perf_counter() - t0)
        sq = time_single(ds_query, nq, budget)
        r = recalls(np.stack([o[0] for o in out]), np.stack([o[1] for o in out]))
        add(Row(DATASKETCH, f"num_perm={num_perm} t={thr} b={lsh.b} r={lsh.r}", r["recall"],
                max(sq, loop_qps), None, sig_s + insert_s, ds_bytes,
                {"recall_thr": r["recall_thr"], "signature_s": round(sig_s, 2),
                 "insert_s": round(insert_s, 2)}))
        del lsh
        gc.collect()
    return rows, stats


# --------------------------------------------------------------------------- report


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if digits == 0 and abs(v) >= 1:
        return f"{v:,.0f}"
    return f"{v:.{digits or 2}f}"


def table_rows(rows: list[Row], sets: bool) -> tuple[list[str], list[list[str]]]:
    head = ["method", "params", "recall@10"]
    if sets:
        head.append(f"recall J>={RECALL_J}")
    head += ["single QPS", "batch QPS", "build (s)", "bytes/item"]
    body = []
    for r in rows:
        line = [r.method, r.params, f"{r.recall:.3f}"]
        if sets:
            line.append(f"{r.extra.get('recall_thr', float('nan')):.3f}")
        line += [fmt(r.single_qps), fmt(r.batch_qps), f"{r.build_s:.1f}",
                 fmt(r.bytes_per_item, 1) if r.bytes_per_item is not None else "-"]
        body.append(line)
    return head, body


def recall_of(sets: bool) -> Callable[[Row], float]:
    return (lambda r: r.extra["recall_thr"]) if sets else (lambda r: r.recall)


def best_points(rows: list[Row], sets: bool) -> dict[str, Row | None]:
    """Per method, the operating point with the highest single-query QPS at recall >= 0.95."""
    recall = recall_of(sets)
    best: dict[str, Row | None] = {}
    for r in rows:
        best.setdefault(r.method, None)
        cur = best[r.method]
        if recall(r) >= TARGET_RECALL and r.single_qps is not None and (
            cur is None or r.single_qps > (cur.single_qps or 0)
        ):
            best[r.method] = r
    return best


def ratio(a: Row | None, b: Row | None) -> float | None:
    if a is None or b is None or not a.single_qps or not b.single_qps:
        return None
    return a.single_qps / b.single_qps


def summarise(name: str, rows: list[Row]) -> dict:
    """Best points, the single-query ratios the project targets, as numbers and as sentences."""
    sets = name == "sets"
    best = best_points(rows, sets)
    out: dict[str, Any] = {"best": {m: (asdict(r) if r else None) for m, r in best.items()}}
    lines: list[str] = []
    brute = next((r for r in rows if r.method == BRUTE), None)

    def say(key: str, label: str, a: Row | None, b: Row | None) -> None:
        v = ratio(a, b)
        out[key] = v
        lines.append(f"{label} = " + ("n/a (no point reached the recall)" if v is None
                                      else f"{v:.2f}"))

    if sets:
        ours = best.get(OURS_SETS)
        say("ours_vs_brute_single", "ours search() single-QPS / brute force", ours, brute)
        for thr in SET_THRESHOLDS:
            look = next((r for r in rows if r.method == OURS_SETS_LOOKUP
                         and f" t={thr} " in r.params), None)
            ds = next((r for r in rows if r.method == DATASKETCH and f" t={thr} " in r.params),
                      None)
            if look and ds:
                say(f"ours_candidates_vs_datasketch_single_t{thr}",
                    f"t={thr}: ours candidates-only single-QPS / datasketch (recall J>=0.5 "
                    f"{look.extra['recall_thr']:.3f} vs {ds.extra['recall_thr']:.3f})", look, ds)
        out["lines"] = lines
        return out

    ours = best.get(OURS)
    faiss_best = [r for g in FAISS_GROUPS if (r := best.get(g)) is not None]
    top = max(faiss_best, key=lambda r: r.single_qps or 0) if faiss_best else None
    say("ours_vs_brute_single", "ours single-QPS / brute force single-QPS", ours, brute)
    say("ours_vs_best_faiss_lsh_single",
        "ours single-QPS / best faiss LSH variant"
        + (f" ({top.method} [{top.params}])" if top else ""), ours, top)
    for other in (ANNOY, HNSW):
        say(f"ours_vs_{other}_single", f"ours single-QPS / {other}", ours, best.get(other))
    for fam in (OURS_CP, OURS_KMEANS):  # issue #18's families
        for other in (IVF, IVF_SQ16, HNSW):
            if fam in best and other in best:
                say(f"{fam}_vs_{other}_single", f"{fam} single-QPS / {other}", best[fam],
                    best[other])
        mine, graph = best.get(fam), best.get(HNSW)
        if mine is not None and graph is not None and graph.build_s > 0:
            out[f"{fam}_build_vs_hnswlib"] = mine.build_s / graph.build_s
            lines.append(f"{fam} build / hnswlib build = {mine.build_s / graph.build_s:.2f}")
    for other in (IVF, HNSW, INDEX):  # the default-built k-means index against the rest
        if INDEX_KMEANS in best and other in best:
            say(f"index_kmeans_vs_{other}_single", f"{INDEX_KMEANS} single-QPS / {other}",
                best[INDEX_KMEANS], best[other])
    default = next((r for r in rows if r.method == INDEX_KMEANS and "(default)" in r.params), None)
    if default is not None:
        out["index_kmeans_default_recall"] = default.recall
        lines.append(f"{INDEX_KMEANS} at its tuned probes: recall@10 {default.recall:.3f}, "
                     f"single QPS {default.single_qps or 0:,.0f}, build {default.build_s:.1f} s")
    in_budget = [r for r in rows if r.method == OURS and r.recall >= TARGET_RECALL
                 and r.build_s <= 60 and (r.bytes_per_item or 0) <= 64]
    if in_budget:
        fast = max(in_budget, key=lambda r: r.single_qps or 0)
        out["ours_best_within_build_and_memory_targets"] = asdict(fast)
        if fast is not ours:
            say("ours_within_targets_vs_brute_single",
                f"ours within build <= 60 s and <= 64 B/item [{fast.params}] / brute force",
                fast, brute)
            say("ours_within_targets_vs_best_faiss_lsh_single",
                "  ... / best faiss LSH variant", fast, top)
        else:
            lines.append("ours' best point is within build <= 60 s and <= 64 B/item")
    else:
        lines.append("ours: no point reached recall 0.95 within build <= 60 s and <= 64 B/item")
    out["lines"] = lines
    return out


def print_dataset(name: str, rows: list[Row], summary: dict, stats: dict) -> str:
    """Print the tables (rich when available) and return them as markdown."""
    sets = name == "sets"
    head, body = table_rows(rows, sets)
    recall_name = f"recall of the J>={RECALL_J} neighbours" if sets else "recall@10"
    best_body = []
    for method, r in summary["best"].items():
        if r is None:
            best_body.append([method, f"(no point reached {TARGET_RECALL})"]
                             + [""] * (len(head) - 2))
        else:
            best_body += table_rows([Row(**r)], sets)[1]
    best_title = f"fastest single-query point per method with {recall_name} >= {TARGET_RECALL}"

    def md(h: list[str], b: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(h) + " |", "|" + "|".join("---" for _ in h) + "|",
                *("| " + " | ".join(x) + " |" for x in b)]

    lines = [f"### {name}", "", *md(head, body), "", f"Summary: {best_title}.", "",
             *md(head, best_body), "", *(f"- {s}" for s in summary["lines"]), "",
             f"Data: `{json.dumps(stats)}`", ""]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\n".join(lines))
    else:
        console = Console(width=170)
        for title, b in ((f"k-NN: {name}", body), (f"{name}: {best_title}", best_body)):
            t = Table(title=title, title_justify="left")
            for h in head:
                t.add_column(h, justify="left" if h in ("method", "params") else "right")
            for x in b:
                t.add_row(*x)
            console.print(t, markup=False)
        for s in summary["lines"]:
            console.print("  " + s, markup=False)
        console.print(f"  data: {stats}", markup=False)
    sys.stdout.flush()
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("audiolsh", "numpy", "numba", "faiss-cpu", "annoy", "hnswlib", "datasketch",
                "librosa", "soundfile", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(mem_kb / 2**20, 1),
            "platform": platform.platform()}


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


DATASETS = ("real", "clustered", "clustered-flat", "sets", "iso", "aniso")
DEFAULT_N = {"clustered": 1_000_000, "iso": 1_000_000, "aniso": 300_000}
REAL_MAX_ROWS = 32_000  # dataset C: the dev corpus's per-second rows, at most this many


def load_vectors(name: str, args: argparse.Namespace) -> tuple[str, np.ndarray, np.ndarray, dict]:
    """(the dataset's name in the report, rows, queries, what describes the data)."""
    if name == "real":
        if args.quick and not REAL_CACHE.exists():
            E, meta = real_embeddings(args.corpus, max_files=6)
        else:
            E, meta = real_embeddings(args.corpus)
            E = E[:8000] if args.quick else E[:REAL_MAX_ROWS]
        rng = np.random.default_rng([0, 0x4EA1])
        perm = rng.permutation(len(E))
        nq = min(args.queries, len(E) // 10)
        return name, E[perm[nq:]], E[perm[:nq]], {"embedding_source": meta}
    n = args.n or DEFAULT_N[name.split("-")[0]]
    n = min(n, 20_000) if args.quick else n
    if name == "iso":
        E = iso_data(n + args.queries)
        extra: dict[str, Any] = {"generator": {"iso_data": ISO}}
    else:
        preset_name = "flat" if name == "clustered-flat" else args.clustered_preset
        preset = CLUSTERED_PRESETS[preset_name]
        if name == "clustered" and preset_name != "calibrated":
            name = f"clustered-{preset_name}"
        E = clustered_data(n + args.queries, **preset)
        extra = {"generator": {**CLUSTERED, **preset}}
    return name, E[args.queries :], E[: args.queries], extra


def confirmed_rows(d: dict[str, Any]) -> tuple[list[Row], bool]:
    """The rows issue #18's table reads, and whether they are confirmed: the confirmation's
    points at their best interleaved pass (``VectorBench.confirm``; the median pass in
    ``extra``) when the run had one, else the sweep's rows (runs without it)."""
    conf = d.get("confirmed")
    if not conf:
        return [Row(**r) for r in d["rows"]], False
    return [Row(c["method"], c["params"], c["recall"], c["best_qps"], None, c["build_s"],
                c["bytes_per_item"], {"median_qps": c["median_qps"], "sweep_qps": c["sweep_qps"]})
            for c in conf], True


def issue_table(datasets: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], str]:
    """Issue #18's summary: per dataset, the fastest single-query point with recall@10 >= 0.95
    of the k-means kernel (the default family) and the hyperplane kernel against each peer,
    the default-built Index (k-means), builds and bytes per item.  From the confirmation's
    figures (best interleaved pass) when the run had one (``confirmed_rows``)."""
    cols: dict[str, dict[str, Any]] = {}
    for name, d in datasets.items():
        if name == "sets":
            continue
        rows, confirmed = confirmed_rows(d)
        best = best_points(rows, sets=False)
        km, plane, hnsw = best.get(OURS_KMEANS), best.get(OURS), best.get(HNSW)
        index_method = INDEX_KMEANS if any(r.method == INDEX_KMEANS for r in rows) else INDEX
        default = next((r for r in rows if r.method == index_method
                        and r.params.endswith("(default)")), None)
        c: dict[str, Any] = {"QPS figures": (
            "confirmed: best of interleaved passes" if confirmed else "sweep (not confirmed)")}
        for m in (HNSW, IVF, IVF_SQ16, FAISS_LSH, BRUTE):
            c[f"k-means kernel / {m}"] = ratio(km, best.get(m))
        if confirmed:  # each method's fastest point by its median pass instead
            med = best_points([replace(r, single_qps=r.extra["median_qps"]) for r in rows], False)
            for m in (HNSW, IVF, IVF_SQ16):
                c[f"k-means kernel / {m}, median passes"] = ratio(med.get(OURS_KMEANS), med.get(m))
        for m in (HNSW, IVF):
            c[f"hyperplane kernel / {m}"] = ratio(plane, best.get(m))
        c["Index default: recall@10"] = default.recall if default else None
        c["Index default: single QPS"] = default.single_qps if default else None
        c["Index default / k-means kernel"] = ratio(default, km)
        c["Index default / faiss IVFFlat"] = ratio(default, best.get(IVF))
        c["Index best >= 0.95 / k-means kernel"] = ratio(best.get(index_method), km)
        c["k-means kernel build / hnswlib's"] = km.build_s / hnsw.build_s if km and hnsw else None
        # the issue asks for both at once: the fastest point whose build is 5x hnswlib's
        q_km = best_points([r for r in rows if r.method == OURS_KMEANS and hnsw is not None
                            and r.build_s <= BUILD_VS_HNSW * hnsw.build_s], sets=False).get(OURS_KMEANS)
        c[f"k-means kernel, build <= {BUILD_VS_HNSW}x hnswlib's / faiss IVFFlat"] = ratio(
            q_km, best.get(IVF))
        c[f"k-means kernel, build <= {BUILD_VS_HNSW}x hnswlib's: point"] = (
            q_km.params if q_km else "no point reached 0.95")
        c["Index default build / hnswlib's"] = (default.build_s / hnsw.build_s
                                                if default and hnsw else None)
        c["k-means kernel best: bytes/item"] = km.bytes_per_item if km else None
        c["Index default: bytes/item (tables)"] = default.bytes_per_item if default else None
        c["k-means kernel best point"] = km.params if km else "no point reached 0.95"
        c["hnswlib best point"] = hnsw.params if hnsw else "no point reached 0.95"
        cols[f"{name} (n={d['stats']['n']:,})"] = c
    if not cols:
        return cols, ""
    names = list(cols)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key in next(iter(cols.values())):
        cells = []
        for n in names:
            v = cols[n][key]
            cells.append("-" if v is None else v if isinstance(v, str) else
                         f"{v:.3f}" if "recall" in key else f"{v:,.0f}" if "QPS" in key else
                         f"{v:.1f}" if "bytes" in key else f"{v:.2f}x" if "/" in key else f"{v:.2f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return cols, "\n".join(lines)


def confirmed_table(confirmed: list[dict[str, Any]]) -> str:
    """The confirmation's points as markdown, fastest first within each method."""
    lines = ["| method | params | recall@10 | sweep QPS | confirmed best | confirmed median |",
             "|---|---|---:|---:|---:|---:|"]
    for c in sorted(confirmed, key=lambda c: (c["method"], -c["best_qps"])):
        lines.append(f"| {c['method']} | {c['params']} | {c['recall']:.3f} | "
                     f"{fmt(c['sweep_qps'])} | {fmt(c['best_qps'])} | {fmt(c['median_qps'])} |")
    return "\n".join(lines)


def data_list(text: str) -> list[str]:
    """``--data``: one name, ``all``, or a comma-separated list, in the order given."""
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        for name in (["real", "clustered", "sets"] if part == "all" else [part]):
            if name not in DATASETS:
                raise argparse.ArgumentTypeError(
                    f"unknown dataset {name!r}: choose from {', '.join(DATASETS)} or all"
                )
            if name not in names:
                names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="all", type=data_list,
                    help="real, clustered, clustered-flat (the flat preset), sets, all (= real,"
                         " clustered, sets), or a comma-separated list of them")
    ap.add_argument("--n", type=int, default=None,
                    help="rows of the generated data (default: clustered and iso 1M, aniso 300k)")
    ap.add_argument("--n-sets", type=int, default=100_000, help="rows of the set data")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clustered-preset", choices=sorted(CLUSTERED_PRESETS), default="calibrated",
                    help="generator settings of the clustered data (see clustered_data)")
    default_corpus = Path(os.environ.get("AUDIOLSH_CORPUS", "~/.cache/audiolsh-corpus")) / "dev"
    ap.add_argument("--corpus", type=Path, default=default_corpus.expanduser())
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--families-only", action="store_true",
                    help="vectors: only brute force, issue #18's families, faiss IVFFlat, hnswlib")
    ap.add_argument("--single-s", type=float, default=None,
                    help="seconds a pass of single queries may take (two passes per point)"
                         f" [default: {Budget.single_s}; 2 with --families-only]")
    ap.add_argument("--passes", type=int, default=Budget.passes,
                    help="passes of single queries per point, the best kept (more on a loaded"
                         " machine)")
    ap.add_argument("--confirm-rounds", type=int, default=Budget.confirm_rounds,
                    help="after the sweep, time each method's fastest points at the target"
                         " recall again in this many interleaved rounds (order rotated each"
                         " round); issue #18's table reads them (0: none, the sweep's figures)")
    ap.add_argument("--confirm-top", type=int, default=Budget.confirm_top,
                    help="points per method the confirmation times again")
    ap.add_argument("--confirm-queries", type=int, default=Budget.confirm_size,
                    help="single queries a confirmation pass")
    ap.add_argument("--out", type=Path, help="write every row and the summaries as JSON")
    ap.add_argument("--md", type=Path, help="write the tables as markdown")
    ap.add_argument("--compact", type=lambda t: [x for x in t.split(",") if x], default=[],
                    help="also measure the kernel's points with these re-rank types over the same"
                         " tables (e.g. int8,float16): recall cost and speed of compact rows")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="JSON",
                    help="print issue #18's summary table of earlier runs' --out files, and stop")
    args = ap.parse_args(argv)
    if args.combine:
        merged = {name: d for path in args.combine
                  for name, d in json.loads(path.read_text())["datasets"].items()}
        print(issue_table(merged)[1])
        return 0

    single_s = args.single_s
    if single_s is None:
        single_s = 2.0 if args.families_only else Budget.single_s
    budget = Budget(single_s=single_s, passes=args.passes, confirm_rounds=args.confirm_rounds,
                    confirm_top=args.confirm_top, confirm_size=args.confirm_queries)
    if args.quick:
        args.n_sets, args.queries = min(args.n_sets, 10_000), 200
        budget = Budget(single_s=1.0, single_max=200, batch_repeat_below_s=0.5,
                        confirm_rounds=min(args.confirm_rounds, 2), confirm_top=1,
                        confirm_size=20)
    datasets = args.data
    started = time.time()
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "versions": versions(),
        "numba_threads": __import__("numba").get_num_threads(),
        "load_avg_start": load_avg(),
        "budget": asdict(budget),
        "datasets": {},
    }
    markdown = []
    for name in datasets:
        t0 = time.time()
        log(f"=== {name}")
        if name == "sets":
            rows, stats = bench_sets(args.n_sets, args.queries, budget)
        else:
            name, X, Q, extra = load_vectors(name, args)
            grid = QUICK_GRID if args.quick else GRIDS[name]
            rows, stats, confirmed = bench_vectors(name, X, Q, grid, budget, args.families_only,
                                                   args.compact)
            stats = {"n": len(X), "queries": len(Q), **stats, **extra}
            del X, Q
            gc.collect()
        summary = summarise(name, rows)
        markdown.append(print_dataset(name, rows, summary, stats))
        report["datasets"][name] = {
            "rows": [asdict(r) for r in rows],
            "summary": summary,
            "stats": stats,
            "seconds": round(time.time() - t0, 1),
        }
        if name != "sets":
            report["datasets"][name]["confirmed"] = confirmed
            if confirmed:
                table = confirmed_table(confirmed)
                title = (f"{name}: confirmation, each method's fastest points at recall@10 >= "
                         f"{TARGET_RECALL} again, {budget.confirm_rounds} interleaved rounds"
                         f" (single-query QPS of the best and the median pass)")
                print(f"\n{title}\n{table}", flush=True)
                markdown.append(f"{title}.\n\n{table}\n")
        log(f"=== {name} done in {time.time() - t0:.0f} s")
    report["issue18"], table = issue_table(report["datasets"])
    if table:
        print(f"\nIssue #18 summary (single-query QPS ratios at recall@10 >= {TARGET_RECALL},"
              f" {'confirmed' if budget.confirm_rounds > 0 else 'sweep'} figures):\n"
              + table, flush=True)
        markdown.append("### issue #18 summary\n\n" + table + "\n")
    report["load_avg_end"] = load_avg()
    report["wall_s"] = round(time.time() - started, 1)
    log(f"total wall time {report['wall_s']} s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float))
    if args.md:
        args.md.write_text("\n".join(markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
