"""agejax web demo (first version): the age of an aligned face crop, from a shipped checkpoint.

    python demo.py [--host 127.0.0.1] [--port 7860] [--share]

Face detection, the batch tab and the model report come with the demo issue; until
then the input must be an aligned face crop like UTKFace's.
"""

from __future__ import annotations

import argparse

import gradio as gr
import numpy as np
from PIL import Image

from agejax.images import to_square_array
from agejax.predict import CHECKPOINTS, SHIPPED, Predictor


def available_models() -> dict[str, Predictor]:
    return {name: Predictor.load(name) for name in SHIPPED if (CHECKPOINTS / name / "weights.npz").exists()}


def build_app(predictors: dict[str, Predictor]) -> gr.Blocks:
    def estimate(image: Image.Image | None, model_name: str) -> str:
        if image is None:
            raise gr.Error("Please upload an image of a face.")
        if model_name not in predictors:
            raise gr.Error(f"The {model_name} model is not available.")
        predictor = predictors[model_name]
        face = to_square_array(image.convert("RGB"), predictor.image_size)
        prediction = predictor.predict(face[np.newaxis])
        age = prediction.age[0]
        if prediction.std is None:
            return f"{age:.0f} years"
        return f"{age:.0f} ± {prediction.std[0]:.0f} years"

    with gr.Blocks(title="agejax: age estimation") as app:
        gr.Markdown("# agejax\nUpload an **aligned face crop** (like a UTKFace chip) to estimate its age.")
        if not predictors:
            gr.Markdown("No trained checkpoint is installed in `checkpoints/`: train one with `scripts/train.py`.")
        with gr.Row():
            image = gr.Image(type="pil", label="aligned face crop", sources=["upload", "webcam", "clipboard"])
            with gr.Column():
                model = gr.Radio(sorted(predictors) or list(SHIPPED), value=(sorted(predictors) or ["cnn"])[0], label="model")
                age = gr.Textbox(label="estimated age")
                button = gr.Button("Estimate", variant="primary")
        button.click(estimate, [image, model], age, api_name="estimate")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="agejax web demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio link")
    args = parser.parse_args()
    build_app(available_models()).launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
