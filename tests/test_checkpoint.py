"""Shipped checkpoints keyed by weight path: a mismatch is an error that names the weights."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from agejax import SHIPPED_ROOT
from agejax.serving import checkpoint, export, int8, predict
from agejax.serving.predict import CHECKPOINTS, Predictor
from agejax.training import models
from agejax.training.configs import TrainConfig

from conftest import REPO

EXAMPLES = SHIPPED_ROOT / "examples"


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
    assert name in (config.backbone, *(m.backbone for m in config.members)) and model.count_params() > 1e6


@pytest.mark.parametrize("name", ["cnn", "resnet50"])
def test_each_shipped_graph_gives_its_keras_models_ages_on_real_faces(name):
    """forward.onnx on ONNX Runtime against the model Keras rebuilds from the same weights."""
    served = Predictor.load(name, int8_graph=False)
    built = Predictor.from_model(*checkpoint.load(CHECKPOINTS / name), CHECKPOINTS / name)
    assert (served.engine, built.engine) == ("onnxruntime", "keras")
    size = served.image_size
    faces = np.stack([np.asarray(Image.open(path).convert("RGB").resize((size, size)))
                      for path in sorted(EXAMPLES.glob("utkface_*.jpg"))])
    faces = np.concatenate([faces, faces[:, :, ::-1], 255 - faces])  # mirrored and inverted: other activations
    got, expected = served.predict(faces), built.predict(faces)
    np.testing.assert_allclose(got.age, expected.age, atol=1e-3)
    np.testing.assert_allclose(got.std, expected.std, atol=1e-3)
    assert np.ptp(expected.age) > 5, "the faces must get different ages, or the comparison proves little"


@pytest.mark.parametrize("name", ["cnn", "resnet50"])
def test_a_face_gets_the_same_age_bit_for_bit_whatever_shares_its_batch(name):
    """Batches are not padded on ONNX Runtime: this is what makes sharded and resumed runs agree."""
    predictor = Predictor.load(name)
    size = predictor.image_size
    faces = np.random.default_rng(2).integers(0, 255, (64, size, size, 3), dtype=np.uint8)
    together = predictor.predict(faces, batch_size=64)
    for start, count in ((0, 1), (5, 3), (17, 30), (63, 1)):
        alone = predictor.predict(faces[start : start + count], batch_size=count)
        np.testing.assert_array_equal(alone.age, together.age[start : start + count])
        np.testing.assert_array_equal(alone.std, together.std[start : start + count])


def example_faces(size: int) -> np.ndarray:
    faces = np.stack([np.asarray(Image.open(path).convert("RGB").resize((size, size)))
                      for path in sorted(EXAMPLES.glob("utkface_*.jpg"))])
    return np.concatenate([faces, faces[:, :, ::-1]])


@pytest.mark.parametrize("name", ["cnn", "resnet50"])
def test_an_int8_graph_ships_only_as_its_export_kept_it(name):
    """The export's guard: kept means faster and within the MAE and mean-age limits; refused means not shipped."""
    from agejax.serving import export

    measured = checkpoint.read_metrics(CHECKPOINTS / name)["int8_graph"]
    shipped = (CHECKPOINTS / name / int8.INT8_FILE).exists()
    assert shipped == measured["kept"], measured.get("why")
    served = Predictor.load(name)
    assert served.engine == ("onnxruntime-int8" if shipped else "onnxruntime")
    if shipped:
        assert measured["speedup"] > 1
        for shifts in (measured["mae_shift_over_float32"], measured["mean_age_shift_over_float32"]):
            assert max(map(abs, shifts.values())) <= export.MAX_MAE_SHIFT
        faces = example_faces(served.image_size)
        float_ages = Predictor.load(name, int8_graph=False).predict(faces).age
        assert np.abs(served.predict(faces).age - float_ages).max() < 1.5


def test_a_damaged_or_stale_int8_graph_is_never_served(tmp_path):
    model, folder = tiny(tmp_path)
    faces = np.random.default_rng(4).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    int8.quantize(folder, np.random.default_rng(5).integers(0, 255, (64, 32, 32, 3), dtype=np.uint8))
    assert Predictor.load(folder).engine == "onnxruntime-int8"
    assert Predictor.load(folder, int8_graph=False).engine == "onnxruntime"
    graph = folder / int8.INT8_FILE
    graph.write_bytes(graph.read_bytes()[:1000])
    float_ages = Predictor.load(folder, int8_graph=False).predict(faces).age
    damaged = Predictor.load(folder)
    assert damaged.engine == "onnxruntime"
    np.testing.assert_array_equal(damaged.predict(faces).age, float_ages)
    int8.quantize(folder, faces)
    checkpoint.save(model, TrainConfig(backbone="cnn", head="distribution", image_size=32), folder, "float16")
    assert not graph.exists()  # new weights: the int8 graph of the old ones is gone


@pytest.mark.parametrize("head", ["distribution", "regression"])
def test_the_graph_gives_the_keras_models_ages_for_any_batch(tmp_path, head):
    config = TrainConfig(backbone="cnn", head=head, image_size=32)
    model = models.build_from_config(config)
    model.get_layer("stem_bn").moving_mean.assign(np.linspace(-0.5, 0.5, 32))  # not the identity it starts as
    checkpoint.save(model, config, tmp_path / "ckpt", "float16")
    served = Predictor.load(tmp_path / "ckpt")
    built = Predictor.from_model(*checkpoint.load(tmp_path / "ckpt"), tmp_path / "ckpt")
    assert (served.engine, built.engine) == ("onnxruntime", "keras")
    faces = np.random.default_rng(0).integers(0, 255, (37, 32, 32, 3), dtype=np.uint8)
    for flip in (False, True):
        served, built = served.with_flip(flip), built.with_flip(flip)
        for count, batch_size in ((1, 16), (3, 16), (37, 16), (37, 64)):
            got, expected = served.predict(faces[:count], batch_size), built.predict(faces[:count], batch_size)
            np.testing.assert_allclose(got.age, expected.age, atol=1e-4)
            if head == "distribution":
                np.testing.assert_allclose(got.std, expected.std, atol=1e-4)


def test_a_layer_without_an_onnx_mapping_is_refused_by_name():
    import keras

    from agejax.serving.onnx_graph import to_onnx

    inputs = keras.Input((8, 8, 3), dtype="uint8")
    x = models.ToFloat()(inputs)
    outputs = keras.layers.LayerNormalization(name="odd_norm")(x)
    with pytest.raises(NotImplementedError, match="odd_norm"):
        to_onnx(keras.Model(inputs, outputs))


def stale_forward_from_another_model(folder, tmp_path):
    config = TrainConfig(backbone="cnn", head="distribution", image_size=32, cnn_width=8)
    checkpoint.save(models.build_from_config(config), config, tmp_path / "other")
    (folder / checkpoint.FORWARD_FILE).write_bytes((tmp_path / "other" / checkpoint.FORWARD_FILE).read_bytes())


def stale_forward_of_another_size(folder, tmp_path):
    config = TrainConfig(backbone="cnn", head="distribution", image_size=48)
    checkpoint.save(models.build_from_config(config), config, tmp_path / "other")
    (folder / checkpoint.FORWARD_FILE).write_bytes((tmp_path / "other" / checkpoint.FORWARD_FILE).read_bytes())


@pytest.mark.parametrize("spoil", [
    lambda folder, tmp_path: (folder / checkpoint.FORWARD_FILE).unlink(),
    lambda folder, tmp_path: (folder / checkpoint.FORWARD_FILE).write_bytes(b"not a graph"),
    lambda folder, tmp_path: (folder / checkpoint.FORWARD_FILE).write_bytes(
        (folder / checkpoint.FORWARD_FILE).read_bytes()[:500]),
    stale_forward_from_another_model,
    stale_forward_of_another_size,
], ids=["absent", "unreadable", "truncated", "another-model", "another-size"])
def test_without_a_usable_graph_keras_gives_the_same_ages(spoil, tmp_path):
    _, folder = tiny(tmp_path)
    faces = np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    expected = Predictor.load(folder).predict(faces).age
    spoil(folder, tmp_path)
    predictor = Predictor.load(folder)
    assert predictor.engine == "keras"
    np.testing.assert_allclose(predictor.predict(faces).age, expected, atol=1e-4)


def test_the_shipped_models_were_trained_with_the_presets_the_readme_names():
    from agejax.training.configs import PRESETS

    rows = [line for line in (REPO / "README.md").read_text().splitlines() if "(shipped" in line]
    named = {name: re.findall(r"`(?:--preset )?([a-z0-9_]+)`", next(row for row in rows if label in row))
             for name, label in (("cnn", "CNN"), ("resnet50", "ResNet50"))}
    for name, presets in named.items():  # a chain of runs is named in order: the last one made the checkpoint
        config = TrainConfig.from_json(CHECKPOINTS / name / "config.json")
        assert presets and (list(config.members) or [config]) == [PRESETS[p] for p in presets[-len(config.members or [0]):]]


def test_the_export_scores_each_split_once_and_keeps_every_answer(tmp_path):
    _, folder = tiny(tmp_path)
    calls = []

    class Counting(Predictor):
        def predict(self, faces, batch_size=64, verbose=0):
            calls.append(len(faces))
            return super().predict(faces, batch_size, verbose)

    remembered = export.RememberedPredictions(Counting.load(folder))
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (5, 3))
    answers = [remembered.predict(first), remembered.predict(second), remembered.predict(first)]
    assert calls == [5, 3]
    assert answers[0] is answers[2] and len(answers[1].age) == 3
    np.testing.assert_array_equal(answers[0].age, Predictor.load(folder).predict(first).age)


def test_model_card_says_how_a_model_was_trained_from_its_config():
    from agejax.serving.model_card import model_card

    shipped = checkpoint.read_metrics(CHECKPOINTS / "resnet50")  # one model: the CNN is an ensemble
    plain = {**shipped, "config": {**shipped["config"], "teachers": [], "init_weights": None}}
    assert "trained from random initialisation" in model_card(plain) and "distilled from" not in model_card(plain)
    distilled = {**shipped, "config": {**shipped["config"], "teachers": ["cnn", "runs/big"], "teacher_weight": 0.25,
                                       "init_weights": "checkpoints/cnn"}}
    card = model_card(distilled)
    assert "fine-tuned from an earlier agejax model" in card
    assert "distilled from `cnn`, `runs/big` (their mean age distribution made 25% of each" in card
