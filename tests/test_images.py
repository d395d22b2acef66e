"""Decoding any image file to upright 8-bit RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from agejax.data import images
from agejax.data.images import open_rgb


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


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16", "P"])
def test_large_non_jpeg_images_are_shrunk_with_their_content(mode):
    """A PNG has no reduced decode: it is shrunk right after decoding, colours and aspect kept."""
    big = Image.new("RGB", (2400, 800), (200, 100, 50))
    big = big.convert("L").convert("I;16") if mode == "I;16" else big.convert(mode)
    small = open_rgb(encoded(big, "PNG"), max_side=600)
    assert max(small.size) <= 600 and small.info["full_size"] == (2400, 800)
    assert small.size[0] / small.size[1] == pytest.approx(3.0, rel=0.02)
    expected = np.asarray(open_rgb(encoded(big.crop((0, 0, 60, 20)), "PNG")))[10, 30]
    np.testing.assert_allclose(np.asarray(small)[100, 300], expected, atol=4)  # palettes differ a little


def test_images_over_the_pixel_budget_are_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 500 * 500)
    payload = encoded(Image.new("RGB", (600, 600)), "PNG")
    with pytest.raises(images.ImageTooLarge, match="600 x 600 px"):
        open_rgb(payload, max_side=256)
    # A JPEG decoded at reduced size fits the budget: 600 px at 1/4 scale is under it.
    assert open_rgb(encoded(Image.new("RGB", (600, 600)), "JPEG"), max_side=150).size == (150, 150)


def test_pillow_size_warnings_are_not_printed(monkeypatch, recwarn):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # Pillow would warn above this
    open_rgb(encoded(Image.new("RGB", (120, 120)), "PNG"))
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
