"""On-device augmentation: one Keras layer that runs inside the jitted train step.

Per image: a random rotation, scale and shift (one bilinear resampling), a horizontal
flip, brightness and contrast, and the ways real photos fall short of UTKFace's chips:
greyscale, blur, darkening (a gamma curve), colour noise, fine film grain and old photographs
(sepia toning, fading, coarser grain). Random numbers come from a Keras SeedGenerator, so a seed
makes it repeatable.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import keras
from jax import lax
from keras import ops

from agejax.training.configs import AUGMENTATION_FIELDS

# Weights of the luminance that a greyscale photo keeps (ITU-R BT.601, as Pillow's "L").
LUMINANCE = (0.299, 0.587, 0.114)
# The blur: a separable Gaussian of 1.2 px at 64 px, blended per image with a random weight.
BLUR_SIGMA_AT_64 = 1.2
# An old photo's tint, per channel, applied to its luminance (agejax.data.degrade.SEPIA).
SEPIA = (1.07, 0.96, 0.77)


@keras.saving.register_keras_serializable(package="agejax")
class Augment(keras.layers.Layer):
    """Random geometry, flip, photometric changes and degradations on float images in [0, 255].

    Identity unless ``training=True``, and when every magnitude is 0. Probabilities
    (``*_prob``) say how often an image gets that degradation.
    """

    def __init__(
        self,
        max_zoom: float = 0.1,
        max_shift: float = 0.06,
        max_brightness: float = 0.15,
        max_contrast: float = 0.2,
        max_rotation_deg: float = 0.0,
        grey_prob: float = 0.0,
        blur_prob: float = 0.0,
        dark_prob: float = 0.0,
        max_dimming: float = 0.0,
        max_noise: float = 0.0,
        max_grain: float = 0.0,
        old_photo_prob: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        # The named arguments stay in the signature: Keras rebuilds the layer's config from them.
        arguments = locals()
        super().__init__(**kwargs)
        for name in AUGMENTATION_FIELDS:
            setattr(self, name, arguments[name])
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def magnitudes(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in AUGMENTATION_FIELDS}

    def switch_off(self) -> None:
        """Zero every magnitude: the layer becomes an identity, also in training."""
        for name in AUGMENTATION_FIELDS:
            setattr(self, name, 0.0)

    def _uniform(self, batch: int, bound: float, shape: tuple[int, ...] = ()):
        return keras.random.uniform((batch, *shape), -bound, bound, seed=self.seed_generator)

    def _chosen(self, batch: int, probability: float):
        """A (batch, 1, 1, 1) mask, true for each image with that probability."""
        return keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < probability

    def call(self, images, training: bool = False):
        if not training or not any(self.magnitudes().values()):
            return images
        batch = images.shape[0]
        images = self._geometry(images, batch)

        flip = self._chosen(batch, 0.5)
        images = ops.where(flip, ops.flip(images, axis=2), images)

        brightness = self._uniform(batch, self.max_brightness, (1, 1, 1)) * 255.0
        contrast = 1.0 + self._uniform(batch, self.max_contrast, (1, 1, 1))
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        images = ops.clip((images - mean) * contrast + mean + brightness, 0.0, 255.0)

        if self.grey_prob:
            grey = ops.sum(images * ops.convert_to_tensor(LUMINANCE), axis=-1, keepdims=True)
            images = ops.where(self._chosen(batch, self.grey_prob), ops.broadcast_to(grey, images.shape), images)
        if self.blur_prob:
            weight = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            weight = ops.where(self._chosen(batch, self.blur_prob), weight, 0.0)
            images = images + weight * (_gaussian_blur(images) - images)
        if self.dark_prob:
            # gamma in [1, 2.5] darkens the mid-tones the way an underexposed photo is dark
            gamma = 1.0 + 1.5 * keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            dark = self._chosen(batch, self.dark_prob)
            images = 255.0 * ops.power(images / 255.0, ops.where(dark, gamma, 1.0))
            if self.max_dimming:  # and less light overall, as a dim room gives
                gain = 1.0 - self.max_dimming * keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
                images = images * ops.where(dark, gain, 1.0)
        if self.old_photo_prob:
            images = self._old_photo(images, batch)
        if self.max_noise:
            level = self.max_noise * keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            images = images + level * keras.random.normal(images.shape, seed=self.seed_generator)
        if self.max_grain:  # monochrome, a pixel across: what grain drawn at 200 px leaves at the model's size
            level = self.max_grain * keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            images = images + level * keras.random.normal((*images.shape[:3], 1), seed=self.seed_generator)
        return ops.clip(images, 0.0, 255.0)

    def _old_photo(self, images, batch: int):
        """For old_photo_prob of the images: toned towards sepia, faded and grainy, each by a random amount."""
        chosen = self._chosen(batch, self.old_photo_prob)

        def amount(low: float = 0.0, high: float = 1.0):
            value = low + (high - low) * keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
            return ops.where(chosen, value, 0.0)

        grey = ops.sum(images * ops.convert_to_tensor(LUMINANCE), axis=-1, keepdims=True)
        toned = ops.minimum(grey * ops.convert_to_tensor(SEPIA), 255.0)
        images = images + amount(0.3, 1.0) * (toned - images)
        lift, drop = amount(0.0, 0.25) * 255.0, amount(0.0, 0.15) * 255.0  # faded blacks and whites
        images = lift + images * (255.0 - lift - drop) / 255.0
        # Grain a pixel or two across: noise at half resolution, upsampled.
        height, width = images.shape[1], images.shape[2]
        noise = keras.random.normal((batch, (height + 1) // 2, (width + 1) // 2, 1), seed=self.seed_generator)
        noise = jnp.repeat(jnp.repeat(noise, 2, axis=1), 2, axis=2)[:, :height, :width]
        return images + amount(0.0, 14.0) * noise

    def _geometry(self, images, batch: int):
        """Rotation and scale about the centre, then a shift; pixels from outside the image are 0."""
        if not (self.max_zoom or self.max_shift or self.max_rotation_deg):
            return images
        height, width = images.shape[1], images.shape[2]
        zoom = 1.0 + self._uniform(batch, self.max_zoom)
        angle = self._uniform(batch, self.max_rotation_deg * math.pi / 180.0)
        shift = self._uniform(batch, self.max_shift, (2,)) * ops.convert_to_tensor([height, width], "float32")
        rows, cols = jnp.meshgrid(jnp.arange(height, dtype="float32"), jnp.arange(width, dtype="float32"),
                                  indexing="ij")
        centre_r, centre_c = (height - 1) / 2.0, (width - 1) / 2.0

        def warp(image, zoom, angle, shift):
            # Each output pixel reads the source point that the transform maps onto it.
            r = (rows - centre_r - shift[0]) / zoom
            c = (cols - centre_c - shift[1]) / zoom
            cos, sin = jnp.cos(angle), jnp.sin(angle)
            source = (cos * r - sin * c + centre_r, sin * r + cos * c + centre_c)
            return jax.vmap(
                lambda channel: jax.scipy.ndimage.map_coordinates(channel, source, order=1, mode="constant"),
                in_axes=-1, out_axes=-1,
            )(image)

        return jax.vmap(warp)(images, zoom, angle, shift)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.magnitudes(), "seed": self.seed}


def _gaussian_blur(images):
    """A separable Gaussian blur of every channel, its width scaled with the image size.

    Written as weighted sums of shifted copies: XLA's CPU depthwise convolution is 10x slower.
    """
    sigma = BLUR_SIGMA_AT_64 * images.shape[1] / 64.0
    radius = max(1, int(math.ceil(2.5 * sigma)))
    offsets = range(-radius, radius + 1)
    taps = [math.exp(-0.5 * (offset / sigma) ** 2) for offset in offsets]
    taps = [tap / sum(taps) for tap in taps]
    for axis in (1, 2):
        # Edge padding, so the border does not darken.
        widths = [(0, 0)] * 4
        widths[axis] = (radius, radius)
        padded = jnp.pad(images, widths, mode="edge")
        size = images.shape[axis]
        images = sum(
            tap * lax.slice_in_dim(padded, start, start + size, axis=axis) for start, tap in enumerate(taps)
        )
    return images
