"""Decode-once cache: every split of the frozen split as one uint8 array per resolution.

JPEGs are decoded and resized once, in parallel, into
``<root>/utkface_<manifest hash>_<size>px/<split>_images.npy`` plus the labels, so
training never decodes an image again and later runs memory-map the arrays.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

import agejax
from agejax.data import labels, split
from agejax.data.images import decode_face, to_square_array

DEFAULT_ROOT = agejax.CACHE_ROOT


@dataclasses.dataclass
class SplitArrays:
    images: np.ndarray  # (N, size, size, 3) uint8
    ages: np.ndarray  # (N,) int32
    genders: np.ndarray  # (N,) int8
    races: np.ndarray  # (N,) int8
    file_names: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.ages)


@dataclasses.dataclass
class BuildSummary:
    path: Path
    sizes: dict[str, int]
    skipped: list[labels.Skipped]
    seconds: float


def cache_dir(size: int, root: Path = DEFAULT_ROOT, manifest: Path = split.MANIFEST_PATH) -> Path:
    """``<root>/<source>_<manifest hash>_<size>px``: the source is the manifest's name."""
    return Path(root) / f"{Path(manifest).stem}_{split.manifest_hash(manifest)[:12]}_{size}px"


def _decode_job(job: tuple[int, bytes | None, int]) -> tuple[int, np.ndarray | None, str]:
    index, payload, size = job
    if payload is None:
        return index, None, "unreadable file"
    try:
        return index, decode_face(payload, size), ""
    except Exception as err:  # a bad image must not stop the build
        return index, None, f"unreadable image ({type(err).__name__})"


def build(
    sources: Sequence[str | os.PathLike],
    size: int,
    root: Path = DEFAULT_ROOT,
    workers: int = 2,
    manifest: Path = split.MANIFEST_PATH,
    progress: bool = True,
) -> BuildSummary:
    """Decodes every manifest image in the sources to size x size and writes the cache."""
    start = time.perf_counter()
    scan = labels.scan(sources)
    parts = split.apply_manifest(scan.records, split.read_manifest(manifest))
    ordered = [(name, r) for name in split.SPLITS for r in parts.by_split[name]]
    position = {record: i for i, (_, record) in enumerate(ordered)}
    images = np.zeros((len(ordered), size, size, 3), np.uint8)
    ok = np.zeros(len(ordered), bool)
    skipped = list(scan.skipped)

    jobs = (
        (position[record], payload, size)
        for record, payload in labels.iter_image_bytes(r for _, r in ordered)
    )
    context = multiprocessing.get_context("spawn")  # safe even after JAX has started threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = pool.map(_decode_job, jobs, chunksize=64)
        for index, array, error in tqdm(
            results, total=len(ordered), desc=f"decoding {size}px", disable=not progress
        ):
            if array is None:
                record = ordered[index][1]
                skipped.append(labels.Skipped(record.file_name, record.source, error))
            else:
                images[index] = array
                ok[index] = True

    split_names = np.array([name for name, _ in ordered])
    arrays = {}
    for name in split.SPLITS:
        records = [r for (s, r), k in zip(ordered, ok) if k and s == name]
        arrays[name] = SplitArrays(
            images=images[ok & (split_names == name)],
            ages=np.array([r.age for r in records], np.int32),
            genders=np.array([r.gender for r in records], np.int8),
            races=np.array([r.race for r in records], np.int8),
            file_names=np.array([r.file_name for r in records]),
        )
    seconds = time.perf_counter() - start
    extra = {"unlisted": len(parts.unlisted), "missing": len(parts.missing), "build_seconds": round(seconds, 2)}
    target = write(arrays, size, root, manifest, extra)
    sizes = {name: len(a) for name, a in arrays.items()}
    return BuildSummary(path=target, sizes=sizes, skipped=skipped, seconds=time.perf_counter() - start)


def from_chips(records: Sequence[labels.Record], chips: np.ndarray, size: int, manifest: Path,
               root: Path = DEFAULT_ROOT, extra: dict | None = None) -> Path:
    """Writes the cache of a loose source from its aligned chips (agejax.data.chips), resized to size."""
    parts = split.apply_manifest(records, split.read_manifest(manifest))
    row = {record: i for i, record in enumerate(records)}
    arrays = {}
    for name in split.SPLITS:
        chosen = parts.by_split[name]
        arrays[name] = SplitArrays(
            images=np.stack([to_square_array(Image.fromarray(np.asarray(chips[row[r]])), size) for r in chosen])
            if chosen else np.zeros((0, size, size, 3), np.uint8),
            ages=np.array([r.age for r in chosen], np.int32),
            genders=np.array([r.gender for r in chosen], np.int8),
            races=np.array([r.race for r in chosen], np.int8),
            file_names=np.array([r.file_name for r in chosen]),
        )
    return write(arrays, size, root, manifest, {"unlisted": len(parts.unlisted), "missing": len(parts.missing), **(extra or {})})


def write(
    arrays: dict[str, SplitArrays], size: int, root: Path = DEFAULT_ROOT,
    manifest: Path = split.MANIFEST_PATH, extra: dict | None = None,
) -> Path:
    """Writes split arrays as the cache for this manifest and size, replacing any old one."""
    target = cache_dir(size, root, manifest)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, part in arrays.items():
        np.save(staging / f"{name}_images.npy", part.images)
        np.savez(
            staging / f"{name}_labels.npz",
            ages=part.ages, genders=part.genders, races=part.races, file_names=part.file_names,
        )
    meta = {
        "size": size,
        "manifest_sha256": split.manifest_hash(manifest),
        "sizes": {name: len(part) for name, part in arrays.items()},
        **(extra or {}),
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def load_split(
    name: str, size: int, root: Path = DEFAULT_ROOT, mmap: bool = True, source: str = "utkface",
) -> SplitArrays:
    """One split of a source's cache; memory-mapped by default, so loading is near-instant."""
    if name not in split.SPLITS:
        raise ValueError(f"unknown split {name!r}; expected one of {split.SPLITS}")
    manifest = split.manifest_path(source, root)
    path = cache_dir(size, root, manifest) if manifest.exists() else None
    if path is None or not (path / "meta.json").exists():
        raise FileNotFoundError(
            f"no {size}px cache of {source}{f' at {path}' if path else ''}: run "
            f"`python scripts/prepare_data.py --source {source}=<its archives or folder> --size {size}`"
        )
    stored = np.load(path / f"{name}_labels.npz")
    return SplitArrays(
        images=np.load(path / f"{name}_images.npy", mmap_mode="r" if mmap else None),
        ages=stored["ages"],
        genders=stored["genders"],
        races=stored["races"],
        file_names=stored["file_names"],
    )
