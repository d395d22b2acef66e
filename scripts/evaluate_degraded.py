"""Validation MAE and bias of models on degraded copies of each source's validation split.

    python scripts/evaluate_degraded.py --source utkface=../shared/data/utkface/ --source aaf=../shared/data/aaf/ \
        --models cnn resnet50

For each model, source and degradation (agejax/evaluation/degraded.py: grey, blur, JPEG, tilt,
dark and the old-photo styles) it reports the MAE and the bias (mean predicted minus true age:
above 0 reads older), over all faces and over those under 18. Prints Markdown tables and writes
reports/degraded-val.json. Validation, not test: this is what training choices are made on. A
model or run directory may be given by path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agejax import runtime
from agejax.cli import command_line, from_home
from agejax.data import sources
from agejax.evaluation import degraded
from agejax.evaluation.minors import ADULT_AGE


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", metavar="NAME=PATH",
                        help="a source whose validation split to degrade; once per source (default UTKFace in ../shared)")
    parser.add_argument("--models", nargs="+", default=["cnn"])
    parser.add_argument("--out", type=Path, default=Path("reports") / "degraded-val.json")
    args = parser.parse_args(argv)
    from agejax.serving.predict import Predictor  # imports ONNX Runtime: after the arguments are checked

    try:  # every model and source is checked before the long work starts
        specs = [sources.parse_source(text) for text in args.source or ["utkface=../shared/data/utkface"]]
        predictors = {from_home(name): Predictor.load(name) for name in args.models}  # as given: two folders may share a name
        chips_by_source = {spec.name: degraded.validation_chips(spec) for spec in specs}
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results: dict[str, dict] = {label: {} for label in predictors}
    counts = {source: len(ages) for source, (_, ages) in chips_by_source.items()}
    under18 = {source: int((ages < ADULT_AGE).sum()) for source, (_, ages) in chips_by_source.items()}
    for source, (chips, ages) in chips_by_source.items():
        for label, predictor in predictors.items():
            results[label][source] = degraded.degraded_metrics(predictor, chips, ages)
            print(f"{label} on {source}: done", file=sys.stderr)
        per_model = {label: results[label][source] for label in predictors}
        print("\n" + degraded.markdown_tables(source, counts[source], under18[source], per_model) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": command_line("scripts/evaluate_degraded.py", argv), "faces": counts,
              "faces_under18": under18, "val": results}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
