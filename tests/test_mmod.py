"""dlib's MMOD face detector read from its model file and run by ONNX Runtime."""

import dlib
import face_recognition_models
import numpy as np
import pytest
from PIL import Image

from agejax.data import labels
from agejax.data.images import decode_face
from agejax.faces import mmod

from conftest import SHARED_UTKFACE, requires_shared

MODEL = face_recognition_models.cnn_face_detector_model_location()


def test_the_model_file_reads_as_dlibs_face_network():
    network = mmod.read_network(MODEL)
    assert network.window == (80, 80)
    assert np.allclose(network.mean_rgb, (122.782, 117.001, 104.298), atol=1e-3)
    assert [conv.stride for conv in network.convolutions] == [2, 2, 2, 1, 1, 1, 1]
    assert [conv.kernel.shape[:2] for conv in network.convolutions] == [
        (16, 3), (32, 16), (32, 32), (45, 32), (45, 45), (45, 45), (1, 45)]
    assert [conv.relu for conv in network.convolutions] == [True] * 6 + [False]
    # Each output score is centred 8 px further on, from the 14th pixel (three 5x5 stride-2 convolutions).
    rows, cols = network.output_to_input(np.array([0, 1]), np.array([0, 3]))
    assert rows.tolist() == [14, 22] and cols.tolist() == [14, 38]


def test_a_damaged_model_file_is_refused_by_name(tmp_path):
    cut = tmp_path / "cut.dat"
    cut.write_bytes(open(MODEL, "rb").read()[:5000])
    with pytest.raises(ValueError, match="not dlib's MMOD face detector"):
        mmod.read_network(cut)


@requires_shared
def test_it_finds_the_faces_dlib_finds_and_none_where_dlib_finds_none():
    records = labels.scan([SHARED_UTKFACE / "UTKFace-3of4.tar.gz"]).records[:400:40]
    chips = [decode_face(payload, 200) for _, payload in labels.iter_image_bytes(records)]
    ours, theirs = mmod.MmodDetector(), dlib.cnn_face_detection_model_v1(MODEL)
    rng = np.random.default_rng(0)
    agreed = 0
    for chip in chips:  # one face at 90-150 px on a 320 x 240 grey photo
        side = int(rng.integers(90, 150))
        left, top = int(rng.integers(0, 320 - side)), int(rng.integers(0, 240 - side))
        photo = np.full((240, 320, 3), 110, np.uint8)
        photo[top:top + side, left:left + side] = np.asarray(Image.fromarray(chip).resize((side, side)))
        reference = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in theirs(photo, 0)]
        found = ours(photo)
        if reference:
            agreed += bool(found) and mmod._iou(found[0], reference[0]) > 0.5
        else:
            agreed += not found
    assert agreed >= len(chips) - 1
    assert ours(np.full((240, 320, 3), 110, np.uint8)) == []
    assert ours(np.full((10, 300, 3), 110, np.uint8)) == []  # smaller than every pyramid level


def test_the_graph_is_built_once_and_a_damaged_copy_is_rebuilt(tmp_path, monkeypatch):
    import agejax

    from conftest import group_photo

    monkeypatch.setattr(agejax, "CACHE_ROOT", tmp_path)
    photo = np.asarray(group_photo()[0].resize((640, 320)))
    built = mmod.MmodDetector()(photo)
    cached = list((tmp_path / "mmod").iterdir())
    assert len(cached) == 1 and cached[0].stat().st_size > 100_000
    assert mmod.MmodDetector()(photo) == built  # read back from the cache
    cached[0].write_bytes(b"damaged")
    assert mmod.MmodDetector()(photo) == built and len(built) >= 1
