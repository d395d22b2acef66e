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
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agejax.data import cache, split
from agejax.evaluation import evaluate, metrics, minors, report
from agejax.serving import checkpoint, int8
from agejax.serving.model_card import SOURCE_LABELS, model_card
from agejax.serving.predict import Predictor, load_keras

if TYPE_CHECKING:
    from agejax.training.configs import TrainConfig

MAX_MAE_SHIFT = 0.05  # years: compression may not move test MAE (nor the int8 graph the mean age) by more
KNOWN_SOURCES = ("utkface", "aaf")  # reported whenever their caches exist, trained on or not


class ExportRefused(Exception):
    """The export would replace a better checkpoint, or compression cost too much."""


def mae(predictor: Predictor | RememberedPredictions, faces: evaluate.LabelledFaces) -> float:
    return metrics.mae(faces.ages, predictor.predict(faces.images, batch_size=128).age)


class RememberedPredictions:
    """A predictor that scores each image array once: the export asks for the same splits many times."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.name = predictor.name
        self.flip = predictor.flip
        self._done: dict[int, tuple[np.ndarray, object]] = {}  # id -> (the array, kept alive; its prediction)

    def predict(self, images: np.ndarray, batch_size: int = 128, verbose: int = 0):
        if id(images) not in self._done:
            self._done[id(images)] = (images, self.predictor.predict(images, batch_size=batch_size, verbose=verbose))
        return self._done[id(images)][1]


def sources_to_report(config_sources: Iterable[str], image_size: int, cache_root: Path) -> list[str]:
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


def pooled(parts: dict[str, evaluate.LabelledFaces]) -> evaluate.LabelledFaces:
    """Sources' faces as one set, named by its sources."""
    return evaluate.LabelledFaces(
        "validation splits of " + ", ".join(parts),
        np.concatenate([np.asarray(p.images) for p in parts.values()]), np.concatenate([p.ages for p in parts.values()]))


def median_ms_per_face(predictor: Predictor, faces: np.ndarray, rounds: int = 7) -> float:
    predictor.predict(faces, batch_size=len(faces))  # warm-up: ONNX Runtime sizes its buffers
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        predictor.predict(faces, batch_size=len(faces))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)) / len(faces)


def int8_graph(target: Path, config: TrainConfig, flip: bool, val: dict, test: dict, cache_root: Path) -> dict:
    """Builds the int8 graph and keeps it only if it is faster than the float32 graph, moves no
    source's validation or test MAE, nor its mean predicted age, by more than its limit, and is
    small enough to ship."""
    parts = [cache.load_split("train", config.image_size, cache_root, source=s).images for s in config.sources]
    path = int8.quantize(target, int8.calibration_chips(parts))
    if path.stat().st_size > int8.MAX_BYTES:  # not measured: it could not ship whatever it measured
        size = path.stat().st_size
        path.unlink()
        return {"kept": False, "why": f"{size / 1e6:.0f} MB: too large to ship", "settings": int8.SETTINGS,
                "bytes": size}
    graphs = {"float32": Predictor.load(target, flip=flip, int8_graph=False), "int8": Predictor.load(target, flip=flip)}
    if graphs["int8"].engine != "onnxruntime-int8":
        path.unlink()
        return {"kept": False, "why": "the int8 graph does not load"}
    mae_shift, age_shift = {}, {}
    for split_name, split_faces in (("val", val), ("test", test)):
        for source, faces in split_faces.items():
            ages = {name: p.predict(faces.images, batch_size=128).age for name, p in graphs.items()}
            key = f"{split_name} {source}"
            mae_shift[key] = round(metrics.mae(faces.ages, ages["int8"]) - metrics.mae(faces.ages, ages["float32"]), 4)
            age_shift[key] = round(float(np.mean(ages["int8"] - ages["float32"])), 4)
    probe = np.asarray(val["utkface"].images[:128])
    speed = {name: round(median_ms_per_face(predictor.with_flip(False), probe), 3) for name, predictor in graphs.items()}
    result = {"settings": int8.SETTINGS, "mae_shift_over_float32": mae_shift, "mean_age_shift_over_float32": age_shift,
              "ms_per_view_batch128": speed, "speedup": round(speed["float32"] / speed["int8"], 2),
              "bytes": path.stat().st_size}
    worst_mae = max(mae_shift.values(), key=abs)
    worst_age = max(age_shift.values(), key=abs)
    why = ("" if speed["int8"] < speed["float32"] else "not faster than float32") or (
        f"moved MAE by {worst_mae:+.3f} (limit {MAX_MAE_SHIFT})" if abs(worst_mae) > MAX_MAE_SHIFT else "") or (
        f"moved the mean age by {worst_age:+.3f} (limit {MAX_MAE_SHIFT})" if abs(worst_age) > MAX_MAE_SHIFT else "")
    if why:
        path.unlink()
    return {"kept": not why, **({"why": why} if why else {}), **result}


def under18_report(predictor: Predictor | RememberedPredictions, calibration: evaluate.LabelledFaces,
                   test: dict[str, evaluate.LabelledFaces]) -> dict:
    """p_under18 calibrated on the pooled validation faces, measured on each test split."""
    def raw(faces: evaluate.LabelledFaces) -> np.ndarray:
        return minors.raw_p_under18(predictor.predict(faces.images, batch_size=128).probs)

    result = minors.minors_report(raw(calibration), calibration.ages, {s: raw(f) for s, f in test.items()},
                                  {s: f.ages for s, f in test.items()})
    return {"calibrated_on": calibration.name, **result}


REFERENCE_FIELDS = ("reference_val_mae", "reference_val_mae_without_flip", "reference_test_mae")


def carry_reference(before: dict, per_source: dict) -> str:
    """A checkpoint re-exported in place has no full-precision model to measure again: the figures its
    first export measured on the run's model.keras stand, for each source whose split is unchanged."""
    if before.get("source") != "run model.keras":
        return "checkpoint weights.npz"
    for source, row in per_source.items():
        earlier = before.get("per_source", {}).get(source, {})
        if earlier.get("manifest_sha256") == row["manifest_sha256"] and all(f in earlier for f in REFERENCE_FIELDS):
            row.update({f: earlier[f] for f in REFERENCE_FIELDS})
    return "run model.keras"


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
    before = checkpoint.read_metrics(target)
    # Like for like: the candidate's float weights against the float weights the checkpoint was
    # exported from; its compressed graph's own figure differs by a few thousandths of a year.
    shipped_before = before.get("reference_val_mae", before.get("val_mae"))
    # metrics.json keeps 4 decimals: a re-export in place measures the same model as equal.
    if shipped_before is not None and round(reference_val["utkface"], 4) > shipped_before and not replace_worse:
        raise ExportRefused(f"{target} is better on UTKFace validation ({shipped_before:.4f} against "
                            f"{reference_val['utkface']:.4f}, both before compression); "
                            "pass --replace-worse to replace it anyway")

    checkpoint.save(model, config, target, weights_format)
    if not Predictor.load(target, int8_graph=False).engine == "onnxruntime":
        raise ExportRefused(f"{target / checkpoint.FORWARD_FILE} does not load back")
    int8_result = int8_graph(target, config, reference.flip, val, test, cache_root)
    # As it serves: the int8 graph where kept.
    compressed = RememberedPredictions(Predictor.load(target, flip=reference.flip))
    calibration = pooled({s: val[s] for s in config.sources})  # the populations it was trained for
    under18 = under18_report(compressed, calibration, test) if config.head == "distribution" else None
    reports, per_source = {}, {}
    for source in names:
        result, predicted = evaluate.evaluate_predictor(compressed, test[source], calibration=calibration, verbose=0)
        if under18:
            result["p_under18"] = under18["per_source"][source]
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
    in_place = run_dir.resolve() == target.resolve()
    origin = carry_reference(before, per_source) if in_place else "run model.keras"
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
        # What the reference figures were measured on: a run's full-precision model.keras, or a checkpoint's
        # own (already compressed) weights where no run's figures could be carried over.
        "source": origin,
        **({"reference_measured_by": before.get("reference_measured_by", before.get("command"))}
           if in_place and origin == "run model.keras" else {}),
        # Split-conformal thresholds calibrated on validation: interval = age +- threshold (x std).
        "conformal": {
            "score": conformal["score"],
            "calibrated_on": calibration.name,
            "thresholds": {level: row["threshold"] for level, row in conformal["levels"].items()},
            "test_coverage": {level: row["coverage"] for level, row in conformal["levels"].items()},
        },
        **({"p_under18": under18} if under18 else {}),
        "int8_graph": int8_result,
        "weight_format": weights_format,
        "weights_mb": round(sum(path.stat().st_size for path in checkpoint.weight_files(target)) / 1e6, 2),
        "manifest_sha256": split.manifest_hash(),
        "command": command,
        **{k: run_metrics[k] for k in ("best_epoch", "parameters", "git_commit", "devices", "peak_rss_mib", "config")},
        **({"members": run_metrics["members"]} if "members" in run_metrics else {}),
    }
    (target / "metrics.json").write_text(json.dumps(shipped, indent=2) + "\n")
    for file_name in ("history.csv", "curves.png"):  # an ensemble's run has no training of its own
        if not (run_dir / file_name).exists():
            (target / file_name).unlink(missing_ok=True)
        elif (run_dir / file_name).resolve() != (target / file_name).resolve():
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
