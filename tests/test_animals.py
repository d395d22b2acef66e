"""No faces on animals: a cat's photo, turned, tilted, resized and greyed, through the whole detector cascade.

The cat is scikit-image's sample photo "chelsea" (installed with the dev extra, no download);
the coffee cup and the rocket are its photos with no one in them. People must still be found
in the same run: the shipped group photo keeps its three faces.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agejax.faces import cascade

from conftest import group_photo

data = pytest.importorskip("skimage.data", reason="scikit-image is in the dev extra")


def cat_photos() -> dict[str, Image.Image]:
    cat = Image.fromarray(data.chelsea())
    return {
        "as taken": cat,
        "mirrored": cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "640 px": cat.resize((640, 426)),
        "1200 px": cat.resize((1200, 800)),
        "300 px": cat.resize((300, 200)),
        "grey": cat.convert("L").convert("RGB"),
        "tilted 15 degrees": cat.rotate(15, expand=True, fillcolor=(128, 128, 128)),
        "tilted -25 degrees": cat.rotate(-25, expand=True, fillcolor=(128, 128, 128)),
    }


@pytest.fixture(scope="module")
def aligner():
    return cascade.FaceAligner()


@pytest.mark.parametrize("name", list(cat_photos()))
def test_a_cat_gets_no_face(aligner, name):
    photo = np.asarray(cat_photos()[name].convert("RGB"))
    assert aligner.faces(photo, "auto") == []


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_a_photo_of_things_gets_no_face(aligner, name):
    assert aligner.faces(np.asarray(getattr(data, name)())[..., :3], "auto") == []


@pytest.mark.parametrize("width", [1280, 560])
def test_people_are_still_found_beside_the_animals(aligner, width):
    """At 560 px the two smaller faces are 40-50 px: only HOG's upsampled pass for small photos finds them."""
    photo, placed = group_photo()
    photo = photo.resize((width, width // 2))
    assert len(aligner.faces(np.asarray(photo), "auto")) == len(placed)
