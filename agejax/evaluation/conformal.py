"""Split-conformal prediction intervals: scores, thresholds and half-widths, on plain arrays.

A model's intervals are calibrated on the validation split (thresholds stored with each
checkpoint) and applied at prediction time; this module is all that prediction needs.
"""

from __future__ import annotations

import math

import numpy as np

COVERAGES = (0.8, 0.9)


def conformity_scores(true: np.ndarray, predicted: np.ndarray, std: np.ndarray | None) -> np.ndarray:
    """|error|, divided by the model's own std when it has one, so intervals widen where it is unsure."""
    scores = np.abs(np.asarray(true, np.float64) - np.asarray(predicted, np.float64))
    return scores if std is None else scores / np.maximum(np.asarray(std, np.float64), 1e-6)


def conformal_quantile(calibration_scores: np.ndarray, coverage: float) -> float:
    """Split-conformal threshold: the ceil((n+1)c)/n empirical quantile of the calibration scores."""
    scores = np.sort(np.asarray(calibration_scores, np.float64))
    rank = math.ceil((len(scores) + 1) * coverage)
    if rank > len(scores):
        return math.inf  # too few calibration points for this coverage
    return float(scores[rank - 1])


def interval_half_width(threshold: float, std: np.ndarray | None, count: int) -> np.ndarray:
    return np.full(count, threshold) if std is None else threshold * np.asarray(std, np.float64)
