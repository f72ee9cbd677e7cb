"""Calibrated confidence: the probability that a fingerprint match names the right track.

A logistic model over six quantities the engine computes for its best candidate: the chance
score ``-log10 p`` (capped: beyond the cap every answer of the fit was right), the agreeing
hashes, the query's hashes and the clip's seconds, each as a log (a log also keeps the fit
steady when an engine change stretches the scores), the chance score again times how
noise-like the clip is (:func:`audiolsh.features.landmarks.noise_level`: in a noisy clip the
same chance score is surer, as chance agreement with another track's held notes needs the
clean partials noise drowns; a product, so that a noisy clip with no evidence gains nothing),
and how well the clip's energy envelope agrees with the track's at the candidate's alignment
(:func:`audiolsh.features.envelope.clip_z`, as ``log1p`` of the z-score, 0 below 0: evidence
of another kind, which survives a loud room or 0 dB noise better than the landmarks).  A
candidate with no envelope to compare (a track of an index made before envelopes, a window of
a streamed recording) is scored by ``WITHOUT_ENVELOPE``, the fit made without one.
It is fitted on the clips of the identification protocol (``audiolsh evaluate identify --fit-confidence``):
positives and negatives of every condition and length, label 1 when the candidate is the clip's
source track.  The chance score's, the agreeing hashes' and the noisy chance score's weights are
kept >= 0, so more evidence never lowers the confidence.

The fit is shipped as ``features/data/confidence-v3.json`` (plain JSON, versioned) with the
default threshold it implies: the engine's former operating point (chance score >= 3, i.e. a
corrected p <= 0.001; the calibrated probability whose decisions agree with it most), lowered as
far as the fit's negative clips allow without a false match more than it gives.  Fitted with a
false-match ``budget`` instead (``fit_confidence.py --false-match-budget``), it is the lowest
probability at which the fit's negative clips (verified overlaps left out) give at most that
share of false matches.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from audiolsh.errors import ParameterError

FORMAT = "audiolsh-confidence"
FORMAT_VERSION = 3
DEFAULT = "confidence-v3"
WITHOUT_ENVELOPE = "confidence-v2"
"""The calibration of candidates with no envelope to compare (fitted without it)."""
FEATURES = ("log_chance", "log_agreeing", "log_query_hashes", "log_seconds", "noise_x_log_chance",
            "log_envelope_z")
OLD_FEATURES = {1: FEATURES[:4], 2: FEATURES[:5]}
"""An older calibration (no noise level, no envelope) reads as the current one with their weights 0."""
ENVELOPE_Z_CAP = 40.0
CHANCE_CAP = 30.0
"""Chance scores above this are all one (an engine change that rescales the top does not move
the fit)."""
OLD_OPERATING_CHANCE = 3.0
"""The operating point before calibration: corrected chance probability <= 1e-3."""
N_BINS = 10
FALSE_MATCH_BUDGET = 0.0025
"""A suggested budget for a fit by false matches: half of 0.5 %, so that the rate on clips not
used to fit stays inside 0.5 %."""


def features(log10_p: Any, agreeing: Any, query_hashes: Any, seconds: Any, noise: Any = 0.0,
             envelope_z: Any = 0.0) -> np.ndarray:
    """(n, 6) float64 model inputs from the engine's quantities (scalars or arrays; an envelope z
    of NaN: none compared, as 0)."""
    chance = np.log1p(np.clip(-np.asarray(log10_p, np.float64), 0.0, CHANCE_CAP))
    cols = [chance, np.log1p(np.maximum(np.asarray(agreeing, np.float64), 0.0)),
            np.log1p(np.maximum(np.asarray(query_hashes, np.float64), 0.0)),
            np.log(np.maximum(np.asarray(seconds, np.float64), 0.1)),
            chance * np.clip(np.asarray(noise, np.float64), 0.0, 1.0),
            np.log1p(np.clip(np.nan_to_num(np.asarray(envelope_z, np.float64)), 0.0, ENVELOPE_Z_CAP))]
    return np.stack(np.broadcast_arrays(*cols), axis=-1).reshape(-1, len(FEATURES))


@dataclass(frozen=True)
class Calibration:
    """A fitted model: ``probability(...)`` of the engine's quantities, and the defaults it implies.

    default_min_confidence : the former operating point (lowered while the fit's negatives
        allow), or the lowest within a false-match budget when fitted with one (see the module)
    hashes_needed : query hashes from which at least half the fit's clean positive clips were
        matched at the default (a no match with fewer says so)
    """

    coef: tuple[float, ...]
    intercept: float
    default_min_confidence: float
    hashes_needed: int
    meta: dict[str, Any] = field(default_factory=dict)

    def probability(self, log10_p: Any, agreeing: Any, query_hashes: Any, seconds: Any,
                    noise: Any = 0.0, envelope_z: Any = 0.0) -> np.ndarray:
        X = features(log10_p, agreeing, query_hashes, seconds, noise, envelope_z)
        return _sigmoid(X @ np.asarray(self.coef) + self.intercept)

    def confidence(self, log10_p: float, agreeing: float, query_hashes: float, seconds: float,
                   noise: float = 0.0, envelope_z: float = 0.0) -> float:
        return float(self.probability(log10_p, agreeing, query_hashes, seconds, noise, envelope_z)[0])

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "features": list(FEATURES),
                "chance_cap": CHANCE_CAP, "coef": [float(c) for c in self.coef],
                "intercept": float(self.intercept),
                "default_min_confidence": float(self.default_min_confidence),
                "hashes_needed": int(self.hashes_needed), "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "calibration") -> Calibration:
        version = data.get("format_version")
        if data.get("format") != FORMAT or version not in (*OLD_FEATURES, FORMAT_VERSION):
            raise ParameterError(f"{where}: not a confidence calibration of format version 1 to"
                                 f" {FORMAT_VERSION}")
        expected = list(OLD_FEATURES.get(version, FEATURES))
        if data.get("features") != expected or data.get("chance_cap") != CHANCE_CAP:
            raise ParameterError(f"{where}: made for features {data.get('features')}, this audiolsh"
                                 f" uses {list(FEATURES)} (refit it)")
        coef = tuple(float(c) for c in data["coef"])
        if len(coef) != len(expected) or not all(map(math.isfinite, (*coef, data["intercept"]))):
            raise ParameterError(f"{where}: bad coefficients {data['coef']}")
        coef += (0.0,) * (len(FEATURES) - len(coef))
        return cls(coef, float(data["intercept"]), float(data["default_min_confidence"]),
                   int(data["hashes_needed"]), dict(data.get("meta", {})))

    def save(self, path: str | os.PathLike[str]) -> None:
        save_json(self.to_json(), path)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64))))


def shipped_json(name: str, what: str) -> dict[str, Any]:
    """The package data file ``features/data/<name>.json`` (``what``: how to name it when missing)."""
    res = resources.files("audiolsh.features").joinpath("data").joinpath(f"{name}.json")
    if not res.is_file():
        raise ParameterError(f"{what} {name!r}: its file is missing from the package data")
    data: dict[str, Any] = json.loads(res.read_text())
    return data


def save_json(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


@lru_cache(maxsize=2)
def load(name: str = DEFAULT) -> Calibration:
    """The shipped calibration ``name`` (read once per process)."""
    return Calibration.from_json(shipped_json(name, "confidence calibration"), name)


# --------------------------------------------------------------------------- fitting and checking


def fit(log10_p: ArrayLike, agreeing: ArrayLike, query_hashes: ArrayLike,
        seconds: ArrayLike, correct: ArrayLike, *, noise: ArrayLike | None = None,
        envelope_z: ArrayLike | None = None,
        clean: ArrayLike | None = None, negative: ArrayLike | None = None,
        budget: float | None = None, l2: float = 1e-6,
        meta: dict[str, Any] | None = None) -> Calibration:
    """Logistic regression of ``correct`` (the candidate is the clip's track) on the features,
    the weights of the chance score, the agreeing hashes, the noisy chance score and the envelope
    bounded at >= 0; deterministic.  A clip
    with no candidate at all (``log10_p`` NaN) is left out of the fit but counts as unmatched
    for ``hashes_needed``.

    ``noise`` is each clip's noise level (default: 0, as a version-1 fit had it);
    ``envelope_z`` the candidate's envelope z (default: none, as a version-2 fit had it).
    ``clean`` marks the undistorted positive clips, on which ``hashes_needed`` is read (noise
    adds hashes that agree with nothing, so only clean clips tell how many a match needs).
    ``negative`` marks the clips of unindexed audio (verified overlaps left out); with a
    ``budget`` the default threshold is the lowest that matches at most that share of them."""
    X_all = features(np.nan_to_num(np.asarray(log10_p, np.float64)), agreeing, query_hashes, seconds,
                     0.0 if noise is None else noise, 0.0 if envelope_z is None else envelope_z)
    has = np.isfinite(np.asarray(log10_p, np.float64))  # NaN: the clip had no candidate at all
    X, y = X_all[has], np.asarray(correct, np.float64)[has]
    if len(y) < 10 or y.min() == y.max():
        raise ParameterError(f"fitting needs >= 10 candidates, right and wrong ones; got {len(y)}")
    bounds: list[tuple[float | None, float | None]] = [
        (0.0, None), (0.0, None), (None, None), (None, None), (0.0, None), (0.0, None)]
    if envelope_z is None:  # a fit without the envelope leaves its weight at 0
        bounds[-1] = (0.0, 0.0)
    coef, intercept = fit_logistic(X, y, bounds, l2=l2)
    p_all = np.where(has, _sigmoid(X_all @ coef + intercept), 0.0)
    meta = dict(meta or {})
    neg = None if negative is None or not np.any(negative) else np.asarray(negative, bool)
    if budget is not None:
        if neg is None:
            raise ParameterError("a false-match budget needs negative clips (of unindexed audio) to fit on")
        default = _budget_point(p_all[neg & has], int(neg.sum()), budget)
        meta["operating_point"] = {"rule": "false-match budget", "budget": budget}
    else:
        chance = -np.asarray(log10_p, np.float64)[has]
        default = _operating_point(p_all[has], chance >= OLD_OPERATING_CHANCE)
        meta["operating_point"] = {"rule": "former operating point", "chance": OLD_OPERATING_CHANCE}
        if neg is not None:
            # As low as the fit's negatives allow without one more false match than the former
            # point gives: that point tracks a chance score, and right answers lie just below it.
            n_false = int(np.sum(p_all[neg & has] >= default))
            default = min(default, _budget_point(p_all[neg & has], int(neg.sum()), n_false / neg.sum()))
            meta["operating_point"]["rule"] = "former operating point's false matches"
    if neg is not None:
        meta["operating_point"].update(n_negative=int(neg.sum()),
                                       n_false=int(np.sum(p_all[neg & has] >= default)))
    sel = np.asarray(correct, bool) if clean is None else np.asarray(clean, bool)
    needed = _hashes_needed(np.asarray(query_hashes, np.float64), has & (p_all >= default), sel)
    return Calibration(tuple(float(c) for c in coef), intercept, default, needed, meta)


def fit_logistic(X: np.ndarray, y: np.ndarray, bounds: list[tuple[float | None, float | None]], *,
                 l2: float = 1e-6) -> tuple[np.ndarray, float]:
    """Logistic regression of ``y`` (0/1) on the columns of ``X``, each weight within its
    ``bounds``; deterministic (standardised columns, L-BFGS-B from zero). (coef, intercept)."""
    from scipy.optimize import minimize

    mu, sd = X.mean(0), X.std(0)
    const = sd < 1e-9  # a column that never varies says nothing: its weight stays 0
    sd = np.where(const, 1.0, sd)
    bounds = [(0.0, 0.0) if c else b for b, c in zip(bounds, const)]
    Z = (X - mu) / sd

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = Z @ w[1:] + w[0]
        # log(1 + e^z) - y z, stably; mean over clips plus a small ridge
        nll = np.logaddexp(0.0, z) - y * z
        g = _sigmoid(z) - y
        grad = np.concatenate([[g.mean()], Z.T @ g / len(y) + 2 * l2 * w[1:]])
        return float(nll.mean() + l2 * w[1:] @ w[1:]), grad

    w = minimize(loss, np.zeros(1 + Z.shape[1]), jac=True, method="L-BFGS-B", bounds=[(None, None), *bounds],
                 options={"maxiter": 10000, "ftol": 1e-14, "gtol": 1e-10}).x
    coef = w[1:] / sd
    return coef, float(w[0] - coef @ mu)


def _budget_point(p_neg: np.ndarray, n_negative: int, budget: float) -> float:
    """The lowest threshold (4 decimals) that at most ``budget`` of ``n_negative`` clips reach,
    ``p_neg`` being the probabilities of those with a candidate; never below 0.5 (a match is
    at least as likely right as wrong)."""
    allowed = math.floor(budget * n_negative + 1e-9)
    top = np.sort(p_neg)[::-1]
    if len(top) <= allowed:
        return 0.5
    # just above the first negative past the allowance
    return float(max(0.5, math.floor(float(top[allowed]) * 1e4 + 1) / 1e4))


def _operating_point(p: np.ndarray, old: np.ndarray) -> float:
    """The probability threshold whose match / no-match decisions agree most with ``old``."""
    cand = np.unique(p)
    order = np.sort(p)
    # decisions at threshold t: p >= t; disagreements = old below t + not-old at or above t
    old_sorted = old[np.argsort(p, kind="stable")]
    below_old = np.concatenate([[0], np.cumsum(old_sorted)])  # old among the i lowest
    at = np.searchsorted(order, cand, side="left")
    not_old_above = (len(p) - at) - (old.sum() - below_old[at])
    wrong = below_old[at] + not_old_above
    return float(round(cand[int(np.argmin(wrong))], 4))


def _hashes_needed(query_hashes: np.ndarray, matched: np.ndarray, positive: np.ndarray,
                   window: int = 20) -> int:
    """Fewest query hashes from which a sliding window of ``positive`` clips is at least half matched."""
    q, m = query_hashes[positive], matched[positive]
    if len(q) < window:
        return int(np.median(q)) if len(q) else 0
    order = np.argsort(q, kind="stable")
    q, m = q[order], m[order].astype(np.float64)
    rate = np.convolve(m, np.ones(window) / window, mode="valid")  # window starting at i
    ok = np.flatnonzero(rate >= 0.5)
    return int(q[ok[0]]) if len(ok) else int(q[-1])


def reliability(confidence: ArrayLike, correct: ArrayLike, n_bins: int = N_BINS
                ) -> list[dict[str, float]]:
    """Equal-width bins of confidence: each bin's count, mean confidence and share right."""
    c = np.asarray(confidence, np.float64)
    y = np.asarray(correct, np.float64)
    b = np.minimum((c * n_bins).astype(np.int64), n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    conf = np.bincount(b, weights=c, minlength=n_bins)
    right = np.bincount(b, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [{"lo": i / n_bins, "hi": (i + 1) / n_bins, "n": int(n[i]),
                 "confidence": float(conf[i] / n[i]) if n[i] else math.nan,
                 "accuracy": float(right[i] / n[i]) if n[i] else math.nan} for i in range(n_bins)]


def expected_calibration_error(confidence: ArrayLike, correct: ArrayLike,
                               n_bins: int = N_BINS) -> float:
    """Sum over equal-width bins of (share of answers in the bin) x |accuracy - mean confidence|."""
    bins = reliability(confidence, correct, n_bins)
    total = sum(b["n"] for b in bins)
    if not total:
        return math.nan
    return float(sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"]))
