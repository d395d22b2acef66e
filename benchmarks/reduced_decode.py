"""Aligned crops decoded at the model's input size (a JPEG's reduced-scale decode) against a
full decode then a resize, as the batch CLI did before: time per crop and validation MAE.

    python benchmarks/reduced_decode.py --source ../shared/data/utkface/

On UTKFace's validation crops (200 px JPEGs), each way turns the file's bytes into the
model's input (``scoring.decode`` then ``find_faces(..., aligned=True)``); the shipped
default model scores both sets of chips. Prints the median time per crop over --rounds
alternating rounds, and the MAE and mean predicted age of each way. Writes
benchmarks/results/reduced_decode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from agejax import scoring
from agejax.data import labels, split
from agejax.evaluation import metrics
from agejax.serving.predict import Predictor

RESULTS = Path(__file__).resolve().parent / "results" / "reduced_decode.json"


def chips(payloads: list[bytes], size: int, max_side: int) -> np.ndarray:
    return np.stack([scoring.find_faces(scoring.decode(p, max_side), size, aligned=True).faces[0].chip
                     for p in payloads])


def seconds_per_crop(payloads: list[bytes], size: int, max_side: int) -> float:
    start = time.perf_counter()
    chips(payloads, size, max_side)
    return (time.perf_counter() - start) / len(payloads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="UTKFace folder or folder of archives")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timed", type=int, default=1000, help="crops in each timed round")
    args = parser.parse_args()

    archives = sorted(args.source.glob("*.tar.gz")) or [args.source]
    records, payloads = [], []
    for record, payload in labels.iter_image_bytes(split.records_of(archives, "val")):
        if payload is not None:
            records.append(record)
            payloads.append(payload)
    ages = np.array([r.age for r in records], dtype=np.float32)
    predictor = Predictor.load(args.model)
    size = predictor.image_size
    ways = {"full_decode": scoring.MAX_DECODE_SIDE, "reduced_decode": size}

    timed = payloads[: args.timed]
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(args.rounds):
        for way, max_side in ways.items():
            times[way].append(seconds_per_crop(timed, size, max_side))
    result = {"model": args.model, "engine": predictor.engine, "image_size": size,
              "set": f"UTKFace validation split ({len(records)} crops)", "rounds": args.rounds}
    for way, max_side in ways.items():
        predicted = predictor.predict(chips(payloads, size, max_side), batch_size=128).age
        result[way] = {"ms_per_crop": round(1000 * statistics.median(times[way]), 3),
                       "val_mae": round(metrics.mae(ages, predicted), 4),
                       "mean_predicted_age": round(float(np.mean(predicted)), 4)}
    full, reduced = result["full_decode"], result["reduced_decode"]
    result["speedup"] = round(full["ms_per_crop"] / reduced["ms_per_crop"], 2)
    result["val_mae_shift"] = round(reduced["val_mae"] - full["val_mae"], 4)
    print(json.dumps(result, indent=2))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
