import concurrent.futures

import keras
import numpy as np
import pytest

from agejax.data import labels, pipeline
from agejax.data.augment import Augment
from agejax.serving import checkpoint
from agejax.serving.predict import Predictor, summarize_outputs
from agejax.training import models
from agejax.training.configs import TrainConfig


@pytest.fixture
def data_parallel():
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    yield
    keras.distribution.set_distribution(None)


def faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("head", models.HEADS)
@pytest.mark.parametrize("backbone, size", [("cnn", 32), ("cnn", 56), ("cnn", 100), ("resnet50", 32)])
def test_both_backbones_build_with_both_heads_for_any_size(backbone, head, size):
    model = models.build_model(backbone, head, size)
    outputs = np.asarray(model(faces(2, size)))
    assert outputs.shape == ((2, models.NUM_AGE_BINS) if head == "distribution" else (2, 1))
    age, std = summarize_outputs(outputs)
    assert age.shape == (2,)
    if head == "distribution":
        np.testing.assert_allclose(outputs.sum(-1), 1.0, rtol=1e-5)
        assert np.all((age >= 0) & (age <= labels.MAX_AGE)) and np.all(std > 0)
    else:
        assert std is None


def test_unknown_backbone_head_and_cnn_weights_are_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        models.build_model("vgg", "regression", 32)
    with pytest.raises(ValueError, match="unknown head"):
        models.build_model("cnn", "ordinal", 32)
    with pytest.raises(ValueError, match="no pretrained"):
        models.build_model("cnn", "regression", 32, weights="imagenet")


def test_distribution_loss_is_lowest_at_the_true_age():
    loss = models.AgeDistributionLoss()
    bins = np.arange(models.NUM_AGE_BINS)
    def peaked(age):
        p = np.exp(-0.5 * ((bins - age) / 2.0) ** 2)
        return (p / p.sum())[None].astype("float32")
    at_truth = float(loss(np.array([30.0]), peaked(30)))
    assert at_truth < float(loss(np.array([30.0]), peaked(35))) < float(loss(np.array([30.0]), peaked(50)))
    assert at_truth == pytest.approx(0.0, abs=1e-3)


def test_distribution_loss_with_a_teacher_aims_at_the_mix_of_label_and_teacher():
    bins = np.arange(models.NUM_AGE_BINS)

    def peaked(age):
        p = np.exp(-0.5 * ((bins - age) / 2.0) ** 2)
        return (p / p.sum()).astype("float32")

    teacher = peaked(40)
    targets = np.concatenate([[30.0], teacher])[None].astype("float32")  # the age, then the teacher's distribution
    all_teacher = models.AgeDistributionLoss(teacher_weight=1.0)
    assert float(all_teacher(targets, teacher[None])) == pytest.approx(0.0, abs=1e-3)
    assert float(all_teacher(targets, peaked(30)[None])) > 1.0
    # With weight 0 the teacher is ignored: the same loss as the age alone.
    no_teacher = models.AgeDistributionLoss(teacher_weight=0.0)
    assert float(no_teacher(targets, peaked(33)[None])) == pytest.approx(float(no_teacher(np.array([30.0]), peaked(33)[None])))
    # Half and half: lowest between the label and the teacher, not at either.
    half = models.AgeDistributionLoss(teacher_weight=0.5)
    losses = {age: float(half(targets, peaked(age)[None])) for age in (30, 35, 40)}
    assert losses[35] < min(losses[30], losses[40])
    # The training MAE still measures against the true age.
    assert float(np.asarray(models.age_mae(targets, peaked(40)[None]))[0]) == pytest.approx(10.0, abs=0.05)


@pytest.mark.parametrize("head", models.HEADS)
def test_one_train_step_lowers_the_loss_on_a_fixed_tiny_batch(head):
    keras.utils.set_random_seed(0)  # the same start whichever tests ran before
    model = models.build_model("cnn", head, 32)
    # Switch off the random parts so the step's effect is all that changes the loss.
    model.get_layer("augment").switch_off()
    model.get_layer("dropout").rate = 0.0
    # Adam's first steps move every weight by about the learning rate: keep it small.
    model.compile(keras.optimizers.Adam(1e-4), models.loss_for(head))
    images, ages = faces(8, 32), np.linspace(5, 80, 8).astype("float32")
    # train_on_batch returns the loss before its own update.
    losses = [float(model.train_on_batch(images, ages)) for _ in range(3)]
    assert losses[0] > losses[1] > losses[2], losses


def test_augment_keeps_shape_and_dtype_and_is_deterministic_under_a_seed():
    images = faces(4, 48).astype("float32")
    first = np.asarray(Augment(seed=7)(images, training=True))
    again = np.asarray(Augment(seed=7)(images, training=True))
    other = np.asarray(Augment(seed=8)(images, training=True))
    assert first.shape == images.shape and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 255
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other) and not np.allclose(first, images)
    np.testing.assert_array_equal(np.asarray(Augment(seed=7)(images, training=False)), images)
    still = Augment(max_zoom=0, max_shift=0, max_brightness=0, max_contrast=0, seed=7)
    np.testing.assert_array_equal(np.asarray(still(images, training=True)), images)


def test_a_saved_model_keeps_its_augmentation_strengths(tmp_path):
    config = TrainConfig(image_size=32, grey_prob=0.2, old_photo_prob=0.3, max_noise=4.0, max_rotation_deg=12.0)
    models.build_from_config(config).save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert loaded.get_layer("augment").magnitudes() == config.augmentation()


def test_augment_flips_the_content_left_to_right_some_of_the_time():
    # A bright left half must end on the right after a flip with no other change.
    image = np.zeros((1, 32, 32, 3), "float32")
    image[:, :, :16] = 200.0
    # A negligible brightness change keeps the layer active (all zeros make it an identity).
    layer = Augment(max_zoom=0, max_shift=0, max_brightness=1e-6, max_contrast=0, seed=0)
    results = [np.asarray(layer(image, training=True)) for _ in range(12)]
    flipped = [r for r in results if r[0, :, 24:].mean() > 150]
    kept = [r for r in results if r[0, :, :8].mean() > 150]
    assert flipped and kept and len(flipped) + len(kept) == 12


# float32 loses nothing; ONNX Runtime and XLA only sum in another order (1e-5 years here).
@pytest.mark.parametrize("weight_format, tolerance", [("float32", 1e-4), ("float16", 0.05), ("int8", 0.5)])
def test_checkpoint_save_load_predict_round_trip(tmp_path, weight_format, tolerance):
    config = TrainConfig(backbone="cnn", head="distribution", image_size=32)
    model = models.build_model("cnn", "distribution", 32)
    images = faces(6, 32)
    expected, _ = summarize_outputs(np.asarray(model(images)))
    checkpoint.save(model, config, tmp_path / "ckpt", weight_format)
    predictor = Predictor.load(tmp_path / "ckpt")
    prediction = predictor.predict(images)
    assert np.max(np.abs(prediction.age - expected)) <= tolerance
    assert prediction.std.shape == (6,)
    # Faces of another size are resized to the model's input.
    assert predictor.predict(faces(3, 50)).age.shape == (3,)


def test_compressed_resnet50_round_trip_is_small_and_close(tmp_path):
    config = TrainConfig(backbone="resnet50", head="regression", image_size=32)
    keras.utils.set_random_seed(1)
    model = models.build_model("resnet50", "regression", 32)
    images = faces(4, 32)
    expected = np.asarray(model(images)).ravel()
    checkpoint.save(model, config, tmp_path / "r50", "int8")
    sizes = [path.stat().st_size for path in checkpoint.weight_files(tmp_path / "r50")]
    assert sum(sizes) < 30e6  # 94 MB as float32
    assert len(sizes) >= 3 and max(sizes) < checkpoint.SHARD_BYTES + 1e6  # split into files under 10 MB
    restored = Predictor.load(tmp_path / "r50").predict(images).age
    # An untrained ResNet50 amplifies rounding through 50 layers; trained models are
    # checked on the test split by scripts/export_checkpoint.py (MAE shift <= 0.05 years).
    assert np.max(np.abs(restored - expected)) < 0.15 * np.ptp(expected)


def test_test_time_flip_scores_a_face_and_its_mirror_image_alike(tmp_path):
    checkpoint.save(models.build_model("cnn", "distribution", 32), TrainConfig(image_size=32), tmp_path / "c", "float32")
    predictor = Predictor.load(tmp_path / "c")
    images = faces(4, 32)
    assert not predictor.flip  # no export chose it
    plain, mirrored = predictor.predict(images).age, predictor.predict(images[:, :, ::-1]).age
    assert np.abs(plain - mirrored).max() > 1e-3  # an untrained network is not symmetric
    predictor = predictor.with_flip(True)
    np.testing.assert_allclose(predictor.predict(images).age, predictor.predict(images[:, :, ::-1]).age, atol=1e-4)
    # The mixture's expected age is the mean of the two expected ages.
    np.testing.assert_allclose(predictor.predict(images).age, (plain + mirrored) / 2, atol=1e-4)


def test_the_cnn_width_and_the_label_spread_come_from_the_config():
    from agejax.training import train

    narrow = train.compiled_model(TrainConfig(image_size=32, cnn_width=8, label_sigma=3.5), steps_per_epoch=10)
    assert [narrow.get_layer(f"stage{s}_b_conv").filters for s in range(4)] == [8, 16, 32, 64]
    assert narrow.get_layer("stem_conv").filters == 8
    assert narrow.loss.sigma == 3.5
    assert narrow.count_params() < models.build_from_config(TrainConfig(image_size=32)).count_params() / 10


@pytest.mark.parametrize("engine", ["onnxruntime", "keras"])
def test_threads_sharing_one_predictor_get_the_answers_each_gets_alone(tmp_path, engine):
    """The demo's tabs run in different threads on the same models."""
    checkpoint.save(models.build_model("cnn", "distribution", 32), TrainConfig(image_size=32), tmp_path / "c", "float32")
    if engine == "keras":
        predictor = Predictor.from_model(*checkpoint.load(tmp_path / "c"), tmp_path / "c")
    else:
        predictor = Predictor.load(tmp_path / "c")
    assert predictor.engine == engine
    batches = [faces(n, 32, seed=n + i) for i, n in enumerate((1, 2, 4, 8, 4, 2, 1, 8) * 3)]
    alone = [predictor.predict(b, batch_size=len(b)).age for b in batches]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: predictor.predict(b, batch_size=len(b)).age, batches))
    for expected, got in zip(alone, together):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_int8_quantization_error_is_at_most_half_a_step_per_channel():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 8, 16)).astype("float32")
    kernel[..., 3] = 0.0  # an all-zero channel must survive
    quantized, scale = checkpoint.quantize_int8(kernel)
    assert quantized.dtype == np.int8 and scale.shape == (16,)
    error = np.abs(quantized * scale - kernel).reshape(-1, 16).max(axis=0)
    assert np.all(error <= scale / 2 + 1e-7)
    assert np.all(quantized[..., 3] == 0)


def test_predictor_refuses_bad_input_and_unknown_models(tmp_path):
    model = models.build_model("cnn", "regression", 32)
    checkpoint.save(model, TrainConfig(head="regression", image_size=32), tmp_path / "c", "float16")
    predictor = Predictor.load(tmp_path / "c")
    with pytest.raises(ValueError, match="uint8 faces"):
        predictor.predict(np.zeros((2, 32, 32), np.uint8))
    assert predictor.predict(np.zeros((0, 32, 32, 3), np.uint8)).age.shape == (0,)
    with pytest.raises(FileNotFoundError, match="no model"):
        Predictor.load(tmp_path / "missing")


def test_data_parallel_fit_evaluate_predict_with_a_ragged_last_batch(data_parallel):
    import jax

    assert jax.device_count() == 2
    model = models.build_model("cnn", "distribution", 32)
    model.compile("adam", models.loss_for("distribution"), weighted_metrics=[models.age_mae])
    images, ages = faces(37, 32), np.random.default_rng(1).integers(1, 90, 37)
    history = model.fit(pipeline.ArrayBatches(images, ages, 8, shuffle=True), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    outputs = pipeline.predict_outputs(model, images, batch_size=8)
    assert outputs.shape == (37, models.NUM_AGE_BINS)
    # Padding rows carry weight 0: evaluate's MAE equals the MAE of the 37 predictions.
    evaluated = model.evaluate(pipeline.ArrayBatches(images, ages, 8), verbose=0, return_dict=True)
    predicted_mae = np.mean(np.abs(summarize_outputs(outputs)[0] - ages))
    assert evaluated["age_mae"] == pytest.approx(predicted_mae, rel=1e-4)


def test_batches_that_do_not_split_over_devices_are_refused():
    with pytest.raises(ValueError, match="multiple of 2"):
        pipeline.ArrayBatches(faces(4, 8), batch_size=7, device_count=2)


def test_batches_gathered_from_a_device_array_match_the_host_batches(data_parallel):
    import jax

    images, ages = faces(37, 16), np.arange(37)
    host = pipeline.ArrayBatches(images, ages, 8, shuffle=True, seed=3)
    device = pipeline.ArrayBatches(jax.device_put(images), ages, 8, shuffle=True, seed=3)
    assert len(host) == len(device) == 4
    for index in range(len(host)):
        host_images, host_ages, _ = host[index]
        device_images, device_ages, _ = device[index]
        assert isinstance(device_images, jax.Array)
        np.testing.assert_array_equal(np.asarray(device_images), host_images)
        np.testing.assert_array_equal(device_ages, host_ages)
    assert pipeline.on_accelerator(images) is images  # a CPU keeps the host array
    model = models.build_model("cnn", "distribution", 16)
    model.compile("adam", models.loss_for("distribution"), weighted_metrics=[models.age_mae])
    history = model.fit(device, epochs=1, verbose=0)  # a device array feeds data-parallel training
    assert np.isfinite(history.history["loss"][0])


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")  # the GPU policy, here on the CPU
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def test_the_gpu_precision_policy_trains_with_bfloat16_layers_and_float32_outputs(mixed_bfloat16):
    model = models.build_model("cnn", "distribution", 32)
    model.compile("adam", models.loss_for("distribution"), weighted_metrics=[models.age_mae])
    history = model.fit(pipeline.ArrayBatches(faces(16, 32), np.arange(16), 8, shuffle=True), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"  # the arithmetic in bfloat16
    assert model.get_layer("augment").compute_dtype == "float32"  # pixel values 0-255 lose steps in bfloat16
    assert model.output.dtype == "float32"  # the age distribution and the loss stay in float32
    assert model.predict(faces(2, 32), verbose=0).sum(axis=1) == pytest.approx(1.0, abs=1e-5)


def test_dimming_takes_light_from_darkened_images_only_when_asked():
    white = np.full((16, 32, 32, 3), 255, np.uint8)
    settings = dict(max_zoom=0, max_shift=0, max_brightness=0, max_contrast=0, dark_prob=1.0, seed=3)
    gamma_only = np.asarray(Augment(**settings)(white.astype("float32"), training=True))
    dimmed = np.asarray(Augment(max_dimming=0.5, **settings)(white.astype("float32"), training=True))
    assert gamma_only.min() > 254  # a gamma curve keeps white white
    brightest = dimmed.max(axis=(1, 2, 3))
    assert (brightest >= 127).all() and (brightest < 250).mean() > 0.8
