"""Which kind of index a location holds, so that each command refuses what is not its own.

A music library's modes are indexes too (``LOCATION/embedding`` is a vector index), but only the
library writes them: the ``vectors`` commands refuse a library and each of its parts, and
``audiolsh index`` refuses a plain vector index and a library's part, each naming the command
to use instead.
"""

from __future__ import annotations

from audiolsh.errors import IndexFormatError
from audiolsh.library.core import CATALOGUE, is_library
from audiolsh.library.modes import REGISTRY
from audiolsh.storage import Location, describe, parent, storage_exists

__all__ = ["check_library_location", "check_vectors_location", "library_part"]

_PARTS = frozenset(REGISTRY) | {CATALOGUE}


def library_part(location: Location) -> tuple[str, str] | None:
    """(the library, the part's name) when ``location`` is a music library (name ``""``) or one
    of its parts (``"embedding"``, ``"tracks"``, ...); None otherwise."""
    if is_library(location):
        return describe(location), ""
    up = parent(location)
    if up is not None and up[1] in _PARTS and is_library(up[0]):
        return describe(up[0]), up[1]
    return None


def check_vectors_location(location: Location, *, writes: bool) -> None:
    """For the ``vectors`` commands, ``tune`` and ``remove --keys``: refuse a music library and,
    for a command that ``writes``, any part of one."""
    found = library_part(location)
    if found is None:
        return
    library, part = found
    if not part:
        raise IndexFormatError(
            f"{describe(location)}: this is a music library, not a vector index: `audiolsh index`"
            " adds music to it and `audiolsh nearest` / `audiolsh similar` search it; give the"
            " vectors commands another --index")
    if writes:
        raise IndexFormatError(
            f"{describe(location)}: this is the {part} index of the music library {library}, which"
            f" only the library writes: add music with `audiolsh index --index {library}`; give"
            " the vectors commands another --index")


def check_library_location(location: Location) -> None:
    """For ``audiolsh index``: refuse a plain vector index and a part of a library."""
    found = library_part(location)
    if found is not None:
        library, part = found
        if part:
            raise IndexFormatError(
                f"{describe(location)}: this is the {part} index inside the music library {library};"
                f" index music into the library itself: `audiolsh index --index {library}`")
        return
    if storage_exists(location):
        raise IndexFormatError(
            f"{describe(location)}: this is a vector index (from `vectors add`), not a music library:"
            " `audiolsh vectors add` / `vectors query` work on it; give `audiolsh index` another"
            " --index")
