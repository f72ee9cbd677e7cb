"""TFRecord files of ``tf.train.SequenceExample`` protos (AudioSet embeddings), without TensorFlow.

A TFRecord file is a sequence of records (integers little endian)::

    uint64 length | uint32 masked CRC32C(length bytes) | data | uint32 masked CRC32C(data)

with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32)``. The protobuf wire
format is decoded by hand: enough of ``tf.train.SequenceExample``, ``Features``,
``FeatureLists`` and ``Feature`` to read AudioSet's released embeddings, and an encoder that
writes the same layout.

AudioSet stores, per 10-second clip, a context with ``video_id`` (bytes), ``start_time_seconds``
and ``end_time_seconds`` (float), ``labels`` (int64) and a feature list ``audio_embedding`` with
one ``bytes_list`` feature per second holding 128 uint8 values: VGGish embeddings after PCA,
clipped to [-2, 2] and quantised to 0..255.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np

from audiolsh.errors import InputFormatError, ParameterError
from audiolsh.vectors.batch import VectorBatch

logger = logging.getLogger(__name__)

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")

#: AudioSet's quantisation range (VGGish postprocessor): uint8 0..255 covers [-2, 2].
QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0


# --------------------------------------------------------------------------------------------
# CRC32C (Castagnoli)
# --------------------------------------------------------------------------------------------


def _crc32c_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = _crc32c_table()


@numba.njit(cache=True, nogil=True)
def _crc32c_update(crc, data, table):  # pragma: no cover - compiled
    c = crc ^ 0xFFFFFFFF
    for i in range(data.shape[0]):
        c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``.

    Parameters
    ----------
    data
        Bytes, or a uint8 array.
    crc
        The CRC of the preceding data, to continue a running checksum.

    Returns
    -------
    int
        The unsigned 32-bit checksum; ``crc32c(b"123456789") == 0xE3069283``.
    """
    if isinstance(data, np.ndarray):
        array = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    else:
        array = np.frombuffer(data, dtype=np.uint8)
    return int(_crc32c_update(np.int64(crc & _U32), array, _CRC_TABLE))


def masked_crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """TFRecord's masked CRC32C: ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` mod 2**32."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


# --------------------------------------------------------------------------------------------
# TFRecord framing
# --------------------------------------------------------------------------------------------


def iter_records(path: str | os.PathLike[str], *, verify: bool = True) -> Iterator[bytes]:
    """Yield the payload of every record of a TFRecord file.

    Parameters
    ----------
    path
        The TFRecord file (uncompressed).
    verify
        Check both CRCs of every record.

    Yields
    ------
    bytes
        One record's data.

    Raises
    ------
    InputFormatError
        On a truncated record or a CRC mismatch; the message gives the 0-based record index
        and its byte offset.
    """
    source = os.fspath(path)
    try:
        handle = open(source, "rb")  # closed in the finally clause below
    except OSError as exc:
        raise InputFormatError(source, f"cannot read: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(handle.fileno()).st_size
        index = 0
        offset = 0
        while True:
            header = handle.read(_HEADER.size)
            if not header:
                return
            where = f"record {index} (byte offset {offset})"
            if len(header) < _HEADER.size:
                raise InputFormatError(source, f"truncated {where}: {len(header)} of 12 header bytes")
            length, length_crc = _HEADER.unpack(header)
            if verify and masked_crc32c(header[:8]) != length_crc:
                hint = ""
                if index == 0 and header[:2] == b"\x1f\x8b":
                    hint = "; the file looks gzip-compressed, decompress it first"
                raise InputFormatError(source, f"bad CRC at {where}: length field{hint}")
            remaining = size - offset - _HEADER.size
            if length + _FOOTER.size > remaining:
                raise InputFormatError(
                    source,
                    f"truncated {where}: needs {length + 4} bytes, {max(remaining, 0)} left",
                )
            data = handle.read(length)
            footer = handle.read(_FOOTER.size)
            if len(data) != length or len(footer) != _FOOTER.size:
                raise InputFormatError(source, f"truncated {where}")
            if verify and masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
                raise InputFormatError(source, f"bad CRC at {where}: data")
            yield data
            index += 1
            offset += _HEADER.size + length + _FOOTER.size
    except OSError as exc:
        raise InputFormatError(source, f"cannot read: {exc.strerror or exc}") from exc
    finally:
        handle.close()


def encode_record(payload: bytes | bytearray | memoryview) -> bytes:
    """Frame one payload as a TFRecord record (header, data, CRCs)."""
    data = bytes(payload)
    length = struct.pack("<Q", len(data))
    return b"".join(
        (
            length,
            _FOOTER.pack(masked_crc32c(length)),
            data,
            _FOOTER.pack(masked_crc32c(data)),
        )
    )


def write_records(path: str | os.PathLike[str], payloads: Iterable[bytes | bytearray | memoryview]) -> int:
    """Write payloads as an uncompressed TFRecord file; return the number of records."""
    count = 0
    with open(path, "wb") as handle:
        for payload in payloads:
            handle.write(encode_record(payload))
            count += 1
    logger.debug("wrote %d records to %s", count, os.fspath(path))
    return count


# --------------------------------------------------------------------------------------------
# Protobuf wire format
# --------------------------------------------------------------------------------------------

WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_LEN = 2
WIRE_FIXED32 = 5


class ProtobufDecodeError(ValueError):
    """The bytes are not a valid protobuf message of the expected kind."""


def encode_varint(value: int) -> bytes:
    """Encode an int64 or uint64 as a base-128 varint (negative values take 10 bytes).

    Raises
    ------
    ParameterError
        If ``value`` is outside [-2**63, 2**64).
    """
    if not -(1 << 63) <= value <= _U64:
        raise ParameterError(f"varint value {value} is outside the int64/uint64 range")
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode the varint at ``data[pos:]``; return ``(unsigned 64-bit value, next position)``.

    Raises
    ------
    ProtobufDecodeError
        If the varint is truncated or longer than 10 bytes.
    """
    end = len(data)
    if pos < end and data[pos] < 0x80:  # fast path: one-byte varint
        return data[pos], pos + 1
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ProtobufDecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise ProtobufDecodeError("varint longer than 10 bytes")


def to_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint value as two's complement int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def decode_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)`` for each field of a message.

    ``value`` is an unsigned int for varint, fixed32 and fixed64 fields and ``bytes`` for
    length-delimited fields. Callers skip the field numbers they do not know.

    Raises
    ------
    ProtobufDecodeError
        On truncation, field number 0, group or invalid wire types.
    """
    pos = 0
    end = len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = decode_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufDecodeError("field number 0")
        value: int | bytes
        if wire == WIRE_VARINT:
            value, pos = decode_varint(data, pos)
        elif wire == WIRE_LEN:
            length = data[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = decode_varint(data, pos)
            if length > end - pos:
                raise ProtobufDecodeError(f"field {number}: truncated length-delimited value")
            value = data[pos : pos + length]
            pos += length
        elif wire == WIRE_FIXED32:
            if pos + 4 > end:
                raise ProtobufDecodeError(f"field {number}: truncated fixed32")
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        elif wire == WIRE_FIXED64:
            if pos + 8 > end:
                raise ProtobufDecodeError(f"field {number}: truncated fixed64")
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        else:
            raise ProtobufDecodeError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


def _key(number: int, wire: int) -> bytes:
    return encode_varint((number << 3) | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, WIRE_LEN) + encode_varint(len(payload)) + payload


FeatureKind = Literal["bytes", "float", "int64"]
_KINDS: dict[int, FeatureKind] = {1: "bytes", 2: "float", 3: "int64"}


@dataclass(frozen=True)
class Feature:
    """A ``tf.train.Feature``: one of a bytes, float or int64 list (``kind`` None: unset).

    ``values`` holds ``bytes``, ``float`` (float32 values) or ``int`` items respectively.
    """

    kind: FeatureKind | None
    values: list[Any] = field(default_factory=list)

    @classmethod
    def bytes_list(cls, values: Iterable[bytes | str]) -> Feature:
        """A ``bytes_list`` feature; strings are UTF-8 encoded."""
        return cls("bytes", [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values])

    @classmethod
    def float_list(cls, values: Iterable[float]) -> Feature:
        """A ``float_list`` feature (values are rounded to float32)."""
        return cls("float", np.asarray(list(values), dtype=np.float32).tolist())

    @classmethod
    def int64_list(cls, values: Iterable[int]) -> Feature:
        """An ``int64_list`` feature."""
        return cls("int64", [int(v) for v in values])


@dataclass(frozen=True)
class SequenceExample:
    """A ``tf.train.SequenceExample``: context features and named lists of features."""

    context: dict[str, Feature] = field(default_factory=dict)
    feature_lists: dict[str, list[Feature]] = field(default_factory=dict)


def encode_feature(feature: Feature) -> bytes:
    """Serialise a :class:`Feature` (floats and int64s packed, as TensorFlow writes them)."""
    if feature.kind is None:
        return b""
    if feature.kind == "bytes":
        inner = b"".join(_len_field(1, bytes(v)) for v in feature.values)
        return _len_field(1, inner)
    if feature.kind == "float":
        packed = np.asarray(feature.values, dtype="<f4").tobytes()
        return _len_field(2, _len_field(1, packed) if packed else b"")
    if feature.kind == "int64":
        packed = b"".join(encode_varint(int(v)) for v in feature.values)
        return _len_field(3, _len_field(1, packed) if packed else b"")
    raise ParameterError(f"unknown feature kind {feature.kind!r}")


def _map_entry(key: str, value: bytes) -> bytes:
    return _len_field(1, _len_field(1, key.encode("utf-8")) + _len_field(2, value))


def encode_sequence_example(
    context: Mapping[str, Feature], feature_lists: Mapping[str, Sequence[Feature]]
) -> bytes:
    """Serialise a ``tf.train.SequenceExample`` from context features and feature lists."""
    features = b"".join(_map_entry(k, encode_feature(v)) for k, v in context.items())
    lists = b"".join(
        _map_entry(k, b"".join(_len_field(1, encode_feature(f)) for f in seq))
        for k, seq in feature_lists.items()
    )
    return _len_field(1, features) + _len_field(2, lists)


def _as_bytes(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufDecodeError(f"{what}: expected a length-delimited field")
    return value


def _fixed32_float(value: int) -> float:
    return float(np.frombuffer(value.to_bytes(4, "little"), dtype="<f4")[0])


def decode_feature(data: bytes) -> Feature:
    """Parse a serialised ``tf.train.Feature``; unknown fields are skipped."""
    kind: FeatureKind | None = None
    values: list[Any] = []
    for number, wire, value in decode_fields(data):
        if wire != WIRE_LEN or number not in (1, 2, 3):
            continue
        assert isinstance(value, bytes)
        new_kind = _KINDS[number]
        if new_kind != kind:  # a different oneof member replaces; the same one merges
            kind, values = new_kind, []
        for inner_number, inner_wire, item in decode_fields(value):
            if inner_number != 1:
                continue
            if kind == "bytes" and inner_wire == WIRE_LEN:
                values.append(item)
            elif kind == "float" and inner_wire == WIRE_LEN:
                packed = _as_bytes(item, "float_list")
                if len(packed) % 4:
                    raise ProtobufDecodeError("packed float_list length is not a multiple of 4")
                values.extend(np.frombuffer(packed, dtype="<f4").tolist())
            elif kind == "float" and inner_wire == WIRE_FIXED32:
                assert isinstance(item, int)
                values.append(_fixed32_float(item))
            elif kind == "int64" and inner_wire == WIRE_LEN:
                packed = _as_bytes(item, "int64_list")
                pos = 0
                while pos < len(packed):
                    raw, pos = decode_varint(packed, pos)
                    values.append(to_int64(raw))
            elif kind == "int64" and inner_wire == WIRE_VARINT:
                assert isinstance(item, int)
                values.append(to_int64(item))
    return Feature(kind, values)


def _decode_map(data: bytes, what: str) -> Iterator[tuple[str, bytes]]:
    """Yield (key, serialised value) of the entries of a ``map<string, Message>`` field 1."""
    for number, wire, entry in decode_fields(data):
        if number != 1 or wire != WIRE_LEN:
            continue
        assert isinstance(entry, bytes)
        key = b""
        value = b""
        for inner_number, inner_wire, item in decode_fields(entry):
            if inner_wire != WIRE_LEN:
                continue
            assert isinstance(item, bytes)
            if inner_number == 1:
                key = item
            elif inner_number == 2:
                value = item
        try:
            yield key.decode("utf-8"), value
        except UnicodeDecodeError as exc:
            raise ProtobufDecodeError(f"{what}: key is not UTF-8") from exc


def parse_sequence_example(data: bytes) -> SequenceExample:
    """Parse a serialised ``tf.train.SequenceExample``; unknown fields are skipped.

    Raises
    ------
    ProtobufDecodeError
        If the bytes are not valid protobuf.
    """
    context: dict[str, Feature] = {}
    feature_lists: dict[str, list[Feature]] = {}
    for number, wire, value in decode_fields(bytes(data)):
        if wire != WIRE_LEN or number not in (1, 2):
            continue
        assert isinstance(value, bytes)
        if number == 1:
            for key, feature in _decode_map(value, "context"):
                context[key] = decode_feature(feature)
        else:
            for key, feature_list in _decode_map(value, "feature_lists"):
                feature_lists[key] = [
                    decode_feature(_as_bytes(item, "feature_list"))
                    for n, w, item in decode_fields(feature_list)
                    if n == 1 and w == WIRE_LEN
                ]
    return SequenceExample(context, feature_lists)


# --------------------------------------------------------------------------------------------
# AudioSet layout
# --------------------------------------------------------------------------------------------


def _audioset_example(example: Mapping[str, Any], index: int) -> bytes:
    """Serialise one AudioSet-style clip dict (see :func:`write_sequence_examples`)."""
    if "video_id" not in example or "audio_embedding" not in example:
        raise ParameterError(f"example {index}: needs 'video_id' and 'audio_embedding'")
    embedding = np.asarray(example["audio_embedding"])
    if embedding.ndim != 2 or embedding.shape[0] == 0 or embedding.shape[1] == 0:
        raise ParameterError(
            f"example {index}: audio_embedding must be (n_seconds, dim) with n_seconds, dim > 0,"
            f" got shape {embedding.shape}"
        )
    if embedding.dtype != np.uint8:
        if embedding.dtype.kind not in "iu" or embedding.min() < 0 or embedding.max() > 255:
            raise ParameterError(
                f"example {index}: audio_embedding must hold uint8 values, got {embedding.dtype}"
            )
        embedding = embedding.astype(np.uint8)
    start = float(example.get("start_time_seconds", 0.0))
    end = float(example.get("end_time_seconds", start + embedding.shape[0]))
    context = {
        "video_id": Feature.bytes_list([str(example["video_id"])]),
        "start_time_seconds": Feature.float_list([start]),
        "end_time_seconds": Feature.float_list([end]),
        "labels": Feature.int64_list(example.get("labels", [])),
    }
    seconds = [Feature("bytes", [row.tobytes()]) for row in embedding]
    return encode_sequence_example(context, {"audio_embedding": seconds})


def write_sequence_examples(path: str | os.PathLike[str], examples: Iterable[Mapping[str, Any]]) -> int:
    """Write clips as a TFRecord file of SequenceExamples in AudioSet's layout.

    Parameters
    ----------
    path
        The output file (overwritten).
    examples
        Dicts with ``video_id`` (str), ``audio_embedding`` (``(n_seconds, 128)`` uint8 array),
        and optionally ``start_time_seconds`` (default 0), ``end_time_seconds`` (default start
        + n_seconds) and ``labels`` (list of int, default empty).

    Returns
    -------
    int
        The number of records written.

    Raises
    ------
    ParameterError
        If an example lacks a required key or its embedding is not a non-empty 2-D uint8 array.
    """
    return write_records(path, (_audioset_example(example, i) for i, example in enumerate(examples)))


def _f32(value: float) -> float:
    """The shortest decimal that round-trips a float32 (12.3, not 12.300000190734863)."""
    return float(str(np.float32(value)))


@dataclass
class _Clip:
    video_id: str
    start: float
    end: float
    labels: list[int]
    embedding: np.ndarray  # (n_seconds, width) uint8


def _decode_clip(source: str, payload: bytes, index: int, width: int | None) -> _Clip:
    where = f"record {index}"
    try:
        example = parse_sequence_example(payload)
    except ProtobufDecodeError as exc:
        raise InputFormatError(source, f"{where}: not a SequenceExample ({exc})") from exc
    ctx = example.context
    video = ctx.get("video_id")
    if video is None or video.kind != "bytes" or len(video.values) != 1:
        raise InputFormatError(source, f"{where}: no video_id (a bytes_list with one value)")
    try:
        video_id = video.values[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(source, f"{where}: video_id is not UTF-8") from exc
    start = _context_float(source, ctx, "start_time_seconds", where)
    seconds = example.feature_lists.get("audio_embedding")
    if not seconds:
        raise InputFormatError(source, f"{where} ({video_id}): no audio_embedding")
    for second, feature in enumerate(seconds):
        if feature.kind != "bytes" or len(feature.values) != 1:
            raise InputFormatError(
                source,
                f"{where} ({video_id}): audio_embedding second {second} is not a bytes_list with one value",
            )
    expected = width if width is not None else len(seconds[0].values[0])
    for second, feature in enumerate(seconds):
        if len(feature.values[0]) != expected or expected == 0:
            raise InputFormatError(
                source,
                f"{where} ({video_id}): audio_embedding second {second} has"
                f" {len(feature.values[0])} values, expected a constant width of {expected}",
            )
    embedding = np.frombuffer(b"".join(f.values[0] for f in seconds), dtype=np.uint8)
    embedding = embedding.reshape(len(seconds), expected)
    if "end_time_seconds" in ctx:
        end = _context_float(source, ctx, "end_time_seconds", where)
    else:
        end = start + len(seconds)
    labels_feature = ctx.get("labels")
    labels: list[int] = []
    if labels_feature is not None and labels_feature.kind is not None:
        if labels_feature.kind != "int64":
            raise InputFormatError(source, f"{where} ({video_id}): labels is not an int64_list")
        labels = list(labels_feature.values)
    return _Clip(video_id, start, end, labels, embedding)


def _context_float(source: str, ctx: dict[str, Feature], name: str, where: str) -> float:
    feature = ctx.get(name)
    if feature is None or feature.kind is None:
        return 0.0
    if feature.kind != "float" or len(feature.values) != 1:
        raise InputFormatError(source, f"{where}: {name} is not a float_list with one value")
    return _f32(feature.values[0])


def read_audioset(
    path: str | os.PathLike[str], *, per_second: bool = True, dequantize: bool = False
) -> VectorBatch:
    """Read AudioSet-style embeddings from a TFRecord file of SequenceExamples.

    Parameters
    ----------
    path
        The TFRecord file (uncompressed).
    per_second
        True: one row per second, key ``f"{video_id}@{t:.1f}"`` with ``t = start_time_seconds
        + second``, meta ``{video_id, start_time_seconds, second, labels}``. False: one row per
        clip holding the mean over its seconds, key ``video_id``, meta ``{video_id,
        start_time_seconds, end_time_seconds, labels, n_seconds}``.
    dequantize
        False: vectors are the stored uint8 values 0..255 as float32. True: they are mapped back
        to VGGish's clipping range with ``x * 4 / 255 - 2`` (0 -> -2, 255 -> +2), the inverse
        of AudioSet's quantisation up to its rounding.

    Returns
    -------
    VectorBatch

    Raises
    ------
    InputFormatError
        Empty file, bad CRC, truncated record, undecodable record, or a record without
        ``video_id`` or ``audio_embedding`` or with embeddings of varying width; the message
        gives the 0-based record index.
    """
    source = os.fspath(path)
    if Path(source).is_file() and Path(source).stat().st_size == 0:
        raise InputFormatError(source, "empty file")
    keys: list[str] = []
    meta: list[dict[str, Any]] = []
    blocks: list[np.ndarray] = []
    width: int | None = None
    for index, payload in enumerate(iter_records(source)):
        clip = _decode_clip(source, payload, index, width)
        width = clip.embedding.shape[1]
        n_seconds = clip.embedding.shape[0]
        if per_second:
            for second in range(n_seconds):
                keys.append(f"{clip.video_id}@{clip.start + second:.1f}")
                meta.append(
                    {
                        "video_id": clip.video_id,
                        "start_time_seconds": clip.start,
                        "second": second,
                        "labels": list(clip.labels),
                    }
                )
            blocks.append(clip.embedding)
        else:
            keys.append(clip.video_id)
            meta.append(
                {
                    "video_id": clip.video_id,
                    "start_time_seconds": clip.start,
                    "end_time_seconds": clip.end,
                    "labels": clip.labels,
                    "n_seconds": n_seconds,
                }
            )
            blocks.append(clip.embedding.mean(axis=0, dtype=np.float64)[None, :])
    if not blocks:
        raise InputFormatError(source, "no records")
    vectors = np.concatenate(blocks).astype(np.float32)
    if dequantize:
        scale = (QUANTIZE_MAX - QUANTIZE_MIN) / 255.0
        vectors = (vectors.astype(np.float64) * scale + QUANTIZE_MIN).astype(np.float32)
    logger.debug("read %d x %d vectors from %s", vectors.shape[0], vectors.shape[1], source)
    return VectorBatch(keys=keys, vectors=vectors, meta=meta, source=source)
