"""A library's config: its modes, windows, and what it learned from its first batch.

It is kept as JSON under the name "library" in the config of the library's catalogue storage
(``join(location, "tracks")``), so a library lives wholly inside one backend.  Libraries of
formats 3 to 5 kept it in ``library.json`` beside the indexes; they are migrated on open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from audiolsh.errors import IndexFormatError, ParameterError
from audiolsh.features import normalisation as wccn
from audiolsh.storage.base import check_format_version

LIBRARY_FORMAT = "audiolsh-library"
#: 7: tracks carry their tags (``meta["tags"]``, ``library.tags``) and the catalogue's config
#: "roots" the folders indexed; a format-6 library opens with file names for names, and its
#: next ``index`` run reads the tags of the files it meets again and rewrites the config as 7;
#: 6: the config lives in the catalogue storage (not ``library.json``), nothing else changed;
#: 5: the combined rows are rhythm and timbre normalised jointly (``Fusion`` joint form; 3
#: and 4 keep the sum form, which their ``fusion`` statistics name);
#: 4: rhythm and timbre rows pass through a learned within-track normalisation (its name in
#: ``normalisation``; version-3 libraries open with none); 3: timbre gained the delta spectral
#: pattern (320-d, two balanced blocks); 2: ``combined`` became the fusion of rhythm, timbre
#: and peaks (1: rhythm, timbre, chroma).
LIBRARY_VERSION = 7
#: The name of the library's config in its catalogue storage.
CONFIG_NAME = "library"
#: The file formats 3 to 5 kept it in.
LIBRARY_FILE = "library.json"

#: What ``audiolsh index --modes`` extracts (the indexes they make: ``library.modes``).
MODES = ("fingerprint", "embedding", "rhythm", "timbre", "chroma", "peaks")
DEFAULT_MODES = MODES
WINDOW_S = 10.0
HOP_S = 5.0


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ParameterError(f"unknown modes {unknown!r}; choose from {list(MODES)}")
    if not modes:
        raise ParameterError("at least one mode is needed")
    return tuple(m for m in MODES if m in modes)


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
            raise ParameterError(f"the excerpt window (--window) must be within 3..120 s,"
                                 f" got {self.window_s!r}")
        if not 0.5 <= self.hop_s <= self.window_s:
            raise ParameterError(f"the hop (--hop) must be within 0.5 s and the window ({self.window_s!r} s),"
                                 f" got {self.hop_s!r}")
        if self.normalisation not in wccn.NAMES:
            raise ParameterError(
                f"--normalisation must be one of {list(wccn.NAMES)}, got {self.normalisation!r}")
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
