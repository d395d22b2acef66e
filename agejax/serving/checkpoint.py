"""Compact shipped checkpoints: the training config, compressed weights and the model's
inference graph in ONNX.

A checkpoint folder holds
    config.json        the TrainConfig that rebuilds the architecture
    weights.npz        every model weight, keyed by its path (e.g. "stem_conv/kernel"):
                       conv/dense kernels as int8 with one float32 scale per output channel
                       ("int8") or as float16 ("float16"); everything else as float32.
                       Beyond SHARD_BYTES the rest goes on in weights-1.npz, weights-2.npz...
    forward.onnx       uint8 faces (any batch) -> the model's outputs, its weights read
                       from weights.npz (agejax/serving/onnx_graph.py)
    forward.int8.onnx  the same graph in int8, weights inside, where the export kept it
                       (agejax/serving/int8.py); prediction prefers it
    metrics.json       what the export measured, written by scripts/export_checkpoint.py

int8 keeps a ResNet50 near 24 MB instead of 94 MB, so the whole repository still
travels to a GPU machine beside a data archive. No optimizer state is kept.

Prediction runs forward.onnx on ONNX Runtime: no Keras, no JAX, no compiling, which was
most of a short command's start-up, and the forward pass takes 0.6x the time of Keras on
XLA on this CPU (benchmarks/inference_engines.py). Where it cannot serve
(absent, damaged, another architecture's graph), the model is rebuilt with Keras
instead: the same outputs, only slower.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agejax.training.configs import TrainConfig

if TYPE_CHECKING:
    import keras

FORMATS = ("int8", "float16", "float32")
INT8_FILE = "forward.int8.onnx"  # the int8 inference graph that the export may add (serving/int8.py)
# Each weights file stays under this many bytes: a Hugging Face Space stores files over
# 10 MB with Git LFS, and the repository keeps every file under 16 MiB.
SHARD_BYTES = 9 * 10**6


def _is_kernel(weight) -> bool:
    return len(weight.shape) >= 2 and weight.path.endswith("kernel")


def quantize_int8(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: kernel ~= q * scale, scale over the last axis."""
    peak = np.max(np.abs(kernel.reshape(-1, kernel.shape[-1])), axis=0)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    quantized = np.clip(np.round(kernel / scale), -127, 127).astype(np.int8)
    return quantized, scale


def save(model: keras.Model, config: TrainConfig, folder: Path, weight_format: str = "int8") -> None:
    import keras

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
    for old in weight_files(folder):
        old.unlink()
    (folder / INT8_FILE).unlink(missing_ok=True)  # built from the old weights; the export builds it anew
    shards: list[dict[str, np.ndarray]] = [{}]
    for name, value in arrays.items():  # int8 barely compresses: raw bytes bound each file
        if shards[-1] and sum(v.nbytes for v in shards[-1].values()) + value.nbytes > SHARD_BYTES:
            shards.append({})
        shards[-1][name] = value
    for index, shard in enumerate(shards):
        np.savez_compressed(folder / ("weights.npz" if index == 0 else f"weights-{index}.npz"), **shard)
    (folder / "config.json").write_text(config.to_json())
    save_forward(model, folder)


def weight_files(folder: Path) -> list[Path]:
    """weights.npz and the files it continues in, in order ([] where there is none)."""
    folder = Path(folder)
    first = [folder / "weights.npz"] if (folder / "weights.npz").exists() else []
    rest = sorted(folder.glob("weights-*.npz"), key=lambda path: int(path.stem.partition("-")[2]))
    return first + rest


FORWARD_FILE = "forward.onnx"


def save_forward(model: keras.Model, folder: Path) -> None:
    """Writes the model's inference graph, whose weights stay in weights.npz."""
    from agejax.serving.onnx_graph import to_onnx

    (Path(folder) / FORWARD_FILE).write_bytes(to_onnx(model).SerializeToString())


def load_forward(folder: Path, config: TrainConfig) -> Callable[[np.ndarray], np.ndarray] | None:
    """The checkpoint's inference graph on ONNX Runtime with its weights bound: uint8 faces
    (N, S, S, 3) -> outputs. None where it cannot serve, and the caller builds the model.
    """
    folder = Path(folder)
    if not (folder / FORWARD_FILE).exists():
        return None
    import onnxruntime

    from agejax.serving.onnx_graph import INPUT

    weights = {key: np.ascontiguousarray(value, np.float32) for key, value in read_weights(folder).items()
               if np.issubdtype(value.dtype, np.floating)}
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: a fallback below says what it needs to
    # Idle threads sleep instead of spinning: they would take the cores from the decoding
    # workers and the demo's other requests between calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The graph names each weight by its Keras path; OrtValues wrap the arrays without copying.
    options.add_external_initializers(
        list(weights), [onnxruntime.OrtValue.ortvalue_from_numpy(value) for value in weights.values()])
    try:
        session = onnxruntime.InferenceSession(
            (folder / FORWARD_FILE).read_bytes(), options, providers=["CPUExecutionProvider"])
    except Exception:  # damaged, or another architecture's graph (a weight missing or misshapen)
        return None
    if [i.shape[1:] for i in session.get_inputs()] != [[config.image_size, config.image_size, 3]]:
        return None  # not one image input of this size

    def forward(faces: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT: faces})[0]

    forward.weights = weights  # the OrtValues point into them: they live as long as the function
    return forward


class WeightsMismatch(ValueError):
    """weights.npz does not hold exactly the weights of the model its config.json builds."""


def _value(stored, key: str) -> np.ndarray:
    if f"{key}:q" in stored:
        return stored[f"{key}:q"].astype(np.float32) * stored[f"{key}:scale"]
    if f"{key}:f16" in stored:
        return stored[f"{key}:f16"].astype(np.float32)
    return stored[f"{key}:f32"] if f"{key}:f32" in stored else stored[f"{key}:raw"]


def read_weights(folder: Path) -> dict[str, np.ndarray]:
    """Every stored weight as a float32 (or raw) array, keyed by its path."""
    files = {}
    for path in weight_files(folder):
        with np.load(path) as stored:
            files.update({name: stored[name] for name in stored.files})
    return {key: _value(files, key) for key in {name.rpartition(":")[0] for name in files}}


def load(folder: Path) -> tuple[keras.Model, TrainConfig]:
    """Rebuilds the model from config.json and fills in each weight by its path.

    A weight missing from the file, one the model does not have, or a shape that differs
    is an error that names them, never a silent load into the wrong layer.
    """
    from agejax.training import models  # imports Keras: only where a model is built

    folder = Path(folder)
    config = TrainConfig.from_json(folder / "config.json")
    model = models.build_from_config(config)
    stored = read_weights(folder)
    keys = [weight.path for weight in model.weights]
    missing, unexpected = sorted(set(keys) - set(stored)), sorted(set(stored) - set(keys))
    if missing or unexpected:
        raise WeightsMismatch(
            f"{folder}/weights.npz does not match the {config.backbone} its config.json builds: "
            f"missing {_listed(missing)}; unexpected {_listed(unexpected)}"
        )
    values = [stored[key] for key in keys]
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
