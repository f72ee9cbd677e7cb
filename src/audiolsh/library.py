"""The music library: one directory, one index per search mode, one track catalogue.

    DIR/library.json        format version, modes, window/hop, standardisation and fusion statistics,
                            the peak pairs common to the collection, the learned normalisation's name
    DIR/tracks/             the catalogue of complete tracks (its ids are the library's track ids)
    DIR/fingerprint/        landmark hashes (identification)
    DIR/<mode>/             an ``Index`` per vector or set mode (embedding, rhythm, timbre, ...)

A batch of files is committed to every mode first and to the catalogue last, each commit
atomic, so a track is listed only once every mode holds it.  A crash between the two leaves
rows that no catalogue track points at: they are never returned, and the next run adds the
file to the modes that lack it and then to the catalogue.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.features import normalisation as wccn
from audiolsh.features import peaks
from audiolsh.features.excerpts import BLOCKS, fit_standardizer, standardize
from audiolsh.index import Index
from audiolsh.search.brute import prepare
from audiolsh.storage import EmbeddedStorage, MemoryStorage, Storage, Track
from audiolsh.storage.base import check_format_version
from audiolsh.storage.embedded import write_atomic

if TYPE_CHECKING:
    from audiolsh.index.fingerprint import FingerprintIndex

log = logging.getLogger(__name__)

LIBRARY_FILE = "library.json"
LIBRARY_FORMAT = "audiolsh-library"
#: 5: the combined rows are rhythm and timbre normalised jointly (``Fusion`` joint form; 3
#: and 4 keep the sum form, which their ``fusion`` statistics name);
#: 4: rhythm and timbre rows pass through a learned within-track normalisation (its name in
#: ``normalisation``; version-3 libraries open with none); 3: timbre gained the delta spectral
#: pattern (320-d, two balanced blocks); 2: ``combined`` became the fusion of rhythm, timbre
#: and peaks (1: rhythm, timbre, chroma).
LIBRARY_VERSION = 5

#: What ``audiolsh index`` extracts.  ``chroma`` holds per-window chroma statistics and
#: ``chroma_frames`` the frames themselves (S1's voting); ``combined`` fuses rhythm, timbre
#: and peaks (see :data:`COMBINED_PARTS`).
MODES = ("fingerprint", "embedding", "rhythm", "timbre", "chroma", "peaks")
DEFAULT_MODES = MODES
STANDARDISED = ("rhythm", "timbre", "chroma")
#: Chroma statistics are only centred: scaling each pitch class up to unit variance
#: amplifies the weak ones into noise.
SCALED = ("rhythm", "timbre")
#: Modes whose standardised rows go through the library's learned normalisation
#: (``features.normalisation``).
NORMALISED = ("rhythm", "timbre")
#: Peak-pair sets of two excerpts of one track share little (Jaccard 0.02-0.2 on dev), so
#: every band is one min-hash (128 bands: a threshold of 0.01); candidates are ranked by how
#: many they share and the best PEAKS_CANDIDATES re-ranked by exact Jaccard.
PEAKS_THRESHOLD = 0.01
PEAKS_CANDIDATES = 100
#: The combined mode (``Fusion``): the rhythm and timbre rows normalised jointly by the learned
#: "combined" matrix (or, without one, the two blocks weighted so that their cosine is the sum
#: of their z-scored cosines), whose cosine is z-scored with its mean and std over random
#: window pairs of the first batch, plus the z-scored Jaccard of the peak sets.  The
#: ``combined`` index holds those rows; candidates come from its LSH and from the peaks index,
#: and are re-ranked by the whole score.
COMBINED_PARTS = ("rhythm", "timbre", "peaks")
COMBINED_VECTORS = ("rhythm", "timbre")
#: The joint form's key for the combined vectors' statistics (``Fusion``).
JOINT = "vectors"
FUSION_PAIRS = 2000
WINDOW_S = 10.0
HOP_S = 5.0


def vector_indexes(modes: Sequence[str]) -> list[str]:
    """The ``Index`` directories a set of modes needs, in commit order."""
    names = [m for m in modes if m in ("embedding", "rhythm", "timbre", "chroma")]
    if "chroma" in modes:
        names.append("chroma_frames")
    if "peaks" in modes:
        names.append("peaks")
    if all(p in modes for p in COMBINED_PARTS):
        names.append("combined")
    return names


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ParameterError(f"unknown modes {unknown!r}; choose from {list(MODES)}")
    if not modes:
        raise ParameterError("at least one mode is needed")
    return tuple(m for m in MODES if m in modes)


@dataclass
class Standardizer:
    """Per-dimension centre and scale learned from the first committed batch, then frozen;
    ``blocks``: the sizes of the parts each scaled to unit length after (``excerpts.BLOCKS``);
    ``matrix``: the learned normalisation (``normalisation``, by name) applied last."""

    mean: np.ndarray
    std: np.ndarray
    blocks: tuple[int, ...] = ()
    matrix: np.ndarray | None = None
    normalisation: str | None = None

    @classmethod
    def fit(cls, X: np.ndarray, *, scale: bool = True, blocks: tuple[int, ...] = (),
            mode: str = "", normalisation: str = "none") -> Standardizer:
        mean, std = fit_standardizer(X, scale=scale)
        return cls(mean, std, tuple(blocks), *_learned(normalisation, mode, len(mean)))

    def __call__(self, X: np.ndarray, *, learned: bool = True) -> np.ndarray:
        """Standardised rows; with ``learned`` (and a matrix) normalised too."""
        if X.shape[1] != len(self.mean):
            raise ParameterError(
                f"features of dimension {X.shape[1]} do not match the library's {len(self.mean)}"
            )
        Z = standardize(X, self.mean, self.std, self.blocks)
        return Z if self.matrix is None or not learned else (Z @ self.matrix).astype(np.float32)

    def invert(self, Z: np.ndarray) -> np.ndarray:
        """Raw-scale rows that this standardiser maps back to the stored rows ``Z``."""
        Z = np.asarray(Z, np.float64)
        if self.matrix is not None:
            Z = np.linalg.solve(self.matrix.astype(np.float64), Z.T).T  # the matrix is symmetric
        return (Z * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.blocks:
            out["blocks"] = list(self.blocks)
        if self.normalisation:
            out["normalisation"] = self.normalisation
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], mode: str = "") -> Standardizer:
        mean = np.asarray(data["mean"], np.float32)
        return cls(mean, np.asarray(data["std"], np.float32),
                   tuple(int(b) for b in data.get("blocks") or ()),
                   *_learned(data.get("normalisation") or "none", mode, len(mean)))


def _learned(name: str, mode: str, dim: int) -> tuple[np.ndarray | None, str | None]:
    """The named normalisation's matrix for ``mode`` (and the name), or (None, None)."""
    learned = wccn.load(name)
    matrix = learned.matrix(mode, dim) if learned is not None and mode in NORMALISED else None
    return matrix, (name if matrix is not None else None)


def _spread(values: np.ndarray) -> float:
    """The std of a part's similarities, 1 when they hardly vary (one track, copies): a
    z-score by a vanishing std would blow that part up."""
    sd = float(np.std(values))
    return sd if sd > 1e-6 else 1.0


@dataclass(frozen=True)
class Fusion:
    """Mean and std of each combined part's similarity over random pairs of windows.

    Two forms. Joint (``stats`` has "vectors" and "peaks"; ``matrix`` is the learned
    normalisation's "combined" matrix): the rhythm and timbre blocks, each at unit length, are
    concatenated and normalised jointly (:func:`features.normalisation.joint_rows`), and the
    score is the z-scored cosine of those rows plus the z-scored Jaccard. Sum (``stats`` has
    "rhythm", "timbre" and "peaks"; libraries without a learned normalisation, and those of
    formats 3 and 4): the z-scored rhythm cosine plus timbre cosine plus Jaccard.
    """

    stats: dict[str, tuple[float, float]]
    matrix: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def joint(self) -> bool:
        return JOINT in self.stats

    @property
    def weights(self) -> np.ndarray:
        """Sum form: 1/std of the vector parts, normalised to sum 1."""
        w = np.array([1.0 / self.stats[p][1] for p in COMBINED_VECTORS])
        return w / w.sum()

    def combine(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """The combined index's rows from the parts' standardised rows (rhythm, timbre).

        Joint: the jointly normalised unit-block rows. Sum: unit blocks scaled by
        sqrt(weight), so that the cosine of two rows is the weighted sum of the blocks' cosines,
        i.e. (up to a constant) the fused rhythm + timbre score."""
        if self.joint:
            if self.matrix is None:
                raise ParameterError("the joint combined form needs its learned matrix")
            X = wccn.joint_rows(blocks, [BLOCKS.get(p, ()) for p in COMBINED_VECTORS]) @ self.matrix
            return prepare(X, "cosine").astype(np.float32)
        parts = [prepare(B, "cosine") * np.float32(np.sqrt(w)) for B, w in zip(blocks, self.weights)]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def score(self, vector_cosine: np.ndarray, jaccard: np.ndarray) -> np.ndarray:
        """The fused score from the combined rows' cosine and the peak sets' Jaccard."""
        mu, sd = self.stats["peaks"]
        peaks_z = (np.asarray(jaccard) - mu) / sd
        if self.joint:
            v_mu, v_sd = self.stats[JOINT]
            return (np.asarray(vector_cosine) - v_mu) / v_sd + peaks_z
        w_sum = sum(1.0 / self.stats[p][1] for p in COMBINED_VECTORS)
        offset = sum(self.stats[p][0] / self.stats[p][1] for p in COMBINED_VECTORS)
        return np.asarray(vector_cosine) * w_sum - offset + peaks_z

    def to_dict(self) -> dict[str, list[float]]:
        return {p: [float(m), float(s)] for p, (m, s) in self.stats.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], matrix: np.ndarray | None = None) -> Fusion:
        stats = {p: (float(v[0]), float(v[1])) for p, v in data.items()}
        return cls(stats, matrix if JOINT in stats else None)

    @classmethod
    def fit(cls, vectors: dict[str, np.ndarray], sets: Any, labels: np.ndarray, *, seed: int = 0,
            n_pairs: int = FUSION_PAIRS, matrix: np.ndarray | None = None) -> Fusion:
        """Statistics from random pairs of rows (prepared vectors, peak SetBatch) of different
        tracks (``labels``: track per row), as a query meets most of a collection; rows of one
        track only give pairs of distinct rows, with a warning. With ``matrix`` (the learned
        "combined" normalisation) the joint form, else the sum form."""
        from audiolsh.search.brute import jaccard_rows

        labels = np.asarray(labels)
        n = len(sets)
        rng = np.random.default_rng(seed)
        a = rng.integers(0, n, n_pairs)
        b = (a + rng.integers(1, max(n, 2), n_pairs)) % max(n, 1)
        if len(np.unique(labels)) > 1:
            for _ in range(64):  # redraw the partners from the same track
                same = np.flatnonzero(labels[a] == labels[b])
                if not len(same):
                    break
                b[same] = rng.integers(0, n, len(same))
            keep = labels[a] != labels[b]
            a, b = a[keep], b[keep]
        else:
            log.warning("fusion statistics from one track only: index more tracks in the first batch")
        stats = {}
        if matrix is not None:
            U = cls({JOINT: (0.0, 1.0), "peaks": (0.0, 1.0)}, matrix).combine(
                [vectors[p] for p in COMBINED_VECTORS])
            s = np.einsum("ij,ij->i", U[a], U[b])
            stats[JOINT] = (float(s.mean()), _spread(s))
        else:
            for p in COMBINED_VECTORS:
                U = prepare(vectors[p], "cosine")
                s = np.einsum("ij,ij->i", U[a], U[b])
                stats[p] = (float(s.mean()), _spread(s))
        j = jaccard_rows(sets.take(a), sets, b[:, None])[:, 0]
        stats["peaks"] = (float(j.mean()), _spread(j))
        return cls(stats, matrix)


@dataclass
class LibraryConfig:
    modes: tuple[str, ...] = DEFAULT_MODES
    window_s: float = WINDOW_S
    hop_s: float = HOP_S
    seed: int = 0
    stats: dict[str, dict[str, list[float] | list[int]]] = field(default_factory=dict)
    fusion: dict[str, list[float]] = field(default_factory=dict)
    #: peak pairs left out of every peak set (``features.peaks.common_elements`` of the first
    #: batch); None until that batch is committed
    peaks_common: list[int] | None = None
    #: the learned within-track normalisation of rhythm and timbre (``features.normalisation``)
    normalisation: str = wccn.DEFAULT

    def validate(self) -> LibraryConfig:
        self.modes = check_modes(self.modes)
        if not 3.0 <= self.window_s <= 120.0:
            raise ParameterError(f"window_s must be within 3..120 s, got {self.window_s!r}")
        if not 0.5 <= self.hop_s <= self.window_s:
            raise ParameterError(f"hop_s must be within 0.5 s..window_s, got {self.hop_s!r}")
        if self.normalisation not in wccn.NAMES:
            raise ParameterError(
                f"normalisation must be one of {list(wccn.NAMES)}, got {self.normalisation!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LIBRARY_FORMAT, "format_version": LIBRARY_VERSION,
            "modes": list(self.modes), "window_s": self.window_s, "hop_s": self.hop_s,
            "seed": self.seed, "stats": self.stats, "fusion": self.fusion,
            "peaks_common": self.peaks_common, "normalisation": self.normalisation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> LibraryConfig:
        if data.get("format") != LIBRARY_FORMAT:
            raise IndexFormatError(f"{where}: not an audiolsh library")
        check_format_version(where, "library", data.get("format_version"), newest=LIBRARY_VERSION,
                             oldest=3,
                             too_old="its timbre and combined modes changed;"
                                     " index the music again into a new directory")
        normalisation = str(data.get("normalisation", "none"))  # absent: format 3, before it existed
        if normalisation not in wccn.NAMES:
            raise IndexFormatError(f"{where}: normalisation {normalisation!r} is unknown to this audiolsh;"
                                   " upgrade audiolsh")
        # absent: written before common pairs were left out, so its stored sets keep them all
        common = data["peaks_common"] if "peaks_common" in data else []
        return cls(tuple(data["modes"]), float(data["window_s"]), float(data["hop_s"]),
                   int(data.get("seed", 0)), dict(data.get("stats", {})),
                   dict(data.get("fusion", {})),
                   None if common is None else [int(e) for e in common],
                   normalisation).validate()


def is_library(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / LIBRARY_FILE).exists()


class Library:
    """Open with ``Library.open(path)``; make one with ``Library.create(path, modes=...)``.

    ``path=None`` keeps everything in memory (tests, scratch).
    """

    def __init__(self, path: Path | None, config: LibraryConfig, *, readonly: bool = False,
                 create: bool = False) -> None:
        self.path = path
        self.config = config
        self.readonly = readonly
        self._standardizers = {m: Standardizer.from_dict(s, m) for m, s in config.stats.items()}
        self.fusion = self._load_fusion(config.fusion)
        self.fingerprint: FingerprintIndex | None = None
        if "fingerprint" in config.modes:
            # Imported here so that libraries without identification never load it.
            from audiolsh.index.fingerprint import FingerprintIndex

            if path is None:
                self.fingerprint = FingerprintIndex.create(None)
            elif create:
                self.fingerprint = FingerprintIndex.create(path / "fingerprint")
            else:
                self.fingerprint = FingerprintIndex.open(path / "fingerprint", readonly=readonly)
        if path is None:
            self.catalogue: Storage = MemoryStorage()
            self.indexes = {name: self._new_index(None, name) for name in vector_indexes(config.modes)}
        else:
            self.catalogue = EmbeddedStorage(path / "tracks", create=create, readonly=readonly)
            if create:
                with self.catalogue.write() as w:
                    w.set_config({"kind": "library-catalogue"})
            self.indexes = {
                name: (self._new_index(path / name, name) if create
                       else Index.open(path / name, readonly=readonly))
                for name in vector_indexes(config.modes)
            }
        self._map_cache: dict[str, tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = {}
        self._common: tuple[list[int], np.ndarray] | None = None  # peaks_common, sorted array

    def _new_index(self, where: Path | None, name: str) -> Index:
        metric = "jaccard" if name == "peaks" else "cosine"
        # Standardised features are already centred; raw log-mel and chroma frames are not.
        center: str | bool = False if name in (*STANDARDISED, "combined") else "auto"
        sets: dict[str, Any] = (
            {"threshold": PEAKS_THRESHOLD, "n_candidates": PEAKS_CANDIDATES} if name == "peaks" else {}
        )
        return Index.create(where, metric=metric, center=center, seed=self.config.seed, **sets)

    # creation ----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str] | None = None, *,
               modes: Sequence[str] = DEFAULT_MODES, window_s: float = WINDOW_S,
               hop_s: float = HOP_S, seed: int = 0, normalisation: str = wccn.DEFAULT) -> Library:
        config = LibraryConfig(tuple(modes), window_s, hop_s, seed,
                               normalisation=normalisation).validate()
        if path is None:
            return cls(None, config)
        root = Path(path)
        if (root / LIBRARY_FILE).exists():
            raise IndexFormatError(f"{root}: a library already exists here")
        if (root / "manifest.json").exists():
            raise IndexFormatError(
                f"{root}: this is a vector index, not a music library; choose another --index"
            )
        root.mkdir(parents=True, exist_ok=True)
        lib = cls(root, config, create=True)
        # Written last: a library without library.json is an interrupted creation, redone.
        write_atomic(root / LIBRARY_FILE, json.dumps(config.to_dict(), indent=2).encode())
        return lib

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> Library:
        root = Path(path)
        file = root / LIBRARY_FILE
        if not file.exists():
            if (root / "manifest.json").exists():
                raise IndexFormatError(
                    f"{root}: this is a vector index (from `vectors add`), not a music library"
                )
            raise IndexFormatError(f"{root}: no music library here; create one with `audiolsh index`")
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{file}: unreadable ({exc})") from exc
        return cls(root, LibraryConfig.from_dict(data, str(file)), readonly=readonly)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str], **params: Any) -> Library:
        if is_library(path):
            lib = cls.open(path)
            wanted = params.get("modes")
            if wanted is not None and set(check_modes(wanted)) - set(lib.config.modes):
                raise ParameterError(
                    f"{path}: the library was built with modes {list(lib.config.modes)};"
                    f" it cannot add {sorted(set(wanted) - set(lib.config.modes))}"
                    " (index into a new library)"
                )
            return lib
        return cls.create(path, **params)

    def close(self) -> None:
        self.catalogue.close()
        if self.fingerprint is not None:
            self.fingerprint.close()
        for index in self.indexes.values():
            index.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the catalogue -----------------------------------------------------------------------

    @property
    def modes(self) -> tuple[str, ...]:
        return self.config.modes

    def tracks(self) -> list[Track]:
        return self.catalogue.tracks()

    def track(self, track_id: int) -> Track | None:
        return self.catalogue.track(track_id)

    def track_by_hash(self, content_hash: str) -> Track | None:
        return self.catalogue.track_by_hash(content_hash)

    def __len__(self) -> int:
        return len(self.catalogue.tracks())

    def __contains__(self, content_hash: object) -> bool:
        return isinstance(content_hash, str) and self.track_by_hash(content_hash) is not None

    def standardizer(self, mode: str) -> Standardizer | None:
        return self._standardizers.get(mode)

    def track_map(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """One mode's track ids (sorted) and the library track ids they map to (complete
        tracks only); cached until either side commits."""
        store = self.fingerprint.storage if name == "fingerprint" else self.indexes[name].storage  # type: ignore[union-attr]
        key = (store.version(), self.catalogue.version())
        cached = self._map_cache.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        by_hash = {t.content_hash: t.id for t in self.catalogue.tracks()}
        pairs = sorted((t.id, by_hash[t.content_hash]) for t in store.tracks() if t.content_hash in by_hash)
        arrays = (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))
        self._map_cache[name] = (key, arrays)
        return arrays

    def mode_track_ids(self, name: str) -> dict[str, int]:
        """content hash -> track id inside one mode's index."""
        store = self.fingerprint.storage if name == "fingerprint" else self.indexes[name].storage  # type: ignore[union-attr]
        return {t.content_hash: t.id for t in store.tracks()}

    def info(self) -> dict[str, Any]:
        tracks = self.tracks()
        out: dict[str, Any] = {
            "location": str(self.path) if self.path else ":memory:",
            "modes": list(self.modes),
            "window_s": self.config.window_s,
            "hop_s": self.config.hop_s,
            "normalisation": self.config.normalisation,
            "n_tracks": len(tracks),
            "duration_s": float(sum(t.duration_s or 0.0 for t in tracks)),
            "indexes": {},
        }
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

    # writing -----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise IndexFormatError(f"{self.path}: opened read-only")

    def _fit_standardizers(self, batch: Sequence[Any]) -> None:
        """Learn each standardised mode's statistics from the first batch, persist, freeze."""
        new = {}
        for mode in STANDARDISED:
            if mode in self.modes and mode not in self._standardizers:
                rows = [ex.vectors[mode][0] for ex in batch if mode in ex.vectors]
                if rows:
                    new[mode] = Standardizer.fit(np.concatenate(rows), scale=mode in SCALED,
                                                 blocks=BLOCKS.get(mode, ()), mode=mode,
                                                 normalisation=self.config.normalisation)
        fuse = all(p in self.modes for p in COMBINED_PARTS) and self.fusion is None
        common = "peaks" in self.modes and self.config.peaks_common is None
        if not new and not fuse and not common:
            return
        self._standardizers.update(new)
        self.config.stats = {m: s.to_dict() for m, s in self._standardizers.items()}
        if common or fuse:
            from audiolsh.hashing import concat_sets

            sets = concat_sets([ex.peaks[0] for ex in batch])
            labels = np.repeat(np.arange(len(batch)), [len(ex.peaks[0]) for ex in batch])
        if common:
            drop = peaks.common_elements(sets, labels)
            if len(batch) < peaks.COMMON_MIN_TRACKS:
                log.warning("the first batch has %d tracks, fewer than the %d needed to find the peak"
                            " pairs common to the collection: this library keeps every pair for good"
                            " (index at least %d files in its first run to have them left out)",
                            len(batch), peaks.COMMON_MIN_TRACKS, peaks.COMMON_MIN_TRACKS)
            self.config.peaks_common = [int(e) for e in drop]
        if fuse:
            sets = self.peak_sets(sets)
            vectors = {p: self.prepare(p, np.concatenate([ex.vectors[p][0] for ex in batch]), learned=False)
                       for p in COMBINED_VECTORS}
            if len(sets) >= 2:
                self.fusion = Fusion.fit(vectors, sets, labels, seed=self.config.seed,
                                         matrix=self._joint_matrix())
            else:
                log.warning("one excerpt window in the first batch: combined mode uses unscaled scores")
                matrix = self._joint_matrix()
                parts = (JOINT, "peaks") if matrix is not None else COMBINED_PARTS
                self.fusion = Fusion({p: (0.0, 1.0) for p in parts}, matrix)
            self.config.fusion = self.fusion.to_dict()
        if self.path is not None:
            write_atomic(self.path / LIBRARY_FILE, json.dumps(self.config.to_dict(), indent=2).encode())

    def _joint_matrix(self) -> np.ndarray | None:
        """The library's normalisation's "combined" matrix (None: the sum form)."""
        learned = wccn.load(self.config.normalisation)
        if learned is None or any(p not in self._standardizers for p in COMBINED_VECTORS):
            return None
        dim = sum(len(self._standardizers[p].mean) for p in COMBINED_VECTORS)
        return learned.matrix("combined", dim)

    def _load_fusion(self, data: dict[str, Any]) -> Fusion | None:
        if not data:
            return None
        matrix = self._joint_matrix() if JOINT in data else None
        if JOINT in data and matrix is None:
            raise IndexFormatError(
                f"{self.path}: the combined mode needs the {self.config.normalisation!r} normalisation's"
                " combined matrix, which this audiolsh lacks"
            )
        return Fusion.from_dict(data, matrix)

    def peak_sets(self, sets: Any) -> Any:
        """Peak sets (a SetBatch) as they are stored and queried: the common pairs left out."""
        if self.config.peaks_common is None:
            self._reload_stats()
        common = self.config.peaks_common
        if not common:
            return sets
        if self._common is None or self._common[0] is not common:
            self._common = (common, np.unique(np.asarray(common, np.uint64)))
        return peaks.drop_elements(sets, self._common[1])

    def prepare(self, mode: str, X: np.ndarray, *, learned: bool = True) -> np.ndarray:
        """Raw features of a mode as they are stored and queried; ``learned=False`` leaves the
        learned normalisation out, as the combined mode's parts do."""
        if mode in STANDARDISED and mode in self.modes and mode not in self._standardizers:
            self._reload_stats()
        std = self._standardizers.get(mode)
        return std(X, learned=learned) if std is not None else np.asarray(X, np.float32)

    def add_batch(self, batch: Sequence[Any]) -> list[int]:
        """Commit extracted tracks (see ``audiolsh.ingest.Extracted``); returns library track ids."""
        self._check_writable()
        batch = [ex for ex in batch if self.track_by_hash(ex.content_hash) is None]
        if not batch:
            return []
        self._fit_standardizers(batch)
        if self.fingerprint is not None:
            have = self.mode_track_ids("fingerprint")
            todo = [ex for ex in batch if ex.content_hash not in have]
            if todo:
                with self.fingerprint.session() as s:
                    for ex in todo:
                        s.add_track(ex.path, content_hash=ex.content_hash,
                                    duration_s=ex.duration_s, landmarks=ex.landmarks)
        for name, index in self.indexes.items():
            have = self.mode_track_ids(name)
            todo = [ex for ex in batch if ex.content_hash not in have]
            if not todo:
                continue
            with index.session() as s:
                for ex in todo:
                    data, offsets = self._rows_for(name, ex)
                    handle = s.add_track(ex.path, content_hash=ex.content_hash,
                                         duration_s=ex.duration_s)
                    if len(offsets):
                        keys = [f"{ex.content_hash[:12]}@{o:.2f}" for o in offsets]
                        s.add(data, keys, track=handle, offsets_s=offsets)
        ids = []
        with self.catalogue.write() as w:
            for ex in batch:
                tid = w.add_track(path=ex.path, content_hash=ex.content_hash,
                                  duration_s=ex.duration_s, kind="audio")
                w.set_track_items(tid, int(ex.n_windows))
                ids.append(tid)
        return ids

    def _rows_for(self, name: str, ex: Any) -> tuple[Any, np.ndarray]:
        if name == "combined":
            return self.combined_rows(ex)
        if name == "peaks":
            return self.peak_sets(ex.peaks[0]), ex.peaks[1]
        if name == "chroma_frames":
            return ex.chroma_frames
        X, offsets = ex.vectors[name]
        return self.prepare(name, X), offsets

    def _reload_stats(self) -> None:
        """Pick up statistics another process wrote after this handle was opened (the first
        batch fits them)."""
        if self.path is None:
            return
        try:
            data = json.loads((self.path / LIBRARY_FILE).read_text())
        except (OSError, ValueError):
            return
        fresh = LibraryConfig.from_dict(data, str(self.path / LIBRARY_FILE))
        self.config.stats, self.config.fusion = fresh.stats, fresh.fusion
        self.config.peaks_common = fresh.peaks_common
        self._standardizers = {m: Standardizer.from_dict(s, m) for m, s in fresh.stats.items()}
        self.fusion = self._load_fusion(fresh.fusion)

    def combined_rows(self, ex: Any) -> tuple[np.ndarray, np.ndarray]:
        """The combined index's rows of an extracted track or clip, and their offsets."""
        if self.fusion is None:
            self._reload_stats()
        if self.fusion is None:
            raise ParameterError(f"{self.path or 'the library'}: no fusion statistics yet (index some music)")
        blocks = [self.prepare(m, ex.vectors[m][0], learned=False) for m in COMBINED_VECTORS]
        return self.fusion.combine(blocks), ex.vectors[COMBINED_VECTORS[0]][1]

    def remove_track(self, track_id: int) -> None:
        """Remove a track from the catalogue first (it disappears at once), then from every mode."""
        self._check_writable()
        track = self.track(track_id)
        if track is None:
            raise ParameterError(f"no track with id {track_id}")
        with self.catalogue.write() as w:
            w.remove_track(track_id)
        if self.fingerprint is not None:
            sub = self.mode_track_ids("fingerprint").get(track.content_hash)
            if sub is not None:
                self.fingerprint.remove_track(sub)
        for name, index in self.indexes.items():
            sub = self.mode_track_ids(name).get(track.content_hash)
            if sub is not None:
                index.remove_track(sub)

    def resolve_tracks(self, name: str, sub_ids: np.ndarray) -> np.ndarray:
        """Map a mode's track ids to library ids (-1 for rows of no complete track)."""
        keys, vals = self.track_map(name)
        if not len(keys):
            return np.full(len(sub_ids), -1, np.int64)
        pos = np.clip(np.searchsorted(keys, sub_ids), 0, len(keys) - 1)
        return np.where(keys[pos] == sub_ids, vals[pos], -1)
