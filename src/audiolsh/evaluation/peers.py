"""What the adapters of outside fingerprinters (audfprint, Olaf) share: reference links whose names
the peer prints safely, and running its processes concurrently with progress read from their logs."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiolsh.errors import AudiolshError

logger = logging.getLogger(__name__)

__all__ = ["PeerJob", "link_references", "run_concurrently"]


def link_references(track_paths: Sequence[str], refs: Path) -> dict[str, str]:
    """Symlinks ``refs/t0000.ext`` ... to the tracks (peers print names in space- or comma-separated
    lines: keep them plain); returns link -> original path."""
    refs.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    for i, p in enumerate(track_paths):
        link = refs / f"t{i:04d}{Path(p).suffix.lower()}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(p).resolve())
        names[os.fspath(link)] = p
    return names


@dataclass(frozen=True)
class PeerJob:
    """One peer process: ``cmd``, its stdout to ``out``, its stderr to ``log`` (``out`` when None)."""

    cmd: Sequence[str]
    out: Path
    log: Path | None = None


def run_concurrently(jobs: Sequence[PeerJob], *, what: str, marker: str,
                     env: Mapping[str, str] | None = None,
                     on_done: Callable[[int], None] | None = None) -> float:
    """Start every job at once; wall seconds until all have ended. ``on_done`` gets the count of new
    ``marker`` occurrences in the logs (one per file the peer finished), polled every 0.2 s.
    AudiolshError naming the log when a process fails."""
    logs = [j.log or j.out for j in jobs]
    t0 = time.perf_counter()
    procs = []
    for job in jobs:
        logger.info("running %s", shlex.join(job.cmd))
        with open(job.out, "w") as out:
            if job.log is None:
                procs.append(subprocess.Popen(job.cmd, stdout=out, stderr=subprocess.STDOUT, env=env))
            else:
                with open(job.log, "w") as err:
                    procs.append(subprocess.Popen(job.cmd, stdout=out, stderr=err, env=env))
    reported = 0
    while True:
        running = any(p.poll() is None for p in procs)
        if on_done:
            n = sum(log.read_text(errors="replace").count(marker) for log in logs)
            if n > reported:
                on_done(n - reported)
                reported = n
        if not running:
            break
        time.sleep(0.2)
    wall_s = time.perf_counter() - t0
    for p, log in zip(procs, logs):
        if p.returncode != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-4:])
            raise AudiolshError(f"{what} failed (exit {p.returncode}, log {log}): {tail}")
    return wall_s
