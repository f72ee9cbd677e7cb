"""The music library: one storage location, one index per mode, one track catalogue.

    LOCATION/tracks         the catalogue of complete tracks (its ids are the library's track
                            ids, each track's tags in its meta); its config "library" holds the
                            library's config and learned state, "roots" the folders indexed
    LOCATION/fingerprint    landmark hashes (identification)
    LOCATION/<mode>         an ``Index`` per vector or set mode (embedding, rhythm, timbre, ...)

``LOCATION`` is a directory, ``memory://name`` or a Redis location (``storage.join`` names the
parts), so a library is wholly inside one backend.  Writers hold the location's lock
(``storage.location_lock``) for every change of the library, one writer at a time; a killed
writer's lock is released (a directory's) or expires (Redis's lease).  Every commit of one
storage is atomic, and a change of several is ordered so that a crash between them leaves
nothing a reader returns and the next writer finishes it:

- creation: the modes' storages first, the library's config in the catalogue last: the library
  exists from that commit on.  Before it, the location holds an interrupted creation, which the
  next ``create`` (``audiolsh index``) finishes; nothing else opens it.
- a batch of files: committed to every mode first and to the catalogue last, so a track is
  listed only once every mode holds it.  A crash between the two leaves rows that no catalogue
  track points at: they are never returned, and the next run adds the file to the modes that
  lack it and then to the catalogue.
- removing a track: one catalogue commit drops it and records the removal (config "removing"),
  then every mode drops its rows, then the record goes.  The track is gone at once; rows a crash
  leaves behind are never returned, and the next writer (any ``write``) removes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError, StorageUnavailable
from audiolsh.features import normalisation as wccn
from audiolsh.features.scaling import Fusion, Standardizer
from audiolsh.index import Index
from audiolsh.library.config import (
    CONFIG_NAME,
    DEFAULT_MODES,
    HOP_S,
    LIBRARY_FILE,
    LIBRARY_VERSION,
    WINDOW_S,
    LibraryConfig,
    check_modes,
)
from audiolsh.library.learned import Learned
from audiolsh.library.learned import fit as fit_learned
from audiolsh.library.modes import REGISTRY, Mode, modes_for
from audiolsh.library.scale import SCALE_CONFIG, ScoreScale, fit_scale
from audiolsh.library.tags import Names, has_tags_read, root_of
from audiolsh.storage import (
    Location,
    Storage,
    Track,
    describe,
    join,
    location_lock,
    open_storage,
    split,
    storage_exists,
    storage_started,
)
from audiolsh.storage.page_in import PageIn, page_in

if TYPE_CHECKING:
    from audiolsh.index.fingerprint import FingerprintIndex
    from audiolsh.library.build import LibraryPart
    from audiolsh.library.extract import Extracted

log = logging.getLogger(__name__)

CATALOGUE = "tracks"
#: The catalogue's config of removals under way: {"tracks": [{"id", "path", "content_hash"}]}.
REMOVING = "removing"
#: The catalogue's config of the folders ``index`` was given: {"roots": [absolute folders]}.
ROOTS = "roots"
INTERRUPTED = ("a library whose creation was interrupted; the next `audiolsh index` finishes it")


def _legacy_file(location: Location | None) -> Path | None:
    """``library.json`` of a format 3-5 library at a directory location, if there is one."""
    if location is None:
        return None
    scheme, rest = split(location)
    file = Path(rest) / LIBRARY_FILE
    return file if scheme == "file" and file.exists() else None


def is_library(location: Location | None) -> bool:
    if location is None:
        return False
    if _legacy_file(location) is not None:
        return True
    where = join(location, CATALOGUE)
    with as_given(location):
        if not storage_exists(where):
            return False
        storage = open_storage(where, readonly=True)
        try:
            return storage.config(CONFIG_NAME) is not None
        finally:
            storage.close()


def new_config(*, modes: Sequence[str] = DEFAULT_MODES, window_s: float = WINDOW_S,
               hop_s: float = HOP_S, seed: int = 0, normalisation: str = wccn.DEFAULT) -> LibraryConfig:
    """The config of a new library, validated."""
    return LibraryConfig(tuple(modes), window_s, hop_s, seed, normalisation=normalisation).validate()


def _refuse_vector_index(location: Location | None) -> None:
    if location is not None and storage_exists(location):
        raise IndexFormatError(
            f"{location}: this is a vector index, not a music library; choose another --index")


def creation_interrupted(location: Location | None) -> bool:
    """True when ``location`` holds a library's storages but not its config: a creation that
    stopped before its last commit (``Library.create`` finishes it)."""
    if location is None or is_library(location):
        return False
    return any(storage_started(join(location, name)) for name in (CATALOGUE, *REGISTRY))


class Library:
    """Open with ``Library.open(location)``; make one with ``Library.create(location, modes=...)``.

    ``location=None`` keeps everything in memory, private to this handle (tests, scratch).
    """

    def __init__(self, location: Location | None, config: LibraryConfig, *, readonly: bool = False,
                 create: bool = False) -> None:
        self.location = None if location is None else os.fspath(location)
        self.config = config
        self.readonly = readonly
        self.learned = Learned(config)
        #: every mode's index by name, the fingerprint index included
        self._by_mode: dict[str, Any] = {}
        self.catalogue: Storage = open_storage(join(location, CATALOGUE), create=create, readonly=readonly)
        for mode in modes_for(config.modes):
            where = join(location, mode.name)
            if mode.metric == "landmarks":
                # Imported here so that libraries without identification never load it.
                from audiolsh.index.fingerprint import FingerprintIndex

                self._by_mode[mode.name] = (
                    FingerprintIndex.create(where, exist_ok=True) if create
                    else FingerprintIndex.open(where, readonly=readonly))  # type: ignore[arg-type]
            else:
                self._by_mode[mode.name] = (
                    Index.create(where, exist_ok=True, **mode.index_config(config.seed)) if create
                    else Index.open(where, readonly=readonly))  # type: ignore[arg-type]
        self._map_cache: dict[str, tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = {}
        self._tracks_cache: tuple[int, dict[int, Track]] | None = None
        self._names_cache: tuple[int, Names] | None = None
        self._scale_cache: tuple[int, ScoreScale] | None = None
        self._write_depth = 0
        #: removals a killed writer left, which this handle finished (``_finish_removals``)
        self.finished_removals: list[Track] = []

    @property
    def indexes(self) -> dict[str, Index]:
        """The vector and set indexes by mode."""
        return {n: i for n, i in self._by_mode.items() if isinstance(i, Index)}

    @property
    def fingerprint(self) -> FingerprintIndex | None:
        return self._by_mode.get("fingerprint")

    @property
    def path(self) -> str:
        """Where the library is, for messages."""
        return describe(self.location)

    # creation ----------------------------------------------------------------------------

    @classmethod
    def create(cls, location: Location | None = None, *,
               modes: Sequence[str] = DEFAULT_MODES, window_s: float = WINDOW_S,
               hop_s: float = HOP_S, seed: int = 0, normalisation: str = wccn.DEFAULT) -> Library:
        """A new library at ``location``; an interrupted creation there is finished."""
        config = new_config(modes=modes, window_s=window_s, hop_s=hop_s, seed=seed,
                            normalisation=normalisation)
        _refuse_vector_index(location)
        with location_lock(location):
            return cls._create_locked(location, config)

    @classmethod
    def _create_locked(cls, location: Location | None, config: LibraryConfig) -> Library:
        if location is not None and is_library(location):
            raise IndexFormatError(f"{location}: a library already exists here")
        # Every storage is made (or, after an interrupted creation, opened and its config
        # written) first ...
        lib = cls(location, config, create=True)
        # ... and the library's config last: its commit is the library's creation.
        with lib.catalogue.write() as w:
            w.set_config({"kind": "library-catalogue"})
            w.set_config(config.to_dict(), CONFIG_NAME)
        return lib

    @classmethod
    def open(cls, location: Location, *, readonly: bool = False) -> Library:
        data, where = _read_config(location)
        lib = cls(location, LibraryConfig.from_dict(data, where), readonly=readonly)
        if not readonly and lib.catalogue.config(CONFIG_NAME) is None:
            lib._migrate()
        if not readonly and lib._removing():
            with lib._writing():  # finishes them
                pass
        return lib

    def _migrate(self) -> None:
        """A format 3-5 library: its config moves into the catalogue storage (then the file goes;
        a crash in between leaves both, and the storage wins)."""
        with self._writing(), self.catalogue.write() as w:
            w.set_config(self.config.to_dict(), CONFIG_NAME)
        legacy = _legacy_file(self.location)
        if legacy is not None:
            legacy.unlink()
        log.info("%s: library config moved into its catalogue storage", self.path)

    @classmethod
    def open_or_create(cls, location: Location, **params: Any) -> Library:
        """Open the library at ``location``, or create it; of two first runs at once, one
        creates it and the other waits for the location's lock, then opens it."""
        if not is_library(location):
            config = new_config(**params)
            _refuse_vector_index(location)
            with location_lock(location):
                if not is_library(location):
                    return cls._create_locked(location, config)
        lib = cls.open(location)
        wanted = params.get("modes")
        if wanted is not None and set(check_modes(wanted)) - set(lib.config.modes):
            lib.close()
            raise ParameterError(
                f"{location}: the library was built with modes {list(lib.config.modes)};"
                f" it cannot add {sorted(set(wanted) - set(lib.config.modes))}"
                " (index into a new library)"
            )
        return lib

    def close(self) -> None:
        self.catalogue.close()
        for index in self._by_mode.values():
            index.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the catalogue -----------------------------------------------------------------------

    @property
    def modes(self) -> tuple[str, ...]:
        return self.config.modes

    def mode(self, name: str) -> Mode:
        """A mode this library holds."""
        if name not in self._by_mode:
            mode = REGISTRY.get(name)
            needs = [n for n in (mode.needs if mode else (name,)) if n not in self.modes] or [name]
            plural = "s" if len(needs) > 1 else ""
            raise ParameterError(
                f"{self.path}: the library was built without the {' and '.join(needs)} mode{plural};"
                f" index the music again into a new library with --modes including {' and '.join(needs)}")
        return REGISTRY[name]

    def index(self, name: str) -> Index:
        """The vector or set index of a mode this library holds."""
        self.mode(name)
        index = self._by_mode[name]
        if not isinstance(index, Index):
            raise ParameterError(f"the {name} mode has no vector index")
        return index

    def _catalogue(self) -> dict[int, Track]:
        """The complete tracks by id, read once per catalogue version: a query names its
        results' tracks without a round trip each (a remote backend)."""
        version = self.catalogue.version()
        if self._tracks_cache is None or self._tracks_cache[0] != version:
            self._tracks_cache = (version, {t.id: t for t in self.catalogue.tracks()})
        return self._tracks_cache[1]

    def tracks(self) -> list[Track]:
        return list(self._catalogue().values())

    def track(self, track_id: int) -> Track | None:
        return self._catalogue().get(int(track_id))

    def track_by_hash(self, content_hash: str) -> Track | None:
        return self.catalogue.track_by_hash(content_hash)

    def __len__(self) -> int:
        return len(self._catalogue())

    def names(self) -> Names:
        """Tracks' names and paths relative to the folders indexed (``library.tags``), read
        once per catalogue version."""
        version = self.catalogue.version()
        if self._names_cache is None or self._names_cache[0] != version:
            roots = (self.catalogue.config(ROOTS) or {}).get("roots", [])
            self._names_cache = (version, Names.of(roots, [t.path for t in self.tracks()]))
        return self._names_cache[1]

    def __contains__(self, content_hash: object) -> bool:
        return isinstance(content_hash, str) and self.track_by_hash(content_hash) is not None

    def track_map(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """One mode's track ids (sorted) and the library track ids they map to (complete
        tracks only); cached until either side commits."""
        store = self._by_mode[name].storage
        key = (store.version(), self.catalogue.version())
        cached = self._map_cache.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        by_hash = {t.content_hash: t.id for t in self._catalogue().values()}
        pairs = sorted((t.id, by_hash[t.content_hash]) for t in store.tracks() if t.content_hash in by_hash)
        arrays = (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))
        self._map_cache[name] = (key, arrays)
        return arrays

    def mode_track_ids(self, name: str) -> dict[str, int]:
        """content hash -> track id inside one mode's index."""
        return {t.content_hash: t.id for t in self._by_mode[name].tracks()}

    def resolve_tracks(self, name: str, sub_ids: np.ndarray) -> np.ndarray:
        """Map a mode's track ids to library ids (-1 for rows of no complete track)."""
        keys, vals = self.track_map(name)
        if not len(keys):
            return np.full(len(sub_ids), -1, np.int64)
        pos = np.clip(np.searchsorted(keys, sub_ids), 0, len(keys) - 1)
        return np.where(keys[pos] == sub_ids, vals[pos], -1)

    def mode_tracks(self, name: str, track_ids: np.ndarray) -> np.ndarray:
        """Map library track ids to a mode's track ids (-1 where the mode lacks the track)."""
        keys, vals = self.track_map(name)
        out = np.full(len(track_ids), -1, np.int64)
        if not len(keys) or not len(track_ids):
            return out
        by_lib = np.argsort(vals)
        pos = np.clip(np.searchsorted(vals[by_lib], track_ids), 0, len(vals) - 1)
        return np.where(vals[by_lib][pos] == track_ids, keys[by_lib][pos], -1)

    def mode_items(self, name: str) -> dict[int, int]:
        """Library track id -> rows the mode holds of it."""
        sub = self._by_mode[name].tracks()
        lib_ids = self.resolve_tracks(name, np.array([t.id for t in sub], np.int64))
        return dict(zip(lib_ids.tolist(), (t.n_items for t in sub)))

    def sizes(self) -> dict[str, Any]:
        """How big the library is, cheap to ask (counts the indexes keep; the catalogue is
        cached between commits): ``n_tracks``, and ``rows`` per mode (excerpt windows or
        seconds; hashes for the fingerprint)."""
        rows = {name: (self._by_mode[name].n_hashes() if name == "fingerprint" else len(self._by_mode[name]))
                for name in self.modes}
        return {"n_tracks": len(self), "rows": rows}

    def mapped_files(self) -> list[Path]:
        """The files its queries read through memory maps (none for Redis or in memory)."""
        return [f for st in (self.catalogue, *(i.storage for i in self._by_mode.values()))
                for f in st.mapped_files()]

    def page_in(self, *, stop: threading.Event | None = None, budget_bytes: int | None = None) -> PageIn:
        """Read the library's index files into the page cache (see ``audiolsh.storage.page_in``),
        so the first queries after a reboot are not disk reads."""
        return page_in(self.mapped_files(), stop=stop, budget_bytes=budget_bytes)

    def info(self) -> dict[str, Any]:
        tracks = self.tracks()
        out: dict[str, Any] = {
            "location": self.path,
            "modes": list(self.modes),
            "window_s": self.config.window_s,
            "hop_s": self.config.hop_s,
            "normalisation": self.config.normalisation,
            "n_tracks": len(tracks),
            "duration_s": float(sum(t.duration_s or 0.0 for t in tracks)),
            "indexes": {},
        }
        removing = self._removing()
        if removing:  # a killed remove: gone from the catalogue, rows left in some modes
            out["removals_unfinished"] = [t.path for t in removing]
        if self.fingerprint is not None:
            out["indexes"]["fingerprint"] = self.fingerprint.info()
        for name, index in self.indexes.items():
            i = index.info()
            out["indexes"][name] = {
                "n_items": i["n_items"], "n_tracks": i["n_tracks"], "dim": i["config"]["dim"],
                "metric": i["config"]["metric"], "data_bytes": i["data_bytes"],
                "table_bytes": i["table_bytes"],
            }
        return out

    # the learned state ---------------------------------------------------------------------

    def state(self) -> Learned:
        """The learned state, re-read when another handle fitted it after this one opened."""
        if self.learned.missing():
            self._reload_config()
        return self.learned

    def _reload_config(self) -> None:
        data = self.catalogue.config(CONFIG_NAME)
        if data is None:
            return
        self.config = LibraryConfig.from_dict(data, self.path)
        self.learned = Learned(self.config)

    def standardizer(self, mode: str) -> Standardizer | None:
        return self.state().standardizers.get(mode)

    @property
    def fusion(self) -> Fusion | None:
        return self.state().fusion

    def prepare(self, mode: str, X: np.ndarray, *, learned: bool = True) -> np.ndarray:
        return self.state().prepare(mode, X, learned=learned)

    def peak_sets(self, sets: Any) -> Any:
        return self.state().peak_sets(sets)

    def combined_rows(self, ex: Extracted) -> tuple[np.ndarray, np.ndarray]:
        return self.state().combined_rows(ex)

    def score_scale(self) -> ScoreScale:
        """The scale of ``similar``'s scores (``library.scale``): the stored one, or for a library
        written before it existed one sampled now (its next write stores it)."""
        version = self.catalogue.version()
        if self._scale_cache is None or self._scale_cache[0] != version:
            scale = ScoreScale.from_dict(self.catalogue.config(SCALE_CONFIG))
            self._scale_cache = (version, scale if scale is not None else fit_scale(self))
        return self._scale_cache[1]

    def store_missing_scale(self) -> None:
        """Store the score scale if a library with tracks has none (a run killed between a
        commit and its scale's; a resumed run that adds nothing would leave every reader
        sampling it)."""
        if self.readonly or not len(self):
            return
        if ScoreScale.from_dict(self.catalogue.config(SCALE_CONFIG)) is not None:
            return
        with self._writing():
            self._refresh_scale()

    def _refresh_scale(self) -> None:
        """After a change of the catalogue (under the write lock): sample the score scale again
        when none is stored or the collection grew or shrank by more than its ``STALE_SHARE``."""
        stored = ScoreScale.from_dict(self.catalogue.config(SCALE_CONFIG))
        if stored is not None and not stored.stale(len(self)):
            return
        scale = fit_scale(self)
        with self.catalogue.write() as w:
            w.set_config(scale.to_dict(), SCALE_CONFIG)

    def fit(self, batch: Sequence[Extracted]) -> bool:
        """The explicit learning stage: learn from ``batch`` what the library still lacks
        (nothing already learned changes) and store it; True when something was learned."""
        with self._writing():
            new = fit_learned(self.state().config, batch)
            if new is None:
                return False
            with self.catalogue.write() as w:
                w.set_config(new.to_dict(), CONFIG_NAME)
        self.config = new
        self.learned = Learned(new)
        return True

    # writing -----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise IndexFormatError(f"{self.path}: opened read-only")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the location's lock while changing the library (re-entrant in one handle); the
        first thing done under it is to finish the removals a killed writer left."""
        self._check_writable()
        with contextlib.ExitStack() as stack:
            if not self._write_depth:
                stack.enter_context(location_lock(self.location))
            self._write_depth += 1
            try:
                if self._write_depth == 1:
                    self._finish_removals()
                yield
            finally:
                self._write_depth -= 1

    def _removing(self) -> list[Track]:
        """The tracks whose removal a writer began and did not finish."""
        data = self.catalogue.config(REMOVING) or {}
        return [Track(**t) for t in data.get("tracks", [])]

    def _finish_removals(self) -> None:
        removing = self._removing()
        if removing:
            self._drop_rows(removing)
            self.finished_removals += removing
            log.info("%s: finished removing %d tracks (a remove was interrupted)", self.path,
                     len(removing))

    def _drop_rows(self, tracks: Sequence[Track]) -> None:
        """Remove the rows of tracks the catalogue no longer lists from every mode, then the
        record of their removal: a crash in between leaves the record for the next writer."""
        for name, index in self._by_mode.items():
            held = self.mode_track_ids(name)
            for track in tracks:
                sub = held.get(track.content_hash)
                if sub is not None:
                    index.remove_track(sub)
        with self.catalogue.write() as w:
            w.set_config({"tracks": []}, REMOVING)

    def add_roots(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        """Record the folders ``index`` was given (a file's folder for a file): tables show
        paths relative to them."""
        with self._writing():
            have = list((self.catalogue.config(ROOTS) or {}).get("roots", []))
            new = [r for r in dict.fromkeys(root_of(p) for p in paths) if r not in have]
            if new:
                with self.catalogue.write() as w:
                    w.set_config({"roots": have + new}, ROOTS)

    def set_tags(self, tags: dict[int, dict[str, Any]]) -> int:
        """Store tags read after their tracks were indexed (by track id), in one commit that
        also marks the library format 7 (``LIBRARY_VERSION``); returns how many tracks took them."""
        with self._writing():
            stored = self.catalogue.config(CONFIG_NAME)
            todo = [(t, tags[t.id]) for t in self.catalogue.tracks() if t.id in tags and not has_tags_read(t)]
            if not todo and (stored or {}).get("format_version") == LIBRARY_VERSION:
                return 0
            with self.catalogue.write() as w:
                for track, found in todo:
                    w.set_track_meta(track.id, {**track.meta, "tags": found})
                if stored is not None and stored.get("format_version") != LIBRARY_VERSION:
                    w.set_config(LibraryConfig.from_dict(stored, self.path).to_dict(), CONFIG_NAME)
            return len(todo)

    def set_auto_compact(self, on: bool) -> None:
        """Off for a bulk build: every attach keeps its segments until ``compact``."""
        for index in self._by_mode.values():
            index.auto_compact = on

    def compact(self, *, full: bool = False) -> None:
        """Merge every mode's segments (``full``: into one each, as one build would make them)."""
        with self._writing():
            for index in self._by_mode.values():
                index.compact(full=full)

    def build(self, batch: Sequence[Extracted]) -> LibraryPart:
        """Segments of every mode for ``batch``, with item ids reserved here: a part to ``attach``
        here or after a trip through ``LibraryPart.save``/``load``."""
        from audiolsh.library.build import build_part

        return build_part(self, batch)

    def attach(self, parts: Sequence[LibraryPart]) -> list[int]:
        """Commit built parts: every mode first, the catalogue last (see the module docstring);
        returns the library track ids of the parts' tracks.  Rows of ``local_ids`` parts get
        their item ids here, in the order of the parts."""
        with self._writing():
            tracks = [t for part in parts for t in part.tracks]
            have = {t["content_hash"] for t in tracks if self.track_by_hash(t["content_hash"]) is not None}
            for name, index in self._by_mode.items():
                have_here = self.mode_track_ids(name)
                builds, local = [], []
                for part in parts:
                    for b in part.builds.get(name, []):
                        present = [t["content_hash"] in have_here for t in b.tracks]
                        if all(present):
                            continue  # committed by an earlier attach that stopped before the catalogue
                        if any(present):
                            raise ParameterError(
                                f"{self.path}: the {name} mode already holds some of this part's tracks;"
                                " build the part again")
                        builds.append(b)
                        local.append(part.local_ids)
                if any(local) and isinstance(index, Index):
                    from audiolsh.library.build import number_items

                    numbered = iter(number_items([b for b, loc in zip(builds, local) if loc],
                                                 index.reserve_ids))
                    builds = [next(numbered) if loc else b for b, loc in zip(builds, local)]
                if builds:
                    index.attach(builds)
            ids = []
            with self.catalogue.write() as w:
                for t in tracks:
                    if t["content_hash"] in have:
                        continue
                    # a part built before tags were read has none: the next index run reads them
                    tid = w.add_track(path=t["path"], content_hash=t["content_hash"],
                                      duration_s=t["duration_s"], kind="audio",
                                      meta={"tags": t["tags"]} if "tags" in t else None)
                    w.set_track_items(tid, int(t["n_windows"]))
                    have.add(t["content_hash"])
                    ids.append(tid)
            self._refresh_scale()
            return ids

    def add_batch(self, batch: Sequence[Extracted]) -> list[int]:
        """Commit extracted tracks (``library.extract.Extracted``); returns library track ids.
        The first batch also teaches the library its learned state (``fit``)."""
        with self._writing():  # another writer may have added some: they are skipped
            batch = [ex for ex in batch if self.track_by_hash(ex.content_hash) is None]
            if not batch:
                return []
            self.fit(batch)
            return self.attach([self.build(batch)])

    def remove_track(self, track_id: int) -> None:
        """Remove a track: from the catalogue, with a record of the removal (it disappears at
        once), then from every mode, then the record (see the module docstring)."""
        with self._writing():
            track = self.catalogue.track(int(track_id))
            if track is None:
                raise ParameterError(f"no track with id {track_id}")
            with self.catalogue.write() as w:
                w.remove_track(track.id)
                w.set_config({"tracks": [track.to_dict()]}, REMOVING)
            self._drop_rows([track])
            self._refresh_scale()


@contextmanager
def as_given(location: Location) -> Iterator[None]:
    """A storage that cannot be reached while its catalogue is read is named as the user gave
    it (``prefix=music``), not as the catalogue inside it (``prefix=music/tracks``)."""
    try:
        yield
    except StorageUnavailable as exc:
        inner = describe(join(location, CATALOGUE))
        raise StorageUnavailable(str(exc).replace(inner, describe(location))) from None


def _read_config(location: Location) -> tuple[dict[str, Any], str]:
    """The library config at ``location`` and where it was read, or a clear error."""
    legacy = _legacy_file(location)
    where = join(location, CATALOGUE)
    with as_given(location):
        if storage_exists(where):
            storage = open_storage(where, readonly=True)
            try:
                data = storage.config(CONFIG_NAME)
            finally:
                storage.close()
            if data is not None:
                return data, os.fspath(location)
    if legacy is not None:
        try:
            return json.loads(legacy.read_text()), str(legacy)
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{legacy}: unreadable ({exc})") from exc
    if storage_exists(location):
        raise IndexFormatError(
            f"{location}: this is a vector index (from `vectors add`), not a music library;"
            " `audiolsh vectors query` searches it")
    if creation_interrupted(location):
        raise IndexFormatError(f"{location}: {INTERRUPTED}")
    raise IndexFormatError(f"{location}: no music library here; create one with `audiolsh index`")
