"""Reading UTKFace: labels from file names, image bytes from folders and .tar.gz archives.

A source is a folder (searched recursively) or a tar archive (.tar, .tar.gz, .tgz).
Any mix of sources may be given: the four shared parts, the official single
``UTKFace.tar.gz``, or an extracted folder. Files that cannot be used are skipped
and reported, never fatal.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from agejax.data.images import IMAGE_SUFFIXES

MAX_AGE = 116
NUM_AGE_BINS = MAX_AGE + 1  # the distribution head's integer ages 0..MAX_AGE
GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

class MalformedName(ValueError):
    """A file name that does not follow ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg``."""


@dataclasses.dataclass(frozen=True)
class Labels:
    age: int
    gender: int
    race: int


def parse_name(file_name: str) -> Labels:
    """Labels encoded in a UTKFace file name; raises MalformedName saying what is wrong.

    The official names are ``[age]_[gender]_[race]_[datetime].jpg.chip.jpg``. Only
    the first three fields carry labels, so an odd datetime field (a stray space or a
    missing dot, both in the official release) is accepted; a missing field is not.
    """
    base = os.path.basename(file_name)
    stem = base
    for suffix in (".chip.jpg", *IMAGE_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    if stem == base:
        raise MalformedName(f"not an image name ({', '.join(IMAGE_SUFFIXES)})")
    fields = stem.split("_")
    if len(fields) != 4:
        raise MalformedName(f"expected 4 fields age_gender_race_datetime, found {len(fields)}")
    if not all(field.isdigit() for field in fields[:3]):
        raise MalformedName("age, gender or race is not a non-negative integer")
    age, gender, race = (int(field) for field in fields[:3])
    if age > MAX_AGE:
        raise MalformedName(f"age {age} is above {MAX_AGE}")
    if gender >= len(GENDERS):
        raise MalformedName(f"gender {gender} is not 0 or 1")
    if race >= len(RACES):
        raise MalformedName(f"race {race} is not in 0-4")
    return Labels(age=age, gender=gender, race=race)


@dataclasses.dataclass(frozen=True)
class Record:
    """One labelled image and where its bytes live."""

    file_name: str
    age: int
    gender: int
    race: int
    source: str  # the folder or archive it came from
    member: str  # path inside that folder or archive


@dataclasses.dataclass(frozen=True)
class Skipped:
    file_name: str
    source: str
    reason: str


@dataclasses.dataclass
class ScanResult:
    records: list[Record]
    skipped: list[Skipped]

    def report(self, max_names: int = 20) -> str:
        """Skipped files grouped by reason: a count, the names, and the reason."""
        total = len(self.records) + len(self.skipped)
        lines = [
            f"read {total} files: {len(self.records)} labelled images, {len(self.skipped)} skipped"
        ]
        lines += format_skipped(self.skipped, max_names)
        return "\n".join(lines)


def format_skipped(skipped: Sequence[Skipped], max_names: int = 20) -> list[str]:
    by_reason: dict[str, list[str]] = collections.defaultdict(list)
    for item in skipped:
        by_reason[item.reason].append(item.file_name)
    lines = []
    for reason, names in sorted(by_reason.items()):
        shown = ", ".join(names[:max_names])
        more = f" (+{len(names) - max_names} more)" if len(names) > max_names else ""
        lines.append(f"  skipped {len(names)}: {reason}: {shown}{more}")
    return lines


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def list_source(source: Path) -> Iterator[str]:
    """Paths of the regular files in a folder (relative) or an archive (member names)."""
    if source.is_dir():
        for root, _dirs, files in os.walk(source):
            for name in sorted(files):
                yield os.path.relpath(os.path.join(root, name), source)
    elif is_archive(source):
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                if member.isfile():
                    yield member.name
    else:
        raise FileNotFoundError(f"{source} is neither a folder nor a .tar/.tar.gz archive")


def scan(sources: Sequence[str | os.PathLike]) -> ScanResult:
    """Lists and labels every image in the sources, without decoding any."""
    if not sources:
        raise ValueError("no source given: pass a folder or a UTKFace .tar.gz archive")
    records: list[Record] = []
    skipped: list[Skipped] = []
    first_seen: dict[str, Record] = {}
    for source in map(Path, sources):
        for member in list_source(source):
            name = os.path.basename(member)
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                skipped.append(Skipped(name, str(source), "not an image file name"))
                continue
            try:
                labels = parse_name(name)
            except MalformedName as err:
                skipped.append(Skipped(name, str(source), f"malformed name ({err})"))
                continue
            if name in first_seen:
                kept = first_seen[name]
                skipped.append(
                    Skipped(name, str(source), f"duplicate name, kept the one in {kept.source}")
                )
                continue
            record = Record(name, labels.age, labels.gender, labels.race, str(source), member)
            first_seen[name] = record
            records.append(record)
    return ScanResult(records=records, skipped=skipped)


def iter_image_bytes(records: Iterable[Record]) -> Iterator[tuple[Record, bytes | None]]:
    """Yields each record with its file's bytes (None if unreadable).

    Each archive is streamed once, in its own order, so reading is sequential.
    """
    by_source: dict[str, dict[str, Record]] = collections.defaultdict(dict)
    for record in records:
        by_source[record.source][record.member] = record
    for source, wanted in by_source.items():
        path = Path(source)
        if path.is_dir():
            for member, record in wanted.items():
                try:
                    yield record, (path / member).read_bytes()
                except OSError:
                    yield record, None
            continue
        found = set()
        with tarfile.open(path, "r:*") as archive:
            for info in archive:
                record = wanted.get(info.name)
                if record is None or not info.isfile():
                    continue
                found.add(info.name)
                handle = archive.extractfile(info)
                yield record, handle.read() if handle is not None else None
        for member in wanted.keys() - found:
            yield wanted[member], None


def export_files(records: Iterable[Record], folder: str | os.PathLike) -> int:
    """Writes each record's original file into folder under its UTKFace name; returns the count written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for record, payload in iter_image_bytes(records):
        if payload is not None:
            (folder / record.file_name).write_bytes(payload)
            written += 1
    return written


def read_age_labels(csv_path: str | os.PathLike) -> tuple[dict[str, float], list[Skipped]]:
    """A CSV with columns path,age -> {path: age}; rows with a bad age are skipped and reported.

    Raises ValueError for a file that is not a UTF-8 CSV with those columns.
    """
    import csv

    labels: dict[str, float] = {}
    skipped: list[Skipped] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"path", "age"} <= set(reader.fieldnames):
                raise ValueError(f"{csv_path} needs a header with the columns path,age")
            for row in reader:
                path = (row["path"] or "").strip()
                try:
                    age = float(row["age"])
                    if not 0 <= age <= MAX_AGE:
                        raise ValueError
                except (TypeError, ValueError):
                    reason = "no age" if not (row["age"] or "").strip() else f"age {row['age']!r} is not a number in 0-{MAX_AGE}"
                    skipped.append(Skipped(path, str(csv_path), reason))
                    continue
                labels[path] = age
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{csv_path} is not a UTF-8 CSV ({err})") from None
    return labels, skipped
