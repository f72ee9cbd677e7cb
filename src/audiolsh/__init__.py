"""audiolsh: locality-sensitive hashing for music collections."""

from audiolsh import jit_cache
from audiolsh.errors import (
    AudioError,
    AudiolshError,
    IndexFormatError,
    InputFormatError,
    ParameterError,
    StorageUnavailable,
)

__version__ = "0.1.0"

jit_cache.configure()  # before any module imports numba

__all__ = [
    "AudioError",
    "AudiolshError",
    "IndexFormatError",
    "InputFormatError",
    "ParameterError",
    "StorageUnavailable",
    "__version__",
]
