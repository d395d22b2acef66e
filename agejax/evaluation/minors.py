""""Under 18?": the probability the distribution head puts below 18, calibrated, and its error rates.

The raw probability is the age distribution's mass on the ages 0-17. Platt scaling on its logit
(two numbers, fitted on validation) makes it calibrated; the two numbers ship in the checkpoint's
metrics.json and prediction applies them (``calibrated``). Test reports give the expected calibration
error, the reliability curve and two error rates: minors called adults (false adult) and adults called
minors (false minor), at 0.5 and at a threshold chosen on validation to call at most 5 % of minors
adults, for all faces and for ages 13-17 alone.
"""

from __future__ import annotations

import numpy as np

ADULT_AGE = 18
TARGET_FALSE_ADULT = 0.05  # the validation-chosen threshold keeps minors called adults at this rate
RELIABILITY_BINS = 10
_EPS = 1e-6


def raw_p_under18(probs: np.ndarray) -> np.ndarray:
    """(N, bins) age distributions -> (N,) the mass on ages below ADULT_AGE."""
    return np.asarray(probs, np.float64)[:, :ADULT_AGE].sum(axis=1)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_calibration(raw: np.ndarray, ages: np.ndarray) -> dict[str, float]:
    """Platt scaling: p = sigmoid(slope * logit(raw) + offset), fitted by logistic regression."""
    from sklearn.linear_model import LogisticRegression

    minors = np.asarray(ages) < ADULT_AGE
    if minors.all() or not minors.any():
        raise ValueError("calibrating p_under18 needs both minors and adults")
    fit = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], minors)
    return {"slope": float(fit.coef_[0, 0]), "offset": float(fit.intercept_[0])}


def calibrated(raw: np.ndarray, calibration: dict[str, float]) -> np.ndarray:
    z = calibration["slope"] * _logit(raw) + calibration["offset"]
    return 1 / (1 + np.exp(-z))


def threshold_for_false_adult(p: np.ndarray, ages: np.ndarray, rate: float = TARGET_FALSE_ADULT) -> float:
    """The highest threshold (minor when p >= it) that calls at most ``rate`` of these minors adults."""
    minors = np.sort(np.asarray(p)[np.asarray(ages) < ADULT_AGE])
    return float(minors[int(np.floor(rate * len(minors)))])


def error_rates(p: np.ndarray, ages: np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """False-adult and false-minor rates at a threshold, overall and for ages 13-17."""
    p, ages = np.asarray(p), np.asarray(ages)
    called_minor = p >= threshold
    minors, adults, teens = ages < ADULT_AGE, ages >= ADULT_AGE, (ages >= 13) & (ages < ADULT_AGE)

    def share(called: np.ndarray, group: np.ndarray) -> float | None:
        return round(float(called[group].mean()), 4) if group.any() else None

    return {
        "threshold": round(float(threshold), 4),
        "false_adult": share(~called_minor, minors),
        "false_minor": share(called_minor, adults),
        "false_adult_13_17": share(~called_minor, teens),
        "minors": int(minors.sum()), "adults": int(adults.sum()), "aged_13_17": int(teens.sum()),
    }


def reliability(p: np.ndarray, ages: np.ndarray, bins: int = RELIABILITY_BINS) -> dict[str, list | float]:
    """Equal-width bins of p: each bin's mean p, share of minors and count; and the expected calibration error."""
    p, minors = np.asarray(p), np.asarray(ages) < ADULT_AGE
    index = np.minimum((p * bins).astype(int), bins - 1)
    mean_p, observed, counts = [], [], []
    ece = 0.0
    for b in range(bins):
        members = index == b
        counts.append(int(members.sum()))
        if not members.any():
            mean_p.append(None)
            observed.append(None)
            continue
        mean_p.append(round(float(p[members].mean()), 4))
        observed.append(round(float(minors[members].mean()), 4))
        ece += members.mean() * abs(p[members].mean() - minors[members].mean())
    return {"ece": round(float(ece), 4), "mean_p": mean_p, "share_minors": observed, "counts": counts}


def minors_report(
    val_raw: np.ndarray, val_ages: np.ndarray, test_raw: dict[str, np.ndarray], test_ages: dict[str, np.ndarray]
) -> dict:
    """Calibration fitted on validation, its threshold for 5 % false adults, and each test set's figures."""
    calibration = fit_calibration(val_raw, val_ages)
    val_p = calibrated(val_raw, calibration)
    threshold = threshold_for_false_adult(val_p, val_ages)
    per_source = {}
    for source, raw in test_raw.items():
        p, ages = calibrated(raw, calibration), test_ages[source]
        per_source[source] = {
            "reliability": reliability(p, ages),
            "at_0.5": error_rates(p, ages, 0.5),
            "at_validation_threshold": error_rates(p, ages, threshold),
        }
    return {
        "calibration": calibration,
        "validation_threshold": round(threshold, 4),
        "validation_ece": reliability(val_p, val_ages)["ece"],
        "per_source": per_source,
    }
