"""Compact shipped checkpoints: the training config, compressed weights and the model's
inference function serialized with jax.export.

A checkpoint folder holds
    config.json        the TrainConfig that rebuilds the architecture
    weights.npz        every model weight, keyed by its path (e.g. "stem_conv/kernel"):
                       conv/dense kernels as int8 with one float32 scale per output channel
                       ("int8") or as float16 ("float16"); everything else as float32.
                       Beyond SHARD_BYTES the rest goes on in weights-1.npz, weights-2.npz...
    forward.jaxexport  uint8 faces (any batch) and the weights -> the model's outputs
    metrics.json       what the export measured, written by scripts/export_checkpoint.py

int8 keeps a ResNet50 near 24 MB instead of 94 MB, so the whole repository still
travels to a GPU machine beside a data archive. No optimizer state is kept.

Prediction runs forward.jaxexport with the weights as plain arrays: no Keras import, no
model build, no tracing, which is most of a short command's start-up. Where it cannot
serve (absent, written by an incompatible JAX, another platform or architecture), the
model is rebuilt with Keras instead: the same outputs, only slower to start.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agejax.configs import TrainConfig

if TYPE_CHECKING:
    import keras

FORMATS = ("int8", "float16", "float32")
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
    shards: list[dict[str, np.ndarray]] = [{}]
    for name, value in arrays.items():  # int8 barely compresses: raw bytes bound each file
        if shards[-1] and sum(v.nbytes for v in shards[-1].values()) + value.nbytes > SHARD_BYTES:
            shards.append({})
        shards[-1][name] = value
    for index, shard in enumerate(shards):
        np.savez_compressed(folder / ("weights.npz" if index == 0 else f"weights-{index}.npz"), **shard)
    (folder / "config.json").write_text(config.to_json())
    save_forward(model, config, folder)


def weight_files(folder: Path) -> list[Path]:
    """weights.npz and the files it continues in, in order ([] where there is none)."""
    folder = Path(folder)
    first = [folder / "weights.npz"] if (folder / "weights.npz").exists() else []
    rest = sorted(folder.glob("weights-*.npz"), key=lambda path: int(path.stem.partition("-")[2]))
    return first + rest


FORWARD_FILE = "forward.jaxexport"


def save_forward(model: keras.Model, config: TrainConfig, folder: Path) -> None:
    """Serializes the model's inference function, weights as arguments and the batch symbolic."""
    import jax
    from jax import export

    weight_paths = {weight.path for weight in model.weights}

    def forward(weights: dict, images):
        # Non-weight state (augmentation seeds) does not act at inference: kept as constants.
        trainable = [weights[v.path] for v in model.trainable_variables]
        non_trainable = [weights[v.path] if v.path in weight_paths else v.value for v in model.non_trainable_variables]
        outputs, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        return outputs

    weights = {weight.path: jax.ShapeDtypeStruct(weight.shape, weight.dtype) for weight in model.weights}
    size = config.image_size
    images = jax.ShapeDtypeStruct(export.symbolic_shape(f"batch, {size}, {size}, 3"), np.uint8)
    # CPU is where agejax runs; a GPU machine's export still serves the users' CPUs.
    exported = export.export(jax.jit(forward), platforms=("cpu",))(weights, images)
    (Path(folder) / FORWARD_FILE).write_bytes(exported.serialize())


def load_forward(folder: Path, config: TrainConfig) -> Callable[[np.ndarray], np.ndarray] | None:
    """The checkpoint's serialized inference function with its weights bound: uint8 faces
    (N, S, S, 3) -> outputs. None where it cannot serve, and the caller builds the model.
    """
    folder = Path(folder)
    if not (folder / FORWARD_FILE).exists():
        return None
    import jax
    from jax import export

    try:
        exported = export.deserialize(bytearray((folder / FORWARD_FILE).read_bytes()))
    except Exception:  # damaged, or written by a JAX this one cannot read: Keras rebuilds the model
        return None
    (weight_avals, image_aval), _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    weights = read_weights(folder)
    if (
        jax.default_backend() not in exported.platforms
        or image_aval.shape[1:] != (config.image_size, config.image_size, 3)
        or set(weights) != set(weight_avals)
        or any(weights[key].shape != aval.shape for key, aval in weight_avals.items())
    ):
        return None
    # Data-parallel over every device (one per CPU core, agejax/__init__.py): the weights on each,
    # each device scoring its share of the faces.
    devices = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    replicated = jax.sharding.NamedSharding(devices, jax.sharding.PartitionSpec())
    split = jax.sharding.NamedSharding(devices, jax.sharding.PartitionSpec("batch"))
    on_devices = {key: jax.device_put(weights[key].astype(aval.dtype), replicated) for key, aval in weight_avals.items()}
    call = jax.jit(exported.call, in_shardings=(replicated, split), out_shardings=split)

    def forward(faces: np.ndarray) -> np.ndarray:
        padding = -len(faces) % devices.size
        if padding:
            faces = np.concatenate([faces, np.zeros((padding, *faces.shape[1:]), faces.dtype)])
        return np.asarray(call(on_devices, faces))[: len(faces) - padding]

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
    """Every stored weight as a float32 (or raw) array, keyed by its path.

    Checkpoints written before weights were keyed by path ("{index}_{kind}") give their
    positions as keys.
    """
    files = {}
    for path in weight_files(folder):
        with np.load(path) as stored:
            files.update({name: stored[name] for name in stored.files})
    if not any(name.rpartition(":")[0] for name in files):
        files = {name.replace("_", ":", 1): value for name, value in files.items()}
    return {key: _value(files, key) for key in {name.rpartition(":")[0] for name in files}}


def load(folder: Path) -> tuple[keras.Model, TrainConfig]:
    """Rebuilds the model from config.json and fills in each weight by its path.

    A weight missing from the file, one the model does not have, or a shape that differs
    is an error that names them, never a silent load into the wrong layer.
    """
    from agejax import models  # imports Keras: only where a model is built

    folder = Path(folder)
    config = TrainConfig.from_json(folder / "config.json")
    model = models.build_from_config(config)
    stored = read_weights(folder)
    by_position = all(key.isdigit() for key in stored)
    keys = [str(index) if by_position else weight.path for index, weight in enumerate(model.weights)]
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
