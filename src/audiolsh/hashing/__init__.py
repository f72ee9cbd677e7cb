"""Hash families behind one protocol: hyperplane and cross-polytope (cosine), p-stable
(Euclidean), k-means cells (learned, either metric), MinHash (Jaccard)."""

from audiolsh.hashing.base import HashFamily, from_config
from audiolsh.hashing.crosspolytope import CrossPolytopeLSH
from audiolsh.hashing.hyperplane import HyperplaneLSH
from audiolsh.hashing.kmeans import KMeansLSH
from audiolsh.hashing.minhash import MinHashLSH, SetBatch, as_sets, concat_sets, optimal_bands
from audiolsh.hashing.multiprobe import perturbation_sets, probe_sequence
from audiolsh.hashing.pstable import PStableLSH

__all__ = [
    "CrossPolytopeLSH",
    "HashFamily",
    "HyperplaneLSH",
    "KMeansLSH",
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
