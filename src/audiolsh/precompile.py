"""Compile the kernels of the common commands ahead of their first use.

numba compiles a kernel the first time a process calls it with new argument types and keeps the
machine code on disk (``jit_cache``), so on a new install the first commands pay for it: indexing
one track took 38 s instead of 6, a first batch of vector queries about 20 s.  ``run`` runs the
common commands on small seeded inputs (synthetic songs, random vectors) in a temporary folder,
``processes`` chains of them at a time, so each kernel is compiled once and every later process
loads it.  A chain's commands run in one process, one after the other, as the ``audiolsh``
command would run them.

numba writes a kernel's cache index and then its code with no lock, so two processes adding
argument types of one kernel at once can leave the index naming the other's code (numba#10128);
the chains' processes take turns at numba's cache reads and writes (``parallel.lock_numba_cache``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiolsh.parallel import lock_numba_cache, usable_cores

SR = 22050
#: Two songs of this length make a fingerprint table of more than 29,000 hashes, whose low bits
#: are one byte as in any real library (a table of a short clip, indexed too, keeps two).
SONG_S = 200.0
SHORT_S = 20.0


@dataclass(frozen=True)
class Job:
    """A chain of commands that share an index, run in order in one process, then ``calls``:
    functions of the inputs' folder (the Python API), at a module's top level (a spawned worker
    imports them by name)."""

    name: str
    commands: tuple[tuple[str, ...], ...]
    calls: tuple[Callable[[Path], None], ...] = ()


@dataclass(frozen=True)
class Done:
    name: str
    seconds: float
    error: str | None = None  # the failed command and the end of its stderr


def jobs(inputs: Path) -> list[Job]:
    """The commands, in chains to run side by side (the longest first), on ``inputs`` (as
    written by ``write_inputs``)."""
    lib, wav, small = str(inputs / "library"), str(inputs / "songs"), str(inputs / "small")
    clip, short = str(inputs / "songs" / "song-0.wav"), str(inputs / "short.wav")
    vecs, batch, one = (str(inputs / f) for f in ("rows.npy", "batch.npy", "one.npy"))

    def vectors(name: str, *options: str) -> tuple[tuple[str, ...], ...]:
        where = str(inputs / name)
        return (("vectors", "add", vecs, "--index", where, *options),
                ("vectors", "query", batch, "--index", where),
                ("vectors", "query", one, "--index", where))

    return [  # the longest first: about 70, 65, 55, 40 and 15 s on an empty cache here
        Job("vectors: hyperplanes, p-stable, cross-polytope, CSV",
            vectors("hp", "--family", "hyperplane")
            + vectors("ps", "--family", "hyperplane", "--metric", "euclidean")
            + vectors("cp", "--family", "cross-polytope")
            + (("vectors", "add", str(inputs / "rows.csv"), "--index", str(inputs / "csv")),)),
        Job("library: index, identify, similar, nearest, overlaps", (
            ("index", wav, "--index", lib, "--workers", "1"),
            ("identify", clip, "--index", lib, "--offset", "5", "--duration", "8"),
            ("identify", clip, "--index", lib, "--segments"),
            ("similar", clip, "--index", lib, "--duration", "10"),
            ("similar", clip, "--index", lib, "--duration", "10", "--by", "peaks"),
            ("nearest", clip, "--index", lib, "--duration", "10"),
            ("overlaps", "--index", lib),
            ("index", short, "--index", small, "--workers", "1"),
            ("identify", short, "--index", small, "--duration", "8"),
        )),
        Job("vectors: k-means, float16 and int8 rows",
            vectors("km-f16", "--rerank-dtype", "float16") + vectors("km-i8", "--rerank-dtype", "int8")),
        Job("vectors: k-means, float32 rows", vectors("km-cos") + vectors("km-l2", "--metric", "euclidean")),
        Job("Python API: sets, self-joins", (), (sets_and_joins,)),
    ]


def sets_and_joins(inputs: Path) -> None:
    """MinHash set search (one query, a batch) and the self-join of vectors and of sets."""
    from audiolsh.index import Index
    from audiolsh.index.join import self_join

    rows = np.load(inputs / "rows.npy")
    for family in ("kmeans", "hyperplane"):
        vectors = Index.create(None, metric="cosine", family=family)
        vectors.add(rows)
        self_join(vectors, k=10)
    rng = np.random.default_rng(9101)
    sets = [rng.choice(5000, size=int(rng.integers(5, 60)), replace=False).tolist() for _ in range(2000)]
    index = Index.create(None, metric="jaccard")
    index.add(sets)
    index.query(sets[:1], k=10)
    index.query(sets[:100], k=10)
    self_join(index, min_similarity=0.5)


def write_inputs(folder: Path) -> None:
    """Two synthetic songs and a short clip, and clustered random vectors as .npy (rows, a batch,
    one row) and CSV."""
    import soundfile as sf

    from audiolsh.audio import synth

    songs = folder / "songs"
    songs.mkdir(parents=True)
    for i in range(2):
        sf.write(songs / f"song-{i}.wav", synth.music(duration_s=SONG_S, sr=SR, seed=9100 + i), SR)
    sf.write(folder / "short.wav", synth.music(duration_s=SHORT_S, sr=SR, seed=9102), SR)
    rng = np.random.default_rng(9100)
    centres = rng.standard_normal((40, 32)).astype(np.float32)
    rows = centres[rng.integers(0, 40, 4000)] + 0.3 * rng.standard_normal((4000, 32)).astype(np.float32)
    np.save(folder / "rows.npy", rows)
    np.save(folder / "batch.npy", rows[:300] + 0.05)
    np.save(folder / "one.npy", rows[:1] + 0.05)
    np.savetxt(folder / "rows.csv", rows[:500], delimiter=",", fmt="%.5f")


def _run_job(job: Job, inputs: Path) -> Done:
    """Run a job's commands in this process (a fresh one: a pool's spawned worker), as the
    ``audiolsh`` command would; their output goes nowhere."""
    import contextlib
    import io

    from audiolsh.cli import cli

    t0 = time.perf_counter()
    for argv in job.commands:
        said = io.StringIO()
        code: object = 0
        with open(os.devnull, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(said):
            try:
                code = cli.main(list(argv), prog_name="audiolsh", standalone_mode=False)
            except SystemExit as exc:
                code = exc.code
            except Exception as exc:  # a command's own error: reported, the other jobs go on
                code = f"{type(exc).__name__}: {exc}"
        if code not in (0, None):
            tail = " / ".join(said.getvalue().strip().splitlines()[-3:])
            error = f"audiolsh {' '.join(argv)}: {code} {tail}".strip()
            return Done(job.name, time.perf_counter() - t0, error)
    for call in job.calls:
        try:
            call(inputs)
        except Exception as exc:
            return Done(job.name, time.perf_counter() - t0, f"{call.__name__}: {type(exc).__name__}: {exc}")
    return Done(job.name, time.perf_counter() - t0)


def _start_worker() -> None:
    # The user's defaults (an index, a format, a worker count) stay out of the commands.
    for key in [k for k in os.environ if k.startswith("AUDIOLSH_")]:
        del os.environ[key]
    os.environ["AUDIOLSH_CONFIG"] = os.devnull
    lock_numba_cache()


def run(*, processes: int | None = None, on_done: Callable[[Done], None] | None = None,
        chains: Callable[[Path], list[Job]] | None = None) -> list[Done]:
    """Run every job (``chains(inputs)``, default ``jobs``), ``processes`` at a time (default:
    the cores this process may use, one without ``fcntl``); returns them in the order they
    finished, a chain whose process died with its error."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    try:
        import fcntl  # noqa: F401
    except ImportError:  # no fcntl (Windows): one process at a time, nothing to lock
        processes = 1
    n = processes or usable_cores()
    finished: list[Done] = []
    with tempfile.TemporaryDirectory(prefix="audiolsh-precompile-") as tmp:
        write_inputs(Path(tmp))
        todo = (chains or jobs)(Path(tmp))
        # spawn: each process starts clean, as a command does (no forked numba state)
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker) as pool:
            started = {pool.submit(_run_job, job, Path(tmp)): job for job in todo}
            for future in as_completed(started):
                try:
                    done = future.result()
                except Exception as exc:  # the process died (killed, out of memory)
                    done = Done(started[future].name, 0.0, f"{type(exc).__name__}: {exc}")
                finished.append(done)
                if on_done is not None:
                    on_done(done)
    return finished

