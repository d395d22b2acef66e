"""agejax web demo: the age of every face in a photo, a batch tab, and each model's report.

    python demo.py [--host 127.0.0.1] [--port 7860] [--share]    (or: agejax-demo)

The repository's demo.py runs this as a Hugging Face Space; there the host and port come from
GRADIO_SERVER_NAME and GRADIO_SERVER_PORT. Faces are found, aligned and scored by the same code
as scripts/batch_predict.py.
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from agejax import SHIPPED_ROOT, runtime
from agejax.app import handlers, live, model_cards, render, server
from agejax.batch import sink
from agejax.scoring import bucket_size
from agejax.serving.predict import CHECKPOINTS, SHIPPED, Predictor

EXAMPLES = SHIPPED_ROOT / "examples"
DETECTOR_CHOICES = [("auto: HOG, then the CNN, then HOG on tilted copies", "auto"), ("HOG (fast)", "hog"),
                    ("CNN (finds turned and dim faces, slower)", "cnn")]


UNDER18_NOTE = ("*p_under18* is the model's calibrated probability that the face is under 18: an estimate with "
                "measured error rates (in the Model report tab), **not age verification**.")


def photo_input(**kwargs) -> gr.Image:
    """A photo upload that passes any upload on as a file path, so a bad one gets our message."""
    return server.lenient(gr.Image(type="filepath", **kwargs), lambda payload: None if payload is None else str(payload.path))


def model_input(choices: list) -> gr.Radio:
    """The model choice; a name that is not installed reaches the function, which says so."""
    names = [name for _, name in choices]
    return server.lenient(gr.Radio(choices, value=names[0], label="model", info=model_cards.which_to_use(names)), str)


def build_app(predictors: dict[str, Predictor]) -> gr.Blocks:
    names = list(predictors) or list(SHIPPED)  # lowest validation MAE first: the default
    choices = [(model_cards.model_label(name), name) for name in names]
    with gr.Blocks(title="agejax: age estimation") as app:
        gr.Markdown("# agejax: how old do faces look?\nUpload a photo (up to 20 MB): every face is found, boxed "
                    "and given an age estimate with its uncertainty. **Already cropped to one face?** Tick *Already an "
                    "aligned face crop* and it is scored as it is, without detection.")
        if not predictors:
            gr.Markdown("**No trained checkpoint is installed in `checkpoints/`:** train one with `scripts/train.py`.")
        with gr.Tab("Estimate"):
            with gr.Row():
                with gr.Column():
                    photo = photo_input(label="photo, or one face already cropped", sources=["upload", "webcam", "clipboard"],
                                        elem_id="estimate-photo")
                    model = model_input(choices)
                    aligned = gr.Checkbox(label="Already an aligned face crop (like UTKFace): skip detection")
                    whole = gr.Checkbox(label="Score the whole image when no face is found")
                    detector = gr.Radio(DETECTOR_CHOICES, value="auto", label="face detector")
                    button = gr.Button("Estimate ages", variant="primary", elem_id="estimate-button")
                with gr.Column():
                    annotated = gr.Image(label="faces and ages (click a face for its age distribution)", type="pil",
                                         interactive=False, format="jpeg", elem_id="estimate-annotated")
                    message = gr.Markdown(label="message", show_label=False, elem_id="estimate-message")
                    table = gr.Dataframe(headers=render.TABLE_HEADERS, label="faces", interactive=False,
                                         elem_id="faces-table")
                    gr.Markdown(UNDER18_NOTE)
            with gr.Row():
                picked = gr.Dropdown(choices=[], label="face", interactive=True, allow_custom_value=True, scale=1,
                                     elem_id="face-picker")
                distribution = gr.Plot(label="predicted age distribution", scale=4, elem_id="face-distribution")
            faces_json = gr.JSON(visible=False, label="faces JSON")
            gr.Examples(
                [[str(EXAMPLES / "group.jpg"), False], [str(EXAMPLES / "grace_hopper.jpg"), False],
                 [str(EXAMPLES / "utkface_4.jpg"), True], [str(EXAMPLES / "utkface_31.jpg"), True],
                 [str(EXAMPLES / "utkface_72.jpg"), True]],
                inputs=[photo, aligned], cache_examples=False, label="examples (credits in the About tab)",
            )
            button.click(handlers.make_estimate(predictors), [photo, model, aligned, whole, detector],
                         [annotated, table, message, faces_json],
                         api_name="estimate", batch=True, max_batch_size=handlers.MAX_BATCH
                         ).then(handlers.face_picker, faces_json, picked, api_name=False)
            picked.change(handlers.face_plot, [faces_json, picked], distribution, api_name="face_distribution")
            annotated.select(handlers.face_clicked_in_photo, [faces_json, picked], picked, api_name=False)
            table.select(handlers.face_clicked_in_table, picked, picked, api_name=False)
        with gr.Tab("Webcam"):
            default = next(iter(predictors), None)
            gr.Markdown(f"Press record to stream your camera: every face gets a box and its age ± the model's "
                        f"uncertainty, steadied over a few frames. Uses the default model ({model_cards.label(default)}) "
                        "and the fast HOG detector; frames are scored and then forgotten.")
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="camera",
                                  elem_id="webcam-input")
                live_view = gr.Image(label="faces and ages, live", interactive=False, format="jpeg",
                                     elem_id="webcam-output")
            tracks = gr.State([])
            if default is not None:
                camera.stream(live.make_live(predictors[default]), [camera, tracks], [live_view, tracks],
                              stream_every=live.FRAME_INTERVAL_S, time_limit=live.TIME_LIMIT_S,
                              concurrency_limit=live.CONCURRENT_STREAMS, api_name="webcam")
        with gr.Tab("Batch"):
            gr.Markdown(f"Score up to {handlers.MAX_BATCH_FILES} images at once; the table is also a CSV to download. "
                        "For whole folders use `python scripts/batch_predict.py DIR/`, which writes the same CSV.")
            with gr.Row():
                with gr.Column():
                    files = gr.File(file_count="multiple", label="images", file_types=["image"], elem_id="batch-files")
                    batch_model = model_input(choices)
                    batch_aligned = gr.Checkbox(label="These are aligned face crops: skip detection")
                    batch_whole = gr.Checkbox(label="Score the whole image when no face is found")
                    batch_detector = gr.Radio(DETECTOR_CHOICES, value="auto", label="face detector")
                    batch_button = gr.Button("Score all", variant="primary", elem_id="batch-button")
                with gr.Column():
                    batch_message = gr.Markdown(label="message", show_label=False, elem_id="batch-message")
                    batch_csv = gr.File(label="CSV", interactive=False)
                    batch_histogram = gr.Plot(label="ages found", elem_id="batch-histogram")
            batch_table = gr.Dataframe(headers=list(sink.COLUMNS), label="rows", show_label=False, interactive=False)
            batch_button.click(handlers.make_batch(predictors),
                               [files, batch_model, batch_aligned, batch_whole, batch_detector],
                               [batch_table, batch_csv, batch_message, batch_histogram], api_name="batch",
                               concurrency_limit=1)
        with gr.Tab("Model report"):
            reports = {name: r for name in names if (r := model_cards.read_report(name)) is not None}
            gr.Markdown("### Test-split accuracy\n" + model_cards.metrics_table(reports))
            for name, report in reports.items():
                folder = CHECKPOINTS / name / "report"
                gr.Markdown(f"### {model_cards.label(name)}\n{model_cards.training_summary(name)}")
                with gr.Row():
                    gr.Image(str(folder / "confusion.png"), label="decade confusion (rows: true decade)",
                             interactive=False)
                    gr.Image(str(folder / "mae_per_decade.png"), label="MAE per decade", interactive=False)
                    gr.Image(str(folder / "scatter.png"), label="true vs predicted", interactive=False)
                gr.Markdown("**Error by group** (test split)\n\n" + model_cards.group_table(report) + "\n\n"
                            + model_cards.bias_sentence(name, report))
                if (under18 := model_cards.under18_table(name)) and (folder / "reliability.png").exists():
                    with gr.Row():
                        gr.Markdown(under18)
                        gr.Image(str(folder / "reliability.png"), label="calibration of p_under18 (UTKFace test split)",
                                 interactive=False)
        with gr.Tab("About"):
            gr.Markdown(model_cards.ABOUT)
    return app


def main() -> None:
    runtime.setup()
    parser = argparse.ArgumentParser(description="agejax web demo")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio link (off by default)")
    parser.add_argument("--cache-minutes", type=float, default=server.CACHE_MINUTES,
                        help=f"delete uploads and answers from Gradio's cache after this long (default {server.CACHE_MINUTES})")
    args = parser.parse_args()
    server.limit_malloc_arenas()  # glibc fixes the limit when a second thread first allocates
    predictors = handlers.available_models()
    if predictors:
        # The default model meets each batch shape before the server listens: done just after,
        # that competed with the first visitors' requests for both cores.
        sizes = sorted({bucket_size(count, handlers.MAX_BATCH) for count in range(1, handlers.MAX_BATCH + 1)})
        handlers.warm_up(next(iter(predictors.values())), sizes)
    # Gradio asks matplotlib for its backend around every call; the first time, that imports
    # pyplot (half a second) unless the backend is named: a server draws off screen.
    os.environ.setdefault("MPLBACKEND", "agg")
    import matplotlib  # noqa: F401

    app = build_app(predictors)
    server.serve(app, args.host, args.port, args.share, cache_minutes=args.cache_minutes)
    app.block_thread()
