"""A demo that runs for days: the server's memory and disk while it answers many requests.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/demo_soak.py [--requests 1000] [--every 100] [--cache-minutes 2]

Starts `python demo.py --cache-minutes M` with its own Gradio cache and temporary folders,
then sends --requests mixed requests: one in ten a broken file (a truncated JPEG) to
/estimate, one in four to /batch with three files, the rest to /estimate, each with a new
file (the same photo with another JPEG comment: Gradio stores identical uploads once).
They come in blocks of --every requests, one after another and from 10 clients at once in
turn, so the warm-up (the first two blocks) has seen both. Every answer is checked. After
each block it records the resident memory of the server and its children, their open file
descriptors, and the bytes under its Gradio cache and temporary folders.

The demo deletes uploads and answers from Gradio's cache after an hour; the soak sets a
few minutes, so that the sweep a multi-day server relies on runs within the soak and the
cache's plateau shows. Writes benchmarks/results/demo_soak.json: the samples, the growth
of memory after warm-up, and the growth per request over the second half of the run.
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


def send(client: Client, request: int, work: Path, portrait: Image.Image, batch_files: list):
    """Submits request number `request` (its kind follows from the number); returns a check."""
    if request % 10 == 0:
        broken = work / f"broken_{request}.jpg"
        broken.write_bytes((REPO / "examples" / "grace_hopper.jpg").read_bytes()[:3000])
        job = client.submit(handle_file(str(broken)), "cnn", False, False, api_name="/estimate")
        return job, lambda answer: answer[0] is None and "could not be used" in answer[2]
    if request % 4 == 0:
        job = client.submit(batch_files, "cnn", False, False, api_name="/batch")
        return job, lambda answer: len(answer[0]["data"]) == 5  # 3 faces in the group photo, 2 crops whole
    photo = work / f"photo_{request}.jpg"
    portrait.save(photo, quality=90, comment=f"request {request}")  # a new file every time
    job = client.submit(handle_file(str(photo)), "cnn", False, False, api_name="/estimate")
    return job, lambda answer: len(answer[1]["data"]) == 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="requests between samples (default 100)")
    parser.add_argument("--clients", type=int, default=10, help="clients at once in every other block (default 10)")
    parser.add_argument("--cache-minutes", type=float, default=2.0, help="the demo's --cache-minutes (default 2)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agejax_soak_"))
    gradio_cache, temporary, uploads = work / "gradio", work / "tmp", work / "uploads"
    for folder in (gradio_cache, temporary, uploads):
        folder.mkdir()
    portrait = Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB")
    batch_files = [handle_file(str(REPO / "examples" / name)) for name in ("group.jpg", "utkface_4.jpg", "utkface_31.jpg")]

    port = free_port()
    server, ready_s = start_server(port, ["demo.py", "--cache-minutes", str(args.cache_minutes)],
                                   {"GRADIO_TEMP_DIR": str(gradio_cache), "TMPDIR": str(temporary)})
    samples, failed = [], []
    try:
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False)
        process = psutil.Process(server.pid)
        start = time.perf_counter()
        request = 0
        while request < args.requests:
            together = args.clients if (request // args.every) % 2 else 1
            block_end = (request // args.every + 1) * args.every
            numbers = range(request + 1, min(request + together, block_end, args.requests) + 1)
            # Visitors at once each come with their own client, as browsers do.
            senders = [client] if together == 1 else [Client(url, verbose=False) for _ in numbers]
            sent = [send(sender, number, uploads, portrait, batch_files) for sender, number in zip(senders, numbers)]
            for number, (job, check) in zip(numbers, sent):
                if not check(job.result(timeout=600)):
                    failed.append(number)
            for number in numbers:
                (uploads / f"photo_{number}.jpg").unlink(missing_ok=True)
                (uploads / f"broken_{number}.jpg").unlink(missing_ok=True)
            request = numbers[-1]
            if request // args.every > (request - len(numbers)) // args.every:
                everyone = [process, *process.children(recursive=True)]
                samples.append({"requests": request, "seconds": round(time.perf_counter() - start, 1),
                                "clients_at_once": together,
                                "rss_mib": round(server_rss(process) / 2**20, 1),
                                "open_files": sum(p.num_fds() for p in everyone),
                                "gradio_cache_mib": round(folder_bytes(gradio_cache) / 2**20, 2),
                                "temporary_mib": round(folder_bytes(temporary) / 2**20, 2)})
                print(samples[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    warm = samples[1]  # after one block of each kind
    later = samples[2:] or samples[-1:]
    results = {
        "command": f"python benchmarks/demo_soak.py --requests {args.requests} --every {args.every} "
                   f"--clients {args.clients} --cache-minutes {args.cache_minutes:g}",
        "ready_seconds": round(ready_s, 1),
        "requests_answered_wrongly": failed,
        "rss_mib_after_warmup": warm["rss_mib"],
        "rss_mib_max_after_warmup": max(s["rss_mib"] for s in later),
        "rss_growth_after_warmup_percent": round(100 * (max(s["rss_mib"] for s in later) / warm["rss_mib"] - 1), 1),
        "gradio_cache_mib_max": max(s["gradio_cache_mib"] for s in samples),
        "growth_per_request_second_half": {
            key: round(growth_per_request(samples, key) * 1024, 2) for key in ("rss_mib", "gradio_cache_mib", "temporary_mib")
        },
        "open_files_first_last": [samples[0]["open_files"], samples[-1]["open_files"]],
        "growth_unit": "KiB per request",
        "samples": samples,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
