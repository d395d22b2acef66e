"""agejax.scoring, the one path from an image to the age of each face, with the shipped CNN."""

from __future__ import annotations

import concurrent.futures
import io

import numpy as np
import pytest
from PIL import Image

from agejax import scoring
from agejax.faces.face import Face
from agejax.serving.predict import Predictor

from conftest import REPO, group_photo


@pytest.fixture(scope="module")
def cnn() -> Predictor:
    return Predictor.load("cnn")


def test_every_face_of_a_group_photo_is_found_boxed_and_scored_largest_first(cnn):
    photo, placed = group_photo()
    faces = scoring.score_image(photo, cnn)
    chip_shape = (cnn.image_size, cnn.image_size, 3)
    assert len(faces) == 3 and all(isinstance(face, Face) and face.chip.shape == chip_shape for face in faces)
    areas = [(face.box[2] - face.box[0]) * (face.box[3] - face.box[1]) for face in faces]
    assert areas == sorted(areas, reverse=True)
    for face, (left, top, right, bottom) in zip(faces, placed):  # each box inside its own portrait
        assert left <= face.box[0] < face.box[2] <= right and top <= face.box[1] < face.box[3] <= bottom
        assert face.crop == "face" and face.detector == "hog"
        assert 0 <= face.low90 <= face.age <= face.high90 <= 116 and face.std > 0
    # The same portrait at three sizes: the same person, so ages within a few years.
    assert max(face.age for face in faces) - min(face.age for face in faces) < 12


def test_a_path_and_its_bytes_give_the_same_faces_and_a_pil_image_nearly(cnn, tmp_path):
    path = REPO / "examples" / "utkface_31.jpg"
    from_path = scoring.score_image(path, cnn, aligned=True)
    from_bytes = scoring.score_image(path.read_bytes(), cnn, aligned=True)
    from_image = scoring.score_image(Image.open(path), cnn, aligned=True)
    assert from_path == from_bytes
    # Decoded at full size, then resized: the same face, not the same pixels.
    assert from_image[0].box == from_path[0].box and abs(from_image[0].age - from_path[0].age) < 1
    assert from_path[0].crop == "aligned" and from_path[0].box == (0, 0, 200, 200)


def test_no_face_is_an_empty_list_and_a_bad_file_says_why(cnn, tmp_path):
    grey = Image.new("RGB", (300, 200), (128, 128, 128))
    assert scoring.score_image(grey, cnn) == []
    whole = scoring.score_image(grey, cnn, whole_if_no_face=True)
    assert [(face.crop, face.box, face.detector) for face in whole] == [("whole", (0, 0, 300, 200), "")]
    with pytest.raises(scoring.UnusableImage, match="not an image"):
        scoring.score_image(b"plain text, not a photo", cnn)
    with pytest.raises(scoring.UnusableImage, match="cannot read file"):
        scoring.score_image(tmp_path / "missing.jpg", cnn)
    with pytest.raises(scoring.UnusableImage, match="empty file"):
        scoring.score_image(b"", cnn)


def test_scoring_images_together_gives_each_the_scores_it_gets_alone(cnn):
    photo, _ = group_photo()
    crop = Image.open(REPO / "examples" / "utkface_72.jpg")
    found = [scoring.find_faces(photo, cnn.image_size), scoring.FoundFaces(error=scoring.NO_FACE),
             scoring.find_faces(crop, cnn.image_size, aligned=True)]
    together = scoring.score_faces(found, cnn)
    assert [len(faces) for faces in together] == [3, 0, 1]
    for item, faces in zip(found, together):
        alone = scoring.score_faces([item], cnn)[0]
        assert [face.box for face in faces] == [face.box for face in alone]
        np.testing.assert_allclose([f.age for f in faces], [f.age for f in alone], atol=1e-3)


def test_a_large_photo_is_decoded_downscaled_and_boxed_in_full_size_pixels(cnn):
    photo, placed = group_photo()
    buffer = io.BytesIO()
    photo.resize((5120, 2560)).save(buffer, "JPEG", quality=90)  # 4x: decoded at most MAX_DECODE_SIDE wide
    faces = scoring.score_image(buffer.getvalue(), cnn)
    assert len(faces) == 3
    left, top, right, bottom = (4 * v for v in placed[0])
    assert left <= faces[0].box[0] < faces[0].box[2] <= right and top <= faces[0].box[1] < faces[0].box[3] <= bottom


def test_bucket_sizes_are_powers_of_two_up_to_the_largest_batch():
    assert [scoring.bucket_size(n, 16) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17, 40)] == [1, 2, 4, 4, 8, 8, 16, 16, 16, 16]


def test_threads_sharing_the_face_aligner_get_the_faces_each_gets_alone():
    """The demo's Estimate and Batch tabs detect in different threads with one aligner."""
    from agejax.faces.cascade import FaceAligner

    aligner = FaceAligner()
    photos = [np.asarray(Image.open(REPO / "examples" / name).convert("RGB")) for name in ("group.jpg", "grace_hopper.jpg")]
    alone = [[face.box for face in aligner.faces(photo)] for photo in photos]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: [face.box for face in aligner.faces(photos[i % 2])], range(32)))
    assert together == [alone[i % 2] for i in range(32)]
