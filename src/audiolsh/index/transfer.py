"""A ``SegmentBuild`` as bytes, to ship it from the process that built it (a Spark task, a
worker) to the one that attaches it, without pickle.

The bytes are an uncompressed zip: one ``.npy`` per array (the segment's, and the item ids,
track rows and offsets of its catalogue rows under ``items/``) and ``build.json`` with the
format name and version, the segment info, the tracks and the items' keys and metadata.
Arrays are read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

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
    items = build.items
    doc: dict[str, Any] = {
        "format": BUILD_FORMAT, "format_version": BUILD_VERSION,
        "info": {"id": build.info.id, "n_items": build.info.n_items, "config": build.info.config,
                 "created_at": build.info.created_at},
        "arrays": sorted(build.arrays), "tracks": build.tracks,
        "items": None if items is None else {"keys": items.keys, "metas": items.metas},
    }
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, array in build.arrays.items():
            _put(z, name, array)
        if items is not None:
            _put(z, _ITEMS + "ids", np.asarray(items.ids, np.int64))
            _put(z, _ITEMS + "track_rows", np.asarray(items.track_rows, np.int64))
            _put(z, _ITEMS + "offsets_s", np.asarray(items.offsets_s, np.float64))
        z.writestr(_MANIFEST, json.dumps(doc, separators=(",", ":")))  # key order kept
    return buf.getvalue()


def build_from_bytes(data: bytes | bytearray | memoryview, *, where: str = "segment build") -> SegmentBuild:
    """The build ``build_to_bytes`` wrote; ``where`` names it in errors."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            doc = json.loads(z.read(_MANIFEST))
            if not isinstance(doc, dict) or doc.get("format") != BUILD_FORMAT:
                raise IndexFormatError(f"{where}: not an audiolsh segment build")
            check_format_version(where, "segment build", doc.get("format_version"), newest=BUILD_VERSION)

            def get(name: str) -> np.ndarray:
                with z.open(f"{name}.npy") as f:
                    return np.lib.format.read_array(f, allow_pickle=False)

            arrays = {name: get(name) for name in doc["arrays"]}
            items = None
            if doc["items"] is not None:
                items = ItemRows(get(_ITEMS + "ids"), list(doc["items"]["keys"]), get(_ITEMS + "track_rows"),
                                 get(_ITEMS + "offsets_s"), list(doc["items"]["metas"]))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise IndexFormatError(f"{where}: unreadable segment build ({exc})") from None
    return SegmentBuild(SegmentInfo(**doc["info"]), arrays, list(doc["tracks"]), items)
