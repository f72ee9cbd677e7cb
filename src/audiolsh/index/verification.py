"""A weak candidate checked against its track's own audio.

When the landmarks leave a clip's best candidate under the threshold (0 dB noise, a loud room, a
few seconds of an ambient pad), the candidate still says where the clip would start in which
track. If the track's file can be read, the clip's waveform is correlated with the track's audio
there (:func:`audiolsh.audio.align.correlate_with_track`: band-passed, best lag within 0.5 s): a
clip of that passage correlates at 0.3-0.9 even at 0 dB, an unrelated one near the chance level
of its length (about 0.2 at 3 s, 0.1 at 10 s). The confidence is then the probability that the
candidate is right given the landmarks' confidence and that correlation (a logistic model of
``logit(confidence)`` and ``correlation x sqrt(seconds compared)``, fitted on the protocol's
weak candidates and shipped as ``features/data/verification-v1.json``).

Only candidates that played at the track's own speed are checked (a waveform does not align
under a speed, tempo or pitch change), and only weak ones: a confident answer costs no file read.
A track whose file is gone, moved or unreadable from this machine is left as the landmarks put
it (``verified`` None).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from audiolsh.errors import AudiolshError, ParameterError
from audiolsh.index.confidence import _sigmoid, fit_logistic, save_json, shipped_json

log = logging.getLogger(__name__)

FORMAT = "audiolsh-verification"
FORMAT_VERSION = 1
DEFAULT = "verification-v1"
FEATURES = ("logit_confidence", "correlation_x_sqrt_seconds")
LOGIT_CAP = 12.0
MAX_SECONDS = 10.0
"""The longest stretch of a clip compared (around the landmarks' agreeing span): more decodes
more of the track and a longer weak clip is rare."""
MIN_SECONDS = 0.5


def features(confidence: ArrayLike, correlation: ArrayLike, seconds: ArrayLike) -> np.ndarray:
    """(n, 2) float64 model inputs."""
    c = np.clip(np.asarray(confidence, np.float64), 1e-12, 1 - 1e-12)
    logit = np.clip(np.log(c) - np.log1p(-c), -LOGIT_CAP, LOGIT_CAP)
    z = np.asarray(correlation, np.float64) * np.sqrt(np.maximum(np.asarray(seconds, np.float64), 0.0))
    return np.stack(np.broadcast_arrays(logit, z), axis=-1).reshape(-1, len(FEATURES))


@dataclass(frozen=True)
class Verification:
    """The fitted model: the probability that a weak candidate is right, given its landmarks'
    confidence and its waveform correlation with the track."""

    coef: tuple[float, float]
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict)

    def probability(self, confidence: ArrayLike, correlation: ArrayLike, seconds: ArrayLike) -> np.ndarray:
        return _sigmoid(features(confidence, correlation, seconds) @ np.asarray(self.coef) + self.intercept)

    def confidence(self, confidence: float, correlation: float, seconds: float) -> float:
        return float(self.probability(confidence, correlation, seconds)[0])

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "features": list(FEATURES),
                "logit_cap": LOGIT_CAP, "coef": [float(c) for c in self.coef],
                "intercept": float(self.intercept), "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "verification") -> Verification:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ParameterError(f"{where}: not a verification model of format version {FORMAT_VERSION}")
        if data.get("features") != list(FEATURES) or data.get("logit_cap") != LOGIT_CAP:
            raise ParameterError(f"{where}: made for features {data.get('features')}, this audiolsh uses"
                                 f" {list(FEATURES)} (refit it)")
        coef = [float(c) for c in data.get("coef", ())]
        if len(coef) != len(FEATURES) or not all(map(math.isfinite, (*coef, float(data["intercept"])))):
            raise ParameterError(f"{where}: bad coefficients {data.get('coef')}")
        return cls((coef[0], coef[1]), float(data["intercept"]), dict(data.get("meta", {})))

    def save(self, path: str | os.PathLike[str]) -> None:
        save_json(self.to_json(), path)


@lru_cache(maxsize=1)
def load(name: str = DEFAULT) -> Verification:
    """The shipped model ``name`` (read once per process)."""
    return Verification.from_json(shipped_json(name, "verification model"), name)


def fit(confidence: ArrayLike, correlation: ArrayLike, seconds: ArrayLike, correct: ArrayLike, *,
        meta: dict[str, Any] | None = None) -> Verification:
    """Logistic regression of ``correct`` on :func:`features`, both weights >= 0 (a higher
    confidence or correlation never lowers the answer's); deterministic."""
    X = features(confidence, correlation, seconds)
    y = np.asarray(correct, np.float64)
    if len(y) < 10 or y.min() == y.max():
        raise ParameterError(f"fitting needs >= 10 checked candidates, right and wrong ones; got {len(y)}")
    coef, intercept = fit_logistic(X, y, [(0.0, None), (0.0, None)])
    return Verification((float(coef[0]), float(coef[1])), intercept, dict(meta or {}))


def checkable(speed: float, tempo: float, pitch: float) -> bool:
    """Whether a candidate's transform keeps the waveform (only the track's own speed does)."""
    return speed == 1.0 and tempo == 1.0 and pitch == 1.0


def window(clip_s: float, start_s: float, end_s: float) -> tuple[float, float]:
    """The stretch of a clip compared: up to :data:`MAX_SECONDS` centred on the landmarks'
    agreeing span ``start_s``-``end_s``, inside the clip."""
    length = min(clip_s, MAX_SECONDS)
    centre = 0.5 * (start_s + end_s) if end_s > start_s else 0.5 * clip_s
    lo = min(max(0.0, centre - 0.5 * length), clip_s - length)
    return lo, lo + length


def correlation(y: np.ndarray, sr: float, path: str, offset_s: float, span: tuple[float, float]
                ) -> float | None:
    """The clip's stretch ``span`` (seconds of the clip) against ``path`` from ``offset_s`` (the
    clip's start in the track); None when the track's audio cannot be read here."""
    from audiolsh.audio.align import correlate_with_track  # soxr and the decoder: only when a check runs

    a, b = round(span[0] * sr), round(span[1] * sr)
    if b - a < MIN_SECONDS * sr:
        return None
    try:
        return correlate_with_track(y[a:b], sr, path, offset_s + span[0])
    except AudiolshError as exc:
        log.info("%s: not checked against its audio: %s", path, exc)
        return None
