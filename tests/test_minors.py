"""p_under18: Platt calibration fitted on one sample holds on another, and the error rates count right."""

from __future__ import annotations

import numpy as np
import pytest

from agejax.evaluation import minors


def overconfident_sample(seed: int, count: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Ages 0-80 and a raw p_under18 that is right in direction but far too sure of itself."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(0, 81, count)
    evidence = (18 - ages) / 4 + rng.normal(0, 1.5, count)  # the true log-odds of being a minor
    raw = 1 / (1 + np.exp(-3 * evidence))  # three times too steep
    truth = rng.random(count) < 1 / (1 + np.exp(-evidence))
    return raw, np.where(truth, np.minimum(ages, 17), np.maximum(ages, 18))


def test_raw_p_under18_is_the_mass_below_18():
    probs = np.zeros((2, 117))
    probs[0, 17], probs[0, 18] = 0.25, 0.75
    probs[1, :18] = 1 / 18
    np.testing.assert_allclose(minors.raw_p_under18(probs), [0.25, 1.0])


def test_calibration_fitted_on_validation_lowers_the_test_calibration_error():
    val_raw, val_ages = overconfident_sample(0)
    test_raw, test_ages = overconfident_sample(1)
    calibration = minors.fit_calibration(val_raw, val_ages)
    assert 0.2 < calibration["slope"] < 0.5  # undoes the factor 3
    before = minors.reliability(test_raw, test_ages)["ece"]
    after = minors.reliability(minors.calibrated(test_raw, calibration), test_ages)["ece"]
    assert after < 0.03 < before


def test_calibration_needs_minors_and_adults():
    with pytest.raises(ValueError, match="both minors and adults"):
        minors.fit_calibration(np.full(10, 0.3), np.full(10, 30))


def test_error_rates_count_minors_called_adults_and_adults_called_minors():
    ages = np.array([5, 14, 16, 17, 30, 40, 50, 60])
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.7, 0.1, 0.0, 0.2])
    rates = minors.error_rates(p, ages, 0.5)
    assert rates["false_adult"] == 0.5  # 14 and 17 of the four minors
    assert rates["false_adult_13_17"] == round(2 / 3, 4)
    assert rates["false_minor"] == 0.25  # 30 of the four adults
    assert (rates["minors"], rates["adults"], rates["aged_13_17"]) == (4, 4, 3)
    assert minors.error_rates(p, np.full(8, 40), 0.5)["false_adult"] is None  # no minors: no rate


def test_the_validation_threshold_keeps_false_adults_at_the_target():
    raw, ages = overconfident_sample(2)
    threshold = minors.threshold_for_false_adult(raw, ages)
    assert minors.error_rates(raw, ages, threshold)["false_adult"] <= minors.TARGET_FALSE_ADULT
    assert minors.error_rates(raw, ages, threshold * 1.5)["false_adult"] > minors.TARGET_FALSE_ADULT


def test_reliability_bins_hold_every_face_and_a_calibrated_sample_scores_near_zero():
    rng = np.random.default_rng(3)
    p = rng.random(20000)
    ages = np.where(rng.random(20000) < p, 10, 40)  # minor with probability p: calibrated by construction
    curve = minors.reliability(p, ages)
    assert sum(curve["counts"]) == 20000 and len(curve["counts"]) == minors.RELIABILITY_BINS
    assert curve["ece"] < 0.02
    assert minors.reliability(np.clip(p + 0.3, 0, 1), ages)["ece"] > 0.2


def test_the_report_applies_validation_choices_to_each_test_source():
    val_raw, val_ages = overconfident_sample(4)
    report = minors.minors_report(val_raw, val_ages, {"a": overconfident_sample(5)[0]}, {"a": overconfident_sample(5)[1]})
    row = report["per_source"]["a"]
    assert row["at_validation_threshold"]["threshold"] == report["validation_threshold"]
    assert row["at_0.5"]["threshold"] == 0.5 and row["reliability"]["ece"] < 0.03
