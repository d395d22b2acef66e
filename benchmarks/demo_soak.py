"""A demo that runs for days: the server's memory and disk while it answers many requests.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/demo_soak.py [--requests 600] [--every 50]

Starts `python demo.py` with its own Gradio cache and temporary folders, then sends
--requests requests one after another: three in four to /estimate, each with a new file
(the same photo with another JPEG comment: Gradio stores identical uploads once),
one in four to /batch with three files.
Every --every requests it records the resident memory of the server and its children and
the bytes under its Gradio cache and temporary folders. Writes
benchmarks/results/demo_soak.json: the samples, and the growth per request over the second
half of the run (the first half includes warm-up).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from demo_latency import free_port, start_server
from gradio_client import Client, handle_file
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "demo_soak.json"


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def server_rss(server: psutil.Process) -> int:
    return sum(process.memory_info().rss for process in [server, *server.children(recursive=True)])


def growth_per_request(samples: list[dict], key: str) -> float:
    """Least-squares slope of key against requests over the second half of the samples."""
    half = samples[len(samples) // 2 :]
    return float(np.polyfit([s["requests"] for s in half], [s[key] for s in half], 1)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--every", type=int, default=50, help="requests between samples (default 50)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agejax_soak_"))
    gradio_cache, temporary = work / "gradio", work / "tmp"
    gradio_cache.mkdir()
    temporary.mkdir()
    portrait = Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB")
    photo = work / "photo.jpg"
    batch_files = [handle_file(str(REPO / "examples" / name)) for name in ("group.jpg", "utkface_4.jpg", "utkface_31.jpg")]

    port = free_port()
    server, ready_s = start_server(port, ["demo.py"], {"GRADIO_TEMP_DIR": str(gradio_cache), "TMPDIR": str(temporary)})
    samples = []
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        process = psutil.Process(server.pid)
        start = time.perf_counter()
        for request in range(1, args.requests + 1):
            if request % 4:
                portrait.save(photo, quality=90, comment=f"request {request}")  # a new file every time
                _, table, _ = client.predict(handle_file(str(photo)), "cnn", False, False, api_name="/estimate")
                assert len(table["data"]) == 1, table
            else:
                table, _, _ = client.predict(batch_files, "cnn", False, False, api_name="/batch")
                assert len(table["data"]) == 5, table  # 3 faces in the group photo, 2 crops scored whole
            if request % args.every == 0:
                samples.append({"requests": request, "seconds": round(time.perf_counter() - start, 1),
                                "rss_mib": round(server_rss(process) / 2**20, 1),
                                "gradio_cache_mib": round(folder_bytes(gradio_cache) / 2**20, 2),
                                "temporary_mib": round(folder_bytes(temporary) / 2**20, 2)})
                print(samples[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    results = {
        "command": f"python benchmarks/demo_soak.py --requests {args.requests} --every {args.every}",
        "ready_seconds": round(ready_s, 1),
        "growth_per_request_second_half": {
            key: round(growth_per_request(samples, key) * 1024, 2) for key in ("rss_mib", "gradio_cache_mib", "temporary_mib")
        },
        "growth_unit": "KiB per request",
        "samples": samples,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
