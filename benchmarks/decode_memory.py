"""Peak memory of the batch CLI on a folder of the largest images it accepts.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/decode_memory.py

Writes PNGs (RGB and RGBA) and TIFFs just under agejax.images.MAX_DECODE_PIXELS and
huge JPEGs, runs `scripts/batch_predict.py DIR --aligned -q` with 2 workers as a user
would, and samples the resident memory of the whole process tree (the CLI and its
workers together) every 20 ms. Writes benchmarks/results/decode_memory.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from agejax.data.images import MAX_DECODE_PIXELS

REPO = Path(__file__).resolve().parents[1]

RESULTS = Path(__file__).resolve().parent / "results" / "decode_memory.json"


def write_large_images(folder: Path) -> list[str]:
    """Two each of: RGB PNG, RGBA PNG and RGB TIFF at 98% of the pixel budget, and a 150 MP JPEG."""
    side = int(math.sqrt(MAX_DECODE_PIXELS * 0.98))
    blocks = np.random.default_rng(0).integers(0, 256, (side // 16 + 1, side // 16 + 1, 3), np.uint8)
    rgb = Image.fromarray(np.kron(blocks, np.ones((16, 16, 1), np.uint8))[:side, :side])
    names = []
    for i in range(2):
        rgb.save(folder / f"rgb{i}.png", compress_level=1)
        rgb.convert("RGBA").save(folder / f"rgba{i}.png", compress_level=1)
        rgb.save(folder / f"rgb{i}.tif")
        names += [f"rgb{i}.png", f"rgba{i}.png", f"rgb{i}.tif"]
    jpeg_side = 12_250  # 150 MP: over the budget, decoded at 1/8 scale
    rgb.resize((jpeg_side, jpeg_side), Image.Resampling.NEAREST).save(folder / "huge.jpg", quality=85)
    return names + ["huge.jpg"]


def peak_tree_rss(command: list[str]) -> tuple[int, float, int]:
    """(peak summed RSS in bytes, seconds, exit status) of a command and all its children."""
    start = time.perf_counter()
    process = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass  # a worker ended between listing and reading
        time.sleep(0.02)
    return peak, time.perf_counter() - start, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "large"
        folder.mkdir()
        names = write_large_images(folder)
        out = Path(work) / "ages.csv"
        command = [sys.executable, str(REPO / "scripts" / "batch_predict.py"), str(folder), "--aligned", "-q",
                   "--workers", str(args.workers), "-o", str(out)]
        peak, seconds, status = peak_tree_rss(command)
        rows = out.read_text().splitlines()[1:]
    result = {
        "command": "python benchmarks/decode_memory.py",
        "files": names,
        "max_decode_pixels": MAX_DECODE_PIXELS,
        "workers": args.workers,
        "peak_rss_mib": round(peak / 2**20),
        "seconds": round(seconds, 1),
        "exit_status": status,
        "rows": len(rows),
        "errors": [row for row in rows if not row.split(",")[-1] == ""],
    }
    print(json.dumps(result, indent=1))
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
