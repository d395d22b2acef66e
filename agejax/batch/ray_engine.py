"""Batch scoring on Ray Data: the same CSV rows as the local engine, from a Ray cluster.

The driver walks the folder (the same order, shards and resume as ``agejax.batch``)
and writes the CSV. Ray Data reads each file, decodes it and finds its faces in tasks
(one row per face, or one row with the reason there is none), and a pool of actors,
each loading the model once, scores the faces in full batches. Ray retries the work of
a task or actor that dies, so a lost worker costs time, not rows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
from tqdm import tqdm

from agejax import scoring
from agejax.batch import local, sink, walk
from agejax.faces.face import Face
from agejax.scoring import FoundFaces

if TYPE_CHECKING:
    from agejax.serving.predict import Predictor

BOX = ("left", "top", "right", "bottom")
SCORES = ("age", "std", "low90", "high90", "p_under18")


def start(address: str | None = None, quiet: bool = False) -> None:
    """Joins the cluster at `address`, or starts a local one sized to this machine (once per process).

    A local cluster is of this machine alone, on the loopback address. Ray's warnings and
    notes stay in its session's log files; with `quiet`, its core's error lines too (e.g. a
    note about actor restarts that does not apply here), and the line its core prints on
    reading that log level while it starts.
    """
    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's single-node mode: 127.0.0.1
    elif address != "auto":
        check_reachable(address)
    if quiet:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # read by Ray's core when it starts
    import ray
    import ray.data

    if ray.is_initialized():
        return
    with stderr_silenced(quiet):
        ray.init(
            address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
            logging_level=logging.ERROR, log_to_driver=False,
        )
    for handler in logging.getLogger("ray.data").handlers:  # the terminal's, not the session log file's
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in walk order
    context.enable_progress_bars = False  # our own bar counts files
    context.print_on_execution_start = False


@contextlib.contextmanager
def stderr_silenced(silenced: bool) -> Iterator[None]:
    """Points file descriptor 2 at /dev/null meanwhile: Ray's C++ core writes there, not to sys.stderr."""
    if not silenced:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def check_reachable(address: str) -> None:
    """Raises ConnectionError unless something accepts connections at HOST:PORT (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise ConnectionError(f"nothing answers at {address} ({err})") from None


def face_rows(item: dict, root: str, options: local.ReadOptions) -> list[dict]:
    """One file's rows for the scorer: one per face found, or one carrying the reason there is none."""
    if item["error"]:
        found = FoundFaces(error=item["error"])
    else:
        found = local.read_file(Path(root), item["path"], options).found
    base = {"order": item["order"], "path": item["path"]}
    if found.error:
        blank = np.zeros((options.image_size, options.image_size, 3), np.uint8)
        return [{**base, "face": -1, "crop": "", "detector": "", **dict.fromkeys(BOX, 0), "chip": blank,
                 "error": found.error}]
    return [
        {**base, "face": index, "crop": face.crop, "detector": face.detector, **dict(zip(BOX, face.box)),
         "chip": face.chip, "error": ""}
        for index, face in enumerate(found.faces)
    ]


class FaceScorer:
    """A Ray actor's model: loaded once, then ages for every face row of each batch it is given."""

    def __init__(self, model: str, flip: bool, batch_size: int):
        from agejax.serving.predict import Predictor

        self.predictor = Predictor.load(model, flip=flip)
        self.batch_size = batch_size

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        faces = np.flatnonzero(rows["error"] == "")
        output = {name: values for name, values in rows.items() if name != "chip"}
        for name in SCORES:
            output[name] = np.full(len(rows["order"]), np.nan)  # nan: no face, or no uncertainty
        if len(faces):
            # The local engine's call: an age does not depend on its neighbours (see score_chips).
            scores = scoring.score_chips(self.predictor, rows["chip"][faces], self.batch_size)
            for name in SCORES:
                if getattr(scores, name) is not None:
                    output[name][faces] = getattr(scores, name)
        return output


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def scored_files(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[tuple[str, FoundFaces]]:
    """(path, its scored faces or its error) per file, from the scorer's rows in walk order.

    A file's rows may straddle two batches, so a file is yielded once the next one begins.
    """
    rows: list[dict] = []
    for columns in batches:
        for i in range(len(columns["order"])):
            row = {name: values[i] for name, values in columns.items()}
            if rows and row["order"] != rows[0]["order"]:
                yield _scored_file(rows)
                rows = []
            rows.append(row)
    if rows:
        yield _scored_file(rows)


def _scored_file(rows: list[dict]) -> tuple[str, FoundFaces]:
    path, error = str(rows[0]["path"]), str(rows[0]["error"])
    if error:
        return path, FoundFaces(error=error)
    faces = [
        Face(tuple(int(row[name]) for name in BOX), detector=str(row["detector"]), crop=str(row["crop"]),
             age=float(row["age"]), **{name: _none_if_nan(row[name]) for name in SCORES[1:]})
        for row in rows
    ]
    return path, FoundFaces(faces=faces)


def run(job: walk.BatchJob, out: TextIO, predictor: Predictor) -> sink.Summary:
    """Scores the job's files into `out` (a CSV opened by sink.open_output) on Ray.

    Uses the cluster `start` joined, or starts a local one. `predictor` names the model,
    its input size and whether it flips; each actor loads its own copy.
    """
    import ray

    from agejax.serving.predict import CHECKPOINTS

    start()
    summary = sink.Summary()
    options = local.ReadOptions(predictor.image_size, job.aligned, job.whole_if_no_face, job.detector)
    items = [
        {"order": order, "path": relative, "error": error}
        for order, (relative, error) in enumerate(job.files(summary.skip))
    ]
    start_time = time.perf_counter()
    if items:
        # One scoring actor per 4 CPUs: each runs JAX on its node's cores; the other CPUs decode and detect.
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // 4)
        # A shipped model by name, so each node loads its own installed copy; any other by its path.
        shipped = predictor.path == CHECKPOINTS / predictor.path.name
        model = predictor.path.name if shipped else str(predictor.path)
        dataset = (
            # A block of batch_size files: aligned crops then fill one model call per scorer task.
            ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / job.batch_size))
            .flat_map(face_rows, fn_kwargs={"root": str(Path(job.root).resolve()), "options": options})
            .map_batches(
                FaceScorer, fn_constructor_args=(model, predictor.flip, job.batch_size),
                batch_size=job.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
            )
        )
        batches = dataset.iter_batches(batch_size=None, batch_format="numpy")
        csv_sink = sink.CsvSink(out, predictor.name, summary)
        with tqdm(total=len(items), unit="img", file=sys.stderr, disable=not job.progress, smoothing=0.1) as bar:
            for scored in scored_files(batches):
                csv_sink.write([scored])  # flushed: a killed driver loses no finished file; --resume goes on
                bar.update()
    summary.seconds = time.perf_counter() - start_time
    return summary
