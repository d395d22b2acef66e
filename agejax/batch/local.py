"""Scoring a directory of images into a CSV: one row per face, streamed, resumable, shardable.

Files are walked in a fixed order, decoded and aligned in worker processes, and
scored by the model in full batches in the main process. Rows are written in walk
order and flushed after every batch, so a killed run leaves a valid CSV that
``resume`` continues. This module imports no JAX or Keras, so the workers start fast.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import io
import multiprocessing
import multiprocessing.pool
import os
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TextIO

import numpy as np
from tqdm import tqdm

from agejax import scoring
from agejax.data import labels
from agejax.data.images import IMAGE_SUFFIXES
from agejax.scoring import NO_FACE, FaceAge, FoundFaces

if TYPE_CHECKING:
    from agejax.serving.predict import Predictor

COLUMNS = (
    "path", "face", "crop", "detector", "left", "top", "right", "bottom", "age", "std", "low90", "high90", "model", "error",
)
FILE_TIMEOUT = 300  # seconds one file may take in a worker


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int  # counts from 0
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' with 0 <= I < N."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"shard {text!r} is not I/N, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {text!r}: need 0 <= I < N")
        return cls(index, count)

    def owns(self, relative_path: str) -> bool:
        # A hash of the path, not its position, so every machine decides alone and
        # files added later do not move the others between shards.
        return zlib.crc32(relative_path.encode("utf-8", "surrogateescape")) % self.count == self.index


def walk_images(root: Path) -> Iterator[tuple[str, str]]:
    """(relative POSIX path, error) for each image file under root, in a fixed sorted order.

    Directory symlinks are followed once; a directory reached again (a symlink loop)
    is reported with an error instead of being walked forever. Hidden entries and
    files without an image suffix are ignored.
    """
    seen: set[tuple[int, int]] = set()

    def visit(directory: Path, relative: str) -> Iterator[tuple[str, str]]:
        try:
            status = directory.stat()
            key = (status.st_dev, status.st_ino)
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as err:
            yield relative, f"cannot list directory ({err.strerror or type(err).__name__})"
            return
        if key in seen:
            yield relative, "symlink loop: directory already scanned"
            return
        seen.add(key)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = f"{relative}/{entry.name}" if relative else entry.name
            if "\n" in path or "\r" in path:
                yield path.encode("unicode_escape").decode("ascii"), "file name contains a line break"
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:  # e.g. a symlink loop: let the file read report it
                is_dir = False
            if is_dir:
                yield from visit(Path(entry.path), path)
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                yield path, ""

    yield from visit(Path(root), "")


# Worker side: read, decode, find faces.


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
        image = scoring.read(root / relative)
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


# The output CSV.


class OutputError(Exception):
    """The output CSV cannot be used: it exists without resume, or belongs to another model."""


def open_output(path: Path, resume: bool, model_name: str) -> tuple[TextIO, set[str]]:
    """Opens the CSV for appending and returns the paths it already holds.

    With resume, a partial last line from a killed run is cut, and so are the rows of
    the last path in the file (it may have more faces than were written); that path
    is scored again.
    """
    header = ",".join(COLUMNS) + "\r\n"
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    if path.exists() and path.stat().st_size > 0:
        if not resume:
            raise OutputError(f"{path} exists: pass --resume to continue it, or choose another -o")
        done, keep_bytes = _completed_rows(path, header, model_name)
        handle = open(path, "r+", encoding="utf-8", errors="surrogateescape", newline="")
        handle.truncate(keep_bytes)
        handle.seek(keep_bytes)
        return handle, done
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w", encoding="utf-8", errors="surrogateescape", newline="")
    handle.write(header)
    handle.flush()
    return handle, set()


def _completed_rows(path: Path, header: str, model_name: str) -> tuple[set[str], int]:
    done: set[str] = set()
    with open(path, "rb") as handle:
        first = handle.readline()
        if first.decode("utf-8", "replace") != header:
            raise OutputError(f"{path} is not a CSV written by batch_predict (its header differs)")
        offset = last_start = len(first)
        last_path = None
        for line in handle:
            if not line.endswith(b"\n"):
                break  # cut off mid-line by a kill
            row = next(csv.reader([line.decode("utf-8", "surrogateescape")]))
            if len(row) != len(COLUMNS):
                break
            row_model, row_path = from_spreadsheet(row[COLUMNS.index("model")]), from_spreadsheet(row[0])
            if row_model not in ("", model_name):
                raise OutputError(f"{path} holds rows of model {row_model!r}, not {model_name!r}")
            if row_path != last_path:
                last_path, last_start = row_path, offset
                done.add(row_path)
            offset += len(line)
    if last_path is None:
        return done, offset
    done.discard(last_path)
    return done, last_start


# Spreadsheets run a cell that begins with one of these as a formula (OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet shows as text: a leading quote before a formula start, or before a quote.

    Quoting a leading quote too keeps the mapping reversible (``from_spreadsheet``).
    """
    return "'" + text if text.startswith((*FORMULA_STARTS, "'")) else text


def from_spreadsheet(text: str) -> str:
    """The text that spreadsheet_safe was given."""
    return text[1:] if text.startswith("'") else text


def rows_of(path: str, error: str, faces: list[FaceAge], model_name: str) -> list[list]:
    """CSV rows of one file: one per face, or one with the error. Text cells are spreadsheet-safe."""
    path, model_name = spreadsheet_safe(path), spreadsheet_safe(model_name)
    if error:
        return [[path, *[""] * (len(COLUMNS) - 3), model_name, spreadsheet_safe(error)]]
    rows = []
    for index, face in enumerate(faces):
        std, low, high = ("" if v is None else f"{v:.{digits}f}"
                          for v, digits in ((face.std, 2), (face.low90, 1), (face.high90, 1)))
        rows.append([path, index, face.crop, face.detector, *face.box, f"{face.age:.2f}", std, low, high,
                     model_name, ""])
    return rows


# The run.


@dataclasses.dataclass
class Summary:
    images: int = 0  # files handled in this run, errors included
    faces: int = 0
    faces_by_detector: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: int = 0  # files with an error other than "no face found"
    no_face: int = 0
    skipped: int = 0  # already in the CSV (resume)
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        found_by = ", ".join(f"{name} {count}" for name, count in sorted(self.faces_by_detector.items()))
        text = (
            f"images {self.images}, faces {self.faces}{f' ({found_by})' if found_by else ''}, errors {self.errors}, "
            f"no face {self.no_face}, {rate:.1f} img/s ({self.seconds:.1f} s)"
        )
        return text + (f", {self.skipped} already in the CSV" if self.skipped else "")

    def add(self, found: FoundFaces) -> None:
        """Counts one handled file."""
        self.images += 1
        self.faces += len(found.crops)
        self.faces_by_detector.update(name for name in found.detectors if name)
        self.no_face += found.error == NO_FACE
        self.errors += bool(found.error) and found.error != NO_FACE


class _BatchScorer:
    """Collects chips until a batch is full, scores it, and writes finished files' rows in order."""

    def __init__(self, predictor: Predictor, batch_size: int, out: TextIO):
        self.predictor = predictor
        self.batch_size = batch_size
        self.out = out
        self.waiting: collections.deque[FileResult] = collections.deque()
        self.chips: list[np.ndarray] = []  # chips not yet scored, in file order
        self.scores: list[tuple] = []  # (age, std, low90, high90) per scored chip not yet written

    def add(self, result: FileResult) -> None:
        self.waiting.append(result)
        if result.found.chips is not None:
            self.chips.extend(result.found.chips)
        if len(self.chips) >= self.batch_size:
            self._score(len(self.chips) // self.batch_size * self.batch_size)
        elif not self.chips:
            self._write_finished()  # only errors are waiting

    def finish(self) -> None:
        if self.chips:
            self._score(len(self.chips))
        self._write_finished()

    def _score(self, count: int) -> None:
        batch = np.stack(self.chips[:count])
        del self.chips[:count]
        self.scores += scoring.score_chips(self.predictor, batch, self.batch_size)
        self._write_finished()

    def _write_finished(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        while self.waiting:
            result = self.waiting[0]
            faces = result.found.count
            if faces > len(self.scores):
                break
            scores, self.scores = self.scores[:faces], self.scores[faces:]
            faces = scoring.face_ages(result.found, scores)
            writer.writerows(rows_of(result.path, result.found.error, faces, self.predictor.name))
            self.waiting.popleft()
        if buffer.tell():
            self.out.write(buffer.getvalue())
            self.out.flush()


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


def files_to_score(root: Path, shard: Shard | None, done: set[str], summary: Summary) -> Iterator[tuple[str, str]]:
    """walk_images' (relative path, error) pairs of this shard that are not done yet; counts the skipped."""
    for relative, error in walk_images(root):
        if shard is not None and not shard.owns(relative):
            continue
        if relative in done:
            summary.skipped += 1
            continue
        yield relative, error


def run(
    root: Path,
    out: TextIO,
    predictor: Predictor,
    *,
    aligned: bool = False,
    whole_if_no_face: bool = False,
    batch_size: int = 64,
    done: set[str] | None = None,
    shard: Shard | None = None,
    workers: int | None = None,
    pool: multiprocessing.pool.Pool | None = None,
    progress: bool = True,
    detector: str = "auto",
) -> Summary:
    """Scores every image under root into `out` (a CSV opened by open_output).

    Reads with `pool` (from reader_pool, with the same `aligned`) where given, otherwise
    with `workers` processes of its own.
    """
    done = done or set()
    summary = Summary()
    options = ReadOptions(predictor.image_size, aligned, whole_if_no_face, detector)
    root = Path(root)

    def jobs() -> Iterator[tuple[Path, str, str, ReadOptions]]:
        for relative, error in files_to_score(root, shard, done, summary):
            yield root, relative, error, options

    scorer = _BatchScorer(predictor, batch_size, out)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(reader_pool(aligned, workers))
        results = map(_read_job, jobs()) if pool is None else _in_order(pool, jobs(), window=2 * batch_size + 32)
        bar = stack.enter_context(tqdm(unit="img", file=sys.stderr, disable=not progress, smoothing=0.1))
        for result in results:
            summary.add(result.found)
            scorer.add(result)
            bar.update()
        scorer.finish()
    summary.seconds = time.perf_counter() - start
    return summary


# Labelled inputs: MAE and the decade confusion through the evaluation code.


def labelled_rows(csv_path: Path, ages: dict[str, float] | None = None) -> dict[str, np.ndarray] | None:
    """True and predicted ages of the labelled images in a batch CSV (the first, largest face of each).

    Labels come from a path,age mapping, or else from UTKFace file names. None when no row is labelled.
    """
    true, predicted, stds, genders, races = [], [], [], [], []
    with open(csv_path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        for row in csv.DictReader(handle):
            if row["face"] != "0" or not row["age"]:
                continue
            gender = race = -1
            path = from_spreadsheet(row["path"])
            if ages is not None:
                age = ages.get(str(PurePosixPath(path)))
                if age is None:
                    continue
            else:
                try:
                    parsed = labels.parse_name(path)
                except labels.MalformedName:
                    continue
                age, gender, race = parsed.age, parsed.gender, parsed.race
            true.append(age)
            predicted.append(float(row["age"]))
            stds.append(float(row["std"]) if row["std"] else np.nan)
            genders.append(gender)
            races.append(race)
    if not true:
        return None
    return {
        "true": np.array(true, np.float64),
        "predicted": np.array(predicted),
        "std": None if np.isnan(stds).any() else np.array(stds),
        "genders": None if ages is not None else np.array(genders),
        "races": None if ages is not None else np.array(races),
    }


def normalized_labels(ages: dict[str, float]) -> dict[str, float]:
    """A labels CSV's paths in the form the batch CSV writes them (POSIX, relative, no ./)."""
    return {str(PurePosixPath(path.replace(os.sep, "/"))): age for path, age in ages.items()}
