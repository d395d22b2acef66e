"""Loose face crops aligned once, the way UTKFace's chips were cut, and kept on disk.

Each file of a loose source (All-Age-Faces, a user's CSV folder) is decoded, its face found
by agejax's detector cascade and cut as a 200 px chip (agejax.faces.cascade). A file with no
face, with several faces of similar size (whose age would the label be?) or that is not a
readable image is rejected with that reason. The chips are stored under
``<cache>/chips/<source>_<digest>/``, keyed by the files and the aligner's version, so later
runs read them instead of detecting again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from agejax import CACHE_ROOT
from agejax.data import labels
from agejax.data.labels import Record, Skipped

CHIP_VERSION = 1  # raise when the aligner changes what a chip looks like: old stores then miss
# A second face this much smaller than the largest is a bystander, not the labelled person.
BYSTANDER_AREA_RATIO = 4.0
NO_FACE = "no face found"


@dataclasses.dataclass
class ChipSet:
    chips: np.ndarray  # (N, 200, 200, 3) uint8, in the order of records
    records: list[Record]
    rejected: list[Skipped]

    def report(self, name: str) -> str:
        lines = [f"{name}: aligned {len(self.records)} faces, rejected {len(self.rejected)} files"]
        return "\n".join(lines + labels.format_skipped(self.rejected))


@functools.cache
def _aligner():
    from agejax.faces.cascade import FaceAligner

    # Training chips are cut from every face HOG finds at full size: a second face beside a
    # large one must be seen to reject the file, and the chips stay those the models saw.
    return FaceAligner(coarse_first=False)


def one_face(payload: bytes | None) -> tuple[np.ndarray | None, str]:
    """The chip of the one person in a loose crop, or None and the reason there is none."""
    from agejax.data.images import ImageTooLarge, open_rgb

    if not payload:
        return None, "unreadable file"
    try:
        image = open_rgb(payload, max_side=2048)
    except ImageTooLarge as err:
        return None, str(err)
    except Exception as err:  # PIL raises many types for damaged files
        return None, f"unreadable image ({type(err).__name__})"
    faces = _aligner().faces(np.asarray(image))
    if not faces:
        return None, NO_FACE
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    if len(faces) > 1 and areas[1] * BYSTANDER_AREA_RATIO > areas[0]:
        return None, f"several faces ({len(faces)})"
    return faces[0].chip, ""


def _job(job: tuple[int, bytes | None]) -> tuple[int, np.ndarray | None, str]:
    index, payload = job
    chip, reason = one_face(payload)
    return index, chip, reason


def store_dir(name: str, records: Sequence[Record], root: Path = CACHE_ROOT) -> Path:
    digest = hashlib.sha256(f"v{CHIP_VERSION}".encode())
    for record in sorted(records, key=lambda r: r.member):
        digest.update(f"{record.member}\0{record.age}\0{record.gender}\n".encode())
    return Path(root) / "chips" / f"{name}_{digest.hexdigest()[:12]}"


def align(name: str, records: Sequence[Record], root: Path = CACHE_ROOT, workers: int = 2,
          progress: bool = True) -> ChipSet:
    """The chips of a loose source's records: read from the store, or aligned and stored."""
    folder = store_dir(name, records, root)
    if (folder / "records.json").exists():
        return _read(folder)
    chips = np.zeros((len(records), 200, 200, 3), np.uint8)
    reasons = [""] * len(records)
    position = {record: i for i, record in enumerate(records)}
    jobs = ((position[record], payload) for record, payload in labels.iter_image_bytes(records))
    context = multiprocessing.get_context("spawn")  # dlib and JAX threads do not survive a fork
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = pool.map(_job, jobs, chunksize=16)
        for index, chip, reason in tqdm(results, total=len(records), desc=f"aligning {name}", disable=not progress):
            if chip is None:
                reasons[index] = reason
            else:
                chips[index] = chip
    kept = [i for i, reason in enumerate(reasons) if not reason]
    result = ChipSet(
        chips=chips[kept],
        records=[records[i] for i in kept],
        rejected=[Skipped(records[i].file_name, records[i].source, reasons[i]) for i, r in enumerate(reasons) if r],
    )
    _write(folder, result)
    return result


def _write(folder: Path, result: ChipSet) -> None:
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    np.save(staging / "chips.npy", result.chips)
    (staging / "rejected.json").write_text(json.dumps([dataclasses.asdict(s) for s in result.rejected], indent=1))
    # Written last: its presence marks a complete store.
    (staging / "records.json").write_text(json.dumps([dataclasses.asdict(r) for r in result.records], indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)


def _read(folder: Path) -> ChipSet:
    records = [Record(**row) for row in json.loads((folder / "records.json").read_text())]
    rejected = [Skipped(**row) for row in json.loads((folder / "rejected.json").read_text())]
    return ChipSet(np.load(folder / "chips.npy", mmap_mode="r"), records, rejected)
