"""The local batch engine: a folder into the batch CSV with worker processes on this machine.

Files are walked in a fixed order (agejax.batch.walk), decoded and aligned in worker processes,
and scored by the model in full batches in the main process; finished files go to the CSV sink
in walk order (agejax.batch.sink). This module imports no JAX or Keras, so the workers start fast.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.pool
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
from tqdm import tqdm

from agejax import scoring
from agejax.batch.sink import CsvSink, Summary
from agejax.batch.walk import BatchJob
from agejax.scoring import FoundFaces

if TYPE_CHECKING:
    from agejax.serving.predict import Predictor

FILE_TIMEOUT = 300  # seconds one file may take in a worker


@dataclasses.dataclass
class FileResult:
    path: str  # relative to the root, as written to the CSV
    found: FoundFaces


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    image_size: int  # the model's input size
    aligned: bool  # inputs are aligned face crops: no detection
    whole_if_no_face: bool
    detector: str = "auto"  # one of agejax.faces.DETECTORS


def prepare_reader(aligned: bool) -> None:
    """Loads the face detector in this process up front, unless inputs are aligned."""
    if not aligned:
        scoring.face_aligner()


def read_file(root: Path, relative: str, options: ReadOptions) -> FileResult:
    """Decodes one file and cuts its face chips; every failure becomes a short error."""
    try:
        image = scoring.read(root / relative, options.image_size if options.aligned else scoring.MAX_DECODE_SIDE)
    except scoring.UnusableImage as err:
        return FileResult(relative, FoundFaces(error=str(err)))
    found = scoring.find_faces(image, options.image_size, aligned=options.aligned,
                               whole_if_no_face=options.whole_if_no_face, detector=options.detector)
    return FileResult(relative, found)


def _read_job(job: tuple[Path, str, str, ReadOptions]) -> FileResult:
    root, relative, error, options = job
    if error:
        return FileResult(relative, FoundFaces(error=error))
    return read_file(root, relative, options)


def _in_order(pool, jobs: Iterator, window: int) -> Iterator[FileResult]:
    """pool results in job order, with at most `window` jobs in flight, so memory stays flat."""
    in_flight: collections.deque = collections.deque()

    def oldest() -> FileResult:
        relative, pending = in_flight.popleft()
        try:
            return pending.get(timeout=FILE_TIMEOUT)
        except multiprocessing.TimeoutError:  # a worker that died never answers
            return FileResult(relative, FoundFaces(error=f"no result within {FILE_TIMEOUT} s (the worker crashed or hung)"))

    for job in jobs:
        in_flight.append((job[1], pool.apply_async(_read_job, (job,))))
        if len(in_flight) >= window:
            yield oldest()
    while in_flight:
        yield oldest()


class BatchScorer:
    """Collects faces until a batch is full, scores it, and hands finished files to the sink in order."""

    def __init__(self, predictor: Predictor, batch_size: int, sink: CsvSink):
        self.predictor = predictor
        self.batch_size = batch_size
        self.sink = sink
        self.waiting: collections.deque[FileResult] = collections.deque()
        self.unscored: list = []  # faces not yet scored, in file order

    def add(self, result: FileResult) -> None:
        self.waiting.append(result)
        self.unscored.extend(result.found.faces)
        if len(self.unscored) >= self.batch_size:
            self._score(len(self.unscored) // self.batch_size * self.batch_size)
        elif not self.unscored:
            self._write_finished()  # only errors are waiting

    def finish(self) -> None:
        if self.unscored:
            self._score(len(self.unscored))
        self._write_finished()

    def _score(self, count: int) -> None:
        faces, self.unscored = self.unscored[:count], self.unscored[count:]
        scores = scoring.score_chips(self.predictor, np.stack([face.chip for face in faces]), self.batch_size)
        scoring.set_scores(faces, scores)
        self._write_finished()

    def _write_finished(self) -> None:
        finished = []
        while self.waiting and all(face.age is not None for face in self.waiting[0].found.faces):
            result = self.waiting.popleft()
            finished.append((result.path, result.found))
        self.sink.write(finished)


@contextlib.contextmanager
def reader_pool(aligned: bool, workers: int | None = None) -> Iterator[multiprocessing.pool.Pool | None]:
    """The processes that decode and detect (None for workers=0: this process reads).

    Started before the model loads, their start-up overlaps it (the CLI does this).
    """
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers == 0:  # no start-up cost, for a handful of files
        prepare_reader(aligned)
        yield None
        return
    context = multiprocessing.get_context("spawn")  # the main process runs JAX, which must not fork
    with context.Pool(workers, initializer=prepare_reader, initargs=(aligned,)) as pool:
        yield pool


def run(job: BatchJob, out: TextIO, predictor: Predictor, *, workers: int | None = None,
        pool: multiprocessing.pool.Pool | None = None) -> Summary:
    """Scores the job's files into `out` (a CSV opened by agejax.batch.sink.open_output).

    Reads with `pool` (from reader_pool, with the same `aligned`) where given, otherwise
    with `workers` processes of its own.
    """
    summary = Summary()
    options = ReadOptions(predictor.image_size, job.aligned, job.whole_if_no_face, job.detector)
    root = Path(job.root)

    def jobs() -> Iterator[tuple[Path, str, str, ReadOptions]]:
        for relative, error in job.files(summary.skip):
            yield root, relative, error, options

    scorer = BatchScorer(predictor, job.batch_size, CsvSink(out, predictor.name, summary))
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(reader_pool(job.aligned, workers))
        results = map(_read_job, jobs()) if pool is None else _in_order(pool, jobs(), window=2 * job.batch_size + 32)
        bar = stack.enter_context(tqdm(unit="img", file=sys.stderr, disable=not job.progress, smoothing=0.1))
        for result in results:
            scorer.add(result)
            bar.update()
        scorer.finish()
    summary.seconds = time.perf_counter() - start
    return summary
