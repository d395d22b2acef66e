"""Turns a finished training run into a compact shipped checkpoint, and measures what compression cost.

    python scripts/export_checkpoint.py --run-dir runs/cnn_cpu --name cnn
    python scripts/export_checkpoint.py --run-dir checkpoints/cnn --name cnn   # re-export in place
    python scripts/export_checkpoint.py --run-dir checkpoints/cnn --name cnn --forward-only

Writes checkpoints/<name>/: weights.npz (compressed), config.json, forward.onnx
(the inference graph that prediction runs on ONNX Runtime), metrics.json,
history.csv, curves.png, a model card (README.md) and the test-split evaluation
report (report/: metrics, plots, intervals calibrated on validation). Validation and
test MAE are measured for both the source model and the compressed one. Whether each
face is also scored mirrored (test-time flip) is decided on validation. A checkpoint
with a lower validation MAE is not replaced without --replace-worse.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from agejax.data import cache, split
from agejax.evaluation import evaluate, metrics, report
from agejax.serving import checkpoint
from agejax.serving.predict import CHECKPOINTS, Predictor, load_keras

MAX_MAE_SHIFT = 0.05  # years: compression may not move test MAE by more


def mae(predictor: Predictor, faces: evaluate.LabelledFaces) -> float:
    return metrics.mae(faces.ages, predictor.predict(faces.images, batch_size=128).age)


MODEL_CARD = """\
# agejax {name}: {title}

Age regressor {origin} on UTKFace with
`python scripts/train.py --run-dir ... ` and the config in `config.json`, then
exported with `python scripts/export_checkpoint.py --run-dir ... --name {name}`.

| measure (frozen split, `agejax/splits/utkface.csv`) | value |
|---|---|
| validation MAE (years) | {val_mae:.2f} |
| **test MAE (years)** | **{test_mae:.2f}** |
| test MAE of the source, {source} | {reference_test_mae:.2f} |
| test-time flip (chosen on validation) | {flip_text} |
| best epoch (chosen on validation) | {best_epoch} of {epochs} |
| parameters | {parameters:,} |
| input | {image_size}x{image_size} RGB aligned face crop |
| weights file | {weights_mb:.1f} MB ({weight_format}) |

Every figure above is written to `metrics.json` by the export command.

- **Data.** UTKFace aligned & cropped faces (non-commercial research licence),
  split 80/10/10 stratified by age and gender; manifest sha256 `{manifest}`.
- **Intended use.** Research and demos of apparent-age estimation from aligned faces.
  Not for decisions about people: errors are years wide, larger for the elderly,
  and UTKFace over-represents some groups (see the evaluation report).
- **Limitations.** Labels are real ages from file names, not apparent ages; children
  and people over 70 are few in training; faces must be aligned like UTKFace chips.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run (holds model.keras)")
    parser.add_argument("--name", required=True, help="checkpoint name, e.g. cnn or resnet50")
    parser.add_argument("--weights-format", choices=checkpoint.FORMATS, default="int8")
    parser.add_argument("--cache-root", type=Path, default=cache.DEFAULT_ROOT)
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help=f"where to write (default {CHECKPOINTS})")
    parser.add_argument("--replace-worse", action="store_true",
                        help="replace a checkpoint that has a lower validation MAE (refused otherwise)")
    parser.add_argument("--forward-only", action="store_true",
                        help=f"only rewrite a checkpoint's {checkpoint.FORWARD_FILE} (after a change to its graph); "
                             "weights and measurements stay")
    args = parser.parse_args(argv)

    if args.forward_only:
        model, _ = checkpoint.load(args.run_dir)
        checkpoint.save_forward(model, args.run_dir)
        print(f"wrote {args.run_dir / checkpoint.FORWARD_FILE}; engine {Predictor.load(args.run_dir).engine}")
        return 0
    run_metrics = json.loads((args.run_dir / "metrics.json").read_text())
    model, config = load_keras(args.run_dir)
    reference = Predictor.from_model(model, config, args.run_dir)
    val = evaluate.cached_split("val", reference.image_size, args.cache_root)
    test = evaluate.cached_split("test", reference.image_size, args.cache_root)

    # Test-time flip (each face averaged with its mirror image) only where validation says it pays.
    val_without_flip = mae(reference.with_flip(False), val)
    val_with_flip = mae(reference.with_flip(True), val)
    reference = reference.with_flip(val_with_flip < val_without_flip)
    reference_val = min(val_with_flip, val_without_flip)
    target = args.checkpoints / args.name
    shipped_before = checkpoint.read_metrics(target).get("val_mae")
    # metrics.json keeps 4 decimals: a re-export in place measures the same model as equal.
    if shipped_before is not None and round(reference_val, 4) > shipped_before and not args.replace_worse:
        print(f"error: {target} is better on validation ({shipped_before:.3f} against {reference_val:.3f}); "
              "pass --replace-worse to replace it anyway", file=sys.stderr)
        return 1

    checkpoint.save(model, config, target, args.weights_format)
    compressed = Predictor.load(target, flip=reference.flip)
    if compressed.engine != "onnxruntime":
        print(f"error: {target / checkpoint.FORWARD_FILE} does not load back", file=sys.stderr)
        return 1
    test_report, predicted = evaluate.evaluate_predictor(compressed, test, calibration=val, verbose=0)
    command = "python scripts/export_checkpoint.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    test_report["command"] = command
    measured = {
        "val": {"reference": reference_val, "compressed": mae(compressed, val)},
        "test": {"reference": mae(reference, test), "compressed": test_report["overall"]["mae"]},
    }
    shift = measured["test"]["compressed"] - measured["test"]["reference"]
    shipped = {
        "name": args.name,
        "model": run_metrics["model"],
        "val_mae": round(measured["val"]["compressed"], 4),
        "test_mae": round(measured["test"]["compressed"], 4),
        "reference_val_mae": round(measured["val"]["reference"], 4),
        "reference_test_mae": round(measured["test"]["reference"], 4),
        "compression_test_mae_shift": round(shift, 4),
        "test_time_flip": reference.flip,
        # A run's full-precision model.keras, or a checkpoint's weights re-exported (already compressed).
        "source": "run model.keras" if (args.run_dir / "model.keras").exists() else "checkpoint weights.npz",
        "reference_val_mae_without_flip": round(val_without_flip, 4),
        # Split-conformal thresholds calibrated on validation: interval = age +- threshold (x std).
        "conformal": {
            "score": test_report["conformal"]["score"],
            "thresholds": {level: row["threshold"] for level, row in test_report["conformal"]["levels"].items()},
            "test_coverage": {level: row["coverage"] for level, row in test_report["conformal"]["levels"].items()},
        },
        "weight_format": args.weights_format,
        "weights_mb": round(sum(path.stat().st_size for path in checkpoint.weight_files(target)) / 1e6, 2),
        "manifest_sha256": split.manifest_hash(),
        **{k: run_metrics[k] for k in ("best_epoch", "parameters", "git_commit", "devices", "peak_rss_mib", "config")},
    }
    (target / "metrics.json").write_text(json.dumps(shipped, indent=2) + "\n")
    for name in ("history.csv", "curves.png"):
        if (args.run_dir / name).resolve() != (target / name).resolve():
            shutil.copy(args.run_dir / name, target / name)
    report.write_evaluation(target / "report", args.name, test_report, test.ages, predicted, target / "curves.png")
    (target / "README.md").write_text(
        MODEL_CARD.format(
            title=run_metrics["model"], epochs=shipped["config"]["epochs"],
            origin=(f"fine-tuned from an earlier run's weights (`{shipped['config']['init_weights']}`; "
                    "the chain began from random initialisation)" if shipped["config"].get("init_weights")
                    else "trained from scratch (random initialisation)"),
            image_size=shipped["config"]["image_size"], manifest=shipped["manifest_sha256"][:12],
            flip_text=(f"yes: validation MAE {shipped['reference_val_mae']:.2f} with, "
                       f"{shipped['reference_val_mae_without_flip']:.2f} without") if reference.flip else "no",
            **shipped,
        )
    )
    print(json.dumps(shipped, indent=2))
    if abs(shift) > MAX_MAE_SHIFT:
        print(f"error: {args.weights_format} moved test MAE by {shift:+.3f} years (limit {MAX_MAE_SHIFT})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
