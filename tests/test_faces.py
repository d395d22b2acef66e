"""Detection and alignment on real UTKFace faces from ../shared (skipped where absent)."""

import numpy as np
import pytest

from agejax.data import labels
from agejax.data.images import decode_face
from agejax.faces import cascade

from conftest import SHARED_UTKFACE, requires_shared

pytestmark = requires_shared


@pytest.fixture(scope="module")
def chips():
    records = labels.scan([SHARED_UTKFACE / "UTKFace-2of4.tar.gz"]).records
    adults = [r for r in records if 20 <= r.age <= 60][:40:10]
    return [decode_face(payload, 200) for _, payload in labels.iter_image_bytes(adults)]


@pytest.fixture(scope="module")
def aligner():
    return cascade.FaceAligner()


def test_a_utkface_chip_realigns_close_to_itself(chips, aligner):
    found = aligner.faces(chips[0])
    assert len(found) == 1
    face = found[0]
    assert face.chip.shape == (200, 200, 3) and face.chip.dtype == np.uint8
    assert np.abs(face.chip.astype(float) - chips[0]).mean() < 30  # same geometry, up to landmark noise


def test_every_face_of_a_group_photo_gets_a_box_inside_the_image(chips, aligner):
    # A 640 x 360 "group photo": three real faces, shrunk to 120 px, on a grey background.
    from PIL import Image

    canvas = np.full((360, 640, 3), 128, np.uint8)
    for i, chip in enumerate(chips[:3]):
        small = np.asarray(Image.fromarray(chip).resize((120, 120)))
        canvas[100:220, 40 + 200 * i : 160 + 200 * i] = small
    found = aligner.faces(canvas)
    assert len(found) == 3
    for face in found:
        left, top, right, bottom = face.box
        assert 0 <= left < right <= 640 and 0 <= top < bottom <= 360
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in found)
    assert [round((c - 100) / 200) for c in centres] == [0, 1, 2]


def test_no_face_gives_an_empty_list(aligner):
    assert aligner.faces(np.full((300, 400, 3), 200, np.uint8)) == []


def test_a_rotated_find_needs_a_face_in_its_aligned_chip(chips, aligner):
    """The rotated stage's check: an aligned chip passes, a faceless texture does not."""
    from PIL import Image

    assert all(aligner.confirmed(chip) for chip in chips)  # UTKFace's chips are aligned the same way
    coarse = np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((200, 200), Image.Resampling.BICUBIC))
    assert not aligner.confirmed(texture)
    assert not aligner.confirmed(np.full((200, 200, 3), 128, np.uint8))


def test_every_detector_finds_a_chip_and_the_cascade_finds_a_tilted_one(chips, aligner):
    """A face tilted 40 degrees on a 448 px photo: upright HOG misses it, the cascade does not."""
    from PIL import Image

    canvas = Image.new("RGB", (448, 448), (120, 130, 140))
    canvas.paste(Image.fromarray(chips[1]).resize((240, 240)).rotate(40, fillcolor=(120, 130, 140)), (100, 100))
    tilted = np.asarray(canvas)
    found = aligner.faces(tilted, "auto")
    assert len(found) == 1 and found[0].detector in ("hog_rotated", "cnn")
    left, top, right, bottom = found[0].box
    assert 100 <= (left + right) / 2 <= 340 and 100 <= (top + bottom) / 2 <= 340
    assert found[0].chip.shape == (200, 200, 3)
    upright = np.full((448, 448, 3), 128, np.uint8)
    upright[100:340, 100:340] = np.asarray(Image.fromarray(chips[1]).resize((240, 240)))
    assert [face.detector for face in aligner.faces(upright, "cnn")] == ["cnn"]
    # The tilted face's box is about as large as the same face's upright one, not 1.4x (a rotated square's envelope).
    (upright_face,) = aligner.faces(upright, found[0].detector.removesuffix("_rotated"))
    assert 0.8 < (right - left) / (upright_face.box[2] - upright_face.box[0]) < 1.2
    with pytest.raises(ValueError, match="unknown detector"):
        aligner.faces(upright, "yolo")
    for shape in ((8, 8, 3), (8, 300, 3), (20, 20, 3)):  # dlib's CNN would crash the process on these
        assert aligner.faces(np.full(shape, 128, np.uint8), "cnn") == []


def tilted_photo(size: tuple[int, int], face_side: int, angle: float, at: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    from conftest import REPO

    face = Image.open(REPO / "examples" / "grace_hopper.jpg").convert("RGB").resize((face_side, face_side))
    canvas = Image.new("RGB", size, (120, 130, 140))
    canvas.paste(face.rotate(angle, fillcolor=(120, 130, 140)), at)
    return np.asarray(canvas)


def test_a_tilted_cnn_find_is_aligned_like_the_upright_face(aligner):
    """Landmarks put straight into a CNN box of a tilted face gave a chip too wide, far
    outside this bound; the face's surroundings are now turned upright first."""
    upright = aligner.faces(tilted_photo((448, 448), 260, 0, (94, 94)), "hog")[0].chip.astype(float)
    for angle in (15, 30, 45):
        (face,) = aligner.faces(tilted_photo((448, 448), 260, angle, (94, 94)), "cnn")
        assert face.detector == "cnn" and np.abs(face.chip - upright).mean() < 20
        left, top, right, bottom = face.box
        assert 94 <= (left + right) / 2 <= 354 and 94 <= (top + bottom) / 2 <= 354


def test_the_rotated_stage_finds_a_small_tilted_face_the_cnn_cannot_see(aligner):
    photo = tilted_photo((1600, 1200), 200, 40, (900, 500))  # the CNN sees the face at 40 px
    assert aligner.faces(photo, "hog") == [] and aligner.faces(photo, "cnn") == []
    (face,) = aligner.faces(photo, "auto")
    left, top, right, bottom = face.box
    assert face.detector == "hog_rotated" and 900 <= left < right <= 1100 and 500 <= top < bottom <= 700
