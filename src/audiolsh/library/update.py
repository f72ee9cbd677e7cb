"""Bringing a library up to date with a music folder: new files added, tracks whose files were
deleted dropped, files whose content changed (same path, new content hash) indexed again.

``plan_update`` compares the folder's audio files (walked as ``index`` walks them) and their
content hashes with the catalogue; ``apply_update`` removes first (``Library.remove_track``,
each removal durable on its own) and then indexes (``index_audio``, committed in batches).  A
run killed anywhere leaves a library whose every track is whole, and the next run plans from
what is there: whatever was not done yet is still to do, so it finishes the work.

Removing before adding keeps one rule true: a track's content is in the library at most once.
A file moved inside the folder is a removal and an addition (its features are extracted again).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audiolsh.files import shown, stat_key
from audiolsh.library.build import IngestReport, audio_files, hash_stream, index_audio

if TYPE_CHECKING:
    from audiolsh.library.core import Library
    from audiolsh.storage import Track

__all__ = ["UpdatePlan", "UpdateReport", "apply_update", "plan_update"]


@dataclass
class UpdatePlan:
    """What ``apply_update`` does to bring a library up to date with ``folder`` (absolute)."""

    folder: str
    #: files not in the library (by path and content)
    add: list[str] = field(default_factory=list)
    #: tracks under the folder whose files are gone
    remove: list[Track] = field(default_factory=list)
    #: (the track as indexed, its file) for files whose content changed
    reindex: list[tuple[Track, str]] = field(default_factory=list)
    #: files the library holds as they are (or holds their content under another name)
    unchanged: list[str] = field(default_factory=list)
    #: (file, why) for files that cannot be read
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: (entry, why) for walked entries that are not regular files
    ignored: list[tuple[str, str]] = field(default_factory=list)
    #: every readable file's content hash, as read (indexing does not read it again if the file's
    #: ``stats``, taken around that read, are the same then)
    digests: dict[str, str] = field(default_factory=dict)
    stats: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)

    def unchanged_digests(self, files: Iterable[str]) -> dict[str, str]:
        """``digests`` of those of ``files`` still as they were when read (a file rewritten
        since, say by a tag editor, is read again)."""
        out = {}
        for f in files:
            try:
                if f in self.stats and stat_key(os.stat(f)) == self.stats[f]:
                    out[f] = self.digests[f]
            except OSError:
                pass
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per change: ``action`` (add, remove, re-index; failed: a file or folder that
        cannot be read, with its ``error``) and ``path``."""
        return ([{"action": "remove", "path": t.path, "error": None} for t in self.remove]
                + [{"action": "re-index", "path": shown(f), "error": None} for _, f in self.reindex]
                + [{"action": "add", "path": shown(f), "error": None} for f in self.add]
                + [{"action": "failed", "path": shown(f), "error": e} for f, e in self.failed])


@dataclass
class UpdateReport:
    """What a run did: files and tracks by what happened to them."""

    added: list[str]
    removed: list[str]
    reindexed: list[str]
    unchanged: list[str]
    failed: list[tuple[str, str]]

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "re-indexed": len(self.reindexed),
                "unchanged": len(self.unchanged), "failed": len(self.failed)}


def _under(folder: str) -> Callable[[str], bool]:
    prefix = shown(folder).rstrip(os.sep) + os.sep
    return lambda path: path.startswith(prefix)


def _gone(path: str) -> bool:
    """Whether ``path`` is known not to exist: a file in a folder that cannot be read (no
    permission, a disk error) may still be there, and its track is kept."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def plan_update(library: Library, folder: str | os.PathLike[str],
                on_file: Callable[[str, str], None] | None = None, workers: int | None = None,
                on_hashed: Callable[[str, int, bool], None] | None = None) -> UpdatePlan:
    """Compare ``folder``'s audio files (read whole, for their content hashes, in ``workers``
    threads: default one per core; ``on_hashed(path, n_files, failed)`` after each) with the tracks
    the catalogue lists under it."""
    root = os.path.abspath(folder)
    plan = UpdatePlan(root)
    walked = IngestReport([], [], [])
    files = audio_files([root], walked, on_file)
    plan.ignored = walked.ignored
    plan.failed += walked.failed  # folders that cannot be read: their tracks stay (``_gone``)
    under = _under(root)
    by_path: dict[str, list[Track]] = {}
    for t in library.tracks():
        if under(t.path):
            by_path.setdefault(t.path, []).append(t)
    found, digests = set(), plan.digests
    hashes = hash_stream(files, workers, on_hashed=on_hashed, stats=plan.stats)
    for f, (digest, error) in zip(files, hashes):
        name = shown(f)
        found.add(name)
        if digest is None:
            plan.failed.append((f, error))
            continue
        digests[f] = digest
        held = by_path.get(name, [])
        stale = [t for t in held if t.content_hash != digest]
        if len(stale) < len(held):  # one of them is this content
            plan.remove += stale  # an older version an interrupted run left
            plan.unchanged.append(f)
        elif stale:
            plan.reindex.append((stale[0], f))
            plan.remove += stale[1:]
        else:
            plan.add.append(f)
    plan.remove += [t for path, held in by_path.items() if path not in found and _gone(path) for t in held]
    # Content the library holds under a name that stays is not indexed twice (``index`` skips it).
    leaving = {t.content_hash for t in plan.remove} | {t.content_hash for t, _ in plan.reindex}
    still_new: list[str] = []
    for f in plan.add:
        holder = library.track_by_hash(digests[f])
        (plan.unchanged if holder is not None and holder.content_hash not in leaving else still_new).append(f)
    plan.add = still_new
    return plan


def apply_update(library: Library, plan: UpdatePlan, **index_options: Any) -> UpdateReport:
    """Carry out ``plan``: removals first, then ``index_audio`` of the files to add and re-index
    (``index_options``: ``workers``, ``commit_every``, ``on_file``, ``on_plan``, ...)."""
    for t in [*plan.remove, *(t for t, _ in plan.reindex)]:
        if library.track(t.id) is not None:  # another writer may have removed it meanwhile
            library.remove_track(t.id)
    files = [*(f for _, f in plan.reindex), *plan.add]
    # names are relative to the folder updated, not to each file's own folder
    known = plan.unchanged_digests(files)
    report = (index_audio(library, files, roots=[plan.folder], known_hashes=known, **index_options)
              if files else IngestReport([], [], []))
    added = set(report.added)
    again = {f for _, f in plan.reindex}
    return UpdateReport(
        added=[f for f in plan.add if f in added], removed=[t.path for t in plan.remove],
        reindexed=[f for f in files if f in again and f in added],
        unchanged=plan.unchanged + report.skipped,
        failed=plan.failed + report.failed,
    )
