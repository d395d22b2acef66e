"""Soft targets for distillation: each training face's age distribution as teacher models see it.

A teacher is any model Predictor.load takes (a shipped name, a checkpoint folder, a run
directory), scored with its mirror image at its own input size from that size's cache. Several
teachers are averaged: an ensemble reads ages better than any one of its members, and a
student trained towards it keeps one model's cost. Targets come from the clean images while the
student sees them augmented, so a grainy or faded copy is taught the clean face's age.

The averaged distributions are cached under the cache root, keyed by the teachers' files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from agejax.data import cache, split

TEACHER_FILES = ("weights.npz", "forward.int8.onnx", "forward.onnx", "model.keras")


def _fingerprint(teachers: tuple[str, ...], source: str, split_name: str, root: Path) -> str:
    """Changes when a teacher's files, the source's split or the teacher list change."""
    from agejax.serving.predict import model_path

    parts = [source, split_name, split.manifest_hash(split.manifest_path(source, root))]
    for teacher in teachers:
        folder = model_path(teacher)
        files = [folder / name for name in TEACHER_FILES if (folder / name).exists()]
        if not files:
            raise FileNotFoundError(f"teacher {teacher!r}: no model at {folder}")
        parts += [str(folder.resolve())] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def teacher_distributions(
    teachers: tuple[str, ...], source: str, split_name: str = "train", root: Path = cache.DEFAULT_ROOT,
    verbose: int = 0,
) -> np.ndarray:
    """(N, bins) float32: the teachers' mean age distribution for each face of a cached split,
    in the cache's order."""
    if not teachers:
        raise ValueError("distillation needs at least one teacher")
    out = Path(root) / "teachers" / f"{source}_{split_name}_{_fingerprint(teachers, source, split_name, root)}.npy"
    if out.exists():
        return np.load(out)
    from agejax.serving.predict import Predictor

    total, file_names = None, None
    for teacher in teachers:
        predictor = Predictor.load(teacher, flip=True)
        if predictor.head != "distribution":
            raise ValueError(f"teacher {teacher!r} has no distribution head")
        faces = cache.load_split(split_name, predictor.image_size, root, source=source)
        if file_names is not None and not np.array_equal(faces.file_names, file_names):
            raise ValueError(f"the {source} caches at different sizes hold their faces in different orders")
        file_names = faces.file_names
        probs = predictor.predict(faces.images, verbose=verbose).probs
        total = probs if total is None else total + probs
    mean = (total / len(teachers)).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.npy")
    np.save(partial, mean)
    partial.replace(out)  # a killed run leaves no half-written targets behind
    return mean
