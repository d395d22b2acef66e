"""Preparing a source for training: its frozen split (made once) and its decode-once caches.

    make_manifest(aaf, against=[utkface])   # once: dedupe, split, write splits/aaf.csv
    prepare(aaf, sizes=[96])                # every machine: align (cached), cache per size

A manifest is made once per source: the loose crops are aligned, near-duplicates inside the
source and of any earlier source's images are dropped, and the rest is split 80/10/10,
stratified by age and gender (agejax.data.split). Each dropped file stays in the manifest
with its reason, so the split never moves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from agejax import CACHE_ROOT
from agejax.data import cache, chips, dedupe, labels, sources, split
from agejax.data.images import decode_face, to_square_array
from agejax.data.sources import SourceSpec

HASH_SIDE = 96  # chips are hashed at this size, so UTKFace's files and aligned crops compare alike


@dataclasses.dataclass
class SourceFaces:
    """A source's usable faces as 200 px chips (or, for UTKFace, its files), and what was rejected."""

    spec: SourceSpec
    records: list[labels.Record]
    rejected: list[labels.Skipped]
    chips: np.ndarray | None  # loose sources only, in the order of records

    def report(self) -> str:
        lines = [f"{self.spec.name}: {len(self.records)} usable faces, {len(self.rejected)} files rejected"]
        return "\n".join(lines + labels.format_skipped(self.rejected))


def read_faces(spec: SourceSpec, cache_root: Path = CACHE_ROOT, workers: int = 2, progress: bool = True) -> SourceFaces:
    """Scans a source and, for loose crops, aligns every file once (stored under the cache)."""
    scan = sources.scan(spec)
    if spec.aligned:
        return SourceFaces(spec, scan.records, scan.skipped, None)
    aligned = chips.align(spec.name, scan.records, cache_root, workers, progress)
    return SourceFaces(spec, aligned.records, scan.skipped + aligned.rejected, aligned.chips)


def hashes(faces: SourceFaces) -> np.ndarray:
    """The pHash of every usable face, in the order of faces.records."""
    if faces.chips is not None:
        small = np.stack([to_square_array(Image.fromarray(np.asarray(chip)), HASH_SIDE) for chip in faces.chips])
        return dedupe.phash(small)
    payloads = dict(labels.iter_image_bytes(faces.records))
    return dedupe.phash(np.stack([decode_face(payloads[r], HASH_SIDE) for r in faces.records]))


def make_manifest(faces: SourceFaces, against: Sequence[SourceFaces] = (), path: Path | None = None) -> Path:
    """Drops near-duplicates, splits the rest and writes the source's manifest (it must not exist yet)."""
    path = path or split.manifest_path(faces.spec.name)
    if path.exists():
        raise FileExistsError(f"{path} exists: a source's split is made once and never replaced")
    own = hashes(faces)
    dropped = {s.file_name: s.reason for s in faces.rejected if s.reason.startswith(("no face", "several faces"))}
    for duplicate in dedupe.drop_within(own):
        kept = faces.records[duplicate.kept].file_name
        dropped[faces.records[duplicate.dropped].file_name] = f"near-duplicate of {kept} (pHash distance {duplicate.distance})"
    for other in against:
        for duplicate in dedupe.overlap(own, hashes(other)):
            name = faces.records[duplicate.dropped].file_name
            kept = other.records[duplicate.kept].file_name
            dropped.setdefault(name, f"near-duplicate of {other.spec.name}:{kept} (pHash distance {duplicate.distance})")
    usable = [r for r in faces.records if r.file_name not in dropped]
    split.write_manifest(split.make_split(usable), path, dropped)
    return path


def prepare(faces: SourceFaces, size: int, cache_root: Path = CACHE_ROOT, workers: int = 2,
            progress: bool = True) -> cache.BuildSummary | Path:
    """Builds the source's cache at one size from its frozen manifest."""
    manifest = split.manifest_path(faces.spec.name, cache_root)
    if not manifest.exists():
        if faces.spec.kind != "csv":
            raise FileNotFoundError(f"{manifest} is missing: the shared sources' splits ship with agejax")
        make_manifest(faces, path=manifest)  # a user's source: split once, then reused
    if faces.chips is None:
        return cache.build(sources.expand(faces.spec.path), size, cache_root, workers, manifest, progress)
    return cache.from_chips(faces.records, faces.chips, size, manifest, cache_root)


def dropped_report(spec: SourceSpec, cache_root: Path = CACHE_ROOT, reported: set[str] = frozenset()) -> str:
    """What the source's manifest drops, by reason; files in ``reported`` (already listed) are only counted."""
    manifest = split.manifest_path(spec.name, cache_root)
    if not manifest.exists() or spec.kind == sources.UTKFACE:
        return ""
    dropped = split.read_dropped(manifest)
    skipped = [labels.Skipped(name, str(manifest), reason.split(" of ")[0] if "duplicate" in reason else reason)
               for name, reason in dropped.items() if name not in reported]
    already = f", {len(dropped) - len(skipped)} of them listed above" if len(skipped) < len(dropped) else ""
    return "\n".join([f"{spec.name}: the manifest drops {len(dropped)} files{already} ({manifest})"]
                     + labels.format_skipped(skipped))
