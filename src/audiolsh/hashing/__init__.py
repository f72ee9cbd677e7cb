"""Hash families behind one protocol: hyperplane (cosine), p-stable (Euclidean), MinHash (Jaccard)."""

from audiolsh.hashing.base import HashFamily, from_config
from audiolsh.hashing.hyperplane import HyperplaneLSH
from audiolsh.hashing.minhash import MinHashLSH, SetBatch, as_sets, concat_sets, optimal_bands
from audiolsh.hashing.multiprobe import perturbation_sets, probe_sequence
from audiolsh.hashing.pstable import PStableLSH

__all__ = [
    "HashFamily",
    "HyperplaneLSH",
    "MinHashLSH",
    "PStableLSH",
    "SetBatch",
    "as_sets",
    "concat_sets",
    "from_config",
    "optimal_bands",
    "perturbation_sets",
    "probe_sequence",
]
