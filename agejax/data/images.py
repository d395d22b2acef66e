"""Turning image bytes into the arrays the models take, the same way for training and prediction."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")  # what we read

# The most pixels decoded at full size, after a JPEG's reduced decode: 64 MP (a 61 MP
# camera's frame fits) is 256 MB at 4 bytes a pixel, plus the file's bytes, so the CLI
# with two workers busy on such files stays under 2 GB (benchmarks/decode_memory.py).
MAX_DECODE_PIXELS = 64_000_000


class ImageTooLarge(ValueError):
    """The image has more pixels than MAX_DECODE_PIXELS after any reduced decode."""


def open_rgb(data: bytes, max_side: int | None = None) -> Image.Image:
    """Decodes any PIL-readable image to 8-bit RGB, upright (EXIF orientation applied).

    Greyscale, CMYK, palette, 16-bit and alpha images are all converted; for animated
    files the first frame is used. With max_side, larger images come back downscaled
    to fit: JPEGs are decoded at reduced size, and other formats are shrunk right after
    decoding, before any full-size copy is made. ``info["full_size"]`` keeps the upright
    size before downscaling. Raises ImageTooLarge above MAX_DECODE_PIXELS, and
    PIL.UnidentifiedImageError or OSError for data that is not a readable image.
    """
    with warnings.catch_warnings():
        # Pillow warns about sizes (checked here instead) and damaged metadata: the file
        # decodes or becomes an error, so its warnings would only be noise.
        warnings.simplefilter("ignore")
        return _open_rgb(data, max_side)


def _open_rgb(data: bytes, max_side: int | None) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    with image:
        full_size = image.size
        if image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):
            full_size = full_size[::-1]  # these orientations swap width and height
        if max_side is not None:
            image.draft("RGB", (max_side, max_side))
        if image.width * image.height > MAX_DECODE_PIXELS:
            raise ImageTooLarge(
                f"image too large ({image.width} x {image.height} px; the limit is {MAX_DECODE_PIXELS // 10**6} MP)")
        image.seek(0)
        image.load()
        reducible = image.mode not in ("P", "1") and not image.mode.startswith("I;16")
        if max_side is not None and max(image.size) >= 2 * max_side and reducible:
            image = image.reduce(max(image.size) // max_side)  # no full-size copy from here on
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I"):
            # 16/32-bit greyscale: rescale 16-bit ranges instead of clipping them at 255.
            values = np.asarray(image)  # uint16 or int32: no wider copy of a large image
            if values.max(initial=0) > 255:
                values = values // 257
            image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Flatten transparency onto white, not black, as viewers show it.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        image = image.convert("RGB")
        if max_side is not None and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        image.info["full_size"] = full_size
        return image


def to_square_array(image: Image.Image, size: int) -> np.ndarray:
    """Resizes a face crop to size x size and returns it as uint8 (size, size, 3)."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def decode_face(data: bytes, size: int) -> np.ndarray:
    """Bytes of an aligned face crop -> uint8 (size, size, 3)."""
    return to_square_array(open_rgb(data), size)
