"""Validation MAE and bias of models on degraded copies of each source's validation split.

    python scripts/evaluate_degraded.py --source utkface=../shared/data/utkface/ --source aaf=../shared/data/aaf/ \
        --models cnn resnet50

Every validation chip is degraded at its own 200 px (agejax.data.degrade: grey, blur, JPEG
quality 20, a 15 degree tilt either way, dark, and the old-photo styles: sepia, faded, grain and
all of them at once), then resized to the model's input as in prediction. For each model,
source and degradation it reports the MAE and the bias (mean predicted minus true age: above 0
reads older), over all faces and over those under 18. Prints Markdown tables and writes
reports/degraded-val.json. Validation, not test: this is what training choices are made on. A
model or run directory may be given by path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from agejax import runtime
from agejax.cli import command_line, from_home
from agejax.data import degrade, images, labels, prepare, sources, split
from agejax.evaluation import metrics


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


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", metavar="NAME=PATH",
                        help="a source whose validation split to degrade; once per source (default UTKFace in ../shared)")
    parser.add_argument("--models", nargs="+", default=["cnn"])
    parser.add_argument("--out", type=Path, default=Path("reports") / "degraded-val.json")
    args = parser.parse_args(argv)
    specs = [sources.parse_source(text) for text in args.source or ["utkface=../shared/data/utkface"]]
    from agejax.serving.predict import Predictor  # imports ONNX Runtime: after the arguments are checked

    results: dict[str, dict] = {}
    counts, minor_counts = {}, {}
    for spec in specs:
        chips, ages = validation_chips(spec)
        counts[spec.name] = len(ages)
        minors = ages < 18  # old photos of children reading older is the bias that matters most
        minor_counts[spec.name] = int(minors.sum())
        for name in args.models:
            predictor = Predictor.load(name)
            label = from_home(name)  # as given: two folders may share a name
            row = results.setdefault(label, {}).setdefault(spec.name, {})
            for kind, function in degrade.DEGRADATIONS.items():
                faces = np.stack([images.to_square_array(function(chip), predictor.image_size) for chip in chips])
                predicted = predictor.predict(faces).age
                overall = metrics.overall_metrics(ages, predicted)
                minors_bias = round(metrics.overall_metrics(ages[minors], predicted[minors])["bias"], 3) if minors.any() else None
                row[kind] = {"mae": round(overall["mae"], 3), "bias": round(overall["bias"], 3), "bias_under18": minors_bias}
                print(f"{label} {spec.name} {kind}: MAE {overall['mae']:.2f}, bias {overall['bias']:+.2f}, "
                      f"under 18 {_signed(minors_bias)}", file=sys.stderr)
    kinds = list(degrade.DEGRADATIONS)
    for spec in specs:
        print(f"\n{spec.name} validation ({counts[spec.name]} faces): MAE (bias)\n")
        print("| model | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
        for name, per_source in results.items():
            cells = per_source[spec.name]
            print(f"| {name} | " + " | ".join(f"{cells[k]['mae']:.2f} ({cells[k]['bias']:+.2f})" for k in kinds) + " |")
        print(f"\n{spec.name} validation, the {minor_counts[spec.name]} faces under 18: bias\n")
        print("| model | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
        for name, per_source in results.items():
            cells = per_source[spec.name]
            print(f"| {name} | " + " | ".join(_signed(cells[k]["bias_under18"]) for k in kinds) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = command_line("scripts/evaluate_degraded.py", argv)
    report = {"command": command, "faces": counts, "faces_under18": minor_counts, "val": results}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
