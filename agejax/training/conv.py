"""Convolutions at matmul speed on the CPU: a Conv2D with its own forward and VJP.

XLA's CPU convolution is fast for 3x3 kernels on large feature maps but pathologically
slow for some shapes: 3x3 convolutions on 2x2 or 4x4 maps with hundreds of channels
(ResNet50's last stage at 64 px), and the weight gradients of 1x1 convolutions. The
same arithmetic written as matrix products runs 4-100x faster there. So each pass of
each convolution (forward, input gradient, weight gradient) is computed one of three
ways, all exact to float32 rounding:

    "xla"      lax.conv_general_dilated, or its own transpose
    "patches"  im2col: every kernel offset's shifted input side by side, one matmul
    "offsets"  one matmul per kernel offset, summed (no patch matrix in memory)

The choice per shape is read from ``conv_choices.json``, a table that
``python benchmarks/conv_layers.py --write`` regenerates by timing every formulation
of every convolution both backbones train with. Shapes not in the table, and every
backend but the CPU, use the stock convolution.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import keras
from jax import lax

FORMULATIONS = ("xla", "patches", "offsets")
PASSES = ("forward", "input_grad", "weight_grad")
STOCK = {name: "xla" for name in PASSES}
CHOICES_PATH = Path(__file__).with_name("conv_choices.json")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def shape_key(input_shape: Sequence[int], kernel_shape: Sequence[int], strides: Sequence[int], padding: str) -> str:
    """The table key of one convolution: spatial size, channels, kernel, stride, padding.

    The batch size is left out: a formulation's rank does not change with it.
    """
    _, height, width, channels = input_shape
    kernel_h, kernel_w, _, filters = kernel_shape
    return (
        f"{height}x{width}x{channels}->{filters} k{kernel_h}x{kernel_w} "
        f"s{strides[0]}x{strides[1]} {padding.lower()}"
    )


@functools.cache
def choice_table() -> dict[str, dict[str, str]]:
    return json.loads(CHOICES_PATH.read_text())["choices"] if CHOICES_PATH.exists() else {}


_table_in_force: dict[str, dict[str, str]] | None = None


@contextlib.contextmanager
def choices_in_force(table: dict[str, dict[str, str]]) -> Iterator[None]:
    """Trace with another table than the shipped one (the benchmark weighs a candidate with it)."""
    global _table_in_force
    previous, _table_in_force = _table_in_force, table
    try:
        yield
    finally:
        _table_in_force = previous


def choose(input_shape: Sequence[int], kernel_shape: Sequence[int], strides: Sequence[int],
           padding: str) -> dict[str, str]:
    """The formulation of each pass for this shape: the table's, or the stock convolution."""
    if jax.default_backend() != "cpu":
        return STOCK
    table = choice_table() if _table_in_force is None else _table_in_force
    return table.get(shape_key(input_shape, kernel_shape, strides, padding), STOCK)


# Each pass in each formulation; ``how`` is one of FORMULATIONS.


def _explicit_padding(input_shape, kernel_shape, strides, padding: str):
    return lax.padtype_to_pads(input_shape[1:3], kernel_shape[:2], strides, padding.upper())


def _conv_xla(x, w, strides, padding):
    pads = _explicit_padding(x.shape, w.shape, strides, padding)
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DIMENSIONS)


def _shifted_inputs(x, kernel_shape, strides, padding) -> list[jax.Array]:
    """One strided view of the padded input per kernel offset, each shaped like the output."""
    (top, bottom), (left, right) = _explicit_padding(x.shape, kernel_shape, strides, padding)
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kernel_h, kernel_w = kernel_shape[:2]
    stride_h, stride_w = strides
    out_h = (x.shape[1] - kernel_h) // stride_h + 1
    out_w = (x.shape[2] - kernel_w) // stride_w + 1
    return [
        x[:, i : i + stride_h * (out_h - 1) + 1 : stride_h, j : j + stride_w * (out_w - 1) + 1 : stride_w, :]
        for i in range(kernel_h)
        for j in range(kernel_w)
    ]


def _patches(x, kernel_shape, strides, padding) -> jax.Array:
    """im2col: (N, Ho, Wo, kh * kw * C), offsets major, matching an HWIO kernel's reshape."""
    views = _shifted_inputs(x, kernel_shape, strides, padding)
    return views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)


def forward(x: jax.Array, w: jax.Array, strides: Sequence[int], padding: str, how: str) -> jax.Array:
    if how == "xla":
        return _conv_xla(x, w, strides, padding)
    if how == "patches":
        flat_kernel = w.reshape(-1, w.shape[-1])
        return jnp.einsum("nhwk,ko->nhwo", _patches(x, w.shape, strides, padding), flat_kernel)
    views = _shifted_inputs(x, w.shape, strides, padding)
    kernels = w.reshape(-1, *w.shape[2:])
    return sum(jnp.einsum("nhwc,co->nhwo", view, kernel) for view, kernel in zip(views, kernels))


def input_grad(x: jax.Array, w: jax.Array, dy: jax.Array, strides: Sequence[int], padding: str,
               how: str) -> jax.Array:
    if how == "xla":
        return jax.vjp(lambda x: _conv_xla(x, w, strides, padding), x)[1](dy)[0]
    if how == "patches":
        flat_kernel = w.reshape(-1, w.shape[-1])
        d_patches = jnp.einsum("nhwo,ko->nhwk", dy, flat_kernel)
        return jax.vjp(lambda x: _patches(x, w.shape, strides, padding), x)[1](d_patches)[0]
    kernels = w.reshape(-1, *w.shape[2:])
    d_views = [jnp.einsum("nhwo,co->nhwc", dy, kernel) for kernel in kernels]
    return jax.vjp(lambda x: _shifted_inputs(x, w.shape, strides, padding), x)[1](d_views)[0]


def weight_grad(x: jax.Array, w: jax.Array, dy: jax.Array, strides: Sequence[int], padding: str,
                how: str) -> jax.Array:
    if how == "xla":
        return jax.vjp(lambda w: _conv_xla(x, w, strides, padding), w)[1](dy)[0]
    if how == "patches":
        flat = jnp.einsum("nhwk,nhwo->ko", _patches(x, w.shape, strides, padding), dy)
        return flat.reshape(w.shape)
    views = _shifted_inputs(x, w.shape, strides, padding)
    return jnp.stack([jnp.einsum("nhwc,nhwo->co", view, dy) for view in views]).reshape(w.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, padding, choices):
    return forward(x, w, strides, padding, dict(choices)["forward"])


def _conv_fwd(x, w, strides, padding, choices):
    return _conv(x, w, strides, padding, choices), (x, w)


def _conv_bwd(strides, padding, choices, residuals, dy):
    x, w = residuals
    choices = dict(choices)
    return (
        input_grad(x, w, dy, strides, padding, choices["input_grad"]),
        weight_grad(x, w, dy, strides, padding, choices["weight_grad"]),
    )


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x: jax.Array, w: jax.Array, strides: Sequence[int] = (1, 1), padding: str = "valid",
           choices: dict[str, str] | None = None) -> jax.Array:
    """An NHWC x HWIO convolution computed with the given formulation per pass.

    ``choices`` maps each of PASSES to one of FORMULATIONS; by default the table's choice
    for this shape (the stock convolution where the table has none).
    """
    x, w = jnp.asarray(x), jnp.asarray(w)  # Keras passes Variables
    strides = tuple(int(s) for s in strides)
    if choices is None:
        choices = choose(x.shape, w.shape, strides, padding)
    if choices == STOCK:
        return _conv_xla(x, w, strides, padding)
    return _conv(x, w, strides, padding, tuple(sorted(choices.items())))


@keras.saving.register_keras_serializable(package="agejax")
class FastConv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D with the same weights and config, convolving with ``conv2d``.

    Only plain convolutions are handled (channels last, no dilation, no groups); any
    other configuration falls back to the stock convolution.
    """

    def convolution_op(self, inputs, kernel):
        plain = (
            self.data_format == "channels_last" and tuple(self.dilation_rate) == (1, 1) and self.groups == 1
        )
        if not plain:
            return super().convolution_op(inputs, kernel)
        return conv2d(inputs, keras.ops.convert_to_tensor(kernel, inputs.dtype), self.strides, self.padding)


def with_fast_convolutions(model: keras.Model) -> keras.Model:
    """A copy of a functional model with every Conv2D a FastConv2D: same names, configs and weights."""

    def swap(layer):
        if type(layer) is keras.layers.Conv2D:
            return FastConv2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=swap)
    clone.set_weights(model.get_weights())
    return clone
