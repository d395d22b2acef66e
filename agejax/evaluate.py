"""Metrics for age predictions: overall, per decade and group, the decade confusion matrix,
and split-conformal prediction intervals.

Every function takes plain arrays of true and predicted ages (years), so it can be
checked against hand-computed values.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix
from tqdm import tqdm

from agejax import cache, data
from agejax.conformal import COVERAGES, conformal_quantile, conformity_scores, interval_half_width
from agejax.data import GENDERS, RACES
from agejax.images import decode_face

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
        "mae": float(np.mean(np.abs(error))),
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
            "mae": float(np.mean(np.abs(error))) if mask.any() else None,
            "bias": float(np.mean(error)) if mask.any() else None,
        })
    return rows


def decade_confusion(true: np.ndarray, predicted: np.ndarray) -> dict[str, list]:
    """Rows: true decade, columns: predicted decade; counts and row-normalised shares."""
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


# Labelled sets to evaluate on.


@dataclasses.dataclass
class LabelledFaces:
    name: str  # e.g. "test split" or a folder
    images: np.ndarray  # (N, S, S, 3) uint8
    ages: np.ndarray
    genders: np.ndarray | None = None
    races: np.ndarray | None = None


def cached_split(split_name: str, size: int, cache_root: Path = cache.DEFAULT_ROOT) -> LabelledFaces:
    arrays = cache.load_split(split_name, size, cache_root)
    return LabelledFaces(f"{split_name} split", arrays.images, arrays.ages, arrays.genders, arrays.races)


def labelled_folder(
    folder: str | os.PathLike, size: int, labels_csv: str | os.PathLike | None = None, progress: bool = True
) -> tuple[LabelledFaces, list[data.Skipped]]:
    """Aligned face crops in a folder, labelled by UTKFace names or by a path,age CSV.

    Missing, unreadable and unlabelled files are returned as skipped; the rest is evaluated.
    """
    folder = Path(folder)
    if labels_csv is None:
        scan = data.scan([folder])
        items = [(folder / r.member, float(r.age), r.gender, r.race) for r in scan.records]
        skipped = scan.skipped
    else:
        labels, skipped = data.read_age_labels(labels_csv)
        items = [(folder / path, age, -1, -1) for path, age in labels.items()]
    images, kept = [], []
    for path, age, gender, race in tqdm(items, desc="reading", disable=not progress):
        try:
            images.append(decode_face(path.read_bytes(), size))
        except FileNotFoundError:
            skipped.append(data.Skipped(str(path), str(folder), "file not found"))
            continue
        except Exception as err:  # any unreadable image is reported, not fatal
            skipped.append(data.Skipped(str(path), str(folder), f"unreadable image ({type(err).__name__})"))
            continue
        kept.append((age, gender, race))
    if not kept:
        raise ValueError(f"no readable labelled images in {folder}")
    ages, genders, races = (np.array(column) for column in zip(*kept))
    has_groups = labels_csv is None
    return (
        LabelledFaces(str(folder), np.stack(images), ages, genders if has_groups else None, races if has_groups else None),
        skipped,
    )


def evaluate_predictor(
    predictor, faces: LabelledFaces, calibration: LabelledFaces | None = None, verbose: int = 1
) -> tuple[dict, np.ndarray]:
    """The full report of a Predictor on a labelled set, intervals calibrated on another set.

    Returns the report and the predicted ages.
    """
    prediction = predictor.predict(faces.images, verbose=verbose)
    calibrated = None
    if calibration is not None:
        on_calibration = predictor.predict(calibration.images, verbose=verbose)
        calibrated = (calibration.ages, on_calibration.age, on_calibration.std)
    report = full_report(faces.ages, prediction.age, prediction.std, faces.genders, faces.races, calibrated)
    return {"model": predictor.name, "set": faces.name, **report}, prediction.age
