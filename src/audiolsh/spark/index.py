"""A library built on Spark: ``spark_index`` answers as ``index_audio`` of the same files.

The stages (Spark's stage lines and a count of files extracted show how far it is):

1. list (driver): ``audio_files``, the discovery of ``audiolsh index``;
2. hash (tasks): each file's content hash, and the tags of a file whose track was indexed
   before tags were read (a format-6 library; stored in one commit); the driver skips files
   the catalogue holds and later copies within the run, as ``index_audio`` does, so a run
   resumes where one stopped;
3. extract (tasks): every mode from one decode per file, kept by Spark (memory, then local
   disk) as portable bytes (``Extracted.to_bytes``: npy arrays and a JSON header);
4. fit (driver): when the library has still to learn, from its first ``FIRST_BATCH`` files in
   path order that extract, the sample ``audiolsh index`` learns from;
5. build (tasks): one ``LibraryPart`` per partition from a ``BuildSpec`` (JSON: the config with
   the learned state, every mode's index config), its rows numbered locally;
6. attach (driver): the parts come back as bytes (``LibraryPart.to_bytes``: npy arrays and
   JSON in a zip, never pickled), one partition at a time, unpacked into a local spool folder
   and memory-mapped; one ``Library.attach`` commits them all, giving item ids in path order
   as ``audiolsh index`` gives them; then the segments merge: into one per mode in a new
   library (what one build of all the rows makes), by the usual policy in one that grows.

The executors need only the audio files: the driver alone reads and writes the library, so a
directory (shared or not) and a ``redis://`` location work alike, with no staging folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from audiolsh.audio import content_hash
from audiolsh.errors import AudiolshError
from audiolsh.files import shown
from audiolsh.library import FIRST_BATCH, Extracted, IngestReport, Library, LibraryPart
from audiolsh.library.build import BuildSpec, audio_files, build_from_spec, plan_files
from audiolsh.library.extract import extract_safe
from audiolsh.library.tags import has_tags_read, read_tags
from audiolsh.spark.session import progress

log = logging.getLogger(__name__)

#: Partitions per core Spark has, when not given: some balance between slow and fast files.
PARTITIONS_PER_CORE = 2


# In the tasks ------------------------------------------------------------------------------

def _opened(path: str, cwd: str) -> str:
    """Where a task opens a file: a relative path is the driver's."""
    return path if os.path.isabs(path) else os.path.join(cwd, path)


def _hash_task(cwd: str, untagged: Any, path: str) -> tuple[str | None, str, dict[str, Any] | None]:
    """(content hash, "", the file's tags if ``untagged.value`` holds its content: a track
    indexed before tags were read) or (None, what is wrong with the file, None)."""
    try:
        digest = content_hash(_opened(path, cwd))
    except AudiolshError as exc:
        return None, str(exc), None
    except OSError as exc:
        return None, f"{path}: {exc}", None
    return digest, "", read_tags(_opened(path, cwd)) if digest in untagged.value else None


def _extract_task(job: tuple[str, tuple[str, ...], float, float], done: Any, audio_s: Any,
                  rows: Iterable[tuple[int, str, str]]) -> Iterator[tuple[int, bytes | None, str]]:
    """(file number, its extraction as bytes, "") or (file number, None, the error); counts the
    files done and the seconds of audio extracted in the accumulators ``done`` and ``audio_s``."""
    cwd, modes, window_s, hop_s = job
    for i, path, digest in rows:
        result = extract_safe((_opened(path, cwd), digest, modes, window_s, hop_s))
        if isinstance(result, Extracted):
            audio_s.add(float(result.duration_s))
            yield i, replace(result, path=path).to_bytes(), ""
        else:
            yield i, None, result[1]
        done.add(1)


def _status(row: tuple[int, bytes | None, str]) -> tuple[int, bool, str]:
    return row[0], row[1] is not None, row[2]


def _among(wanted: frozenset[int], row: tuple[int, bytes | None, str]) -> bool:
    return row[0] in wanted


def _blob(row: tuple[int, bytes | None, str]) -> tuple[int, bytes | None]:
    return row[0], row[1]


def _build_task(spec_json: str, partition: int,
                rows: Iterable[tuple[int, bytes | None, str]]) -> Iterator[tuple[int, bytes]]:
    """The partition's ``LibraryPart`` as bytes (nothing for a partition without a good file)."""
    batch = [Extracted.from_bytes(blob) for _, blob, _ in rows if blob is not None]
    if batch:
        spec = BuildSpec.from_dict(json.loads(spec_json))
        yield partition, build_from_spec(spec, batch).to_bytes()


# On the driver -----------------------------------------------------------------------------

def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


@contextmanager
def _files_done(done: Any, audio_s: Any, total: int, say: Callable[[str], None], *,
                every_s: float = 1.0) -> Iterator[None]:
    """Say how many files the tasks have extracted, and how fast, whenever it changes."""
    stop = threading.Event()
    said = [0]
    t0 = time.monotonic()

    def line(n: int) -> str:
        elapsed = max(time.monotonic() - t0, 1e-9)
        return (f"{n}/{_files(total)} extracted, {n / elapsed:.1f} files/s,"
                f" {float(audio_s.value) / elapsed:.0f}x real time")

    def run() -> None:
        while not stop.wait(every_s):
            n = int(done.value)
            if n != said[0]:
                said[0] = n
                say(line(n))

    thread = threading.Thread(target=run, daemon=True, name="audiolsh-spark-files")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if int(done.value) != said[0]:
        say(line(int(done.value)))


def spark_index(
    session: Any,
    library: Library,
    paths: Iterable[str | os.PathLike[str]],
    *,
    partitions: int | None = None,
    on_file: Callable[[str, str], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> IngestReport:
    """Index every audio file under ``paths`` into ``library`` on Spark (see the module
    docstring); ``on_file(path, status)`` as ``index_audio`` calls it, ``say(line)`` for each
    stage.  ``partitions``: one library part each (default: twice the cores Spark has, at most
    one per file)."""
    from pyspark import StorageLevel

    say = say or log.info
    sc = session.sparkContext
    cwd = os.getcwd()
    report = IngestReport([], [], [])
    paths = list(paths)
    files = audio_files(paths, report, on_file)
    library.add_roots(paths)
    if not files:
        return report

    def n_partitions(n_files: int) -> int:
        return max(1, min(n_files, partitions or PARTITIONS_PER_CORE * sc.defaultParallelism))

    with progress(session, say):
        say(f"{_files(len(files))}: hashing")
        tracks = library.tracks()
        untagged = {t.content_hash: t for t in tracks if not has_tags_read(t)}
        read = sc.parallelize(files, n_partitions(len(files))).map(
            partial(_hash_task, cwd, sc.broadcast(frozenset(untagged)))).collect()
        hashes = [(digest, error) for digest, error, _ in read]
        known = {t.content_hash for t in tracks}
        todo, later = plan_files(files, hashes, known.__contains__, report)
        # Tracks indexed before tags were read (a format-6 library) take them, as `index` gives them.
        tags: dict[int, dict[str, Any]] = {}
        for f, (digest, _, found) in zip(files, read):
            track = untagged.get(digest or "")
            if found is not None and track is not None and track.id not in tags:
                tags[track.id] = found
                report.tagged.append(f)
        library.set_tags(tags)
        for f in report.skipped:
            on_file and on_file(f, "skipped")
        for f, msg in report.failed:
            on_file and on_file(f, f"failed: {msg}")
        if not todo:
            return report

        n = n_partitions(len(todo))
        say(f"{_files(len(todo))} to index ({len(report.skipped)} already indexed):"
            f" extracting in {n} partition{'s' if n > 1 else ''}")
        cfg = library.config
        done = sc.accumulator(0)
        audio_s = sc.accumulator(0.0)
        extracted = sc.parallelize([(i, f, d) for i, (f, d) in enumerate(todo)], n).mapPartitions(
            partial(_extract_task, (cwd, cfg.modes, cfg.window_s, cfg.hop_s), done, audio_s)
        ).persist(StorageLevel.MEMORY_AND_DISK)
        built = None
        spool = None
        try:
            with _files_done(done, audio_s, len(todo), say):
                summary = extracted.map(_status).collect()
            good = [i for i, ok, _ in summary if ok]
            for i, ok, msg in summary:
                if ok:
                    continue
                report.failed.append((todo[i][0], msg))
                on_file and on_file(todo[i][0], f"failed: {msg}")
                # Not "already indexed": the file of the same content failed (one round only here).
                for f in later.pop(todo[i][1], []):
                    why = f"{shown(f)}: same content as {shown(todo[i][0])}, which failed"
                    report.failed.append((f, why))
                    on_file and on_file(f, f"failed: {why}")
            for i in good:
                for f in later.pop(todo[i][1], []):
                    report.skipped.append(f)
                    on_file and on_file(f, "skipped")
            if not good:
                return report

            new_library = len(library) == 0
            if library.state().missing():
                sample = good[:FIRST_BATCH]
                say(f"learning the library's statistics from its first {_files(len(sample))}")
                blobs = dict(extracted.filter(partial(_among, frozenset(sample))).map(_blob).collect())
                library.fit([Extracted.from_bytes(blobs[i]) for i in sample])

            spec = BuildSpec.of(library, (todo[i][1] for i in good))
            say(f"building one library part per partition ({n})")
            built = extracted.mapPartitionsWithIndex(partial(_build_task, json.dumps(spec.to_dict()))) \
                .persist(StorageLevel.MEMORY_AND_DISK)
            built.count()  # every build at once; the parts then come back one at a time
            spool = Path(tempfile.mkdtemp(prefix="audiolsh-parts-"))
            parts = [LibraryPart.from_bytes(blob, spool / f"part-{pid:05d}")
                     for pid, blob in built.toLocalIterator()]

            say(f"attaching {len(parts)} parts to {library.path} in one commit")
            library.set_auto_compact(False)
            try:
                library.attach(parts)
                del parts
                say("merging segments" + (" into one per mode" if new_library else ""))
                library.compact(full=new_library)
            finally:
                library.set_auto_compact(True)
        finally:
            extracted.unpersist()
            if built is not None:
                built.unpersist()
            if spool is not None:
                shutil.rmtree(spool, ignore_errors=True)
    for i in good:
        report.added.append(todo[i][0])
        on_file and on_file(todo[i][0], "indexed")
    return report
