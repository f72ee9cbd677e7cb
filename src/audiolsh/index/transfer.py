"""A ``SegmentBuild`` as bytes, to ship it from the process that built it (a Spark task, a
worker) to the one that attaches it, without pickle.

The bytes are an uncompressed zip: one ``.npy`` per array (the segment's, and the item ids,
track rows and offsets of its catalogue rows under ``items/``) and ``build.json`` with the
format name and version, the segment info, the tracks and the items' keys and metadata.
Arrays are read back with ``allow_pickle=False``.

A build can also travel as a file on a filesystem both sides see (``build_to_file``,
``build_from_file``): written once by the builder, its arrays are read back as views of the
memory-mapped file, so a segment of a million rows never passes through a socket or a copy
before it is attached.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import struct
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from audiolsh.errors import IndexFormatError
from audiolsh.index.segments import ItemRows, SegmentBuild
from audiolsh.storage import SegmentInfo
from audiolsh.storage.base import check_format_version

BUILD_FORMAT = "audiolsh-segment-build"
BUILD_VERSION = 1
_MANIFEST = "build.json"
_ITEMS = "items/"


def _put(z: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with z.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def build_to_bytes(build: SegmentBuild) -> bytes:
    """The build as one zip of ``.npy`` arrays and a JSON manifest (see the module)."""
    buf = io.BytesIO()
    _write(build, buf)
    return buf.getvalue()


def build_to_file(build: SegmentBuild, path: str | os.PathLike[str]) -> int:
    """Write the build to ``path`` (the bytes of ``build_to_bytes``), complete or not at all:
    written beside it and renamed.  Returns its size in bytes."""
    path = Path(path)
    part = path.with_name(f".{path.name}.part")
    with open(part, "wb") as f:
        _write(build, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    return path.stat().st_size


def _write(build: SegmentBuild, out: IO[bytes]) -> None:
    items = build.items
    doc: dict[str, Any] = {
        "format": BUILD_FORMAT, "format_version": BUILD_VERSION,
        "info": {"id": build.info.id, "n_items": build.info.n_items, "config": build.info.config,
                 "created_at": build.info.created_at},
        "arrays": sorted(build.arrays), "tracks": build.tracks,
        "items": None if items is None else {"keys": items.keys, "metas": items.metas},
    }
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, array in build.arrays.items():
            _put(z, name, array)
        if items is not None:
            _put(z, _ITEMS + "ids", np.asarray(items.ids, np.int64))
            _put(z, _ITEMS + "track_rows", np.asarray(items.track_rows, np.int64))
            _put(z, _ITEMS + "offsets_s", np.asarray(items.offsets_s, np.float64))
        z.writestr(_MANIFEST, json.dumps(doc, separators=(",", ":")))  # key order kept


def build_from_bytes(data: bytes | bytearray | memoryview, *, where: str = "segment build") -> SegmentBuild:
    """The build ``build_to_bytes`` wrote; ``where`` names it in errors."""
    return _read(data, where, copy=True)


def build_from_file(path: str | os.PathLike[str], *, where: str | None = None) -> SegmentBuild:
    """The build ``build_to_file`` wrote, its arrays read-only views of the memory-mapped file
    (valid after the file is deleted, while the build lives)."""
    where = where or os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{where}: unreadable segment build ({exc})") from None
    return _read(memoryview(data), where, copy=False)


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length


def _view(data: memoryview, info: zipfile.ZipInfo) -> np.ndarray:
    """A stored (uncompressed) ``.npy`` member as an array over ``data``, without a copy."""
    sig, n_name, n_extra = _LOCAL_HEADER.unpack_from(data, info.header_offset)
    if sig != b"PK\x03\x04" or info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{info.filename}: not a stored zip member")
    start = info.header_offset + _LOCAL_HEADER.size + n_name + n_extra
    member = io.BytesIO(data[start:start + min(info.file_size, 65536)])
    version = np.lib.format.read_magic(member)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(member)
    if dtype.hasobject:
        raise ValueError(f"{info.filename}: object arrays are not read")
    count = int(np.prod(shape, dtype=np.int64))
    if member.tell() + count * dtype.itemsize > info.file_size:
        raise ValueError(f"{info.filename}: truncated")
    flat = np.frombuffer(data, dtype, count, start + member.tell())
    return flat.reshape(shape, order="F" if fortran else "C")


def _read(data: bytes | bytearray | memoryview, where: str, *, copy: bool) -> SegmentBuild:
    try:
        with zipfile.ZipFile(io.BytesIO(data) if copy else _Buffer(data)) as z:
            doc = json.loads(z.read(_MANIFEST))
            if not isinstance(doc, dict) or doc.get("format") != BUILD_FORMAT:
                raise IndexFormatError(f"{where}: not an audiolsh segment build")
            check_format_version(where, "segment build", doc.get("format_version"), newest=BUILD_VERSION)

            def get(name: str) -> np.ndarray:
                if not copy:
                    return _view(memoryview(data), z.getinfo(f"{name}.npy"))
                with z.open(f"{name}.npy") as f:
                    return np.lib.format.read_array(f, allow_pickle=False)

            arrays = {name: get(name) for name in doc["arrays"]}
            items = None
            if doc["items"] is not None:
                items = ItemRows(get(_ITEMS + "ids"), list(doc["items"]["keys"]), get(_ITEMS + "track_rows"),
                                 get(_ITEMS + "offsets_s"), list(doc["items"]["metas"]))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, struct.error) as exc:
        raise IndexFormatError(f"{where}: unreadable segment build ({exc})") from None
    return SegmentBuild(SegmentInfo(**doc["info"]), arrays, list(doc["tracks"]), items)


class _Buffer(io.RawIOBase):
    """A read-only seekable file over a buffer, without copying it (``io.BytesIO`` copies)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: Any) -> int:
        chunk = self._data[self._pos:self._pos + len(b)]
        b[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)
