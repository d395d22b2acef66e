"""The frozen train/val/test split of each source.

Each split was made once by ``make_split`` and written to a manifest: for the shared
sources (UTKFace, All-Age-Faces) committed in the package as ``splits/<source>.csv``, for a
user's own source written under the cache at its first preparation and reused after. Every
model and every report reads the manifest, so all numbers refer to the same split forever.
A manifest may also list files as ``dropped``, with the reason (a near-duplicate, no face):
they are never trained on or scored. Images that the manifest does not list are reported
and left out.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from agejax import CACHE_ROOT
from agejax.data import labels
from agejax.data.labels import Record

SPLITS = ("train", "val", "test")
DROPPED = "dropped"
# 80/10/10: each of val and test holds about 2,200 faces, which puts the
# standard error of a ~5-year MAE near 0.1 years.
CYCLE = ("test", "val") + ("train",) * 8
AGE_BIN_YEARS = 5
PACKAGED = Path(__file__).parent / "splits"
MANIFEST_PATH = PACKAGED / "utkface.csv"


def manifest_path(source: str, cache_root: Path = CACHE_ROOT) -> Path:
    """The committed manifest of a shared source, or a user source's under the cache."""
    packaged = PACKAGED / f"{source}.csv"
    return packaged if packaged.exists() else Path(cache_root) / "splits" / f"{source}.csv"


def stratum(record: Record) -> tuple[int, int]:
    """Age bin (5 years, 100+ together) and gender: the split keeps both balanced."""
    return min(record.age // AGE_BIN_YEARS, 100 // AGE_BIN_YEARS), record.gender


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_split(records: Sequence[Record]) -> dict[str, str]:
    """Assigns each file name to a split, deterministically and stratified.

    Within each stratum the files are ordered by a hash of their name and dealt
    round the 10-slot CYCLE, starting at an offset taken from the stratum, so
    every stratum is split 8:1:1 up to one file and no input order matters.
    """
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    for record in records:
        groups[stratum(record)].append(record.file_name)
    assignment: dict[str, str] = {}
    for key, names in groups.items():
        offset = int(_digest(repr(key)), 16) % len(CYCLE)
        for i, name in enumerate(sorted(names, key=_digest)):
            assignment[name] = CYCLE[(i + offset) % len(CYCLE)]
    return assignment


def write_manifest(assignment: dict[str, str], path: Path = MANIFEST_PATH, dropped: dict[str, str] | None = None) -> None:
    """Writes file_name,split rows; with ``dropped`` (name -> reason) a third column, reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file_name", "split", "reason"] if dropped is not None else ["file_name", "split"])
        rows = {name: [name, part] + ([""] if dropped is not None else []) for name, part in assignment.items()}
        rows.update({name: [name, DROPPED, reason] for name, reason in (dropped or {}).items()})
        for name in sorted(rows):
            writer.writerow(rows[name])


def read_manifest(path: Path = MANIFEST_PATH) -> dict[str, str]:
    """file name -> split (train, val or test); dropped files are left out (read_dropped)."""
    return {name: part for name, part in _read_rows(path).items() if part != DROPPED}


def read_dropped(path: Path) -> dict[str, str]:
    """file name -> why the manifest drops it."""
    return {name: part[1] for name, part in _read_rows(path, with_reason=True).items() if part[0] == DROPPED}


def _read_rows(path: Path, with_reason: bool = False) -> dict:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if with_reason:
        assignment = {row["file_name"]: (row["split"], row.get("reason") or "") for row in rows}
        values = {part for part, _ in assignment.values()}
    else:
        assignment = {row["file_name"]: row["split"] for row in rows}
        values = set(assignment.values())
    if values - {*SPLITS, DROPPED} or len(assignment) != len(rows):
        raise ValueError(f"{path} is not a valid split manifest")
    return assignment


def manifest_hash(path: Path = MANIFEST_PATH) -> str:
    """sha256 of the manifest file; checkpoints and caches record it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclasses.dataclass
class SplitRecords:
    by_split: dict[str, list[Record]]
    unlisted: list[Record]  # read, but not in the manifest: left out
    missing: list[str]  # in the manifest, but not found in the sources

    def report(self) -> str:
        sizes = ", ".join(f"{s} {len(self.by_split[s])}" for s in SPLITS)
        lines = [f"split: {sizes}"]
        if self.unlisted:
            names = ", ".join(r.file_name for r in self.unlisted[:10])
            lines.append(
                f"  {len(self.unlisted)} images are not in the split manifest and are left out: {names}"
                + (" ..." if len(self.unlisted) > 10 else "")
            )
        if self.missing:
            lines.append(
                f"  {len(self.missing)} manifest files were not found in the sources"
            )
        return "\n".join(lines)


def apply_manifest(records: Sequence[Record], assignment: dict[str, str]) -> SplitRecords:
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    unlisted = []
    for record in records:
        split = assignment.get(record.file_name)
        if split is None:
            unlisted.append(record)
        else:
            by_split[split].append(record)
    present = {r.file_name for r in records}
    missing = sorted(name for name in assignment if name not in present)
    for split in SPLITS:
        by_split[split].sort(key=lambda r: r.file_name)
    return SplitRecords(by_split=by_split, unlisted=unlisted, missing=missing)


def records_of(sources: Sequence[str | Path], part: str) -> list[Record]:
    """The records of one split (train, val or test) among the images in sources (folders or archives)."""
    return apply_manifest(labels.scan(sources).records, read_manifest()).by_split[part]
