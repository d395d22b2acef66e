"""MAE and bias of a model on degraded copies of labelled faces: how photo damage moves its ages.

Each 200 px chip is degraded at its own size (agejax.data.degrade: grey, blur, JPEG quality 20, a
15 degree tilt either way, dark, and the old-photo styles: sepia, faded, grain and all of them at
once), then resized to the model's input as in prediction. Bias is the mean predicted minus true
age: above 0 reads older. scripts/evaluate_degraded.py runs it on each source's validation split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from agejax.data import degrade, images, labels, prepare, sources, split
from agejax.evaluation import metrics
from agejax.evaluation.minors import ADULT_AGE

if TYPE_CHECKING:
    from agejax.serving.predict import Predictor


def validation_chips(spec: sources.SourceSpec) -> tuple[list[Image.Image], np.ndarray]:
    """A source's validation faces as 200 px chips (UTKFace's files, or the aligned loose crops)."""
    faces = prepare.read_faces(spec, progress=False)
    names = {name for name, part in split.read_manifest(split.manifest_path(spec.name)).items() if part == "val"}
    if faces.chips is not None:
        rows = [i for i, record in enumerate(faces.records) if record.file_name in names]
        return [Image.fromarray(np.asarray(faces.chips[i])) for i in rows], np.array([faces.records[i].age for i in rows], float)
    chosen = [record for record in faces.records if record.file_name in names]
    chips, ages = [], []
    for record, payload in labels.iter_image_bytes(chosen):
        if payload is not None:
            chips.append(images.open_rgb(payload))
            ages.append(record.age)
    return chips, np.array(ages, np.float64)


def degraded_metrics(predictor: Predictor, chips: list[Image.Image], ages: np.ndarray) -> dict[str, dict]:
    """{degradation: {"mae", "bias", "bias_under18"}} of the predictor on these chips, each degraded."""
    minors = ages < ADULT_AGE  # old photos of children reading older is the bias that matters most
    results = {}
    for kind, function in degrade.DEGRADATIONS.items():
        faces = np.stack([images.to_square_array(function(chip), predictor.image_size) for chip in chips])
        predicted = predictor.predict(faces).age
        overall = metrics.overall_metrics(ages, predicted)
        under18 = round(metrics.overall_metrics(ages[minors], predicted[minors])["bias"], 3) if minors.any() else None
        results[kind] = {"mae": round(overall["mae"], 3), "bias": round(overall["bias"], 3), "bias_under18": under18}
    return results


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def markdown_tables(source: str, faces: int, faces_under18: int, per_model: dict[str, dict[str, dict]]) -> str:
    """Two tables for one source: MAE (bias) per model and degradation, then the bias under 18."""
    kinds = list(degrade.DEGRADATIONS)
    header = "| model | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds)
    mae_rows = [f"| {name} | " + " | ".join(f"{cells[k]['mae']:.2f} ({cells[k]['bias']:+.2f})" for k in kinds) + " |"
                for name, cells in per_model.items()]
    minor_rows = [f"| {name} | " + " | ".join(_signed(cells[k]["bias_under18"]) for k in kinds) + " |"
                  for name, cells in per_model.items()]
    return "\n".join([f"{source} validation ({faces} faces): MAE (bias)", "", header, *mae_rows, "",
                      f"{source} validation, the {faces_under18} faces under 18: bias", "", header, *minor_rows])
