"""TFRecord framing, CRC32C, protobuf wire format and the AudioSet reader/writer."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiolsh.errors import InputFormatError, ParameterError
from audiolsh.vectors import (
    Feature,
    ProtobufDecodeError,
    crc32c,
    decode_feature,
    decode_fields,
    decode_varint,
    encode_feature,
    encode_record,
    encode_sequence_example,
    encode_varint,
    iter_records,
    masked_crc32c,
    parse_sequence_example,
    read_audioset,
    read_vectors,
    to_int64,
    write_records,
    write_sequence_examples,
)


def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def _key(number: int, wire: int) -> bytes:
    return encode_varint(number << 3 | wire)


def _ld(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + encode_varint(len(payload)) + payload


def _clips() -> list[dict]:
    rng = np.random.default_rng(7)
    return [
        {
            "video_id": "--PJHxphWEs",
            "start_time_seconds": 30.0,
            "end_time_seconds": 40.0,
            "labels": [0, 137, 527],
            "audio_embedding": rng.integers(0, 256, (10, 128), dtype=np.uint8),
        },
        {
            "video_id": "-0RWZT-miFs",
            "start_time_seconds": 420.5,
            "end_time_seconds": 430.5,
            "labels": [-1, 2**40],
            "audio_embedding": rng.integers(0, 256, (3, 128), dtype=np.uint8),
        },
    ]


# CRC32C ------------------------------------------------------------------------------------


def test_crc32c_known_vector() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of ones


def test_crc32c_incremental_and_array_input() -> None:
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283
    assert crc32c(np.frombuffer(b"123456789", dtype=np.uint8)) == 0xE3069283


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_crc32c_matches_bitwise_reference(data: bytes) -> None:
    assert crc32c(data) == _crc32c_bitwise(data)


def test_masked_crc_formula() -> None:
    crc = crc32c(b"abc")
    expected = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"abc") == expected


# Record framing ----------------------------------------------------------------------------


def test_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "raw.tfrecord"
    payloads = [b"", b"x", bytes(range(256)) * 10]
    assert write_records(path, payloads) == 3
    assert list(iter_records(path)) == payloads
    blob = path.read_bytes()
    assert blob[:8] == struct.pack("<Q", 0)
    assert blob[8:12] == struct.pack("<I", masked_crc32c(bytes(8)))
    assert encode_record(b"x") == blob[16 : 16 + 17]


def test_empty_record_file_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    assert list(iter_records(path)) == []
    with pytest.raises(InputFormatError, match="empty file"):
        read_audioset(path)


def test_flipped_data_byte_is_a_crc_error_naming_the_record(tmp_path: Path) -> None:
    path = tmp_path / "bad.tfrecord"
    write_sequence_examples(path, _clips())
    blob = bytearray(path.read_bytes())
    first_len = struct.unpack("<Q", blob[:8])[0]
    second = 12 + first_len + 4
    blob[second + 12 + 40] ^= 0x01  # a byte inside record 1's data
    path.write_bytes(bytes(blob))
    with pytest.raises(InputFormatError, match=r"bad CRC at record 1 .*data") as info:
        read_audioset(path)
    assert str(path) in str(info.value)
    assert len(list(iter_records(path, verify=False))) == 2


def test_flipped_length_byte_is_a_crc_error(tmp_path: Path) -> None:
    path = tmp_path / "bad_len.tfrecord"
    write_records(path, [b"hello"])
    blob = bytearray(path.read_bytes())
    blob[0] ^= 0x02
    path.write_bytes(bytes(blob))
    with pytest.raises(InputFormatError, match=r"bad CRC at record 0 .*length"):
        list(iter_records(path))


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 20, 4])
def test_truncated_file_is_an_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "short.tfrecord"
    write_records(path, [b"first record", b"0123456789" * 3])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - cut])
    with pytest.raises(InputFormatError, match="truncated record 1"):
        list(iter_records(path))


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="cannot read"):
        read_audioset(tmp_path / "nope.tfrecord")


# Protobuf wire format -----------------------------------------------------------------------


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_varint_round_trip_int64(value: int) -> None:
    encoded = encode_varint(value)
    raw, pos = decode_varint(encoded)
    assert pos == len(encoded)
    assert to_int64(raw) == value
    if value < 0:
        assert len(encoded) == 10


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=5))
def test_varint_round_trip_uint64_with_offset(value: int, prefix: bytes) -> None:
    encoded = prefix + encode_varint(value) + b"\x01"
    raw, pos = decode_varint(encoded, len(prefix))
    assert raw == value
    assert encoded[pos:] == b"\x01"


def test_varint_known_encodings_and_errors() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(300) == b"\xac\x02"
    assert encode_varint(-1) == b"\xff" * 9 + b"\x01"
    with pytest.raises(ParameterError):
        encode_varint(2**64)
    with pytest.raises(ProtobufDecodeError, match="truncated"):
        decode_varint(b"\x80\x80")
    with pytest.raises(ProtobufDecodeError, match="10 bytes"):
        decode_varint(b"\xff" * 11)


def test_unknown_fields_are_skipped() -> None:
    bytes_feature = _ld(1, _ld(1, b"vid") + _key(4, 0) + encode_varint(99))  # BytesList + junk
    feature = (
        _key(9, 1)
        + struct.pack("<Q", 123)  # unknown fixed64 before the oneof
        + bytes_feature
        + _key(10, 5)
        + struct.pack("<I", 7)  # unknown fixed32 after it
    )
    float_feature = _ld(2, _key(1, 5) + struct.pack("<f", 1.5) + _key(1, 5) + struct.pack("<f", -2))
    int_feature = _ld(3, _key(1, 0) + encode_varint(-3) + _ld(1, encode_varint(5) + encode_varint(6)))
    context = (
        _ld(1, _ld(1, b"video_id") + _key(3, 0) + encode_varint(1) + _ld(2, feature))
        + _ld(1, _ld(1, b"start_time_seconds") + _ld(2, float_feature))
        + _ld(1, _ld(1, b"labels") + _ld(2, int_feature))
        + _ld(5, b"unknown map field")
    )
    second = _ld(1, _ld(1, bytes([1, 2, 3])))
    feature_list = _ld(1, second) + _ld(7, b"junk") + _ld(1, second)
    lists = _ld(1, _ld(1, b"audio_embedding") + _ld(2, feature_list))
    message = _key(15, 0) + encode_varint(2**40) + _ld(1, context) + _ld(3, b"x") + _ld(2, lists)

    example = parse_sequence_example(message)
    assert example.context["video_id"] == Feature("bytes", [b"vid"])
    assert example.context["start_time_seconds"] == Feature("float", [1.5, -2.0])
    assert example.context["labels"] == Feature("int64", [-3, 5, 6])
    assert example.feature_lists["audio_embedding"] == [Feature("bytes", [b"\x01\x02\x03"])] * 2


def test_decode_fields_reports_bad_input() -> None:
    assert list(decode_fields(_key(1, 0) + b"\x05" + _key(2, 5) + b"\x01\0\0\0")) == [
        (1, 0, 5),
        (2, 5, 1),
    ]
    with pytest.raises(ProtobufDecodeError, match="truncated"):
        list(decode_fields(_key(1, 2) + b"\x05ab"))
    with pytest.raises(ProtobufDecodeError, match="wire type"):
        list(decode_fields(_key(1, 3)))
    with pytest.raises(ProtobufDecodeError, match="field number 0"):
        list(decode_fields(b"\x00\x00"))


@given(
    st.one_of(
        st.builds(Feature.bytes_list, st.lists(st.binary(max_size=20), max_size=5)),
        st.builds(
            Feature.float_list,
            st.lists(st.floats(width=32, allow_nan=False), max_size=5),
        ),
        st.builds(
            Feature.int64_list,
            st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=5),
        ),
    )
)
def test_feature_round_trip(feature: Feature) -> None:
    decoded = decode_feature(encode_feature(feature))
    if feature.values:
        assert decoded == feature
    else:  # an empty list is indistinguishable from an unset list of that kind
        assert decoded.values == []


# AudioSet layout ----------------------------------------------------------------------------


def test_writer_produces_audioset_layout(tmp_path: Path) -> None:
    path = tmp_path / "clips.tfrecord"
    clips = _clips()
    assert write_sequence_examples(path, clips) == 2
    payloads = list(iter_records(path))
    example = parse_sequence_example(payloads[0])
    assert set(example.context) == {"video_id", "start_time_seconds", "end_time_seconds", "labels"}
    assert example.context["video_id"] == Feature("bytes", [b"--PJHxphWEs"])
    assert example.context["start_time_seconds"] == Feature("float", [30.0])
    assert example.context["end_time_seconds"] == Feature("float", [40.0])
    assert example.context["labels"] == Feature("int64", [0, 137, 527])
    seconds = example.feature_lists["audio_embedding"]
    assert list(example.feature_lists) == ["audio_embedding"]
    assert len(seconds) == 10
    for row, feature in zip(clips[0]["audio_embedding"], seconds, strict=True):
        assert feature.kind == "bytes"
        assert feature.values == [row.tobytes()]


def test_round_trip_per_second(tmp_path: Path) -> None:
    path = tmp_path / "clips.tfrecord"
    clips = _clips()
    write_sequence_examples(path, clips)
    batch = read_audioset(path)
    assert len(batch) == 13
    assert batch.dim == 128
    assert batch.source == str(path)
    assert batch.keys[:2] == ["--PJHxphWEs@30.0", "--PJHxphWEs@31.0"]
    assert batch.keys[9] == "--PJHxphWEs@39.0"
    assert batch.keys[10:] == ["-0RWZT-miFs@420.5", "-0RWZT-miFs@421.5", "-0RWZT-miFs@422.5"]
    expected = np.concatenate([c["audio_embedding"] for c in clips]).astype(np.float32)
    assert batch.vectors.dtype == np.float32
    assert batch.vectors.flags.c_contiguous
    np.testing.assert_array_equal(batch.vectors, expected)
    assert batch.meta is not None
    assert batch.meta[0] == {
        "video_id": "--PJHxphWEs",
        "start_time_seconds": 30.0,
        "second": 0,
        "labels": [0, 137, 527],
    }
    assert batch.meta[12] == {
        "video_id": "-0RWZT-miFs",
        "start_time_seconds": 420.5,
        "second": 2,
        "labels": [-1, 2**40],
    }


def test_round_trip_clip_mean(tmp_path: Path) -> None:
    path = tmp_path / "clips.tfrecords"
    clips = _clips()
    write_sequence_examples(path, clips)
    batch = read_vectors(path, per_second=False)
    assert batch.keys == ["--PJHxphWEs", "-0RWZT-miFs"]
    expected = np.stack([c["audio_embedding"].astype(np.float64).mean(axis=0) for c in clips])
    np.testing.assert_array_equal(batch.vectors, expected.astype(np.float32))
    assert batch.meta == [
        {
            "video_id": "--PJHxphWEs",
            "start_time_seconds": 30.0,
            "end_time_seconds": 40.0,
            "labels": [0, 137, 527],
            "n_seconds": 10,
        },
        {
            "video_id": "-0RWZT-miFs",
            "start_time_seconds": 420.5,
            "end_time_seconds": 430.5,
            "labels": [-1, 2**40],
            "n_seconds": 3,
        },
    ]


def test_dequantize_maps_to_plus_minus_two(tmp_path: Path) -> None:
    path = tmp_path / "q.tfr"
    embedding = np.array([[0, 255, 128]], dtype=np.uint8)
    write_sequence_examples(path, [{"video_id": "a", "audio_embedding": embedding}])
    batch = read_audioset(path, dequantize=True)
    np.testing.assert_allclose(batch.vectors, [[-2.0, 2.0, 128 * 4 / 255 - 2]], rtol=1e-6)
    assert batch.keys == ["a@0.0"]


def test_writer_defaults_and_integer_input(tmp_path: Path) -> None:
    path = tmp_path / "d.tfrecord"
    write_sequence_examples(path, [{"video_id": "a", "audio_embedding": [[1, 2], [3, 4]]}])
    batch = read_audioset(path, per_second=False)
    assert batch.meta == [
        {
            "video_id": "a",
            "start_time_seconds": 0.0,
            "end_time_seconds": 2.0,
            "labels": [],
            "n_seconds": 2,
        }
    ]
    np.testing.assert_array_equal(batch.vectors, [[2.0, 3.0]])


@pytest.mark.parametrize(
    "example",
    [
        {"audio_embedding": np.zeros((1, 128), np.uint8)},
        {"video_id": "a"},
        {"video_id": "a", "audio_embedding": np.zeros((0, 128), np.uint8)},
        {"video_id": "a", "audio_embedding": np.zeros(128, np.uint8)},
        {"video_id": "a", "audio_embedding": np.full((1, 128), 0.5)},
        {"video_id": "a", "audio_embedding": np.full((1, 128), 256)},
    ],
)
def test_writer_rejects_bad_examples(tmp_path: Path, example: dict) -> None:
    with pytest.raises(ParameterError):
        write_sequence_examples(tmp_path / "bad.tfrecord", [example])


def _context(video_id: str = "v") -> dict[str, Feature]:
    return {"video_id": Feature.bytes_list([video_id]), "labels": Feature.int64_list([1])}


def test_record_without_audio_embedding_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "noemb.tfrecord"
    good = encode_sequence_example(_context(), {"audio_embedding": [Feature.bytes_list([b"ab"])]})
    write_records(path, [good, encode_sequence_example(_context("w"), {})])
    with pytest.raises(InputFormatError, match=r"record 1 \(w\): no audio_embedding"):
        read_audioset(path)


def test_ragged_embedding_widths_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "ragged.tfrecord"
    inside = [Feature.bytes_list([b"abc"]), Feature.bytes_list([b"ab"])]
    write_records(path, [encode_sequence_example(_context(), {"audio_embedding": inside})])
    with pytest.raises(InputFormatError, match=r"record 0 .*second 1 has 2 values"):
        read_audioset(path)
    across = [
        encode_sequence_example(_context("a"), {"audio_embedding": [Feature.bytes_list([b"ab"])]}),
        encode_sequence_example(_context("b"), {"audio_embedding": [Feature.bytes_list([b"a"])]}),
    ]
    write_records(path, across)
    with pytest.raises(InputFormatError, match=r"record 1 \(b\).*constant width of 2"):
        read_audioset(path)


def test_non_bytes_embedding_and_missing_video_id_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "kinds.tfrecord"
    floats = {"audio_embedding": [Feature.float_list([1.0])]}
    write_records(path, [encode_sequence_example(_context(), floats)])
    with pytest.raises(InputFormatError, match=r"record 0 .*not a bytes_list"):
        read_audioset(path)
    emb = {"audio_embedding": [Feature.bytes_list([b"a"])]}
    write_records(path, [encode_sequence_example({}, emb)])
    with pytest.raises(InputFormatError, match="record 0: no video_id"):
        read_audioset(path)


def test_garbage_record_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.tfrecord"
    write_records(path, [b"\x0a\xff\x01"])
    with pytest.raises(InputFormatError, match="record 0: not a SequenceExample"):
        read_audioset(path)
