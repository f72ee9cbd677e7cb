"""Audio features: per-window embeddings for k-NN search."""

from audiolsh.features.logmel import EMBEDDING_DIM, logmel_embeddings

__all__ = ["EMBEDDING_DIM", "logmel_embeddings"]
