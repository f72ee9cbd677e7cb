"""Olaf (Joren Six's landmark fingerprinter in C) as a system of protocol 2, run as a subprocess.

Its code is never imported nor copied: ``$OLAF`` names the ``olaf`` executable built from its
sources (``zig build``). Olaf reads its settings from ``$HOME/.olaf/olaf_config.json``: each run
gets its own ``HOME`` under the work folder, with the database there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from audiolsh.errors import AudiolshError
from audiolsh.evaluation.identify import Answer, BuildStats, Clip, sources_sha1, track_duration_s
from audiolsh.evaluation.peers import PeerJob, link_references, run_concurrently

logger = logging.getLogger(__name__)

__all__ = ["OLAF_CONFIGS", "OlafSystem", "olaf_from_env", "parse_olaf_results"]

OLAF_ENV = "OLAF"
OLAF_CONFIGS: dict[str, dict[str, Any]] = {"olaf": {}}
"""Named Olaf settings (keys of ``olaf_config.json``) on top of its defaults."""
_SWEEP = {"min_match_count": 1, "max_results": 1}
"""Every best candidate comes back with its count of aligned prints, the score swept to the
equal-false-match threshold (Olaf's own default reports counts >= 6)."""


def olaf_from_env() -> str:
    """The ``olaf`` executable from ``$OLAF``; AudiolshError if unusable."""
    exe = os.environ.get(OLAF_ENV)
    if not exe:
        raise AudiolshError(f"{OLAF_ENV} is not set (path to the olaf executable); Olaf is skipped")
    if not (Path(exe).is_file() and os.access(exe, os.X_OK)):
        raise AudiolshError(f"{OLAF_ENV}={exe}: no such executable; Olaf is skipped")
    return exe


def parse_olaf_results(text: str, names: Mapping[str, str]) -> dict[str, Answer]:
    """Olaf's query output (CSV-like lines: index, total, query, query offset, match count,
    query start, query stop, reference path, reference id, reference start, reference stop) ->
    query path -> answer; the offset is where the query starts in the reference
    (reference start - query start); a count of 0 is no match."""
    found: dict[str, Answer] = {}
    for line in text.splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) != 11 or not f[0].isdigit():
            continue  # the header, or a line of another kind
        count = int(f[4]) if f[4].isdigit() else 0
        if count == 0 or not f[7]:
            found[f[2]] = Answer(None, None, -math.inf)
        else:
            found[f[2]] = Answer(names.get(f[7], f[7]), float(f[9]) - float(f[5]), float(count))
    return found


class OlafSystem:
    """Olaf run as a subprocess: ``store`` over the tracks, ``query`` over clip lists.

    Queries run as ``workers`` single-threaded processes per clip length; query time is the
    batch's wall time x processes / clips (database opening included, amortised).
    """

    def __init__(self, *, name: str = "olaf", exe: str, settings: Mapping[str, Any] | None = None,
                 workers: int = 1) -> None:
        self.name = name
        self.exe = exe
        self.settings = {**(settings or {}), **_SWEEP}
        self.workers = workers
        self.thresholds: dict[str, float | None] = {"equal FM": None}
        self.query_ms: dict[str, Any] = {}
        self.info: dict[str, Any] = {"options": self.settings, "source_sha1": sources_sha1([exe])}
        self._home: Path | None = None
        self._names: dict[str, str] = {}

    def _env(self) -> dict[str, str]:
        assert self._home is not None
        return {**os.environ, "HOME": os.fspath(self._home)}

    def build(self, track_paths: Sequence[str], workdir: Path) -> BuildStats:
        self._names = link_references(track_paths, workdir / "refs")
        self._home = workdir / "home"
        db = workdir / "db"
        shutil.rmtree(db, ignore_errors=True)
        config = {**self.settings, "db_folder": f"{db}/", "cache_folder": f"{workdir / 'cache'}/"}
        (self._home / ".olaf").mkdir(parents=True, exist_ok=True)
        (self._home / ".olaf" / "olaf_config.json").write_text(json.dumps(config, indent=1))
        listfile = workdir / "refs.txt"
        listfile.write_text("".join(f"{link}\n" for link in self._names))
        wall_s = run_concurrently([PeerJob([self.exe, "store", os.fspath(listfile)], workdir / "store.out",
                                           workdir / "store.log")], what="olaf store", marker="Stored ",
                                  env=self._env())
        audio_s = float(sum(track_duration_s(p) for p in track_paths))
        size = sum(f.stat().st_size for f in db.rglob("*") if f.is_file())
        return BuildStats(len(track_paths), audio_s, wall_s, 1, size)

    def identify_batch(self, clips: Sequence[Clip], *, on_done: Callable[[int], None] | None = None
                       ) -> list[Answer]:
        if self._home is None:
            raise AudiolshError(f"{self.name}: build() must run before identify_batch()")
        workdir = self._home.parent
        found: dict[str, Answer] = {}
        for length_s in sorted({c.length_s for c in clips}):
            batch = [c for c in clips if c.length_s == length_s]
            jobs = []
            for w in range(min(self.workers, len(batch))):
                listfile = workdir / f"clips_{length_s:g}s_{w}.txt"
                listfile.write_text("".join(f"{c.path}\n" for c in batch[w :: self.workers]))
                stem = f"{length_s:g}s_{w}"
                jobs.append(PeerJob([self.exe, "query", "--threads", "1", os.fspath(listfile)],
                                    workdir / f"out_{stem}.txt", workdir / f"query_{stem}.log"))
            wall_s = run_concurrently(jobs, what="olaf query", marker="Matched ", env=self._env(),
                                      on_done=on_done)
            self.query_ms[f"{length_s:g}s_mean_per_core"] = wall_s * len(jobs) / len(batch) * 1e3
            for job in jobs:
                found.update(parse_olaf_results(job.out.read_text(errors="replace"), self._names))
        missing = [c.path for c in clips if c.path not in found]
        if missing:
            raise AudiolshError(f"{self.name}: no answer for {len(missing)} clips, e.g. {missing[0]}")
        return [found[c.path] for c in clips]
