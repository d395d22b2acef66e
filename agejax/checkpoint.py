"""Compact shipped checkpoints: the training config plus compressed weights.

A checkpoint folder holds
    config.json   the TrainConfig that rebuilds the architecture
    weights.npz   every model weight, keyed by its path (e.g. "stem_conv/kernel"):
                  conv/dense kernels as int8 with one float32 scale per output channel
                  ("int8") or as float16 ("float16"); everything else as float32
    metrics.json  what the export measured, written by scripts/export_checkpoint.py

int8 keeps a ResNet50 near 24 MB instead of 94 MB, so the whole repository still
travels to a GPU machine beside a data archive. No optimizer state is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from agejax import models
from agejax.configs import TrainConfig

FORMATS = ("int8", "float16", "float32")


def _is_kernel(weight) -> bool:
    return len(weight.shape) >= 2 and weight.path.endswith("kernel")


def quantize_int8(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: kernel ~= q * scale, scale over the last axis."""
    peak = np.max(np.abs(kernel.reshape(-1, kernel.shape[-1])), axis=0)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    quantized = np.clip(np.round(kernel / scale), -127, 127).astype(np.int8)
    return quantized, scale


def save(model: keras.Model, config: TrainConfig, folder: Path, weight_format: str = "int8") -> None:
    if weight_format not in FORMATS:
        raise ValueError(f"unknown weight format {weight_format!r}; expected one of {FORMATS}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for weight in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(weight))
        key = weight.path  # e.g. "stem_conv/kernel": unique in a model, stable across layer order
        if not np.issubdtype(value.dtype, np.floating):
            arrays[f"{key}:raw"] = value  # e.g. a random seed's state
        elif _is_kernel(weight) and weight_format == "int8":
            arrays[f"{key}:q"], arrays[f"{key}:scale"] = quantize_int8(value)
        elif _is_kernel(weight) and weight_format == "float16":
            arrays[f"{key}:f16"] = value.astype(np.float16)
        else:
            arrays[f"{key}:f32"] = value.astype(np.float32)
    np.savez_compressed(folder / "weights.npz", **arrays)
    (folder / "config.json").write_text(config.to_json())


class WeightsMismatch(ValueError):
    """weights.npz does not hold exactly the weights of the model its config.json builds."""


def _value(stored, key: str) -> np.ndarray:
    if f"{key}:q" in stored:
        return stored[f"{key}:q"].astype(np.float32) * stored[f"{key}:scale"]
    if f"{key}:f16" in stored:
        return stored[f"{key}:f16"].astype(np.float32)
    return stored[f"{key}:f32"] if f"{key}:f32" in stored else stored[f"{key}:raw"]


def load(folder: Path) -> tuple[keras.Model, TrainConfig]:
    """Rebuilds the model from config.json and fills in each weight by its path.

    A weight missing from the file, one the model does not have, or a shape that differs
    is an error that names them, never a silent load into the wrong layer.
    """
    folder = Path(folder)
    config = TrainConfig.from_json(folder / "config.json")
    model = models.build_from_config(config)
    with np.load(folder / "weights.npz") as stored:
        stored_keys = {name.rpartition(":")[0] for name in stored.files}
        if not any(stored_keys):  # written before weights were keyed by path: "{index}_{kind}"
            stored = {name.replace("_", ":", 1): stored[name] for name in stored.files}
            stored_keys = {name.rpartition(":")[0] for name in stored}
            keys = [str(index) for index in range(len(model.weights))]
        else:
            keys = [weight.path for weight in model.weights]
        missing, unexpected = sorted(set(keys) - stored_keys), sorted(stored_keys - set(keys))
        if missing or unexpected:
            raise WeightsMismatch(
                f"{folder}/weights.npz does not match the {config.backbone} its config.json builds: "
                f"missing {_listed(missing)}; unexpected {_listed(unexpected)}"
            )
        values = [_value(stored, key) for key in keys]
    for weight, value in zip(model.weights, values):
        if tuple(value.shape) != tuple(weight.shape):
            raise WeightsMismatch(f"{folder}: weight {weight.path} has shape {value.shape}, expected {weight.shape}")
    model.set_weights(values)
    return model, config


def _listed(names: list[str], most: int = 5) -> str:
    if not names:
        return "none"
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def read_metrics(folder: Path) -> dict:
    path = Path(folder) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}
