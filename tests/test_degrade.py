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


def test_old_photo_styles_tone_fade_and_grain():
    face = Image.open(REPO / "examples" / "utkface_31.jpg").convert("RGB")
    original = np.asarray(face, np.float64)
    sepia, faded, grain = (np.asarray(f(face), np.float64) for f in (degrade.sepia, degrade.faded, degrade.grain))
    assert (sepia[..., 0] >= sepia[..., 1]).all() and (sepia[..., 1] >= sepia[..., 2]).all()  # warm tones only
    assert faded.min() >= 51 and faded.max() <= 230 and faded.std() < original.std()
    assert np.array_equal(np.asarray(degrade.grain(face)), grain.astype(np.uint8))  # the same grain every time
    assert 4 < np.abs(grain - original).mean() < 15
    old = np.asarray(degrade.old_photo(face), np.float64)
    assert old.min() >= 40 and (old[..., 0].mean() > old[..., 2].mean())


def test_augmentation_makes_old_photos_in_training_only():
    import keras

    from agejax.data.augment import Augment

    images = np.asarray(Image.open(REPO / "examples" / "utkface_31.jpg").convert("RGB").resize((32, 32)), np.float32)
    batch = np.repeat(images[None], 64, axis=0)
    layer = Augment(max_zoom=0, max_shift=0, max_brightness=0, max_contrast=0, old_photo_prob=0.5, seed=0)
    assert np.array_equal(np.asarray(layer(batch, training=False)), batch)
    out = np.asarray(layer(keras.ops.convert_to_tensor(batch), training=True))
    # Toning and fading move an image's mean colour, whichever way it was flipped.
    warmth = lambda x: (x[..., 0] - x[..., 2]).mean(axis=(1, 2))  # noqa: E731
    old = np.abs(warmth(out) - warmth(batch)) > 1.0
    assert 10 < old.sum() < 54  # about half of them
    assert np.abs(out[~old].mean(axis=(1, 2, 3)) - batch[~old].mean(axis=(1, 2, 3))).max() < 0.5


def test_augmentation_grain_is_the_same_in_every_channel():
    from agejax.data.augment import Augment

    batch = np.full((16, 32, 32, 3), 128.0, np.float32)  # plain grey: flips change nothing, grain shows alone
    layer = Augment(max_zoom=0, max_shift=0, max_brightness=0, max_contrast=0, max_grain=8.0, seed=0)
    assert np.array_equal(np.asarray(layer(batch, training=False)), batch)
    grain = np.asarray(layer(batch, training=True)) - batch
    assert np.allclose(grain[..., 0], grain[..., 1]) and np.allclose(grain[..., 1], grain[..., 2])
    assert 0.5 < np.abs(grain).mean() < 8.0
    assert np.abs(np.diff(grain[..., 0], axis=2)).mean() > 1.0  # from pixel to pixel, not in cells


def test_degraded_metrics_give_every_degradation_and_clean_matches_plain_prediction():
    """Three real UTKFace crops (ages 4, 31, 72 in their names) through the shipped CNN."""
    from agejax.data import images
    from agejax.evaluation import degraded
    from agejax.serving.predict import Predictor

    predictor = Predictor.load("cnn")
    chips = [Image.open(REPO / "examples" / f"utkface_{age}.jpg").convert("RGB") for age in (4, 31, 72)]
    ages = np.array([4.0, 31.0, 72.0])
    results = degraded.degraded_metrics(predictor, chips, ages)
    assert list(results) == list(degrade.DEGRADATIONS)
    faces = np.stack([images.to_square_array(chip, predictor.image_size) for chip in chips])
    plain = predictor.predict(faces).age
    assert results["clean"]["mae"] == round(float(np.abs(plain - ages).mean()), 3)
    assert results["clean"]["bias_under18"] == round(float(plain[0] - 4.0), 3)  # the one child
    assert len({row["mae"] for row in results.values()}) > 1  # the degradations change the answers
    table = degraded.markdown_tables("utkface", 3, 1, {"cnn": results})
    assert table.count("| cnn | ") == 2 and "the 1 faces under 18" in table
