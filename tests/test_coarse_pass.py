"""HOG's coarse first pass: a close-up's face is found on a small copy of the photo, as the
full-size pass finds it; a group photo, whose faces are too small for the copy, still gets the
full-size pass and keeps every face."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agejax.faces import cascade

from conftest import REPO, group_photo


@pytest.fixture(scope="module")
def aligner():
    return cascade.FaceAligner()


def portrait(width: int) -> np.ndarray:
    """The shipped portrait of Grace Hopper (face a third of its height) at ``width`` px."""
    photo = Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB")
    return np.asarray(photo.resize((width, width * photo.height // photo.width)))


def overlap(a, b) -> float:
    left, top = max(a.left(), b.left()), max(a.top(), b.top())
    right, bottom = min(a.right(), b.right()), min(a.bottom(), b.bottom())
    inter = max(0, right - left) * max(0, bottom - top)
    return inter / (a.area() + b.area() - inter)


@pytest.mark.parametrize("width", [400, 600, 1200])
def test_a_portraits_face_is_found_on_the_coarse_copy_as_the_full_size_pass_finds_it(aligner, width):
    pixels = portrait(width)
    (coarse,), (full,) = aligner.detect_hog_coarse(pixels), aligner.detect_hog(pixels)
    assert overlap(coarse[0], full[0]) > 0.6
    (face,) = aligner.faces(pixels)
    assert face.box == (coarse[0].left(), coarse[0].top(), coarse[0].right(), coarse[0].bottom())  # the copy's find
    assert np.abs(face.chip.astype(float) - aligner.align(pixels, full[0])).mean() < 15  # the same chip, up to landmark noise


def test_a_photo_smaller_than_the_copy_is_looked_at_as_it_is_before_any_upsampling(aligner):
    pixels = portrait(300)
    assert max(pixels.shape[:2]) < cascade.COARSE_SIDE
    (coarse,) = aligner.detect_hog_coarse(pixels)
    rects, _, _ = aligner.detector.run(pixels, 0, 0.0)
    assert coarse[0] == rects[0]


@pytest.mark.parametrize("width", [1280, 560])
def test_a_group_photos_faces_are_too_small_for_the_copy_and_all_found(aligner, width):
    photo, placed = group_photo()
    pixels = np.asarray(photo.resize((width, width // 2)))
    assert aligner.detect_hog_coarse(pixels) == []
    assert len(aligner.faces(pixels)) == len(placed)
