"""Candidates, exact re-ranking and the result types every interface shares."""

from audiolsh.search.brute import BruteForce, prepare
from audiolsh.search.lsh import SetLSH, VectorLSH
from audiolsh.search.results import Neighbors, merge
from audiolsh.search.tables import BucketTables

__all__ = ["BruteForce", "BucketTables", "Neighbors", "SetLSH", "VectorLSH", "merge", "prepare"]
