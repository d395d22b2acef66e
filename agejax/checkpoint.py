"""Compact shipped checkpoints: the training config plus compressed weights.

A checkpoint folder holds
    config.json   the TrainConfig that rebuilds the architecture
    weights.npz   every model weight, in model.weights order:
                  conv/dense kernels as int8 with one float32 scale per output channel
                  ("int8") or as float16 ("float16"); everything else as float32
    metrics.json  what the export measured, written by scripts/export_checkpoint.py

int8 keeps a ResNet50 near 24 MB instead of 94 MB, so the whole repository still
travels to a GPU machine beside a data archive. No optimizer state is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import agejax  # noqa: F401  (sets the JAX backend before keras loads)

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
    for i, weight in enumerate(model.weights):
        value = np.asarray(keras.ops.convert_to_numpy(weight))
        if not np.issubdtype(value.dtype, np.floating):
            arrays[f"{i}_raw"] = value  # e.g. the augmentation's seed state
        elif _is_kernel(weight) and weight_format == "int8":
            arrays[f"{i}_q"], arrays[f"{i}_scale"] = quantize_int8(value)
        elif _is_kernel(weight) and weight_format == "float16":
            arrays[f"{i}_f16"] = value.astype(np.float16)
        else:
            arrays[f"{i}_f32"] = value.astype(np.float32)
    np.savez_compressed(folder / "weights.npz", **arrays)
    (folder / "config.json").write_text(config.to_json())


def load(folder: Path) -> tuple[keras.Model, TrainConfig]:
    """Rebuilds the model from config.json and fills in the decompressed weights."""
    folder = Path(folder)
    config = TrainConfig.from_json(folder / "config.json")
    model = models.build_from_config(config)
    with np.load(folder / "weights.npz") as stored:
        values = []
        for i, weight in enumerate(model.weights):
            if f"{i}_q" in stored:
                value = stored[f"{i}_q"].astype(np.float32) * stored[f"{i}_scale"]
            elif f"{i}_f16" in stored:
                value = stored[f"{i}_f16"].astype(np.float32)
            elif f"{i}_f32" in stored:
                value = stored[f"{i}_f32"]
            elif f"{i}_raw" in stored:
                value = stored[f"{i}_raw"]
            else:
                raise ValueError(f"{folder}/weights.npz has no value for weight {i} ({weight.path})")
            if tuple(value.shape) != tuple(weight.shape):
                raise ValueError(f"{folder}: weight {weight.path} has shape {value.shape}, expected {weight.shape}")
            values.append(value)
    model.set_weights(values)
    return model, config


def read_metrics(folder: Path) -> dict:
    path = Path(folder) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}
