"""The shipped models' forward pass on each engine, in one run: the int8 graph (how the CNN
serves), the float32 graph on ONNX Runtime, and Keras on JAX.

    python benchmarks/inference_engines.py

For each shipped checkpoint, the same batch of 128 faces goes through its forward.int8.onnx
and its forward.onnx on ONNX Runtime, and through the model Keras rebuilds from the same
weights (XLA on one device per core, as agejax sets up JAX). A checkpoint that ships no int8
graph (the export refused it; metrics.json says why) gets one built here, into a temporary
folder, with the export's settings and calibration chips, where the training caches are
prepared. Each engine is timed in alternating rounds after a warm-up; medians. Also prints the
largest age difference from the float32 graph and the forward pass's FLOPs (XLA's count), so
the GFLOP/s each engine reaches. Writes benchmarks/results/inference_engines.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agejax.data import cache
from agejax.serving import checkpoint, int8
from agejax.serving.predict import CHECKPOINTS, SHIPPED, Predictor
from agejax.training.benchmark import forward_flops_per_image

RESULTS = Path(__file__).resolve().parent / "results" / "inference_engines.json"
BATCH = 128


def seconds(predictor: Predictor, faces: np.ndarray) -> float:
    start = time.perf_counter()
    predictor.predict(faces, BATCH)
    return time.perf_counter() - start


def int8_predictor(name: str, work: Path) -> tuple[Predictor | None, str]:
    """The shipped int8 graph, or one built as the export would in a copy of the checkpoint."""
    shipped = Predictor.load(name, flip=False)
    if shipped.engine == "onnxruntime-int8":
        return shipped, "shipped"
    config = shipped.config
    try:
        parts = [cache.load_split("train", config.image_size, source=s).images for s in config.sources]
    except FileNotFoundError:
        return None, "not shipped, and no prepared training cache to build one"
    copy = shutil.copytree(CHECKPOINTS / name, work / name)
    int8.quantize(copy, int8.calibration_chips(parts))
    return Predictor.load(copy, flip=False), "built here (not shipped: " + checkpoint.read_metrics(
        CHECKPOINTS / name).get("int8_graph", {}).get("why", "no export record") + ")"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    results = {"command": "python benchmarks/inference_engines.py", "batch": BATCH, "int8_settings": int8.SETTINGS,
               "models": {}}
    work = Path(tempfile.mkdtemp(prefix="agejax_engines_"))
    for name in SHIPPED:
        served = Predictor.load(name, flip=False, int8_graph=False)  # one pass per face: the engines, not the flip
        model, config = checkpoint.load(CHECKPOINTS / name)
        built = Predictor.from_model(model, config, CHECKPOINTS / name, flip=False)
        quantized, int8_origin = int8_predictor(name, work)
        size = served.image_size
        faces = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3), np.uint8)
        engines = {"onnxruntime_int8": quantized, "onnxruntime": served, "keras_jax": built}
        engines = {engine: predictor for engine, predictor in engines.items() if predictor is not None}
        ages = {engine: predictor.predict(faces, BATCH).age for engine, predictor in engines.items()}  # warm-up
        times = {engine: [] for engine in engines}
        for _ in range(args.rounds):
            for engine, predictor in engines.items():
                times[engine].append(seconds(predictor, faces))
        flops = forward_flops_per_image(model, size)
        row = {"image_size": size, "gflop_per_face": round(flops / 1e9, 3), "int8_graph": int8_origin,
               "max_age_difference_from_float32": {
                   engine: round(float(np.max(np.abs(a - ages["onnxruntime"]))), 4) for engine, a in ages.items()}}
        for engine, runs in times.items():
            median = statistics.median(runs)
            row[f"{engine}_ms_per_face"] = round(1000 * median / BATCH, 3)
            row[f"{engine}_gflop_per_s"] = round(flops * BATCH / median / 1e9, 1)
        row["keras_jax_over_onnxruntime"] = round(row["keras_jax_ms_per_face"] / row["onnxruntime_ms_per_face"], 2)
        if "onnxruntime_int8_ms_per_face" in row:
            row["int8_speedup_over_float32"] = round(
                row["onnxruntime_ms_per_face"] / row["onnxruntime_int8_ms_per_face"], 2)
        results["models"][name] = row
        print(name, json.dumps(row))
    shutil.rmtree(work, ignore_errors=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
