"""agejax.degrade: each degradation changes the image the way its name says, and only that way."""

import numpy as np
from PIL import Image

from agejax.data import degrade

from conftest import REPO


def test_each_degradation_keeps_the_size_and_does_what_it_says():
    face = Image.open(REPO / "examples" / "utkface_4.jpg").convert("RGB")
    original = np.asarray(face, np.float64)
    out = {name: np.asarray(function(face), np.float64) for name, function in degrade.DEGRADATIONS.items()}
    assert all(image.shape == original.shape for image in out.values())
    assert np.array_equal(out["clean"], original)
    assert np.allclose(out["grey"][..., 0], out["grey"][..., 1]) and np.allclose(out["grey"][..., 1], out["grey"][..., 2])
    sharpness = lambda image: np.abs(np.diff(image, axis=1)).mean()  # noqa: E731
    assert sharpness(out["blur"]) < 0.8 * sharpness(original)
    assert 1.0 < np.abs(out["jpeg20"] - original).mean() < 15.0
    assert out["dark"].mean() < 0.6 * original.mean()
    # A tilt moves the edges, not the middle, and either way by the same amount.
    middle = (slice(90, 110), slice(90, 110))
    assert np.abs(out["rotate+15"][middle] - original[middle]).mean() < np.abs(out["rotate+15"] - original).mean()
    assert abs(np.abs(out["rotate+15"] - original).mean() - np.abs(out["rotate-15"] - original).mean()) < 5
