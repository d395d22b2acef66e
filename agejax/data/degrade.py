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


DEGRADATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "clean": lambda image: image,
    "grey": grey,
    "blur": blur,
    "jpeg20": jpeg,
    "rotate+15": rotate,
    "rotate-15": lambda image: rotate(image, -15.0),
    "dark": dark,
}
