"""On-device augmentation: one Keras layer that runs inside the jitted train step.

Per image: a random scale-shift (bilinear resampling through separable weight
matrices, cheap next to the network), a horizontal flip, brightness and contrast.
Random numbers come from a Keras SeedGenerator, so a seed makes it repeatable.
"""

from __future__ import annotations

import agejax  # noqa: F401  (sets the JAX backend before keras loads)

import jax
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="agejax")
class Augment(keras.layers.Layer):
    """Random scale-shift, flip, brightness and contrast on float images in [0, 255].

    Identity unless ``training=True``, and when every magnitude is 0.
    """

    def __init__(
        self,
        max_zoom: float = 0.1,
        max_shift: float = 0.06,
        max_brightness: float = 0.15,
        max_contrast: float = 0.2,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.max_zoom = max_zoom
        self.max_shift = max_shift
        self.max_brightness = max_brightness
        self.max_contrast = max_contrast
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def switch_off(self) -> None:
        """Zero every magnitude: the layer becomes an identity, also in training."""
        self.max_zoom = self.max_shift = self.max_brightness = self.max_contrast = 0.0

    def _uniform(self, batch: int, bound: float, shape: tuple[int, ...] = ()):
        return keras.random.uniform((batch, *shape), -bound, bound, seed=self.seed_generator)

    def call(self, images, training: bool = False):
        magnitudes = (self.max_zoom, self.max_shift, self.max_brightness, self.max_contrast)
        if not training or not any(magnitudes):
            return images
        batch, height, width = images.shape[0], images.shape[1], images.shape[2]
        size = ops.convert_to_tensor([height, width], "float32")

        # Scale about the centre, then shift; pixels pulled from outside the image are 0.
        zoom = 1.0 + self._uniform(batch, self.max_zoom)
        shift = self._uniform(batch, self.max_shift, (2,)) * size
        scale = ops.stack([zoom, zoom], axis=-1)
        translation = (1.0 - scale) * size / 2.0 + shift

        def resample(image, scale, translation):
            return jax.image.scale_and_translate(
                image, image.shape, (0, 1), scale, translation, method="linear", antialias=True
            )

        images = jax.vmap(resample)(images, scale, translation)

        flip = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < 0.5
        images = ops.where(flip, ops.flip(images, axis=2), images)

        brightness = self._uniform(batch, self.max_brightness, (1, 1, 1)) * 255.0
        contrast = 1.0 + self._uniform(batch, self.max_contrast, (1, 1, 1))
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        images = (images - mean) * contrast + mean + brightness
        return ops.clip(images, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_zoom": self.max_zoom,
            "max_shift": self.max_shift,
            "max_brightness": self.max_brightness,
            "max_contrast": self.max_contrast,
            "seed": self.seed,
        }
