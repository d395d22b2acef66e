"""Shipped checkpoints keyed by weight path: a mismatch is an error that names the weights."""

from __future__ import annotations

import numpy as np
import pytest

from agejax import checkpoint, models, predict
from agejax.configs import TrainConfig
from agejax.predict import CHECKPOINTS


def tiny(folder, weight_format: str = "float16"):
    """An untrained 32 px CNN saved as a checkpoint in folder/ckpt."""
    config = TrainConfig(backbone="cnn", head="distribution", image_size=32)
    model = models.build_from_config(config)
    checkpoint.save(model, config, folder / "ckpt", weight_format)
    return model, folder / "ckpt"


def rewrite(path, change) -> None:
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    change(arrays)
    np.savez_compressed(path, **arrays)


def test_weights_are_stored_by_path_and_load_back_in_any_file_order(tmp_path):
    model, folder = tiny(tmp_path)
    with np.load(folder / "weights.npz") as stored:
        assert {"stem_conv/kernel:f16", "stem_bn/gamma:f32", "age_logits/bias:f32"} <= set(stored.files)
    rewrite(folder / "weights.npz", lambda arrays: arrays.update(dict(reversed(list(arrays.items())))))
    loaded, _ = checkpoint.load(folder)
    for original, restored in zip(model.weights, loaded.weights):
        assert original.path == restored.path
        np.testing.assert_allclose(np.asarray(restored), np.asarray(original), atol=2e-3, rtol=1e-3)


def test_a_missing_or_unexpected_weight_is_named(tmp_path):
    _, folder = tiny(tmp_path)

    def swap(arrays):
        arrays["extra_dense/kernel:f32"] = arrays.pop("stage1_a_bn/gamma:f32")

    rewrite(folder / "weights.npz", swap)
    with pytest.raises(checkpoint.WeightsMismatch, match=r"missing stage1_a_bn/gamma; unexpected extra_dense/kernel"):
        checkpoint.load(folder)


def test_a_weight_of_another_shape_is_named(tmp_path):
    _, folder = tiny(tmp_path)
    rewrite(folder / "weights.npz", lambda arrays: arrays.update({"age_logits/bias:f32": np.zeros(3, np.float32)}))
    with pytest.raises(checkpoint.WeightsMismatch, match=r"age_logits/bias has shape \(3,\)"):
        checkpoint.load(folder)


def test_a_checkpoint_written_by_position_still_loads_to_the_same_model(tmp_path):
    model, folder = tiny(tmp_path, "float32")
    position = {path: index for index, path in enumerate(w.path for w in model.weights)}

    def by_position(arrays):
        for name in list(arrays):
            path, _, kind = name.rpartition(":")
            arrays[f"{position[path]}_{kind}"] = arrays.pop(name)

    rewrite(folder / "weights.npz", by_position)
    loaded, _ = checkpoint.load(folder)
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(original))


def test_the_default_model_is_the_shipped_one_lowest_on_validation(tmp_path, monkeypatch):
    (tmp_path / "shipped").mkdir()
    for name, val_mae in (("cnn", 7.5), ("resnet50", 6.25)):
        _, folder = tiny(tmp_path / name)
        (folder / "metrics.json").write_text(f'{{"val_mae": {val_mae}}}')
        folder.rename(tmp_path / "shipped" / name)
    monkeypatch.setattr(predict, "CHECKPOINTS", tmp_path / "shipped")
    assert predict.shipped_by_validation() == ["resnet50", "cnn"] and predict.default_model() == "resnet50"
    (tmp_path / "shipped" / "resnet50" / "weights.npz").unlink()  # not installed: not offered
    assert predict.shipped_by_validation() == ["cnn"] and predict.default_model() == "cnn"


@pytest.mark.parametrize("name", ["cnn", "resnet50"])
def test_the_shipped_checkpoints_load(name):
    model, config = checkpoint.load(CHECKPOINTS / name)
    assert config.backbone == name and model.count_params() > 1e6
