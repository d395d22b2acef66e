"""An ensemble of CNNs as one Keras model: the mean of their age distributions.

CNNs trained apart, at different input sizes, err differently, so their mean distribution is
more accurate than either. The ensemble takes faces at its first member's size, so that they are
decoded small; a member of another size sees them resized bilinearly (Keras' ``Resizing``,
antialiased when shrinking), which the ONNX graph runs as two matrix products. Every member's
layers carry a prefix ("member0_stem_conv"), so the ensemble is one flat model that the
checkpoint, ONNX and int8 code handle like any CNN.

    python scripts/ensemble.py --member RUN_A --member RUN_B --run-dir RUN

writes a run directory (model.keras, config.json, metrics.json) for scripts/export_checkpoint.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import keras
from keras import layers

from agejax.data import split
from agejax.training import models
from agejax.training.configs import TrainConfig


def prefix(index: int) -> str:
    return f"member{index}_"


def ensemble_config(members: Sequence[TrainConfig]) -> TrainConfig:
    """The config of an ensemble of these CNNs: the first one's input size, all their sources."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    for member in members:
        if member.backbone != "cnn" or member.head != "distribution":
            raise ValueError(f"ensemble members are CNNs with the distribution head, not {member.backbone} "
                             f"with the {member.head} head")
    sources = tuple(dict.fromkeys(s for member in members for s in member.sources))
    return TrainConfig(backbone="ensemble", head="distribution", image_size=members[0].image_size,
                       epochs=0, sources=sources, members=tuple(members))


def build(config: TrainConfig, fast_convolutions: bool = True) -> keras.Model:
    """The ensemble's inference model: uint8 faces at config.image_size -> the mean distribution."""
    size = config.image_size
    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    faces = models.ToFloat(name="to_float", dtype="float32")(inputs)
    outputs = []
    for index, member in enumerate(config.members):
        x = faces if member.image_size == size else layers.Resizing(
            member.image_size, member.image_size, antialias=True, name=f"{prefix(index)}resize")(faces)
        features = models.cnn_backbone(x, member.cnn_width, fast_convolutions, prefix(index))
        outputs.append(models.head(features, "distribution", member.dropout, prefix=prefix(index)))
    return keras.Model(inputs, layers.Average(name="age_probs")(outputs), name="cnn_ensemble")


MEMBER_MARK = "#"  # ENSEMBLE#N names the N-th member (from 0) of an ensemble


def load_member(path: str | Path) -> tuple[keras.Model, TrainConfig]:
    """A member's model and config: a run directory or checkpoint, or ``ENSEMBLE#N``.

    ``ENSEMBLE#N`` takes the N-th CNN out of an ensemble run or checkpoint, so that a shipped
    ensemble's members can join another ensemble after their own runs are gone.
    """
    from agejax.serving.predict import load_keras, model_path

    where, mark, index = str(path).rpartition(MEMBER_MARK)
    if not mark:
        return load_keras(model_path(path))
    whole, config = load_keras(model_path(where))
    if config.backbone != "ensemble" or not index.isdigit() or int(index) >= len(config.members):
        raise ValueError(f"{path}: {where} is not an ensemble with a member {index!r} "
                         f"(it has {len(config.members)}, numbered from 0)")
    member_config = config.members[int(index)]
    model = models.build_from_config(member_config)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(whole.get_layer(prefix(int(index)) + layer.name).get_weights())
    return model, member_config


def from_members(paths: Sequence[str | Path]) -> tuple[keras.Model, TrainConfig]:
    """The ensemble of these models (run directories, checkpoints or ``ENSEMBLE#N``), their weights copied in.

    A run directory gives a member's full-precision weights; a checkpoint's are already compressed.
    """
    loaded = [load_member(path) for path in paths]
    config = ensemble_config([member_config for _, member_config in loaded])
    model = build(config)
    names, filled = {layer.name for layer in model.layers}, set()
    for index, (member, _) in enumerate(loaded):
        for layer in member.layers:
            name = prefix(index) + layer.name
            if layer.weights and name in names:
                model.get_layer(name).set_weights(layer.get_weights())
                filled.add(name)
    unfilled = sorted({layer.name for layer in model.layers if layer.weights} - filled)
    if unfilled:  # never an ensemble with a member's layers left at random initialisation
        raise ValueError(f"no member weights for {unfilled}")
    return model, config


def write_run(paths: Sequence[str | Path], run_dir: Path) -> dict:
    """Makes the ensemble of ``paths`` and writes it as a finished run for the export."""
    from agejax.training.train import git_commit

    model, config = from_members(paths)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras", include_optimizer=False)
    (run_dir / "config.json").write_text(config.to_json())
    sizes = " + ".join(f"{m.image_size}px" for m in config.members)
    result = {
        "finished": True,
        "model": f"ensemble of {len(config.members)} CNNs ({sizes}, distribution head)",
        "members": [str(path) for path in paths],
        "config": dataclasses.asdict(config),
        "best_epoch": None,
        "parameters": int(model.count_params()),
        "manifest_sha256": split.manifest_hash(),
        "git_commit": git_commit(),
        "devices": None,
        "peak_rss_mib": None,
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
