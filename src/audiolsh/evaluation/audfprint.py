"""audfprint (dpwe's public fingerprinter) as a system of protocol 2, run as a subprocess.

Its code is never imported nor copied: ``$AUDFPRINT`` names its ``audfprint.py`` and
``$AUDFPRINT_PYTHON`` the interpreter that has its dependencies.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from audiolsh.errors import AudiolshError
from audiolsh.evaluation.identify import Answer, BuildStats, Clip, sources_sha1, track_duration_s
from audiolsh.evaluation.peers import PeerJob, link_references, run_concurrently

logger = logging.getLogger(__name__)

__all__ = ["AUDFPRINT_CONFIGS", "AudfprintSystem", "audfprint_from_env"]


AUDFPRINT_ENV = "AUDFPRINT"
AUDFPRINT_PYTHON_ENV = "AUDFPRINT_PYTHON"
AUDFPRINT_CONFIGS: dict[str, tuple[str, ...]] = {
    "audfprint": (),
    "audfprint-dense": ("--density", "100", "--fanout", "10"),
}
"""Named audfprint settings (options given both to ``new`` and ``match``)."""
_MATCHED = re.compile(r"^Matched (?P<q>\S+) [-\d.]+ sec \d+ raw hashes as (?P<ref>\S+) "
                      r"at\s+(?P<t>-?[\d.]+) s with\s+(?P<n>\d+) of\s+\d+ common hashes")
_NOMATCH = re.compile(r"^NOMATCH (?P<q>\S+) ")


def audfprint_from_env() -> tuple[str, str]:
    """(python, audfprint.py) from ``$AUDFPRINT_PYTHON`` and ``$AUDFPRINT``; AudiolshError if unusable."""
    script = os.environ.get(AUDFPRINT_ENV)
    if not script:
        raise AudiolshError(f"{AUDFPRINT_ENV} is not set (path to audfprint.py); audfprint is skipped")
    if not Path(script).is_file():
        raise AudiolshError(f"{AUDFPRINT_ENV}={script}: no such file; audfprint is skipped")
    python = os.environ.get(AUDFPRINT_PYTHON_ENV) or sys.executable
    if not (Path(python).is_file() or shutil.which(python)):
        raise AudiolshError(f"{AUDFPRINT_PYTHON_ENV}={python}: no such interpreter; audfprint is skipped")
    return python, script


class AudfprintSystem:
    """dpwe's audfprint run as a subprocess: ``new`` over the tracks, ``match`` over clip lists.

    ``--maxtimebits 16`` (offsets up to 25 min; the default 14 bits alias offsets past 6.3 min) is
    the one setting added to ``options``. Matching runs with ``--min-count 0`` so that every best
    candidate comes back with its count of time-aligned hashes, the score swept to the
    equal-false-match threshold. Queries run as ``workers`` single-core processes per clip length;
    query time is the batch's wall time x processes / clips (database loads included, amortised).
    """

    def __init__(self, *, name: str, python: str, script: str, options: Sequence[str] = (), workers: int = 1
                 ) -> None:
        self.name = name
        self.python, self.script = python, script
        self.options = tuple(options)
        self.workers = workers
        self.thresholds: dict[str, float | None] = {"equal FM": None}
        self.query_ms: dict[str, Any] = {}
        self.info: dict[str, Any] = {
            "options": ["--maxtimebits", "16", *self.options],
            "source_sha1": sources_sha1(sorted(Path(script).parent.glob("*.py")))}
        self._db: Path | None = None
        self._names: dict[str, str] = {}

    def _run(self, arg_lists: Sequence[Sequence[str]], logdir: Path, *,
             on_done: Callable[[int], None] | None = None) -> float:
        """Run audfprint once per argument list, concurrently; wall seconds until all have ended."""
        jobs = [PeerJob([self.python, self.script, *args], logdir / f"audfprint_{i}.log")
                for i, args in enumerate(arg_lists)]
        return run_concurrently(jobs, what="audfprint", marker=" Analyzed ", on_done=on_done)

    def build(self, track_paths: Sequence[str], workdir: Path) -> BuildStats:
        self._names = link_references(track_paths, workdir / "refs")
        listfile = workdir / "refs.txt"
        listfile.write_text("".join(f"{link}\n" for link in self._names))
        self._db = workdir / "db.pklz"
        self._db.unlink(missing_ok=True)
        wall_s = self._run([["new", "--dbase", os.fspath(self._db), "--maxtimebits", "16",
                             "--ncores", str(self.workers), *self.options, "--list", os.fspath(listfile)]],
                           workdir)
        audio_s = float(sum(track_duration_s(p) for p in track_paths))
        return BuildStats(len(track_paths), audio_s, wall_s, self.workers, self._db.stat().st_size)

    def identify_batch(self, clips: Sequence[Clip], *, on_done: Callable[[int], None] | None = None
                       ) -> list[Answer]:
        if self._db is None:
            raise AudiolshError(f"{self.name}: build() must run before identify_batch()")
        found: dict[str, Answer] = {}
        workdir = self._db.parent
        for length_s in sorted({c.length_s for c in clips}):
            batch = [c for c in clips if c.length_s == length_s]
            # One single-core process per worker, each on its share of the clips: audfprint's own
            # --ncores sends the hash table to joblib workers and is slower than one core.
            jobs, outs = [], []
            for w in range(min(self.workers, len(batch))):
                listfile = workdir / f"clips_{length_s:g}s_{w}.txt"
                outs.append(workdir / f"out_{length_s:g}s_{w}.txt")
                listfile.write_text("".join(f"{c.path}\n" for c in batch[w :: self.workers]))
                jobs.append(["match", "--dbase", os.fspath(self._db), "--maxtimebits", "16",
                             "--min-count", "0", "--max-matches", "1", *self.options,
                             "--opfile", os.fspath(outs[-1]), "--list", os.fspath(listfile)])
            wall_s = self._run(jobs, workdir, on_done=on_done)
            self.query_ms[f"{length_s:g}s_mean_per_core"] = wall_s * len(jobs) / len(batch) * 1e3
            for line in (ln for out in outs for ln in out.read_text().splitlines()):
                if m := _MATCHED.match(line):
                    found[m["q"]] = Answer(self._names.get(m["ref"], m["ref"]), float(m["t"]), float(m["n"]))
                elif m := _NOMATCH.match(line):
                    found[m["q"]] = Answer(None, None, -math.inf)
        missing = [c.path for c in clips if c.path not in found]
        if missing:
            raise AudiolshError(f"{self.name}: no answer for {len(missing)} clips, e.g. {missing[0]}")
        return [found[c.path] for c in clips]
