"""One way to load any shipped or trained model and predict ages.

    from agejax.serving.predict import Predictor
    predictor = Predictor.load("cnn")          # a shipped checkpoint by name
    predictor = Predictor.load("runs/x")       # a checkpoint folder or a run directory
    prediction = predictor.predict(uint8_faces) # (N, S, S, 3) aligned crops, any S: .age, .std
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from agejax import SHIPPED_ROOT
from agejax.data.images import to_square_array
from agejax.data.labels import MAX_AGE, NUM_AGE_BINS
from agejax.evaluation import minors
from agejax.evaluation.conformal import interval_half_width
from agejax.serving import checkpoint, int8
from agejax.training.configs import TrainConfig

if TYPE_CHECKING:
    import keras

CHECKPOINTS = SHIPPED_ROOT / "checkpoints"
SHIPPED = ("cnn", "resnet50")


def model_path(name_or_path: str | Path) -> Path:
    """The folder of a shipped name ("cnn", "resnet50"), or the given checkpoint or run folder."""
    return CHECKPOINTS / str(name_or_path) if str(name_or_path) in SHIPPED else Path(name_or_path).expanduser()


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
    # The distribution head's output for each view: (N, 1, bins), or (N, 2, bins) with the
    # mirror image second; the answer is their mean. None for regression.
    view_probs: np.ndarray | None = None
    p_under18: np.ndarray | None = None  # (N,) calibrated; None without a calibration

    @property
    def probs(self) -> np.ndarray | None:
        """(N, bins): each face's age distribution, its views averaged."""
        return None if self.view_probs is None else self.view_probs.mean(axis=1)


def summarize_outputs(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Model outputs -> (age, std); std is None for the regression head."""
    outputs = np.asarray(outputs, np.float64)
    if outputs.shape[-1] != NUM_AGE_BINS:
        return outputs.reshape(-1), None
    bins = np.arange(NUM_AGE_BINS)
    mean = outputs @ bins
    std = np.sqrt(np.maximum(outputs @ bins**2 - mean**2, 0.0))
    return mean, std


# uint8 faces (N, S, S, 3), batch size, verbosity -> model outputs (N, bins)
Forward = Callable[[np.ndarray, int, int], np.ndarray]


def load_keras(path: Path) -> tuple[keras.Model, TrainConfig]:
    """The Keras model of a checkpoint folder or a run directory, and its config."""
    path = Path(path)
    if (path / "weights.npz").exists():
        return checkpoint.load(path)
    if (path / "model.keras").exists():
        import keras

        from agejax.training import models  # noqa: F401  registers agejax's layers, which the file names

        return keras.models.load_model(path / "model.keras", compile=False), TrainConfig.from_json(path / "config.json")
    raise FileNotFoundError(
        f"no model at {path}: expected a shipped name {SHIPPED}, a checkpoint folder "
        "with weights.npz, or a run directory with model.keras"
    )


def keras_forward(model: keras.Model) -> Forward:
    """Keras on XLA, in whole batches: XLA compiles each batch shape and may sum in another
    order for another one, so every face goes through the same shape, padded."""
    from agejax.data import pipeline

    def padded(faces: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        padding = -len(faces) % batch_size
        if padding:
            faces = np.concatenate([faces, np.zeros((padding, *faces.shape[1:]), faces.dtype)])
        return pipeline.predict_outputs(model, faces, batch_size, verbose)[: len(faces) - padding]

    return padded


def graph_forward(forward: Callable[[np.ndarray], np.ndarray]) -> Forward:
    """The checkpoint's graph in batches of at most batch_size, none padded: ONNX Runtime
    gives each face the same outputs, bit for bit, whatever shares its batch
    (tests/test_checkpoint.py), so one face costs one face."""

    def batched(faces: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        return np.concatenate([forward(faces[start : start + batch_size]) for start in range(0, len(faces), batch_size)])

    return batched


class Predictor:
    """A model ready to score aligned faces: ``Predictor.load(name)``, then ``predict``."""

    def __init__(self, forward: Forward, config: TrainConfig, path: Path, engine: str, flip: bool | None = None):
        self.forward = forward
        self.config = config
        self.path = path  # the checkpoint folder or run directory it came from
        self.base_name = path.name
        self.engine = engine  # "onnxruntime-int8" (forward.int8.onnx), "onnxruntime" (forward.onnx) or "keras"
        self.image_size = config.image_size
        self.head = config.head
        shipped = checkpoint.read_metrics(path)
        # Split-conformal thresholds from the export (calibrated on validation), if any.
        self.conformal_thresholds = shipped.get("conformal", {}).get("thresholds", {})
        # Platt scaling of the distribution's mass below 18, fitted on validation by the export.
        self.minors_calibration = shipped.get("p_under18", {}).get("calibration")
        # Average each face with its mirror image, where the export found that better on validation.
        self.export_flip = bool(shipped.get("test_time_flip", False))
        self.flip = self.export_flip if flip is None else flip
        # Keras swaps a model's variables in and out during predict, so two threads calling it at
        # once (the demo's tabs) break each other; calls take turns.
        self._model_lock = threading.Lock()

    @classmethod
    def load(cls, name_or_path: str | Path, flip: bool | None = None, int8_graph: bool = True) -> Predictor:
        """A shipped name ("cnn", "resnet50"), a checkpoint folder, or a training run directory.

        ``flip`` scores each face with its mirror image too (True) or alone (False, half the
        work); by default as the checkpoint's export chose on validation. A checkpoint's int8
        graph serves where it has one, unless ``int8_graph`` is False (then its float32 graph).
        """
        path = model_path(name_or_path)
        if (path / "weights.npz").exists():
            config = TrainConfig.from_json(path / "config.json")
            if int8_graph:  # kept by the export only where it was faster and as accurate
                forward = int8.load_int8_forward(path, config.image_size)
                if forward is not None:
                    return cls(graph_forward(forward), config, path, "onnxruntime-int8", flip)
            forward = checkpoint.load_forward(path, config)
            if forward is not None:
                return cls(graph_forward(forward), config, path, "onnxruntime", flip)
        return cls.from_model(*load_keras(path), path, flip)

    @classmethod
    def from_model(cls, model: keras.Model, config: TrainConfig, path: Path, flip: bool | None = None) -> Predictor:
        return cls(keras_forward(model), config, Path(path), "keras", flip)

    @property
    def name(self) -> str:
        """The model's name, with "-fast" where it skips the mirror image its export chose: the
        batch CSV says how its ages were made, and --resume keeps to one way."""
        return self.base_name + ("-fast" if self.export_flip and not self.flip else "")

    def with_flip(self, flip: bool) -> Predictor:
        """The same model (shared, not copied), scoring with or without each face's mirror image."""
        other = copy.copy(self)
        other.flip = flip
        return other

    def predict(self, faces: np.ndarray, batch_size: int = 64, verbose: int = 0) -> Prediction:
        """Ages for aligned face crops given as uint8 (N, S, S, 3); resized if S differs."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
            raise ValueError(f"expected uint8 faces of shape (N, S, S, 3), got {faces.dtype} {faces.shape}")
        if faces.shape[1:3] != (self.image_size, self.image_size):
            faces = np.stack([to_square_array(Image.fromarray(f), self.image_size) for f in faces])
        if len(faces) == 0:
            return self._empty()
        with self._model_lock:
            if self.flip:  # both views in one call; the distribution head's outputs average to their mixture
                both = self.forward(np.concatenate([faces, faces[:, :, ::-1]]), 2 * batch_size, verbose)
                views = np.stack([both[: len(faces)], both[len(faces) :]], axis=1)
            else:
                views = self.forward(faces, batch_size, verbose)[:, None]
        outputs = views.mean(axis=1)
        age, std = summarize_outputs(outputs)
        if self.head != "distribution":
            return Prediction(age=age, std=std)
        p_under18 = None
        if self.minors_calibration is not None:
            p_under18 = minors.calibrated(minors.raw_p_under18(outputs), self.minors_calibration)
        return Prediction(age=age, std=std, view_probs=views, p_under18=p_under18)

    def _empty(self) -> Prediction:
        if self.head != "distribution":
            return Prediction(np.zeros(0), None)
        views = np.zeros((0, 2 if self.flip else 1, NUM_AGE_BINS))
        return Prediction(np.zeros(0), np.zeros(0), views, None if self.minors_calibration is None else np.zeros(0))

    def interval(self, prediction: Prediction, level: str = "90") -> tuple[np.ndarray, np.ndarray] | None:
        """The calibrated prediction interval (low, high) in years, or None if the checkpoint has none."""
        threshold = self.conformal_thresholds.get(level)
        if threshold is None:
            return None
        half = interval_half_width(threshold, prediction.std, len(prediction.age))
        # Clipping to possible ages keeps coverage and makes the bounds readable.
        return np.maximum(prediction.age - half, 0.0), np.minimum(prediction.age + half, MAX_AGE)
