"""Where a wild photo's time goes: each stage of the pipeline timed on its own, in one process.

    python benchmarks/wild_stages.py --source ../shared/data/utkface/ [--photos 100]

The photos are those of benchmarks/startup.py: 640x480 with one test crop of 160-260 px on a
blurred background, and portraits 300-600 px wide. For each photo, in the order the batch CLI
runs them: reading the file, decoding it (agejax.scoring.decode), HOG as the pipeline runs it
(agejax.faces.cascade.detect_hog_coarse_first: a copy at most 400 px on its longer side first, then the
full-size pass where the copy shows no face that large), and, for comparison, the full-size pass alone
(detect_hog: photos under 600 px upsampled once), HOG at full resolution without upsampling and
upsampled once; then the 5-point landmarks and the aligned chip of each find, the resize to the
model's input, and the model (the default
CNN, test-time flip) on that chip. Medians in ms per photo, one core. Writes
benchmarks/results/wild_stages.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from batch_speed import make_photos
from PIL import Image
from startup import make_small_portraits

from agejax.data import labels, split
from agejax.data.images import to_square_array
from agejax.faces import cascade
from agejax.scoring import decode
from agejax.serving.predict import Predictor

RESULTS = Path(__file__).resolve().parent / "results" / "wild_stages.json"


def timed(function, *args):
    start = time.perf_counter()
    value = function(*args)
    return value, 1000 * (time.perf_counter() - start)


def profile(paths: list[Path], aligner: cascade.FaceAligner, predictor: Predictor) -> dict:
    stages: dict[str, list[float]] = {name: [] for name in (
        "read", "decode", "hog_as_the_pipeline_runs_it", "hog_full_size_pass", "hog_full_resolution", "hog_upsampled_once",
        "landmarks_and_chip",
        "resize_to_model", "model")}
    ended_on_the_copy = 0
    for path in paths:
        payload, ms = timed(path.read_bytes)
        stages["read"].append(ms)
        image, ms = timed(decode, payload)
        stages["decode"].append(ms)
        pixels = np.ascontiguousarray(np.asarray(image))
        found, ms = timed(aligner.detect_hog_coarse_first, pixels)
        stages["hog_as_the_pipeline_runs_it"].append(ms)
        _, ms = timed(aligner.detect_hog, pixels)
        stages["hog_full_size_pass"].append(ms)
        ended_on_the_copy += bool(aligner.detect_hog_coarse(pixels))
        _, ms = timed(aligner.detector.run, pixels, 0, 0.0)
        stages["hog_full_resolution"].append(ms)
        if max(pixels.shape[:2]) < cascade.UPSAMPLE_BELOW:
            _, ms = timed(aligner.detector.run, pixels, 1, 0.0)
            stages["hog_upsampled_once"].append(ms)
        chips, ms = timed(lambda image, finds: [aligner.align(image, rect) for rect, _ in finds], pixels, found)
        stages["landmarks_and_chip"].append(ms)
        inputs, ms = timed(lambda cut: [to_square_array(Image.fromarray(c), predictor.image_size) for c in cut], chips)
        stages["resize_to_model"].append(ms)
        if inputs:
            _, ms = timed(predictor.predict, np.stack(inputs))
            stages["model"].append(ms)
    medians = {name: round(statistics.median(values), 2) for name, values in stages.items() if values}
    return {"photos": len(paths), "ended_on_the_coarse_copy": ended_on_the_copy, "median_ms": medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="UTKFace folder or folder of archives")
    parser.add_argument("--photos", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agejax_stages_"))
    archives = sorted(args.source.glob("*.tar.gz")) or [args.source]
    labels.export_files(split.records_of(archives, "test")[:500], work / "crops")
    crops = sorted((work / "crops").iterdir())
    make_photos(crops, work / "photos_640", args.photos)
    make_small_portraits(crops, work / "portraits", args.photos)
    aligner, predictor = cascade.FaceAligner(), Predictor.load("cnn")
    profile(sorted((work / "photos_640").iterdir())[:5], aligner, predictor)  # warm-up
    results = {"command": f"python benchmarks/wild_stages.py --source {args.source} --photos {args.photos}"}
    for kind in ("photos_640", "portraits"):
        results[kind] = profile(sorted((work / kind).iterdir()), aligner, predictor)
        print(kind, json.dumps(results[kind]), flush=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
