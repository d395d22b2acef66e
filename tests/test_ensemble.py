"""An ensemble of CNNs at different input sizes: one model, one graph, the mean of its members."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from agejax.serving import checkpoint, onnx_graph
from agejax.serving.model_card import model_card
from agejax.serving.predict import CHECKPOINTS, Predictor
from agejax.training import ensemble, models, train
from agejax.training.configs import TrainConfig

from conftest import save_tiny_run


def member_run(folder, image_size: int, seed: int, sources=("utkface",)):
    """A run directory holding an untrained CNN: its model.keras and config.json."""
    config = TrainConfig(image_size=image_size, cnn_width=4, seed=seed, sources=sources)
    rng = np.random.default_rng(seed)
    model = models.build_from_config(config)
    for weight in model.weights:  # members that disagree clearly, so that their mean is a real test
        if weight.path.endswith("kernel"):
            weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
    return model, save_tiny_run(folder, config, model)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("size_in, size_out", [(112, 96), (40, 32), (64, 64), (96, 112), (32, 40)])
def test_the_graphs_resizing_matrix_is_jax_bilinear_resizing(size_in, size_out, antialias):
    image = np.random.default_rng(0).random((size_in, size_in)).astype(np.float32)
    matrix = onnx_graph.resize_matrix(size_in, size_out, antialias)
    expected = jax.image.resize(jnp.asarray(image), (size_out, size_out), "linear", antialias=antialias)
    np.testing.assert_allclose(matrix @ image @ matrix.T, np.asarray(expected), atol=1e-5)


def after_cast(model: keras.Model) -> keras.Model:
    """A member's layers after its uint8 cast: what the ensemble feeds a resized face into, as floats."""
    return keras.Model(model.get_layer("to_float").output, model.output)


@pytest.mark.parametrize("sizes", [(32, 40), (40, 32)])
def test_an_ensemble_gives_the_mean_of_its_members_at_the_first_ones_size(tmp_path, sizes):
    first, first_dir = member_run(tmp_path / "first", sizes[0], seed=1)
    second, second_dir = member_run(tmp_path / "second", sizes[1], seed=2, sources=("utkface", "aaf"))
    model, config = ensemble.from_members([first_dir, second_dir])
    assert (config.backbone, config.image_size, config.sources) == ("ensemble", sizes[0], ("utkface", "aaf"))

    faces = np.random.default_rng(3).integers(0, 256, (6, sizes[0], sizes[0], 3), dtype=np.uint8)
    resized = jax.image.resize(jnp.asarray(faces, jnp.float32), (6, sizes[1], sizes[1], 3), "linear", antialias=True)
    first_probs, second_probs = np.asarray(first(faces, training=False)), np.asarray(after_cast(second)(resized))
    expected = (first_probs + second_probs) / 2
    ages = np.arange(first_probs.shape[-1])
    assert np.abs(first_probs @ ages - second_probs @ ages).min() > 1, "the members must disagree"
    np.testing.assert_allclose(np.asarray(model(faces, training=False)), expected, atol=1e-5)

    # As a checkpoint: the config round-trips, the ONNX graph gives the Keras model's answer.
    checkpoint.save(model, config, tmp_path / "ckpt", "float32")
    rebuilt, rebuilt_config = checkpoint.load(tmp_path / "ckpt")
    assert rebuilt_config == config and rebuilt_config.members[1].image_size == sizes[1]
    served = Predictor.load(tmp_path / "ckpt", flip=False)
    assert served.engine == "onnxruntime" and served.image_size == sizes[0]
    np.testing.assert_allclose(served.predict(faces).probs, expected, atol=1e-5)


def test_the_ensemble_run_is_what_the_export_reads(tmp_path):
    _, first = member_run(tmp_path / "first", 32, seed=1)
    _, second = member_run(tmp_path / "second", 40, seed=2)
    result = ensemble.write_run([first, second], tmp_path / "ensemble")
    assert result["members"] == [str(first), str(second)] and result["best_epoch"] is None
    # A fresh process, as the export's: the run's model.keras names agejax's layers, which must load.
    load = f"from agejax.serving.predict import Predictor; print(Predictor.load({str(tmp_path / 'ensemble')!r}).config.backbone)"
    loaded = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=120)
    assert loaded.stdout.strip() == "ensemble", loaded.stderr[-2000:]
    assert json.loads((tmp_path / "ensemble" / "config.json").read_text())["members"][0]["image_size"] == 32


def test_what_cannot_be_an_ensemble_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        ensemble.ensemble_config([TrainConfig()])
    with pytest.raises(ValueError, match="not resnet50"):
        ensemble.ensemble_config([TrainConfig(), TrainConfig(backbone="resnet50")])
    with pytest.raises(ValueError, match="only an ensemble"):
        TrainConfig(backbone="ensemble")
    with pytest.raises(ValueError, match="not trained"):
        train.train(ensemble.ensemble_config([TrainConfig(), TrainConfig()]), tmp_path / "run")


def test_an_ensembles_model_card_names_its_members():
    shipped = checkpoint.read_metrics(CHECKPOINTS / "resnet50")
    one = {**shipped["config"], "backbone": "cnn", "image_size": 96, "teachers": ["cnn"], "teacher_weight": 0.5}
    members = [one, {**one, "image_size": 112, "teachers": [], "init_weights": None}]
    card = model_card({**shipped, "best_epoch": None, "members": ["runs/a", "runs/b"],
                       "config": {**shipped["config"], "backbone": "ensemble", "members": members}})
    assert "averaging the age distributions of 2 CNNs trained on UTKFace and All-Age-Faces" in card
    assert "- `runs/a`: 96 px, fine-tuned from an earlier agejax model" in card and "distilled from `cnn`" in card
    assert "- `runs/b`: 112 px, trained from random initialisation." in card
    assert "`python scripts/ensemble.py`" in card and "Each member's best epoch was chosen on validation" in card


def test_a_member_taken_out_of_an_ensemble_answers_as_it_did_alone(tmp_path):
    first, first_dir = member_run(tmp_path / "first", 32, seed=1)
    second, second_dir = member_run(tmp_path / "second", 40, seed=2)
    ensemble.write_run([first_dir, second_dir], tmp_path / "pair")
    faces = np.random.default_rng(4).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    taken, config = ensemble.load_member(f"{tmp_path / 'pair'}#1")
    assert config.image_size == 40 and config.backbone == "cnn"
    np.testing.assert_allclose(np.asarray(taken(faces, training=False)), np.asarray(second(faces, training=False)),
                               atol=1e-6)
    # and it joins a new ensemble beside a run directory
    _, new_config = ensemble.from_members([first_dir, f"{tmp_path / 'pair'}#1"])
    assert [m.image_size for m in new_config.members] == [32, 40]
    for bad in ("#2", "#x"):
        with pytest.raises(ValueError, match="not an ensemble with a member"):
            ensemble.load_member(f"{tmp_path / 'pair'}{bad}")
    with pytest.raises(ValueError, match="not an ensemble with a member"):
        ensemble.load_member(f"{first_dir}#0")
