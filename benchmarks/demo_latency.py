"""Demo latency and throughput through gradio_client, against a real `python demo.py` server.

    python benchmarks/demo_latency.py [--baseline REV]

Starts demo.py on a free port (and reports how long it takes to be ready), then for
each shipped model sends one 640 px photo with one face: sequentially (median and p90
latency from request to response), and from 10 concurrent clients (the queue batches
their requests). First it measures Gradio's own floor on this machine: an app with the
same inputs and outputs that does no work. With ``--baseline REV`` it also serves the demo of
an earlier commit (checked out into a temporary git worktree, run by the same Python) beside this
one and alternates the default model's calls between the two, so a change's cost is measured
in the same run.
Writes benchmarks/results/demo_latency.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from gradio_client import Client, handle_file
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "demo_latency.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, command: list[str], env: dict | None = None, cwd: Path = REPO) -> tuple[subprocess.Popen, float]:
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, *command, "--port", str(port)], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})})
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=1).status_code == 200:
                return server, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.perf_counter() - start > 180:
            raise RuntimeError("demo.py did not start")
        time.sleep(0.2)


def serve_floor(port: int) -> None:
    """A do-nothing app with the Estimate endpoint's inputs and outputs: Gradio's own share of the latency."""
    import gradio as gr

    with gr.Blocks() as app:
        photo, model, aligned, whole = gr.Image(type="filepath"), gr.Radio(["cnn"]), gr.Checkbox(), gr.Checkbox()
        outputs = [gr.Image(type="pil", format="jpeg"), gr.Dataframe(headers=["face", "age"]), gr.Markdown(), gr.JSON()]

        def echo(paths, *_):
            return [[Image.open(p).convert("RGB") for p in paths], [[[0, 30.0]]] * len(paths), ["ok"] * len(paths),
                    [{"faces": []}] * len(paths)]

        gr.Button().click(echo, [photo, model, aligned, whole], outputs, api_name="estimate", batch=True,
                          max_batch_size=16)
    app.queue().launch(server_name="127.0.0.1", server_port=port, quiet=True)


def timed_call(client: Client, photo: Path, model: str) -> float:
    start = time.perf_counter()
    # [1]: earlier demos answer fewer outputs than this one
    table = client.predict(handle_file(str(photo)), model, False, False, api_name="/estimate")[1]
    elapsed = time.perf_counter() - start
    if len(table["data"]) != 1:
        raise RuntimeError(f"expected one face, got {table['data']}")
    return elapsed


def sequential_calls(url: str, photo: Path, model: str, calls: int) -> list[float]:
    """Seconds per call, one call after another, after 5 warm-up calls."""
    client = Client(url, verbose=False)
    for _ in range(5):
        timed_call(client, photo, model)
    return [timed_call(client, photo, model) for _ in range(calls)]


def time_baseline(revision: str, url: str, photo: Path, model: str, calls: int) -> dict:
    """The default model's calls alternated between this demo and the demo of an earlier commit.

    Both servers run at once and each call to one is followed by the same call to the other,
    so a drift of the machine's speed touches both alike; the paired differences give the cost.
    """
    worktree = Path(tempfile.mkdtemp()) / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(worktree), revision], cwd=REPO, check=True)
    try:
        port = free_port()
        server, _ = start_server(port, [str(worktree / "demo.py")], cwd=worktree)
        try:
            this, earlier = Client(url, verbose=False), Client(f"http://127.0.0.1:{port}/", verbose=False)
            for _ in range(5):
                timed_call(this, photo, model), timed_call(earlier, photo, model)  # warm-up
            pairs = [(timed_call(this, photo, model), timed_call(earlier, photo, model)) for _ in range(calls)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"revision": commit, "model": model, "alternated_calls": calls,
            "this_median_ms": round(1000 * statistics.median(a for a, _ in pairs), 1),
            "baseline_median_ms": round(1000 * statistics.median(b for _, b in pairs), 1),
            "median_difference_ms": round(1000 * statistics.median(a - b for a, b in pairs), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30, help="sequential calls per model (default 30)")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--calls-per-client", type=int, default=5)
    parser.add_argument("--baseline", metavar="REV",
                        help="also serve the demo of this earlier commit and alternate the default model's calls")
    parser.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        serve_floor(args.port)
        return 0

    # One photo per client, each a pixel different: real users send different photos, and
    # identical outputs would share one cached file that Gradio rewrites while others read it.
    folder = Path(tempfile.mkdtemp())
    portrait = Image.open(REPO / "examples" / "grace_hopper.jpg")
    portrait = portrait.resize((round(portrait.width * 640 / portrait.height), 640))
    photos = []
    for k in range(args.clients):
        portrait.putpixel((k, 0), (k, k, k))
        photos.append(folder / f"photo{k}.jpg")
        portrait.save(photos[-1], quality=90)
    photo = photos[0]

    # Gradio's floor first: the same endpoint shape with no work behind it.
    port = free_port()
    floor_server, _ = start_server(port, [__file__, "--floor-server"])
    try:
        floor_client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        floor = [timed_call(floor_client, photo, "cnn") for _ in range(5 + args.calls)][5:]
    finally:
        floor_server.terminate()
        floor_server.wait(timeout=30)
    floor_ms = 1000 * statistics.median(floor)
    print(f"Gradio floor (same inputs and outputs, no work): median {floor_ms:.1f} ms")

    port = free_port()
    server, ready_s = start_server(port, [str(REPO / "demo.py")])
    url = f"http://127.0.0.1:{port}/"
    command = "python benchmarks/demo_latency.py" + (f" --baseline {args.baseline}" if args.baseline else "")
    results = {"command": command, "ready_seconds": round(ready_s, 1),
               "photo": f"{Image.open(photo).width} x 640 px, one face",
               "gradio_floor_median_ms": round(floor_ms, 1), "models": {}}
    print(f"demo.py ready in {ready_s:.1f} s; photo {results['photo']}")
    try:
        config = httpx.get(f"{url}config").json()
        radio = next(c for c in config["components"] if c.get("props", {}).get("label") == "model")
        models = [choice[1] for choice in radio["props"]["choices"]]
        for model in models:
            sequential = sequential_calls(url, photo, model, args.calls)
            clients = [Client(url, verbose=False) for _ in range(args.clients)]

            def one_client(c: Client, own_photo: Path, model: str = model) -> list[float]:
                return [timed_call(c, own_photo, model) for _ in range(args.calls_per_client)]

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                concurrent_latencies = [t for ts in pool.map(one_client, clients, photos) for t in ts]
            wall = time.perf_counter() - start
            alone_ms = 1000 * statistics.median(sequential)
            row = {
                "sequential_median_ms": round(alone_ms, 1),
                "sequential_p90_ms": round(1000 * statistics.quantiles(sequential, n=10)[-1], 1),
                "concurrent_clients": args.clients,
                "concurrent_median_ms": round(1000 * statistics.median(concurrent_latencies), 1),
                "concurrent_requests_per_s": round(len(concurrent_latencies) / wall, 1),
                "sequential_requests_per_s": round(1000 / alone_ms, 1),
            }
            row["concurrent_slowdown"] = round(row["concurrent_median_ms"] / alone_ms, 2)
            results["models"][model] = row
            print(f"{model}: alone median {row['sequential_median_ms']} ms (p90 {row['sequential_p90_ms']}); "
                  f"{args.clients} clients at once: median {row['concurrent_median_ms']} ms "
                  f"({row['concurrent_slowdown']}x alone, not {args.clients}x), "
                  f"{row['concurrent_requests_per_s']} req/s vs {row['sequential_requests_per_s']} alone")
        if args.baseline:
            baseline = time_baseline(args.baseline, url, photo, models[0], args.calls)
            results["baseline"] = baseline
            print(f"{models[0]}, calls alternated with the demo at {baseline['revision']}: median {baseline['this_median_ms']} "
                  f"against {baseline['baseline_median_ms']} ms; median difference {baseline['median_difference_ms']:+.1f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
