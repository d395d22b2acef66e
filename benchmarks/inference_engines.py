"""The shipped models' forward pass: ONNX Runtime (how they serve) against Keras on JAX, in one run.

    python benchmarks/inference_engines.py

For each shipped checkpoint, the same batch of 128 faces goes through its forward.onnx
on ONNX Runtime and through the model Keras rebuilds from the same weights (XLA on
one device per core, as agejax sets up JAX). Each engine is timed in alternating rounds
after a warm-up; medians. Also prints the largest age difference between the two and
the forward pass's FLOPs (XLA's count), so the GFLOP/s each engine reaches. Writes
benchmarks/results/inference_engines.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from agejax.serving import checkpoint
from agejax.serving.predict import CHECKPOINTS, SHIPPED, Predictor
from agejax.training.benchmark import forward_flops_per_image

RESULTS = Path(__file__).resolve().parent / "results" / "inference_engines.json"
BATCH = 128


def seconds(predictor: Predictor, faces: np.ndarray) -> float:
    start = time.perf_counter()
    predictor.predict(faces, BATCH)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    results = {"command": "python benchmarks/inference_engines.py", "batch": BATCH, "models": {}}
    for name in SHIPPED:
        served = Predictor.load(name, flip=False)  # one pass per face: the engines, not the flip
        model, config = checkpoint.load(CHECKPOINTS / name)
        built = Predictor.from_model(model, config, CHECKPOINTS / name, flip=False)
        size = served.image_size
        faces = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3), np.uint8)
        engines = {"onnxruntime": served, "keras_jax": built}
        ages = {engine: predictor.predict(faces, BATCH).age for engine, predictor in engines.items()}  # warm-up
        times = {engine: [] for engine in engines}
        for _ in range(args.rounds):
            for engine, predictor in engines.items():
                times[engine].append(seconds(predictor, faces))
        flops = forward_flops_per_image(model, size)
        row = {"image_size": size, "gflop_per_face": round(flops / 1e9, 3),
               "max_age_difference": float(np.max(np.abs(ages["onnxruntime"] - ages["keras_jax"])))}
        for engine, runs in times.items():
            median = statistics.median(runs)
            row[f"{engine}_ms_per_face"] = round(1000 * median / BATCH, 3)
            row[f"{engine}_gflop_per_s"] = round(flops * BATCH / median / 1e9, 1)
        row["keras_jax_over_onnxruntime"] = round(row["keras_jax_ms_per_face"] / row["onnxruntime_ms_per_face"], 2)
        results["models"][name] = row
        print(name, json.dumps(row))
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
