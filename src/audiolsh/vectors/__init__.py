"""Read vectors from ``.npy``, CSV/TSV feature tables, AudioSet TFRecord and Parquet files.

Every reader returns a :class:`VectorBatch`; :func:`read_vectors` picks the reader from the file
extension.
"""

from audiolsh.vectors.batch import SUPPORTED_EXTENSIONS, VectorBatch, read_vectors
from audiolsh.vectors.csv import read_csv
from audiolsh.vectors.npy import read_npy
from audiolsh.vectors.parquet import read_parquet
from audiolsh.vectors.tfrecord import (
    Feature,
    ProtobufDecodeError,
    SequenceExample,
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
    to_int64,
    write_records,
    write_sequence_examples,
)

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Feature",
    "ProtobufDecodeError",
    "SequenceExample",
    "VectorBatch",
    "crc32c",
    "decode_feature",
    "decode_fields",
    "decode_varint",
    "encode_feature",
    "encode_record",
    "encode_sequence_example",
    "encode_varint",
    "iter_records",
    "masked_crc32c",
    "parse_sequence_example",
    "read_audioset",
    "read_csv",
    "read_npy",
    "read_parquet",
    "read_vectors",
    "to_int64",
    "write_records",
    "write_sequence_examples",
]
