"""What the demo does for each request: the Estimate tab's queued batches and the Batch tab's folders."""

from __future__ import annotations

import collections
import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np

from agejax.app import render
from agejax.batch import local, sink, walk
from agejax.evaluation import evaluate
from agejax.evaluation.metrics import mae
from agejax.scoring import FoundFaces, UnusableImage, face_aligner, find_faces, read, score_faces
from agejax.serving.predict import Predictor, shipped_by_validation

MAX_BATCH = 16  # faces per model call in the Estimate tab (the queue's batches)
MAX_BATCH_FILES = 200
KEEP_BATCH_FOLDERS = 8  # Batch-tab work folders kept; older ones are deleted, so disk use stays bounded


def available_models() -> dict[str, Predictor]:
    """The shipped checkpoints, best on validation first."""
    return {name: Predictor.load(name) for name in shipped_by_validation()}


def warm_up(predictor: Predictor, sizes: list[int]) -> None:
    """Runs the model once at each batch size: ONNX Runtime sizes its buffers on a shape's first
    call (and Keras, serving a run directory, compiles it), so visitors do not wait for that."""
    for size in sizes:
        predictor.predict(np.zeros((size, predictor.image_size, predictor.image_size, 3), np.uint8), batch_size=size)


def make_estimate(predictors: dict[str, Predictor]):
    face_aligner()  # loaded before the first request

    def estimate(
        paths: list, model_names: list, aligned_flags: list, whole_flags: list, detectors: list
    ) -> tuple[list, list, list]:
        """Batched by the queue: one model call per model for all waiting requests."""
        images, tables, messages = [None] * len(paths), [[]] * len(paths), [""] * len(paths)
        groups: dict[tuple, list[int]] = {}
        for i, (path, name) in enumerate(zip(paths, model_names)):
            if not path:
                messages[i] = "**Please upload a photo, take one with the webcam, or pick an example.**"
            elif name not in predictors:
                messages[i] = render.unknown_model(name, predictors)
            else:
                key = (name, bool(aligned_flags[i]), bool(whole_flags[i]), detectors[i] or "auto")
                groups.setdefault(key, []).append(i)
        for (name, aligned, whole, detector), members in groups.items():
            predictor = predictors[name]
            photos, found = {}, []
            for i in members:
                try:
                    photos[i] = read(paths[i])
                except UnusableImage as err:
                    found.append(FoundFaces(error=str(err)))
                    continue
                found.append(find_faces(photos[i], predictor.image_size, aligned=aligned, whole_if_no_face=whole,
                                        detector=detector))
            for i, faces_found, faces in zip(members, found, score_faces(found, predictor, MAX_BATCH)):
                if faces:
                    images[i] = render.draw_faces(photos[i], faces)
                    tables[i] = render.face_table(faces)
                messages[i] = render.explain(faces_found)
        return images, tables, messages

    return estimate


def make_batch(predictors: dict[str, Predictor]):
    recent: collections.deque[Path] = collections.deque()  # the last requests' folders (one request at a time)

    def score_batch(
        files: list | None, model_name: str, aligned: bool, whole: bool, detector: str = "auto"
    ) -> tuple[list, str | None, str]:
        if not files:
            return [], None, "**Please add some images.**"
        if len(files) > MAX_BATCH_FILES:
            return [], None, f"**Please send at most {MAX_BATCH_FILES} files at a time** (or use scripts/batch_predict.py)."
        if model_name not in predictors:
            return [], None, render.unknown_model(model_name, predictors)
        work = Path(tempfile.mkdtemp(prefix="agejax_batch_"))
        recent.append(work)
        while len(recent) > KEEP_BATCH_FOLDERS:  # Gradio has its own copy of each returned CSV
            shutil.rmtree(recent.popleft(), ignore_errors=True)
        folder = work / "images"
        folder.mkdir()
        for i, file in enumerate(files):
            name = Path(file).name
            target = folder / name if not (folder / name).exists() else folder / f"{i}_{name}"
            shutil.copyfile(file, target)
        out_path = work / "ages.csv"
        handle, _ = sink.open_output(out_path, resume=False, model_name=predictors[model_name].name)
        with handle:
            job = walk.BatchJob(folder, aligned=aligned, whole_if_no_face=whole, detector=detector or "auto",
                                batch_size=16, progress=False)
            summary = local.run(job, handle, predictors[model_name], workers=0)
        shutil.rmtree(folder)  # the uploads' copies, scored
        with open(out_path, newline="") as csv_file:
            rows = [[row[c] for c in sink.COLUMNS] for row in csv.DictReader(csv_file)]
        message = f"Scored: {summary.line()}."
        labelled = evaluate.labelled_rows(out_path)
        if labelled is not None:
            error = mae(labelled["true"], labelled["predicted"])
            message += f" {len(labelled['true'])} files carry UTKFace age labels: MAE {error:.2f} years on them."
        return rows, str(out_path), message

    return score_batch
