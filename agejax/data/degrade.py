"""The ways real photos fall short of UTKFace's clean chips, applied to aligned face crops.

Used to measure robustness (scripts/evaluate_degraded.py): each function takes and
returns an RGB PIL image at the chip's own resolution, before any resize to the model.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter


def grey(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def blur(image: Image.Image, radius_at_200: float = 2.0) -> Image.Image:
    """A Gaussian blur of 2 px on a 200 px chip: a slightly out-of-focus or upscaled face."""
    return image.filter(ImageFilter.GaussianBlur(radius_at_200 * image.width / 200))


def jpeg(image: Image.Image, quality: int = 20) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def rotate(image: Image.Image, degrees: float = 15.0) -> Image.Image:
    """A tilt left after alignment (a landmark error), corners filled from the edges' colour."""
    fill = tuple(int(v) for v in np.asarray(image)[[0, -1]][:, [0, -1]].reshape(-1, 3).mean(axis=0))
    return image.rotate(degrees, Image.Resampling.BILINEAR, fillcolor=fill)


def dark(image: Image.Image) -> Image.Image:
    """Underexposed: a gamma of 2 and 60 % of the light."""
    values = np.asarray(image, np.float32) / 255.0
    return Image.fromarray((255.0 * 0.6 * values**2.0).astype(np.uint8))


# Sepia toning: a greyscale image's shade mapped onto this warm tint (white stays a warm paper).
SEPIA = np.array([1.07, 0.96, 0.77], np.float32)


def sepia(image: Image.Image) -> Image.Image:
    """A toned print: the luminance in sepia."""
    grey_values = np.asarray(image.convert("L"), np.float32)[..., None]
    return Image.fromarray(np.clip(grey_values * SEPIA, 0, 255).astype(np.uint8))


def faded(image: Image.Image) -> Image.Image:
    """A faded print: blacks lifted to a fifth of white, whites down by a tenth, colour halved."""
    values = np.asarray(image, np.float32)
    grey_values = values.mean(axis=-1, keepdims=True)
    values = grey_values + 0.5 * (values - grey_values)
    return Image.fromarray((51.0 + values * (229.5 - 51.0) / 255.0).astype(np.uint8))


def grain(image: Image.Image, level: float = 12.0) -> Image.Image:
    """Film grain: noise a pixel and a half across at 200 px, the same pattern for every image."""
    size = max(1, round(image.width / 1.5)), max(1, round(image.height / 1.5))
    noise = np.random.default_rng(0).normal(0.0, level, (size[1], size[0])).astype(np.float32)
    noise = np.asarray(Image.fromarray(noise, "F").resize(image.size, Image.Resampling.BILINEAR))[..., None]
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8))


def old_photo(image: Image.Image) -> Image.Image:
    """An old scanned portrait: sepia, faded, grainy and a little soft."""
    return blur(grain(faded(sepia(image))), 1.5)


DEGRADATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "clean": lambda image: image,
    "grey": grey,
    "blur": blur,
    "jpeg20": jpeg,
    "rotate+15": rotate,
    "rotate-15": lambda image: rotate(image, -15.0),
    "dark": dark,
    "sepia": sepia,
    "faded": faded,
    "grain": grain,
    "old_photo": old_photo,
}
