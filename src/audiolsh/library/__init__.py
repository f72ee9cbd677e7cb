"""A music library: extraction, the mode registry, the learned state, the build, the library."""

from audiolsh.library.build import (
    FIRST_BATCH,
    BuildSpec,
    IngestReport,
    LibraryPart,
    build_from_spec,
    build_part,
    index_audio,
)
from audiolsh.library.config import (
    DEFAULT_MODES,
    HOP_S,
    LIBRARY_FILE,
    LIBRARY_VERSION,
    MODES,
    WINDOW_S,
    LibraryConfig,
    check_modes,
)
from audiolsh.library.core import Library, creation_interrupted, is_library
from audiolsh.library.extract import (
    MAX_DURATION_S,
    MIN_DURATION_S,
    SAMPLE_RATE,
    Extracted,
    analyse,
    embed_clip,
    extract,
)
from audiolsh.library.learned import COMBINED_PARTS, Learned
from audiolsh.library.modes import REGISTRY, Mode, modes_for

__all__ = [
    "COMBINED_PARTS",
    "DEFAULT_MODES",
    "FIRST_BATCH",
    "HOP_S",
    "LIBRARY_FILE",
    "LIBRARY_VERSION",
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "MODES",
    "REGISTRY",
    "SAMPLE_RATE",
    "WINDOW_S",
    "BuildSpec",
    "Extracted",
    "IngestReport",
    "Learned",
    "Library",
    "LibraryConfig",
    "LibraryPart",
    "Mode",
    "analyse",
    "build_from_spec",
    "build_part",
    "check_modes",
    "creation_interrupted",
    "embed_clip",
    "extract",
    "index_audio",
    "is_library",
    "modes_for",
]
