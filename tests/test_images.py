"""Decoding any image file to upright 8-bit RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from agejax.images import open_rgb


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_cmyk_greyscale_and_palette_become_the_same_colours_in_rgb():
    red = Image.new("RGB", (16, 8), (204, 51, 51))  # a web-palette colour, so mode P keeps it
    for image, fmt in ((red.convert("CMYK"), "JPEG"), (red.convert("P"), "PNG"), (red, "BMP"), (red, "TIFF")):
        decoded = open_rgb(encoded(image, fmt))
        assert decoded.mode == "RGB" and decoded.size == (16, 8)
        np.testing.assert_allclose(np.asarray(decoded)[4, 8], (204, 51, 51), atol=12)
    grey = open_rgb(encoded(Image.new("L", (8, 8), 90), "PNG"))
    assert grey.mode == "RGB" and tuple(np.asarray(grey)[0, 0]) == (90, 90, 90)


def test_sixteen_bit_greyscale_is_rescaled_not_clipped():
    deep = Image.fromarray(np.full((4, 4), 40000, np.uint16))
    assert tuple(np.asarray(open_rgb(encoded(deep, "PNG")))[0, 0]) == (155, 155, 155)  # 40000 // 257


def test_transparency_is_flattened_onto_white():
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert tuple(np.asarray(open_rgb(encoded(clear, "PNG")))[0, 0]) == (255, 255, 255)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (30, 10), (0, 128, 0))
    exif = wide.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    upright = open_rgb(encoded(wide, "JPEG", exif=exif), max_side=1000)
    assert upright.size == (10, 30) and upright.info["full_size"] == (10, 30)


def test_first_frame_of_an_animated_gif():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(open_rgb(data))[0, 0, 0] > 200


def test_large_images_are_downscaled_but_report_their_full_size():
    big = Image.new("RGB", (3000, 1000), (50, 50, 50))
    small = open_rgb(encoded(big, "JPEG"), max_side=1200)
    assert max(small.size) <= 1200 and small.info["full_size"] == (3000, 1000)
    assert small.size[0] / small.size[1] == pytest.approx(3.0, rel=0.01)
