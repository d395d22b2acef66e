"""Evaluates age models on a labelled set and writes a report folder (metrics.json, PNG plots, report.md).

    python scripts/evaluate.py --model cnn                          # frozen test split
    python scripts/evaluate.py --model cnn --split val
    python scripts/evaluate.py --model cnn --source aaf                 # another prepared source
    python scripts/evaluate.py --model runs/x --folder faces/       # UTKFace-named crops
    python scripts/evaluate.py --model cnn --folder faces/ --labels ages.csv   # CSV: path,age
    python scripts/evaluate.py --compare cnn resnet50               # one table, one figure, mirrored faces too

Prediction intervals are calibrated on the validation split (split-conformal) and
measured on the evaluated set; they need the decode-once cache (scripts/prepare_data.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agejax import runtime
from agejax.cli import command_line, from_home
from agejax.data import cache, labels
from agejax.evaluation import evaluate, report
from agejax.serving.predict import Predictor


def evaluate_one(predictor: Predictor, args: argparse.Namespace, command: str) -> tuple[dict, object, object]:
    skipped: list[labels.Skipped] = []
    if args.folder:
        faces, skipped = evaluate.labelled_folder(args.folder, predictor.image_size, args.labels)
    else:
        faces = evaluate.cached_split(args.split, predictor.image_size, args.cache_root, args.source)
    calibration = None
    if args.folder or args.split != "val":
        try:
            calibration = evaluate.cached_split("val", predictor.image_size, args.cache_root, args.source)
        except FileNotFoundError:
            print("note: no cached validation split, so no prediction intervals", file=sys.stderr)
    print(f"{predictor.name}: {len(faces.ages)} faces of the {faces.name}", file=sys.stderr)
    # A progress bar only where someone watches it: in a log it is a screenful of control codes.
    result, predicted = evaluate.evaluate_predictor(predictor, faces, calibration, verbose=int(sys.stdout.isatty()))
    result = {**result, "command": command, "skipped": [{"file": s.file_name, "reason": s.reason} for s in skipped]}
    if skipped:
        print(f"skipped {len(skipped)} files:", file=sys.stderr)
        print("\n".join(labels.format_skipped(skipped)), file=sys.stderr)
    return result, faces.ages, predicted


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a shipped name (cnn, resnet50), a checkpoint folder or a run directory")
    which.add_argument("--compare", nargs="+", metavar="MODEL", help="evaluate several models on the same set")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="cached split (default test)")
    parser.add_argument("--source", default="utkface",
                        help="the prepared source whose split to evaluate (default utkface; e.g. aaf)")
    parser.add_argument("--folder", type=Path, help="a folder of aligned face crops instead of a split")
    parser.add_argument("--labels", type=Path, help="with --folder: CSV with columns path,age")
    parser.add_argument("--out", type=Path, help="report folder (default reports/<model>-<set>)")
    parser.add_argument("--cache-root", type=Path, default=cache.DEFAULT_ROOT)
    args = parser.parse_args(argv)
    if args.labels and not args.folder:
        parser.error("--labels needs --folder")
    command = command_line("scripts/evaluate.py", argv)
    set_label = args.folder.name if args.folder else args.split if args.source == "utkface" else f"{args.source}-{args.split}"

    try:
        names = args.compare or [args.model]
        results = {}
        for name in names:
            # Compared models all score each face with its mirror image too, so that a training run,
            # which no export has set up, is not measured against checkpoints that flip.
            predictor = Predictor.load(name, flip=True if args.compare else None)
            result, true, predicted = evaluate_one(predictor, args, command)
            results[from_home(name)] = result  # as given: a shipped checkpoint and a candidate may share a name
            if args.model:
                out = args.out or Path("reports") / f"{predictor.name}-{set_label}"
                report.write_evaluation(out, predictor.name, result, true, predicted, predictor.path / "curves.png")
                print(json.dumps(result["overall"], indent=2))
                print(f"report: {out / 'report.md'}")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    if args.compare:
        out = args.out or Path("reports") / f"compare-{set_label}"
        report.write_comparison(out, results, command)
        print(f"comparison: {out / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
