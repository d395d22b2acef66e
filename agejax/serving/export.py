"""A finished training run into a compact shipped checkpoint, measured on every prepared source.

The export decides on validation whether each face is also scored mirrored (test-time flip),
calibrates the 90 % and 80 % intervals on the pooled validation splits of the sources it was trained on,
measures validation and test MAE of the run's model and of the compressed checkpoint on each
source, and fails where compression moves any source's test MAE by more than MAX_MAE_SHIFT.
UTKFace's validation MAE is the checkpoint's ``val_mae``, the figure models are ranked and
replaced by; a checkpoint better there is not replaced unless asked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from agejax.data import cache, split
from agejax.evaluation import evaluate, metrics, report
from agejax.serving import checkpoint
from agejax.serving.predict import Predictor, load_keras

MAX_MAE_SHIFT = 0.05  # years: compression may not move test MAE by more
SOURCE_LABELS = {"utkface": "UTKFace", "aaf": "All-Age-Faces"}
KNOWN_SOURCES = ("utkface", "aaf")  # reported whenever their caches exist, trained on or not


class ExportRefused(Exception):
    """The export would replace a better checkpoint, or compression cost too much."""


def mae(predictor: Predictor, faces: evaluate.LabelledFaces) -> float:
    return metrics.mae(faces.ages, predictor.predict(faces.images, batch_size=128).age)


def sources_to_report(config_sources, image_size: int, cache_root: Path) -> list[str]:
    """UTKFace first, then every other source trained on or prepared at this size."""
    names = list(dict.fromkeys(["utkface", *config_sources, *KNOWN_SOURCES]))
    present = []
    for name in names:
        try:
            cache.load_split("val", image_size, cache_root, source=name)
        except FileNotFoundError:
            if name in config_sources:
                raise
            continue
        present.append(name)
    return present


def pooled(parts: list[evaluate.LabelledFaces]) -> evaluate.LabelledFaces:
    return evaluate.LabelledFaces(
        "validation splits of " + ", ".join(p.name for p in parts),
        np.concatenate([np.asarray(p.images) for p in parts]), np.concatenate([p.ages for p in parts]))


def export(run_dir: Path, name: str, target_root: Path, weights_format: str = "int8",
           cache_root: Path = cache.DEFAULT_ROOT, replace_worse: bool = False, command: str = "") -> dict:
    """Writes target_root/name (weights, graph, metrics, card, reports) and returns its metrics."""
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    model, config = load_keras(run_dir)
    reference = Predictor.from_model(model, config, run_dir)
    names = sources_to_report(config.sources, config.image_size, cache_root)
    val = {s: evaluate.cached_split("val", config.image_size, cache_root, source=s) for s in names}
    test = {s: evaluate.cached_split("test", config.image_size, cache_root, source=s) for s in names}

    # Test-time flip (each face averaged with its mirror image) only where validation says it pays.
    without_flip = {s: mae(reference.with_flip(False), faces) for s, faces in val.items()}
    with_flip = {s: mae(reference.with_flip(True), faces) for s, faces in val.items()}
    flip = np.mean(list(with_flip.values())) < np.mean(list(without_flip.values()))
    reference = reference.with_flip(bool(flip))
    reference_val = (with_flip if flip else without_flip)
    target = target_root / name
    shipped_before = checkpoint.read_metrics(target).get("val_mae")
    # metrics.json keeps 4 decimals: a re-export in place measures the same model as equal.
    if shipped_before is not None and round(reference_val["utkface"], 4) > shipped_before and not replace_worse:
        raise ExportRefused(f"{target} is better on UTKFace validation ({shipped_before:.3f} against "
                            f"{reference_val['utkface']:.3f}); pass --replace-worse to replace it anyway")

    checkpoint.save(model, config, target, weights_format)
    compressed = Predictor.load(target, flip=reference.flip)
    if compressed.engine != "onnxruntime":
        raise ExportRefused(f"{target / checkpoint.FORWARD_FILE} does not load back")
    calibration = pooled([val[s] for s in config.sources])  # the populations it was trained for
    reports, per_source = {}, {}
    for source in names:
        result, predicted = evaluate.evaluate_predictor(compressed, test[source], calibration=calibration, verbose=0)
        result["command"] = command
        result["set"] = f"{SOURCE_LABELS.get(source, source)} test split"
        reports[source] = (result, predicted)
        per_source[source] = {
            "val_mae": round(mae(compressed, val[source]), 4),
            "test_mae": round(result["overall"]["mae"], 4),
            "reference_val_mae": round(reference_val[source], 4),
            "reference_val_mae_without_flip": round(without_flip[source], 4),
            "reference_test_mae": round(mae(reference, test[source]), 4),
            "test_bias": round(result["overall"]["bias"], 4),
            "test_coverage": {level: row["coverage"] for level, row in result["conformal"]["levels"].items()},
            "manifest_sha256": split.manifest_hash(split.manifest_path(source, cache_root)),
        }
    utk = per_source["utkface"]
    shift = {s: row["test_mae"] - row["reference_test_mae"] for s, row in per_source.items()}
    conformal = reports["utkface"][0]["conformal"]
    shipped = {
        "name": name,
        "model": run_metrics["model"],
        "val_mae": utk["val_mae"],
        "test_mae": utk["test_mae"],
        "reference_val_mae": utk["reference_val_mae"],
        "reference_test_mae": utk["reference_test_mae"],
        "reference_val_mae_without_flip": utk["reference_val_mae_without_flip"],
        "compression_test_mae_shift": round(max(shift.values(), key=abs), 4),
        "test_time_flip": reference.flip,
        "val_mae_per_source": {s: row["val_mae"] for s, row in per_source.items()},
        "test_mae_per_source": {s: row["test_mae"] for s, row in per_source.items()},
        "per_source": per_source,
        # A run's full-precision model.keras, or a checkpoint's weights re-exported (already compressed).
        "source": "run model.keras" if (run_dir / "model.keras").exists() else "checkpoint weights.npz",
        # Split-conformal thresholds calibrated on validation: interval = age +- threshold (x std).
        "conformal": {
            "score": conformal["score"],
            "calibrated_on": calibration.name,
            "thresholds": {level: row["threshold"] for level, row in conformal["levels"].items()},
            "test_coverage": {level: row["coverage"] for level, row in conformal["levels"].items()},
        },
        "weight_format": weights_format,
        "weights_mb": round(sum(path.stat().st_size for path in checkpoint.weight_files(target)) / 1e6, 2),
        "manifest_sha256": split.manifest_hash(),
        "command": command,
        **{k: run_metrics[k] for k in ("best_epoch", "parameters", "git_commit", "devices", "peak_rss_mib", "config")},
    }
    (target / "metrics.json").write_text(json.dumps(shipped, indent=2) + "\n")
    for file_name in ("history.csv", "curves.png"):
        if (run_dir / file_name).resolve() != (target / file_name).resolve():
            shutil.copy(run_dir / file_name, target / file_name)
    shutil.rmtree(target / "report", ignore_errors=True)
    for source, (result, predicted) in reports.items():
        folder = target / "report" / ("" if source == "utkface" else source)
        report.write_evaluation(folder, name, result, test[source].ages, predicted, target / "curves.png")
    (target / "README.md").write_text(model_card(shipped))
    worst = max(shift, key=lambda s: abs(shift[s]))
    if abs(shift[worst]) > MAX_MAE_SHIFT:
        raise ExportRefused(f"{weights_format} moved {worst} test MAE by {shift[worst]:+.3f} years (limit {MAX_MAE_SHIFT})")
    return shipped


def model_card(shipped: dict) -> str:
    config = shipped["config"]
    trained_on = " and ".join(SOURCE_LABELS.get(s, s) for s in config.get("sources", ["utkface"]))
    shares = config.get("source_shares")
    origin = (f"fine-tuned from an earlier agejax model (`init_weights`: `{config['init_weights']}`; that chain "
              "began from random initialisation)" if config.get("init_weights") else "trained from random initialisation")
    rows = "\n".join(
        f"| {SOURCE_LABELS.get(s, s)} | {row['val_mae']:.2f} | **{row['test_mae']:.2f}** | {row['test_bias']:+.2f} | "
        f"{100 * row['test_coverage']['90']:.1f} % | `{row['manifest_sha256'][:12]}` |"
        for s, row in shipped["per_source"].items())
    flip = (f"yes (UTKFace validation {shipped['reference_val_mae']:.2f} with, "
            f"{shipped['reference_val_mae_without_flip']:.2f} without)" if shipped["test_time_flip"] else "no")
    return f"""\
# agejax {shipped['name']}: {shipped['model']}

Age regressor {origin}, on {trained_on}{f' (shares of each batch: {shares})' if shares else ''}, with
`python scripts/train.py` and the config in `config.json`, then exported with
`{shipped['command'] or 'python scripts/export_checkpoint.py'}`.

| source (frozen split) | validation MAE | **test MAE** | test bias | 90 % interval covers | manifest |
|---|---|---|---|---|---|
{rows}

- Test-time flip, chosen on validation: {flip}.
- Best epoch, chosen on validation: {shipped['best_epoch']} of {config['epochs']}.
- {shipped['parameters']:,} parameters; input {config['image_size']}x{config['image_size']} RGB aligned face crop;
  weights {shipped['weights_mb']:.1f} MB ({shipped['weight_format']}); compression moved test MAE by at most
  {abs(shipped['compression_test_mae_shift']):.3f} years.

Every figure above is in `metrics.json`, written by the export command; the full reports are in `report/`
(UTKFace) and `report/<source>/`.

- **Data.** UTKFace and All-Age-Faces are for **non-commercial research only**, and so are these weights.
  Each source is split 80/10/10, stratified by age and gender; near-duplicate images were dropped.
- **Intended use.** Research and demos of apparent-age estimation from aligned faces. Not for decisions about
  people: errors are years wide, larger for the elderly, and the sources over-represent some groups (see the
  reports).
- **Limitations.** UTKFace's ages were estimated and checked by people, All-Age-Faces' are stated ages; children
  and people over 70 are few in training; old photos tend to read older; faces must be aligned like UTKFace chips.
"""
