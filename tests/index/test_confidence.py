"""Calibrated confidence: the shipped fit, its file format, the fit and the calibration error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiolsh.errors import ParameterError
from audiolsh.index import confidence as calibrated


def test_shipped_calibration_loads_once_and_is_monotone() -> None:
    cal = calibrated.load()
    assert calibrated.load() is cal  # read once per process
    assert 0.0 < cal.default_min_confidence < 1.0 and cal.hashes_needed > 0
    assert cal.meta["fitted_on"]["n_clips"] >= 1000  # fitted on the dev protocol, not by hand
    chance = np.linspace(-5.0, 60.0, 300)
    for agreeing, hashes, seconds in [(5, 300, 1.0), (20, 2000, 5.0), (200, 4000, 10.0)]:
        p = cal.probability(-chance, agreeing, hashes, seconds)
        assert np.all((p >= 0) & (p <= 1)) and np.all(np.diff(p) >= 0)
    more = cal.probability(np.full(50, -4.0), np.arange(1, 51), 1500, 5.0)
    assert np.all(np.diff(more) > 0)  # more agreeing hashes raise it


def test_file_format_is_versioned_and_checked(tmp_path) -> None:
    cal = calibrated.load()
    data = cal.to_json()
    assert calibrated.Calibration.from_json(json.loads(json.dumps(data))) == cal
    for bad in ({**data, "format_version": 99}, {**data, "features": ["chance"]},
                {**data, "coef": [1.0, float("nan"), 0.0, 0.0]}):
        with pytest.raises(ParameterError):
            calibrated.Calibration.from_json(bad)
    path = tmp_path / "c.json"
    cal.save(path)
    assert calibrated.Calibration.from_json(json.loads(path.read_text())) == cal


def test_expected_calibration_error_of_a_constructed_example() -> None:
    # 10 answers at 0.05 of which 1 is right, 10 at 0.95 of which 9: each bin is off by 0.05.
    conf = [0.05] * 10 + [0.95] * 10
    right = [1] + [0] * 9 + [1] * 9 + [0]
    assert calibrated.expected_calibration_error(conf, right) == pytest.approx(0.05)
    # All at 0.8, half right: off by 0.3; a perfect 1.0 bin adds nothing but weight.
    assert calibrated.expected_calibration_error([0.8] * 4, [1, 0, 1, 0]) == pytest.approx(0.3)
    assert calibrated.expected_calibration_error([0.8] * 4 + [1.0] * 4, [1, 0, 1, 0] + [1] * 4) == \
        pytest.approx(0.15)
    bins = calibrated.reliability([0.05, 0.95, 1.0], [0, 1, 1])
    assert [b["n"] for b in bins] == [1] + [0] * 8 + [2]  # 1.0 falls in the last bin
    assert bins[9]["confidence"] == pytest.approx(0.975) and bins[9]["accuracy"] == 1.0


def test_fit_recovers_a_known_probability_and_the_old_operating_point(rng: np.random.Generator) -> None:
    n = 4000
    chance = rng.uniform(-1.0, 12.0, n)
    agreeing = rng.integers(2, 60, n)
    hashes = rng.integers(200, 3000, n)
    seconds = rng.choice([1.0, 3.0, 10.0], n)
    # 0.5 at the old operating point (chance 3), in the model's own form
    truth = 1 / (1 + np.exp(-3.0 * (np.log1p(np.maximum(chance, 0.0)) - np.log(4.0))))
    right = rng.random(n) < truth
    clean = rng.random(n) < 0.3
    log10_p = -chance
    log10_p[:50] = np.nan  # clips without any candidate are left out of the fit
    cal = calibrated.fit(log10_p, agreeing, hashes, seconds, right, clean=clean)
    p = cal.probability(-chance[50:], agreeing[50:], hashes[50:], seconds[50:])
    assert np.mean(np.abs(p - truth[50:])) < 0.03 and np.max(np.abs(p - truth[50:])) < 0.15
    assert calibrated.expected_calibration_error(p, right[50:]) < 0.03
    assert cal.default_min_confidence == pytest.approx(0.5, abs=0.08)
    assert cal.coef[0] > 0 and cal.coef[1] >= 0
    with pytest.raises(ParameterError):
        calibrated.fit(log10_p, agreeing, hashes, seconds, np.zeros(n, bool))  # nothing right



def _labelled(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Clips whose right answers rise with the chance score, a third of them negatives."""
    chance = rng.uniform(-1.0, 12.0, n)
    agreeing = rng.integers(2, 60, n)
    hashes = rng.integers(200, 3000, n)
    seconds = rng.choice([1.0, 3.0, 10.0], n)
    negative = rng.random(n) < 1 / 3
    truth = 1 / (1 + np.exp(-3.0 * (np.log1p(np.maximum(chance, 0.0)) - np.log(4.0))))
    right = (rng.random(n) < truth) & ~negative
    return -chance, agreeing, hashes, seconds, right, negative


def test_a_fit_by_false_match_budget_spends_it_on_negatives(rng: np.random.Generator) -> None:
    log10_p, agreeing, hashes, seconds, right, negative = _labelled(rng, 6000)
    cal = calibrated.fit(log10_p, agreeing, hashes, seconds, right, negative=negative,
                         budget=calibrated.FALSE_MATCH_BUDGET)
    p_neg = cal.probability(log10_p[negative], agreeing[negative], hashes[negative], seconds[negative])
    allowed = int(calibrated.FALSE_MATCH_BUDGET * negative.sum())
    # At most the budget of negatives reach the default, and the next negative below it would not fit.
    assert 0 < np.sum(p_neg >= cal.default_min_confidence) <= allowed
    assert np.sum(p_neg >= np.sort(p_neg[p_neg < cal.default_min_confidence])[-1]) > allowed
    assert cal.meta["operating_point"]["n_false"] == np.sum(p_neg >= cal.default_min_confidence)
    # Without a budget it is the former rule's point, which sits elsewhere (here negatives crowd
    # it, so it cannot be lowered: see the next test).
    old = calibrated.fit(log10_p, agreeing, hashes, seconds, right, negative=negative)
    assert old.coef == pytest.approx(cal.coef) and old.default_min_confidence != cal.default_min_confidence
    plain = calibrated.fit(log10_p, agreeing, hashes, seconds, right)
    assert plain.meta["operating_point"]["rule"] == "former operating point"
    assert old.default_min_confidence == plain.default_min_confidence
    with pytest.raises(ParameterError, match="negative clips"):
        calibrated.fit(log10_p, agreeing, hashes, seconds, right, budget=0.01)


def test_the_former_operating_point_is_lowered_while_no_false_match_is_added(
    rng: np.random.Generator,
) -> None:
    # Negatives that agree by chance stay well below the former point (chance 3): the right
    # answers between them and it are named, and not one false match more.
    n = 6000
    chance = rng.uniform(-1.0, 12.0, n)
    agreeing, hashes = rng.integers(2, 60, n), rng.integers(200, 3000, n)
    seconds = rng.choice([1.0, 3.0, 10.0], n)
    negative = rng.random(n) < 1 / 3
    chance[negative] = rng.uniform(-1.0, 1.0, negative.sum())
    truth = 1 / (1 + np.exp(-4.0 * (np.log1p(np.maximum(chance, 0.0)) - np.log(2.0))))  # 0.5 at chance 1
    right = (rng.random(n) < truth) & ~negative
    log10_p = -chance
    old = calibrated.fit(log10_p, agreeing, hashes, seconds, right, negative=negative)
    plain = calibrated.fit(log10_p, agreeing, hashes, seconds, right)
    assert old.coef == pytest.approx(plain.coef)
    assert old.meta["operating_point"]["rule"] == "former operating point's false matches"
    p_neg = old.probability(log10_p[negative], agreeing[negative], hashes[negative], seconds[negative])
    p_pos = old.probability(log10_p[right], agreeing[right], hashes[right], seconds[right])
    at_former = np.sum(p_neg >= plain.default_min_confidence)
    assert old.default_min_confidence < plain.default_min_confidence
    assert np.sum(p_neg >= old.default_min_confidence) == at_former == old.meta["operating_point"]["n_false"]
    assert np.sum(p_neg >= np.sort(p_neg[p_neg < old.default_min_confidence])[-1]) > at_former
    assert np.sum(p_pos >= old.default_min_confidence) > np.sum(p_pos >= plain.default_min_confidence)


def test_a_version_1_calibration_reads_with_no_weight_on_the_noise_level() -> None:
    v1 = {"format": calibrated.FORMAT, "format_version": 1, "features": list(calibrated.OLD_FEATURES[1]),
          "chance_cap": calibrated.CHANCE_CAP, "coef": [1.5, 0.8, 0.3, -2.0], "intercept": -3.0,
          "default_min_confidence": 0.9, "hashes_needed": 300, "meta": {}}
    cal = calibrated.Calibration.from_json(v1)
    assert cal.coef == (1.5, 0.8, 0.3, -2.0, 0.0, 0.0)
    z = 1.5 * np.log1p(6.0) + 0.8 * np.log1p(30.0) + 0.3 * np.log1p(1000.0) - 2.0 * np.log(3.0) - 3.0
    for noise in (0.0, 0.5, 1.0):  # the same answer whatever the noise
        assert cal.confidence(-6.0, 30, 1000, 3.0, noise) == pytest.approx(1 / (1 + np.exp(-z)))
    with pytest.raises(ParameterError):  # a version-1 file of five numbers is not one
        calibrated.Calibration.from_json({**v1, "coef": [1.5, 0.8, 0.3, -2.0, 1.0]})


def test_the_fit_learns_that_the_same_evidence_is_surer_in_a_noisy_clip(rng: np.random.Generator) -> None:
    # In noisy clips a right answer agrees on fewer hashes, while chance agreement does not grow:
    # the fit must weigh the noise level up, and the shipped fit does too.
    n = 6000
    noise = rng.uniform(0.0, 0.6, n)
    right = rng.random(n) < 0.5
    agreeing = np.where(right, rng.poisson(40 * (1 - noise)) + 6, rng.poisson(8, n)).astype(float)
    chance = np.where(right, agreeing / 4, rng.uniform(-1.0, 3.0, n))
    hashes, seconds = np.full(n, 1500.0), np.full(n, 3.0)
    cal = calibrated.fit(-chance, agreeing, hashes, seconds, right, noise=noise)
    assert cal.coef[4] > 0
    p = cal.probability(-3.0, 16, 1500, 3.0, np.array([0.0, 0.3, 0.6]))
    assert np.all(np.diff(p) > 0)
    shipped = calibrated.load()
    assert shipped.coef[4] > 0 and shipped.confidence(-4.0, 20, 2000, 3.0, 0.3) > \
        shipped.confidence(-4.0, 20, 2000, 3.0, 0.0)
