"""One way to load any shipped or trained model and predict ages.

    from agejax.predict import Predictor
    predictor = Predictor.load("cnn")          # a shipped checkpoint by name
    predictor = Predictor.load("runs/x")       # a checkpoint folder or a run directory
    prediction = predictor.predict(uint8_faces) # (N, S, S, 3) aligned crops, any S: .age, .std
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from agejax import SHIPPED_ROOT, checkpoint, models, pipeline
from agejax.configs import TrainConfig
from agejax.conformal import interval_half_width
from agejax.data import MAX_AGE
from agejax.images import to_square_array

CHECKPOINTS = SHIPPED_ROOT / "checkpoints"
SHIPPED = ("cnn", "resnet50")


def shipped_by_validation() -> list[str]:
    """The installed shipped checkpoints, lowest validation MAE first: the first is every default."""
    installed = [name for name in SHIPPED if (CHECKPOINTS / name / "weights.npz").exists()]
    return sorted(installed, key=lambda name: checkpoint.read_metrics(CHECKPOINTS / name).get("val_mae", float("inf")))


def default_model() -> str:
    """The shipped model with the lowest validation MAE (the CLI's and the demo's default)."""
    ranked = shipped_by_validation()
    return ranked[0] if ranked else SHIPPED[0]


@dataclasses.dataclass
class Prediction:
    age: np.ndarray  # (N,) float years
    std: np.ndarray | None  # (N,) the distribution head's own uncertainty; None for regression


class Predictor:
    def __init__(self, model: keras.Model, config: TrainConfig, path: Path):
        self.model = model
        self.config = config
        self.path = path  # the checkpoint folder or run directory it came from
        self.name = path.name
        self.image_size = config.image_size
        self.head = models.head_kind_of(model)
        shipped = checkpoint.read_metrics(path)
        # Split-conformal thresholds from the export (calibrated on validation), if any.
        self.conformal_thresholds = shipped.get("conformal", {}).get("thresholds", {})
        # Average each face with its mirror image, where the export found that better on validation.
        self.flip = bool(shipped.get("test_time_flip", False))
        # Keras swaps a model's variables in and out during predict, so two threads calling it at
        # once (the demo's tabs) break each other; calls take turns.
        self._model_lock = threading.Lock()

    @classmethod
    def load(cls, name_or_path: str | Path) -> Predictor:
        """A shipped name ("cnn", "resnet50"), a checkpoint folder, or a training run directory."""
        path = CHECKPOINTS / str(name_or_path) if str(name_or_path) in SHIPPED else Path(name_or_path)
        if (path / "weights.npz").exists():
            model, config = checkpoint.load(path)
        elif (path / "model.keras").exists():
            model = keras.models.load_model(path / "model.keras", compile=False)
            config = TrainConfig.from_json(path / "config.json")
        else:
            raise FileNotFoundError(
                f"no model at {path}: expected a shipped name {SHIPPED}, a checkpoint folder "
                "with weights.npz, or a run directory with model.keras"
            )
        return cls(model, config, path)

    def predict(self, faces: np.ndarray, batch_size: int = 64, verbose: int = 0) -> Prediction:
        """Ages for aligned face crops given as uint8 (N, S, S, 3); resized if S differs."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
            raise ValueError(f"expected uint8 faces of shape (N, S, S, 3), got {faces.dtype} {faces.shape}")
        if faces.shape[1:3] != (self.image_size, self.image_size):
            faces = np.stack([to_square_array(Image.fromarray(f), self.image_size) for f in faces])
        if len(faces) == 0:
            return Prediction(np.zeros(0), np.zeros(0) if self.head == "distribution" else None)
        with self._model_lock:
            outputs = pipeline.predict_outputs(self.model, faces, batch_size, verbose)
            if self.flip:  # the distribution head's outputs average to the mixture of both views
                mirrored = pipeline.predict_outputs(self.model, faces[:, :, ::-1], batch_size, verbose)
                outputs = (outputs + mirrored) / 2
        age, std = models.summarize_outputs(outputs)
        return Prediction(age=age, std=std)

    def interval(self, prediction: Prediction, level: str = "90") -> tuple[np.ndarray, np.ndarray] | None:
        """The calibrated prediction interval (low, high) in years, or None if the checkpoint has none."""
        threshold = self.conformal_thresholds.get(level)
        if threshold is None:
            return None
        half = interval_half_width(threshold, prediction.std, len(prediction.age))
        # Clipping to possible ages keeps coverage and makes the bounds readable.
        return np.maximum(prediction.age - half, 0.0), np.minimum(prediction.age + half, MAX_AGE)
