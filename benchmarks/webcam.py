"""The demo's webcam tab: frames a second and latency per frame, through its streaming endpoint.

    python benchmarks/webcam.py [--frames 150] [--runs 3]

Starts `python demo.py` and streams a recording through the Webcam tab's endpoint as a browser
does (agejax.app.stream_client): one 640x480 JPEG frame after another, each sent when the last
one's annotated frame is back. The recording is examples/grace_hopper.jpg walking across a grey
scene, one face in view. Reports, per run and as the median over runs, frames a second (frames over
the stream's wall time) and each frame's latency (send to annotated frame back, median and 90th
percentile), after 10 warm-up frames. Writes benchmarks/results/webcam.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from demo_latency import free_port, start_server

from agejax.app.stream_client import WebcamStream, moving_face_frames

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "webcam.json"
WARMUP_FRAMES = 10
FRAME_SIZE = (640, 480)


def stream_once(url: str, frames: list[np.ndarray]) -> dict:
    with WebcamStream(url) as stream:
        for frame in frames[:WARMUP_FRAMES]:
            stream.send(frame)
        start = time.perf_counter()
        for frame in frames[WARMUP_FRAMES:]:
            stream.send(frame)
        wall = time.perf_counter() - start
        latencies = np.asarray(stream.latencies_s[WARMUP_FRAMES:]) * 1000
    return {"frames": len(latencies), "frames_per_s": round(len(latencies) / wall, 2),
            "latency_ms_median": round(float(np.median(latencies)), 1),
            "latency_ms_p90": round(float(np.percentile(latencies, 90)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="timed frames per run (default 150)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frames = moving_face_frames(WARMUP_FRAMES + args.frames, FRAME_SIZE)
    port = free_port()
    server, startup_s = start_server(port, ["demo.py"])
    try:
        runs = [stream_once(f"http://127.0.0.1:{port}/", frames) for _ in range(args.runs)]
    finally:
        server.terminate()
        server.wait()
    result = {
        "command": "python benchmarks/webcam.py " + f"--frames {args.frames} --runs {args.runs}",
        "frame_size": list(FRAME_SIZE),
        "model": "the demo's default (checkpoints/, lowest validation MAE), HOG detector",
        "runs": runs,
        "frames_per_s_median": statistics.median(r["frames_per_s"] for r in runs),
        "latency_ms_median": statistics.median(r["latency_ms_median"] for r in runs),
        "latency_ms_p90_median": statistics.median(r["latency_ms_p90"] for r in runs),
        "demo_startup_s": round(startup_s, 2),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
