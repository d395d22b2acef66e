"""The Ray engine against the local engine: the same 2,000 aligned crops, in one run.

    python benchmarks/ray_engine.py --source ../shared/data/utkface/

Writes benchmarks/results/ray_engine.json. Each engine scores the crops with the
default model as the batch CLI does (`--aligned`), alternately, --repeats times. Per run:
the whole time, start-up included (the local engine's worker processes; Ray's actors
loading the model), and the steady-state rate: files written after the first flushed
batch, over the time since it. Medians over the runs, and their ratios. The local Ray
cluster starts once, before the runs, and its start is timed apart (cluster_start_s).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from agejax.batch import local, ray_engine, walk
from agejax.data import labels, split
from agejax.serving.predict import Predictor, default_model

RESULTS = Path(__file__).resolve().parent / "results" / "ray_engine.json"


class TimedOutput(io.StringIO):
    """A CSV sink that notes when each write came and how many rows it held."""

    def __init__(self):
        super().__init__()
        self.writes: list[tuple[float, int]] = []

    def write(self, text: str) -> int:
        self.writes.append((time.perf_counter(), text.count("\n")))
        return super().write(text)


def timed_run(engine: str, folder: Path, predictor: Predictor) -> dict[str, float]:
    out = TimedOutput()
    start = time.perf_counter()
    if engine == "ray":
        summary = ray_engine.run(walk.BatchJob(folder, aligned=True, progress=False), out, predictor)
    else:
        summary = local.run(walk.BatchJob(folder, aligned=True, progress=False), out, predictor)
    end = time.perf_counter()
    first_time, first_rows = out.writes[0]
    rows = len(out.getvalue().splitlines())
    assert summary.images == rows, (summary.images, rows)
    return {"whole_s": end - start, "steady_img_per_s": (rows - first_rows) / (end - first_time), "images": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="UTKFace archives (or folder)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp()) / "crops"
    records = split.records_of(sorted(args.source.glob("*.tar.gz")) or [args.source], "test")[: args.images]
    labels.export_files(records, folder)
    predictor = Predictor.load(default_model())
    started = time.perf_counter()
    ray_engine.start()
    cluster_start_s = time.perf_counter() - started
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    for _ in range(args.repeats):
        for engine in runs:
            runs[engine].append(timed_run(engine, folder, predictor))
            print(engine, json.dumps(runs[engine][-1]))
    medians = {
        engine: {key: statistics.median(run[key] for run in results) for key in ("whole_s", "steady_img_per_s")}
        for engine, results in runs.items()
    }
    result = {
        "command": "python benchmarks/ray_engine.py --source " + str(args.source),
        "model": predictor.name,
        "images": len(records),
        "repeats": args.repeats,
        "cluster_start_s": cluster_start_s,
        "runs": runs,
        "median": medians,
        "ray_over_local_steady": medians["ray"]["steady_img_per_s"] / medians["local"]["steady_img_per_s"],
        "ray_over_local_whole": medians["local"]["whole_s"] / medians["ray"]["whole_s"],
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    summary = ("cluster_start_s", "median", "ray_over_local_steady", "ray_over_local_whole")
    print(json.dumps({k: result[k] for k in summary}, indent=2))


if __name__ == "__main__":
    main()
