"""agejax.conv: every formulation of every pass equals XLA's convolution and its VJP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from jax import lax

from agejax.serving import checkpoint, predict
from agejax.training import conv, models

# (input NHWC, kernel HWIO, strides, padding): 1x1, 3x3 and 7x7; stride 1 and 2; SAME and
# VALID; odd sizes; batch 1; ResNet50's stem (ZeroPadding2D then a VALID 7x7 stride 2).
CASES = [
    ((2, 4, 4, 16), (3, 3, 16, 8), (1, 1), "same"),
    ((2, 2, 2, 12), (3, 3, 12, 6), (1, 1), "same"),
    ((1, 5, 7, 8), (3, 3, 8, 4), (2, 2), "same"),
    ((2, 9, 9, 5), (3, 3, 5, 3), (2, 2), "valid"),
    ((1, 3, 3, 4), (3, 3, 4, 2), (1, 1), "valid"),
    ((2, 8, 8, 6), (1, 1, 6, 5), (1, 1), "valid"),
    ((2, 7, 7, 6), (1, 1, 6, 5), (2, 2), "valid"),
    ((1, 5, 5, 4), (1, 1, 4, 3), (2, 2), "same"),
    ((1, 13, 13, 3), (7, 7, 3, 4), (2, 2), "valid"),
    ((2, 11, 9, 3), (7, 7, 3, 4), (2, 2), "same"),
]


def reference(x, w, strides, padding):
    """XLA's convolution and its VJP, as Keras' stock Conv2D computes them."""
    run = lambda x, w: lax.conv_general_dilated(x, w, strides, padding.upper(), dimension_numbers=conv._DIMENSIONS)  # noqa: E731
    y, vjp = jax.vjp(run, x, w)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
    return y, dy, *vjp(dy)


def assert_close(actual, expected):
    scale = float(jnp.max(jnp.abs(expected))) + 1e-6
    np.testing.assert_allclose(np.asarray(actual) / scale, np.asarray(expected) / scale, atol=2e-6)


@pytest.mark.parametrize("x_shape, w_shape, strides, padding", CASES)
def test_every_formulation_equals_xla(x_shape, w_shape, strides, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
    y, dy, dx, dw = reference(x, w, strides, padding)
    for how in conv.FORMULATIONS:
        assert_close(conv.forward(x, w, strides, padding, how), y)
        assert_close(conv.input_grad(x, w, dy, strides, padding, how), dx)
        assert_close(conv.weight_grad(x, w, dy, strides, padding, how), dw)


@pytest.mark.parametrize("x_shape, w_shape, strides, padding", CASES[:3] + CASES[-2:])
def test_custom_vjp_mixes_formulations(x_shape, w_shape, strides, padding):
    """Through jax.vjp, each pass uses its own formulation and the results still agree."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
    y, dy, dx, dw = reference(x, w, strides, padding)
    choices = {"forward": "patches", "input_grad": "offsets", "weight_grad": "patches"}
    fast_y, vjp = jax.vjp(lambda x, w: conv.conv2d(x, w, strides, padding, choices), x, w)
    fast_dx, fast_dw = vjp(dy)
    assert_close(fast_y, y)
    assert_close(fast_dx, dx)
    assert_close(fast_dw, dw)


def test_choice_table_covers_the_trained_shapes():
    """The table names the layers that matter, and unknown shapes keep the stock convolution."""
    # ResNet50's last stage at 64 px: 3x3 on 2x2x512, XLA's slowest case.
    assert conv.choose((32, 2, 2, 512), (3, 3, 512, 512), (1, 1), "same")["forward"] != "xla"
    assert conv.choose((32, 3, 3, 7), (3, 3, 7, 5), (1, 1), "same") == conv.STOCK
    for choices in conv.choice_table().values():
        assert set(choices) == set(conv.PASSES) and set(choices.values()) <= set(conv.FORMULATIONS)


def test_a_candidate_table_is_in_force_only_inside_its_block():
    """The benchmark times a whole model under a candidate table; the shipped one comes back after."""
    shape = ((32, 3, 3, 7), (3, 3, 7, 5), (1, 1), "same")
    candidate = {conv.shape_key(*shape): {"forward": "patches", "input_grad": "offsets", "weight_grad": "xla"}}
    shipped_choice = conv.choose((32, 2, 2, 512), (3, 3, 512, 512), (1, 1), "same")
    with conv.choices_in_force(candidate):
        assert conv.choose(*shape) == candidate[conv.shape_key(*shape)]
        assert conv.choose((32, 2, 2, 512), (3, 3, 512, 512), (1, 1), "same") == conv.STOCK
    assert conv.choose(*shape) == conv.STOCK
    assert conv.choose((32, 2, 2, 512), (3, 3, 512, 512), (1, 1), "same") == shipped_choice


@pytest.fixture
def no_xla(monkeypatch):
    """Every convolution computed without XLA's, whatever the table says."""
    choices = {"forward": "patches", "input_grad": "offsets", "weight_grad": "patches"}
    monkeypatch.setattr(conv, "choose", lambda *args: choices)


@pytest.mark.parametrize("backbone", models.BACKBONES)
def test_one_training_step_matches_the_stock_model(backbone, no_xla):
    size = 32
    keras.utils.set_random_seed(0)  # the same start on every run
    # No dropout: its random masks would differ between the two models.
    stock = models.build_model(backbone, "distribution", size, fast_convolutions=False, dropout=0.0)
    fast = models.build_model(backbone, "distribution", size, dropout=0.0)
    fast_layers = [layer.name for layer in _all_layers(fast) if type(layer) is conv.FastConv2D]
    stock_layers = [layer.name for layer in _all_layers(stock) if type(layer) is keras.layers.Conv2D]
    assert fast_layers == stock_layers and len(fast_layers) == (53 if backbone == "resnet50" else 9)
    fast.set_weights(stock.get_weights())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, size, size, 3), np.uint8)
    ages = np.array([3.0, 25.0, 47.0, 80.0])
    results = []
    for model in (stock, fast):
        model.get_layer("augment").switch_off()  # the same batch through both
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=models.loss_for("distribution"))
        loss = model.train_on_batch(images, ages)
        results.append((loss, model.predict(images, verbose=0)))
    (stock_loss, stock_after), (fast_loss, fast_after) = results
    # float32 sums in another order, through 53 convolutions and their BatchNorms: the ResNet50's
    # loss differed by up to 1.1e-4 relative over random initialisations; a wrong gradient moves it by far more.
    assert fast_loss == pytest.approx(stock_loss, rel=5e-4)
    np.testing.assert_allclose(fast_after, stock_after, atol=1e-4)


def _all_layers(model):
    for layer in model.layers:
        yield from _all_layers(layer) if isinstance(layer, keras.Model) else [layer]


def test_shipped_checkpoint_predicts_as_with_stock_convolutions(no_xla):
    model, config = checkpoint.load(predict.CHECKPOINTS / "cnn")
    stock = models.build_from_config(config, fast_convolutions=False)
    stock.set_weights(model.get_weights())
    images = np.random.default_rng(0).integers(0, 256, (8, config.image_size, config.image_size, 3), np.uint8)
    np.testing.assert_allclose(model.predict(images, verbose=0), stock.predict(images, verbose=0), atol=1e-5)


def test_fast_layer_saves_and_loads(tmp_path):
    model = models.build_model("cnn", "regression", 16)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert type(loaded.get_layer("stem_conv")) is conv.FastConv2D
    images = np.zeros((2, 16, 16, 3), np.uint8)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)

