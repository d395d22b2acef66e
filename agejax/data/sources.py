"""Labelled sources of faces: what a ``--source`` names, and the labelled records each one holds.

A source is given as ``NAME=PATH``:

- ``utkface=PATH``: UTKFace's aligned chips (folders or archives, labels in the file names);
- ``aaf=PATH``: All-Age-Faces' loose crops (``NNNNNAyy.jpg``: serial and age; serials from
  07381 are men), in folders or archives;
- ``NAME=PATH`` for any other name: a folder of the user's own loose face photos with a CSV of
  ``path,age`` (``gender`` optional: male/female, m/f or 0/1), PATH being the CSV or a folder
  holding ``labels.csv``; paths are relative to the CSV's folder.

UTKFace's chips are scored as they are. The other sources are loose crops: each file is
detected and aligned once, like UTKFace's chips were cut (agejax.data.chips). Bad rows and
unusable files are reported with their reason, never silently dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path

from agejax.data import labels
from agejax.data.images import IMAGE_SUFFIXES
from agejax.data.labels import MAX_AGE, Record, Skipped

UTKFACE, AAF = "utkface", "aaf"
AAF_NAME = re.compile(r"^(\d{5})A(\d{2})\.jpg$", re.IGNORECASE)
AAF_FIRST_MALE_SERIAL = 7381  # the dataset's README: 00000-07380 are women
UNKNOWN = -1  # gender or race not given
GENDER_WORDS = {"male": 0, "m": 0, "0": 0, "female": 1, "f": 1, "1": 1, "": UNKNOWN}
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One labelled source: its name (also its cache's and split manifest's) and where it lives."""

    name: str
    path: Path

    @property
    def kind(self) -> str:
        """"utkface" (aligned chips), "aaf" or "csv" (loose crops that are aligned first)."""
        return self.name if self.name in (UTKFACE, AAF) else "csv"

    @property
    def aligned(self) -> bool:
        return self.kind == UTKFACE

    def __str__(self) -> str:
        return f"{self.name}={self.path}"


def parse_source(text: str) -> SourceSpec:
    """``NAME=PATH`` -> SourceSpec; a bare PATH is UTKFace, as before sources had names."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = UTKFACE, text
    name = name.strip().lower()
    if not SOURCE_NAME.match(name):
        raise ValueError(f"source name {name!r}: use lower-case letters, digits and _ (e.g. aaf=PATH)")
    return SourceSpec(name, Path(path).expanduser())


@dataclasses.dataclass
class SourceScan:
    records: list[Record]
    skipped: list[Skipped]

    def report(self, name: str) -> str:
        total = len(self.records) + len(self.skipped)
        lines = [f"{name}: read {total} files: {len(self.records)} labelled images, {len(self.skipped)} skipped"]
        return "\n".join(lines + labels.format_skipped(self.skipped))


def expand(path: Path) -> list[Path]:
    """A folder that holds archives stands for those archives; otherwise it is an image folder."""
    if path.is_dir():
        archives = sorted(p for p in path.iterdir() if labels.is_archive(p))
        if archives:
            return archives
    return [path]


def scan(spec: SourceSpec) -> SourceScan:
    """The labelled records of a source, and every file or row that could not be used, with why."""
    if spec.kind == UTKFACE:
        result = labels.scan(expand(spec.path))
        return SourceScan(result.records, result.skipped)
    if spec.kind == AAF:
        return _scan_aaf(expand(spec.path))
    return _scan_csv(spec.path)


def parse_aaf_name(name: str) -> tuple[int, int]:
    """(age, gender) from an All-Age-Faces name such as ``00000A02.jpg``; raises MalformedName."""
    match = AAF_NAME.match(os.path.basename(name))
    if not match:
        raise labels.MalformedName("expected NNNNNAyy.jpg (serial, 'A', two-digit age)")
    serial, age = int(match.group(1)), int(match.group(2))
    return age, 0 if serial >= AAF_FIRST_MALE_SERIAL else 1


def _scan_aaf(paths: list[Path]) -> SourceScan:
    records, skipped, seen = [], [], set()
    for path in paths:
        for member in labels.list_source(path):
            name = os.path.basename(member)
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                skipped.append(Skipped(name, str(path), "not an image file name"))
                continue
            try:
                age, gender = parse_aaf_name(name)
            except labels.MalformedName as err:
                skipped.append(Skipped(name, str(path), f"malformed name ({err})"))
                continue
            if name in seen:
                skipped.append(Skipped(name, str(path), "duplicate name"))
                continue
            seen.add(name)
            records.append(Record(name, age, gender, UNKNOWN, str(path), member))
    return SourceScan(records, skipped)


EXTRA_FIELDS = "\0extra"  # DictReader's key for fields beyond the header


def _scan_csv(path: Path) -> SourceScan:
    """Rows of ``path,age[,gender]``; a missing file, a bad age or gender is reported per row."""
    csv_path = path / "labels.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found: a CSV source needs a path,age CSV (or a folder with labels.csv)")
    folder = csv_path.parent
    try:
        return _read_csv_rows(csv_path, folder)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{csv_path} is not a UTF-8 CSV ({err})") from None


def _read_csv_rows(csv_path: Path, folder: Path) -> SourceScan:
    records, skipped, seen = [], [], set()
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, restkey=EXTRA_FIELDS)
        if reader.fieldnames is None or not {"path", "age"} <= {f.strip() for f in reader.fieldnames}:
            raise ValueError(f"{csv_path} needs a header with the columns path,age (gender optional)")
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path.name} line {line}"
            if EXTRA_FIELDS in row:
                skipped.append(Skipped(where, str(csv_path), "more fields than the header"))
                continue
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            relative = row.get("path", "")
            if not relative:
                skipped.append(Skipped(where, str(csv_path), "empty path"))
                continue
            try:
                age = float(row["age"])
                if not 0 <= age <= MAX_AGE or age != round(age):
                    raise ValueError
            except ValueError:
                skipped.append(Skipped(relative, str(csv_path), f"age {row['age']!r} is not a whole number in 0-{MAX_AGE}"))
                continue
            gender = GENDER_WORDS.get(row.get("gender", "").lower())
            if gender is None:
                skipped.append(Skipped(relative, str(csv_path), f"gender {row['gender']!r} is not male/female"))
                continue
            if not (folder / relative).is_file():
                skipped.append(Skipped(relative, str(csv_path), "file not found"))
                continue
            if relative in seen:
                skipped.append(Skipped(relative, str(csv_path), "listed twice"))
                continue
            seen.add(relative)
            records.append(Record(relative, int(age), gender, UNKNOWN, str(folder), relative))
    return SourceScan(records, skipped)
