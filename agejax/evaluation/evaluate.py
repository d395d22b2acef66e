"""Labelled face sets to evaluate on (the cached splits, a labelled folder, the labelled rows of a
batch CSV) and the full report of a Predictor on one (agejax.evaluation.metrics).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from agejax.batch.sink import from_spreadsheet
from agejax.data import cache, labels
from agejax.data.images import decode_face
from agejax.evaluation import metrics

if TYPE_CHECKING:
    from agejax.serving.predict import Predictor


@dataclasses.dataclass
class LabelledFaces:
    name: str  # e.g. "test split" or a folder
    images: np.ndarray  # (N, S, S, 3) uint8
    ages: np.ndarray
    genders: np.ndarray | None = None
    races: np.ndarray | None = None


def cached_split(split_name: str, size: int, cache_root: Path = cache.DEFAULT_ROOT, source: str = "utkface") -> LabelledFaces:
    arrays = cache.load_split(split_name, size, cache_root, source=source)
    label = f"{split_name} split" if source == "utkface" else f"{source} {split_name} split"
    return LabelledFaces(label, arrays.images, arrays.ages, arrays.genders, arrays.races)


def labelled_folder(
    folder: str | os.PathLike, size: int, labels_csv: str | os.PathLike | None = None, progress: bool = True
) -> tuple[LabelledFaces, list[labels.Skipped]]:
    """Aligned face crops in a folder, labelled by UTKFace names or by a path,age CSV.

    Missing, unreadable and unlabelled files are returned as skipped; the rest is evaluated.
    """
    folder = Path(folder)
    if labels_csv is None:
        scan = labels.scan([folder])
        items = [(folder / r.member, float(r.age), r.gender, r.race) for r in scan.records]
        skipped = scan.skipped
    else:
        ages, skipped = labels.read_age_labels(labels_csv)
        items = [(folder / path, age, -1, -1) for path, age in ages.items()]
    images, kept = [], []
    for path, age, gender, race in tqdm(items, desc="reading", disable=not progress):
        try:
            images.append(decode_face(path.read_bytes(), size))
        except FileNotFoundError:
            skipped.append(labels.Skipped(str(path), str(folder), "file not found"))
            continue
        except Exception as err:  # any unreadable image is reported, not fatal
            skipped.append(labels.Skipped(str(path), str(folder), f"unreadable image ({type(err).__name__})"))
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
    predictor: Predictor, faces: LabelledFaces, calibration: LabelledFaces | None = None, verbose: int = 1
) -> tuple[dict, np.ndarray]:
    """The full report of a Predictor on a labelled set, intervals calibrated on another set.

    Returns the report and the predicted ages.
    """
    prediction = predictor.predict(faces.images, verbose=verbose)
    calibrated = None
    if calibration is not None:
        on_calibration = predictor.predict(calibration.images, verbose=verbose)
        calibrated = (calibration.ages, on_calibration.age, on_calibration.std)
    report = metrics.full_report(faces.ages, prediction.age, prediction.std, faces.genders, faces.races, calibrated)
    return {"model": predictor.name, "set": faces.name, "test_time_flip": predictor.flip, **report}, prediction.age


def labelled_rows(csv_path: Path, ages: dict[str, float] | None = None) -> dict[str, np.ndarray] | None:
    """True and predicted ages of the labelled images in a batch CSV (the first, largest face of each).

    Labels come from a path,age mapping, or else from UTKFace file names. None when no row is labelled.
    """
    paths, true, predicted, stds, genders, races = [], [], [], [], [], []
    with open(csv_path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        for row in csv.DictReader(handle):
            if row["face"] != "0" or not row["age"]:
                continue
            gender = race = -1
            path = from_spreadsheet(row["path"])
            if ages is not None:
                age = ages.get(str(PurePosixPath(path)))
                if age is None:
                    continue
            else:
                try:
                    parsed = labels.parse_name(path)
                except labels.MalformedName:
                    continue
                age, gender, race = parsed.age, parsed.gender, parsed.race
            paths.append(str(PurePosixPath(path)))
            true.append(age)
            predicted.append(float(row["age"]))
            stds.append(float(row["std"]) if row["std"] else np.nan)
            genders.append(gender)
            races.append(race)
    if not true:
        return None
    return {
        "paths": paths,
        "true": np.array(true, np.float64),
        "predicted": np.array(predicted),
        "std": None if np.isnan(stds).any() else np.array(stds),
        "genders": None if ages is not None else np.array(genders),
        "races": None if ages is not None else np.array(races),
    }


def normalized_labels(ages: dict[str, float]) -> dict[str, float]:
    """A labels CSV's paths in the form the batch CSV writes them (POSIX, relative, no ./)."""
    return {str(PurePosixPath(path.replace(os.sep, "/"))): age for path, age in ages.items()}
