"""Evaluation protocols, metrics and parameter tuning."""

from audiolsh.evaluation.metrics import bootstrap_ci, recall_at_k
from audiolsh.evaluation.tune import TuneReport, TuneRow, tune_index, tune_vectors

__all__ = ["TuneReport", "TuneRow", "bootstrap_ci", "recall_at_k", "tune_index", "tune_vectors"]
