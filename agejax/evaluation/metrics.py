"""Metrics for age predictions: overall, per decade and group, the decade confusion matrix,
and the coverage of split-conformal prediction intervals.

Every function takes plain arrays of true and predicted ages (years), so it can be
checked against hand-computed values.
"""

from __future__ import annotations

import math

import numpy as np

from agejax.data.labels import GENDERS, RACES
from agejax.evaluation.conformal import COVERAGES, conformal_quantile, conformity_scores, interval_half_width


def mae(true: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error in years."""
    return float(np.mean(np.abs(np.asarray(predicted, np.float64) - np.asarray(true, np.float64))))


DECADES = tuple(f"{10 * d}-{10 * d + 9}" for d in range(9)) + ("90+",)


def decade_of(ages: np.ndarray) -> np.ndarray:
    """0 for ages 0-9, ..., 8 for 80-89, 9 for 90 and over; negative predictions count as 0-9."""
    return np.clip(np.floor(np.asarray(ages, np.float64) / 10), 0, len(DECADES) - 1).astype(int)


def overall_metrics(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    true, predicted = np.asarray(true, np.float64), np.asarray(predicted, np.float64)
    error = predicted - true
    mse = float(np.mean(error**2))
    return {
        "count": int(len(true)),
        "mae": mae(true, predicted),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "cs5": float(np.mean(np.abs(error) <= 5)),
        "cs10": float(np.mean(np.abs(error) <= 10)),
        "bias": float(np.mean(error)),  # mean signed error: > 0 means too old
    }


def grouped_metrics(
    true: np.ndarray, predicted: np.ndarray, groups: np.ndarray, names: tuple[str, ...]
) -> list[dict]:
    """MAE, bias and count for each group index 0..len(names)-1 (empty groups included)."""
    true, predicted, groups = (np.asarray(a) for a in (true, predicted, groups))
    rows = []
    for index, name in enumerate(names):
        mask = groups == index
        error = predicted[mask] - true[mask]
        rows.append({
            "group": name,
            "count": int(mask.sum()),
            "mae": mae(true[mask], predicted[mask]) if mask.any() else None,
            "bias": float(np.mean(error)) if mask.any() else None,
        })
    return rows


def decade_confusion(true: np.ndarray, predicted: np.ndarray) -> dict[str, list]:
    """Rows: true decade, columns: predicted decade; counts and row-normalised shares."""
    from sklearn.metrics import confusion_matrix  # 2 s to import: only where a report is made

    counts = confusion_matrix(decade_of(true), decade_of(predicted), labels=range(len(DECADES)))
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return {"labels": list(DECADES), "counts": counts.tolist(), "row_normalised": shares.round(4).tolist()}


def conformal_report(
    calibration: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    test: tuple[np.ndarray, np.ndarray, np.ndarray | None],
) -> dict:
    """Intervals calibrated on (true, predicted, std) of one split, measured on another."""
    calibration_scores = conformity_scores(*calibration)
    true, predicted, std = test
    decades = decade_of(true)
    report = {"score": "abs_error" if std is None else "abs_error_over_std", "levels": {}}
    for coverage in COVERAGES:
        threshold = conformal_quantile(calibration_scores, coverage)
        half = interval_half_width(threshold, std, len(true))
        covered = np.abs(np.asarray(true) - np.asarray(predicted)) <= half
        report["levels"][f"{round(coverage * 100)}"] = {
            "threshold": threshold,
            "coverage": float(covered.mean()),
            "mean_width": float(np.mean(2 * half)),
            "per_decade": [
                {"decade": DECADES[d], "count": int((decades == d).sum()),
                 "coverage": float(covered[decades == d].mean()) if (decades == d).any() else None}
                for d in range(len(DECADES))
            ],
        }
    return report


def full_report(
    true: np.ndarray,
    predicted: np.ndarray,
    std: np.ndarray | None = None,
    genders: np.ndarray | None = None,
    races: np.ndarray | None = None,
    calibration: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> dict:
    """Everything above for one labelled set; the keys are the report JSON's schema."""
    report = {
        "overall": overall_metrics(true, predicted),
        "per_decade": grouped_metrics(true, predicted, decade_of(true), DECADES),
        "per_gender": grouped_metrics(true, predicted, genders, GENDERS) if genders is not None else None,
        "per_race": grouped_metrics(true, predicted, races, RACES) if races is not None else None,
        "decade_confusion": decade_confusion(true, predicted),
        "conformal": conformal_report(calibration, (true, predicted, std)) if calibration is not None else None,
    }
    return report
