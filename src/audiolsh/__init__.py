"""audiolsh: locality-sensitive hashing for music collections."""

from audiolsh.errors import (
    AudioError,
    AudiolshError,
    IndexFormatError,
    InputFormatError,
    ParameterError,
    StorageUnavailable,
)

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "AudiolshError",
    "IndexFormatError",
    "InputFormatError",
    "ParameterError",
    "StorageUnavailable",
    "__version__",
]
