"""What the demo does for each request: the Estimate tab's queued batches and the Batch tab's folders."""

from __future__ import annotations

import collections
import csv
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

from agejax.app import plots, render
from agejax.batch import local, sink, walk
from agejax.evaluation import evaluate
from agejax.evaluation.metrics import mae
from agejax.scoring import FoundFaces, UnusableImage, face_aligner, find_faces, read, score_faces
from agejax.serving.predict import Predictor, shipped_by_validation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def make_estimate(predictors: dict[str, Predictor]) -> Callable[..., tuple[list, list, list, list]]:
    face_aligner()  # loaded before the first request

    def estimate(
        photo: list, model: list, aligned: list, whole_image: list, detector: list
    ) -> tuple[list, list, list, list]:
        """Batched by the queue: each argument holds one value per waiting request, and each model
        is called once for all of them. The names are those of the named API's parameters."""
        images, tables, messages = [None] * len(photo), [[]] * len(photo), [""] * len(photo)
        faces_json: list[dict] = [{"display_scale": 1.0, "faces": []} for _ in photo]
        groups: dict[tuple, list[int]] = {}
        for i, (path, name) in enumerate(zip(photo, model)):
            if not path:
                messages[i] = "**Please upload a photo, take one with the webcam, or pick an example.**"
            elif name not in predictors:
                messages[i] = render.unknown_model(name, predictors)
            else:
                key = (name, bool(aligned[i]), bool(whole_image[i]), detector[i] or "auto")
                groups.setdefault(key, []).append(i)
        for (name, is_aligned, whole, detector_name), members in groups.items():
            predictor = predictors[name]
            photos, found = {}, []
            for i in members:
                try:
                    photos[i] = read(photo[i])
                except UnusableImage as err:
                    found.append(FoundFaces(error=str(err)))
                    continue
                # An aligned crop's chip comes from a decode at the model's size, as in the batch CLI.
                chip_source = read(photo[i], predictor.image_size) if is_aligned else photos[i]
                found.append(find_faces(chip_source, predictor.image_size, aligned=is_aligned, whole_if_no_face=whole,
                                        detector=detector_name))
            for i, faces_found, faces in zip(members, found, score_faces(found, predictor, MAX_BATCH)):
                if faces:
                    images[i] = render.draw_faces(photos[i], faces)
                    tables[i] = render.face_table(faces)
                    faces_json[i] = render.faces_json(faces, render.display_scale(photos[i], images[i]))
                messages[i] = render.explain(faces_found)
        return images, tables, messages, faces_json

    return estimate


def face_picker(faces: dict | None) -> gr.Dropdown:
    """The face list after an estimate: every face, the largest picked."""
    choices = render.face_choices(faces)
    return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)


def face_plot(faces: dict | None, index: int | None) -> Figure | None:
    """The picked face's age distribution, or nothing before a face is picked."""
    entries = (faces or {}).get("faces", [])
    if index is None or not 0 <= int(index) < len(entries) or entries[int(index)]["views"] is None:
        return None
    return plots.face_distribution(entries[int(index)])


def face_clicked_in_photo(faces: dict | None, current: int | None, event: gr.SelectData) -> int | None:
    """The face under a click on the annotated photo; a click beside every face keeps the pick."""
    hit = render.face_at(faces, *event.index) if faces else None
    return current if hit is None else hit


def face_clicked_in_table(current: int | None, event: gr.SelectData) -> int | None:
    """The face of the clicked table row."""
    return int(event.index[0]) if event.index is not None else current


def make_batch(predictors: dict[str, Predictor]) -> Callable[..., tuple[list, str | None, str, Figure | None]]:
    recent: collections.deque[Path] = collections.deque()  # the last requests' folders (one request at a time)

    def score_batch(
        files: list | None, model: str, aligned: bool, whole_image: bool, detector: str = "auto"
    ) -> tuple[list, str | None, str, object]:
        if not files:
            return [], None, "**Please add some images.**", None
        if len(files) > MAX_BATCH_FILES:
            return ([], None, f"**Please send at most {MAX_BATCH_FILES} files at a time** (or use scripts/batch_predict.py).",
                    None)
        if model not in predictors:
            return [], None, render.unknown_model(model, predictors), None
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
        handle, _ = sink.open_output(out_path, resume=False, model_name=predictors[model].name)
        with handle:
            job = walk.BatchJob(folder, aligned=aligned, whole_if_no_face=whole_image, detector=detector or "auto",
                                batch_size=16, progress=False)
            summary = local.run(job, handle, predictors[model], workers=0)
        shutil.rmtree(folder)  # the uploads' copies, scored
        with open(out_path, newline="") as csv_file:
            records = list(csv.DictReader(csv_file))
        rows = [[row[c] for c in sink.COLUMNS] for row in records]
        message = f"Scored: {summary.line()}."
        scored = [row for row in records if row["age"]]
        known = [float(row["p_under18"]) for row in scored if row["p_under18"]]
        share_under18 = float(np.mean(np.asarray(known) >= 0.5)) if known else None
        histogram = plots.batch_ages([float(row["age"]) for row in scored], share_under18) if scored else None
        if share_under18 is not None:
            message += (f" {100 * share_under18:.0f} % of the {len(known)} faces are estimated under 18 "
                        "(p_under18 at least 0.5; an estimate, not age verification).")
        labelled = evaluate.labelled_rows(out_path)
        if labelled is not None:
            error = mae(labelled["true"], labelled["predicted"])
            message += f" {len(labelled['true'])} files carry UTKFace age labels: MAE {error:.2f} years on them."
        return rows, str(out_path), message, histogram

    return score_batch
