"""The batch CSV: its columns, opening and resuming it, spreadsheet-safe cells, and one run's summary.

Both engines hand each scored file to a CsvSink in walk order; the sink writes its rows and
flushes them, so a killed run leaves a valid CSV that resume continues.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
from pathlib import Path
from typing import TextIO

from agejax.faces.face import Face
from agejax.scoring import NO_FACE, FoundFaces

COLUMNS = (
    "path", "face", "crop", "detector", "left", "top", "right", "bottom", "age", "std", "low90", "high90", "p_under18",
    "model", "error",
)


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


def rows_of(path: str, error: str, faces: list[Face], model_name: str) -> list[list]:
    """CSV rows of one file: one per face, or one with the error. Text cells are spreadsheet-safe."""
    path, model_name = spreadsheet_safe(path), spreadsheet_safe(model_name)
    if error:
        return [[path, *[""] * (len(COLUMNS) - 3), model_name, spreadsheet_safe(error)]]
    rows = []
    for index, face in enumerate(faces):
        std, low, high, p_under18 = (
            "" if v is None else f"{v:.{digits}f}"
            for v, digits in ((face.std, 2), (face.low90, 1), (face.high90, 1), (face.p_under18, 3)))
        rows.append([path, index, face.crop, face.detector, *face.box, f"{face.age:.2f}", std, low, high, p_under18,
                     model_name, ""])
    return rows


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

    def skip(self, path: str) -> None:
        """Counts a file the CSV already holds."""
        self.skipped += 1

    def add(self, found: FoundFaces) -> None:
        """Counts one handled file."""
        self.images += 1
        self.faces += found.count
        self.faces_by_detector.update(face.detector for face in found.faces if face.detector)
        self.no_face += found.error == NO_FACE
        self.errors += bool(found.error) and found.error != NO_FACE


class CsvSink:
    """Writes each scored file's rows into an open batch CSV and counts them in a Summary.

    Rows of many files go out in one write, flushed, so a kill loses no finished file.
    """

    def __init__(self, out: TextIO, model_name: str, summary: Summary):
        self.out, self.model_name, self.summary = out, model_name, summary

    def write(self, files: list[tuple[str, FoundFaces]]) -> None:
        """(path, its scored faces or its error) for each file, in walk order."""
        if not files:
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for path, found in files:
            self.summary.add(found)
            writer.writerows(rows_of(path, found.error, found.faces, self.model_name))
        self.out.write(buffer.getvalue())
        self.out.flush()
