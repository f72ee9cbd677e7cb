"""Audio features: one extractor per module, librosa's vocabulary (``y``, ``sr``, ``S``).

The beat spectrum and landmark functions share their module's name: import them from
``audiolsh.features.beat_spectrum`` and ``audiolsh.features.landmarks``.
"""

from audiolsh.features.beat_spectrum import beat_spectrum_bands
from audiolsh.features.chroma import chroma_frames
from audiolsh.features.excerpts import MODES, ExcerptFeatures, excerpt_features
from audiolsh.features.landmarks import Landmarks
from audiolsh.features.logmel import EMBEDDING_DIM, logmel_embeddings
from audiolsh.features.mfcc import mfcc_stats
from audiolsh.features.peaks import peak_set
from audiolsh.features.rhythm import rhythm_descriptor
from audiolsh.features.spectral_pattern import delta_spectral_pattern

__all__ = [
    "EMBEDDING_DIM",
    "MODES",
    "ExcerptFeatures",
    "Landmarks",
    "beat_spectrum_bands",
    "chroma_frames",
    "delta_spectral_pattern",
    "excerpt_features",
    "logmel_embeddings",
    "mfcc_stats",
    "peak_set",
    "rhythm_descriptor",
]
