"""Validation MAE of models on degraded copies of the validation split: how robust is each?

    python scripts/evaluate_degraded.py --source ../shared/data/utkface/ --models cnn resnet50

Every validation chip is degraded at its own 200 px (agejax.degrade: grey, blur, JPEG
quality 20, a 15 degree tilt either way, dark), then resized to the model's input as in
prediction. Prints a Markdown table and writes reports/degraded-val.json. Validation,
not test: this is what training choices are made on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from agejax.data import degrade, images, labels, split
from agejax.evaluation import metrics


def validation_chips(source: Path) -> tuple[list[Image.Image], np.ndarray]:
    archives = sorted(source.glob("*.tar.gz")) or [source]
    records = split.records_of(archives, "val")
    chips, ages = [], []
    for record, payload in labels.iter_image_bytes(records):
        if payload is not None:
            chips.append(images.open_rgb(payload))
            ages.append(record.age)
    return chips, np.array(ages, np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path("../shared/data/utkface"))
    parser.add_argument("--models", nargs="+", default=["cnn"])
    parser.add_argument("--out", type=Path, default=Path("reports") / "degraded-val.json")
    args = parser.parse_args(argv)
    from agejax.serving.predict import Predictor  # imports JAX: after the arguments are checked

    chips, ages = validation_chips(args.source)
    results = {}
    for name in args.models:
        predictor = Predictor.load(name)
        maes = {}
        for kind, function in degrade.DEGRADATIONS.items():
            faces = np.stack([images.to_square_array(function(chip), predictor.image_size) for chip in chips])
            maes[kind] = round(metrics.mae(ages, predictor.predict(faces).age), 3)
            print(f"{predictor.name} {kind}: MAE {maes[kind]:.2f}", file=sys.stderr)
        results[predictor.name] = maes
    kinds = list(degrade.DEGRADATIONS)
    print("| model | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
    for name, maes in results.items():
        print(f"| {name} | " + " | ".join(f"{maes[k]:.2f}" for k in kinds) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python scripts/evaluate_degraded.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(json.dumps({"command": command, "faces": len(ages), "val_mae": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
