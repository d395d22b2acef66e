import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from agejax.cli import train as train_cli
from agejax.data import cache, pipeline, split
from agejax.evaluation import report
from agejax.serving.predict import Predictor
from agejax.training import benchmark, callbacks, configs, distill, models, train

from conftest import REPO, load_script


@pytest.fixture
def tiny_cache(tmp_path):
    rng = np.random.default_rng(0)

    def part(n):
        return cache.SplitArrays(
            images=rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
            ages=rng.integers(1, 90, n).astype(np.int32),
            genders=rng.integers(0, 2, n).astype(np.int8),
            races=rng.integers(0, 5, n).astype(np.int8),
            file_names=np.array([f"{i}.jpg" for i in range(n)]),
        )

    root = tmp_path / "cache"
    cache.write({"train": part(32), "val": part(11), "test": part(9)}, 32, root)
    yield root
    keras.distribution.set_distribution(None)


class Interrupt(Exception):
    pass


def test_resume_continues_from_the_epoch_after_the_last_completed_one(tmp_path, tiny_cache, monkeypatch):
    config = configs.TrainConfig(image_size=32, epochs=3, batch_size=16)
    run_dir = tmp_path / "run"
    started = []

    def on_epoch_begin(self, epoch, logs=None):
        started.append(epoch)
        if epoch == 2 and len(started) == 3:
            raise Interrupt  # killed as epoch 3 starts

    monkeypatch.setattr(callbacks.PlotCurves, "on_epoch_begin", on_epoch_begin, raising=False)
    with pytest.raises(Interrupt):
        train.train(config, run_dir, tiny_cache, verbose=0)
    assert [row["epoch"] for row in report.read_history(run_dir / "history.csv")] == [0, 1]
    assert not (run_dir / "model.keras").exists()

    metrics = train.train(config, run_dir, tiny_cache, verbose=0)
    assert started == [0, 1, 2, 2]  # the resumed run began at epoch 3
    assert [row["epoch"] for row in report.read_history(run_dir / "history.csv")] == [0, 1, 2]
    assert not (run_dir / "backup").exists()
    best = json.loads((run_dir / "best.json").read_text())
    assert metrics["best_epoch"] == best["epoch"] and metrics["val_mae"] == pytest.approx(best["val_mae"], abs=1e-3)
    assert (run_dir / "curves.png").stat().st_size > 0
    assert Predictor.load(run_dir).predict(np.zeros((3, 32, 32, 3), np.uint8)).age.shape == (3,)


def test_a_time_limit_stops_at_an_epoch_end_and_the_next_call_resumes(tmp_path, tiny_cache, capsys):
    run_dir = tmp_path / "run"
    flags = ["--image-size", "32", "--epochs", "3", "--batch-size", "16", "--run-dir", str(run_dir),
             "--cache-root", str(tiny_cache)]
    # No time at all: the first epoch still completes, then the run stops and says how to go on.
    assert train_cli.main([*flags, "--stop-after", "0"]) == 3
    assert "rerun the same command to resume" in capsys.readouterr().out
    assert [row["epoch"] for row in report.read_history(run_dir / "history.csv")] == [0]
    assert (run_dir / "backup").is_dir() and not (run_dir / "metrics.json").exists()

    assert train_cli.main([*flags, "--stop-after", "600"]) == 0
    history = report.read_history(run_dir / "history.csv")
    assert [row["epoch"] for row in history] == [0, 1, 2]
    elapsed = [row["elapsed_s"] for row in history]
    assert 0 < elapsed[0] <= elapsed[1] <= elapsed[2]  # wall clock summed over both calls
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["elapsed_s"] == elapsed[2]
    assert metrics["elapsed_s_to_best_epoch"] == elapsed[metrics["best_epoch"] - 1]
    assert not (run_dir / "backup").exists()

    # A finished run is not trained again.
    assert train_cli.main(flags) == 0
    assert len(report.read_history(run_dir / "history.csv")) == 3


def test_benchmark_times_fast_and_stock_convolutions_and_the_on_device_floor(tiny_cache):
    config = configs.TrainConfig(image_size=32, batch_size=16)
    start = time.perf_counter()
    results = benchmark.benchmark(config, steps=3, warmup=1, cache_root=tiny_cache)
    elapsed = time.perf_counter() - start
    assert results["data"] == "cached train split"
    for variant in benchmark.VARIANTS:
        timing = results[variant]
        assert timing["timed_steps"] == 3  # more steps than the 2 batches the data holds
        assert timing["median_step_ms"] > 0 and timing["first_step_s"] > 0
    # The config's own policy (float32 on CPU) is fast_convolutions itself, not timed again.
    assert results["float32"] is results["fast_convolutions"]
    assert results["mixed_bfloat16"] is not results["fast_convolutions"]
    # The timed steps happened inside the call: their sum cannot exceed its wall clock.
    timed = sum(results[v]["median_step_ms"] * 3 / 1000 + results[v]["first_step_s"]
                for v in benchmark.VARIANTS if v != "float32")
    assert timed < elapsed
    assert results["forward_gflops_per_image"] > 0 and results["fast_convolutions"]["train_tflops_per_s"] > 0


def test_a_run_dir_refuses_a_different_config(tmp_path, tiny_cache):
    run_dir = tmp_path / "run"
    train.train(configs.TrainConfig(image_size=32, epochs=1, batch_size=16), run_dir, tiny_cache, verbose=0)
    with pytest.raises(ValueError, match="another config"):
        train.train(configs.TrainConfig(image_size=32, epochs=2, batch_size=16), run_dir, tiny_cache, verbose=0)


def test_cosine_schedule_warms_up_then_decays():
    config = configs.TrainConfig(epochs=4, learning_rate=1e-2, warmup_epochs=1)
    schedule = train.learning_rate_schedule(config, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 25, 40)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1e-2)
    assert rates[2] > rates[3] > rates[4] >= 0
    with pytest.raises(ValueError, match="unknown schedule"):
        train.learning_rate_schedule(configs.TrainConfig(schedule="step"), 10)
    assert train.learning_rate_schedule(configs.TrainConfig(schedule="constant"), 10) == 2e-3


def test_export_writes_a_compact_checkpoint_with_metrics_card_and_report(tmp_path, tiny_cache):
    export_checkpoint = load_script("export_checkpoint")
    run_dir = tmp_path / "run"
    train.train(configs.TrainConfig(image_size=32, epochs=1, batch_size=16), run_dir, tiny_cache, verbose=0)
    code = export_checkpoint.main(["--run-dir", str(run_dir), "--name", "cnn", "--weights-format", "float16",
                                   "--cache-root", str(tiny_cache), "--checkpoints", str(tmp_path / "ckpts")])
    target = tmp_path / "ckpts" / "cnn"
    metrics = json.loads((target / "metrics.json").read_text())
    assert code == 0 and abs(metrics["compression_test_mae_shift"]) <= 0.05
    assert metrics["test_mae"] == pytest.approx(json.loads((target / "report" / "metrics.json").read_text())["overall"]["mae"])
    assert {"weights.npz", "config.json", "metrics.json", "history.csv", "curves.png", "README.md", "report"} <= {
        p.name for p in target.iterdir()}
    assert "test MAE" in (target / "README.md").read_text()
    predictor = Predictor.load(target)
    prediction = predictor.predict(np.zeros((2, 32, 32, 3), np.uint8))
    low, high = predictor.interval(prediction, "90")
    q90 = metrics["conformal"]["thresholds"]["90"]
    np.testing.assert_allclose(high - prediction.age, q90 * prediction.std)
    # The test-time flip is chosen on validation, and the shipped predictor uses it.
    with_choice, without = metrics["reference_val_mae"], metrics["reference_val_mae_without_flip"]
    assert metrics["test_time_flip"] == (with_choice < without) and with_choice <= without
    assert predictor.flip == metrics["test_time_flip"]
    # A checkpoint that is better on validation, before compression, is not replaced unless asked.
    metrics["reference_val_mae"] = 0.0
    (target / "metrics.json").write_text(json.dumps(metrics))
    weights = (target / "weights.npz").read_bytes()
    flags = ["--run-dir", str(run_dir), "--name", "cnn", "--cache-root", str(tiny_cache),
             "--checkpoints", str(tmp_path / "ckpts")]
    assert export_checkpoint.main(flags) == 1 and (target / "weights.npz").read_bytes() == weights
    assert export_checkpoint.main([*flags, "--replace-worse"]) == 0
    assert np.all(low <= prediction.age) and metrics["conformal"]["thresholds"]["80"] <= q90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_with_jax_distributed_train_as_one_process_does(tmp_path, tiny_cache):
    # The same global batches over 2 devices: in one process, then one device in each of two.
    flags = ["--image-size", "32", "--epochs", "2", "--batch-size", "16", "--cache-root", str(tiny_cache)]
    assert train_cli.main([*flags, "--run-dir", str(tmp_path / "single")]) == 0
    coordinator = f"127.0.0.1:{free_port()}"
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    processes = [
        subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), *flags, "--run-dir", str(tmp_path / f"p{i}"),
                          "--coordinator", coordinator, "--num-processes", "2", "--process-id", str(i)],
                         env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    single = report.read_history(tmp_path / "single" / "history.csv")
    for i in range(2):
        history = report.read_history(tmp_path / f"p{i}" / "history.csv")
        for name in ("loss", "age_mae", "val_loss", "val_age_mae"):
            assert [row[name] for row in history] == pytest.approx([row[name] for row in single], rel=1e-4)
        metrics = json.loads((tmp_path / f"p{i}" / "metrics.json").read_text())
        assert metrics["processes"] == 2 and metrics["devices"].startswith("2 x cpu in 2 processes")
    assert single[1]["loss"] != pytest.approx(single[0]["loss"], rel=1e-4)  # the steps did change the model


def test_impossible_settings_are_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.parse_args(["--run-dir", "x", "--stop-after", "-5"])
    assert exit_info.value.code == 2
    run_dir = tmp_path / "run"
    assert train_cli.main(["--run-dir", str(run_dir), "--image-size", "0", "--batch-size", "0"]) == 2
    assert "image_size 0 is under 32 px; batch_size 0 is not positive" in capsys.readouterr().err
    assert not run_dir.exists()


def test_distributed_flags_go_together():
    for flags in (["--coordinator", "127.0.0.1:1"], ["--coordinator", "127.0.0.1:1", "--num-processes", "2",
                                                    "--process-id", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            train_cli.parse_args(["--run-dir", "x", *flags])
        assert exit_info.value.code == 2


def test_a_run_can_start_from_an_earlier_runs_weights(tmp_path, tiny_cache):
    first = tmp_path / "first"
    train.train(configs.TrainConfig(image_size=32, epochs=1, batch_size=16), first, tiny_cache, verbose=0)
    start = first / "best.weights.h5"
    # A learning rate of 0 leaves the kernels where they started: the earlier run's.
    config = configs.TrainConfig(image_size=32, epochs=1, batch_size=16, schedule="constant", learning_rate=0.0,
                                 init_weights=str(start))
    train.train(config, tmp_path / "second", tiny_cache, verbose=0)
    model = keras.models.load_model(tmp_path / "second" / "model.keras")
    before = train.compiled_model(configs.TrainConfig(image_size=32), 2)
    before.load_weights(start)
    # Ignoring init_weights would leave the second run at its seed's random kernels instead.
    kernels = [np.asarray(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")]
    expected = [np.asarray(layer.kernel) for layer in before.layers if hasattr(layer, "kernel")]
    assert len(kernels) == len(expected) > 3 and all(np.array_equal(a, b) for a, b in zip(kernels, expected))
    with pytest.raises(FileNotFoundError, match="init_weights"):
        train.train(dataclasses.replace(config, init_weights=str(tmp_path / "none.h5")), tmp_path / "third",
                    tiny_cache, verbose=0)


def test_a_student_learns_from_teachers_averaged_and_cached_at_their_own_size(tmp_path, tiny_cache):
    # A 96 px cache of the same faces, for the shipped CNN as the second teacher.
    small = cache.load_split("train", 32, tiny_cache)
    big = {}
    for name in split.SPLITS:
        arrays = cache.load_split(name, 32, tiny_cache)
        images = np.repeat(np.repeat(np.asarray(arrays.images), 3, axis=1), 3, axis=2)
        big[name] = dataclasses.replace(arrays, images=images)
    cache.write(big, 96, tiny_cache)
    teacher_a, teacher_b = tmp_path / "teacher_a", "cnn"
    train.train(configs.TrainConfig(image_size=32, epochs=1, batch_size=16), teacher_a, tiny_cache, verbose=0)

    targets = distill.teacher_distributions((str(teacher_a), str(teacher_b)), "utkface", "train", tiny_cache)
    expected = [Predictor.load(t, flip=True).predict(cache.load_split("train", size, tiny_cache).images).probs
                for t, size in ((teacher_a, 32), (teacher_b, 96))]
    np.testing.assert_allclose(targets, (expected[0] + expected[1]) / 2, atol=1e-5)
    assert targets.shape == (len(small.ages), models.NUM_AGE_BINS)
    cached = list((tiny_cache / "teachers").glob("utkface_train_*.npy"))
    assert len(cached) == 1
    # Read back, not recomputed: a changed file stands in for the teachers' answer.
    np.save(cached[0], np.zeros_like(targets))
    assert not distill.teacher_distributions((str(teacher_a), str(teacher_b)), "utkface", "train", tiny_cache).any()
    # Another teacher list is another file.
    distill.teacher_distributions((str(teacher_a),), "utkface", "train", tiny_cache)
    assert len(list((tiny_cache / "teachers").glob("utkface_train_*.npy"))) == 2

    student = configs.TrainConfig(image_size=32, epochs=1, batch_size=16, teachers=(str(teacher_a),), teacher_weight=0.7)
    fed = train.training_targets(student, "utkface", small.ages, tiny_cache)
    assert fed.shape == (len(small.ages), 1 + models.NUM_AGE_BINS)
    np.testing.assert_array_equal(fed[:, 0], small.ages)
    np.testing.assert_allclose(fed[:, 1:], expected[0], atol=1e-5)
    result = train.train(student, tmp_path / "student", tiny_cache, verbose=0)
    assert result["finished"] and np.isfinite(result["val_mae"])
    assert json.loads((tmp_path / "student" / "config.json").read_text())["teachers"] == [str(teacher_a)]
    with pytest.raises(FileNotFoundError, match="teacher"):
        distill.teacher_distributions((str(tmp_path / "none"),), "utkface", "train", tiny_cache)


def test_two_models_train_one_after_the_other_in_one_process(tiny_cache):
    """Two data-parallel models in turn, several epochs each, on a training set the batch does not
    divide and without validation: once an XLA all-reduce here waited for a device that never came."""
    arrays = cache.load_split("train", 32, tiny_cache)
    train.setup_devices()
    for seed in (0, 1):
        config = configs.TrainConfig(image_size=32, epochs=4, batch_size=8, seed=seed)
        batches = pipeline.ArrayBatches(arrays.images[:29], arrays.ages[:29], 8, shuffle=True, seed=seed)
        model = train.compiled_model(config, len(batches))
        history = model.fit(batches, epochs=config.epochs, verbose=0)
        assert len(history.history["loss"]) == 4 and np.isfinite(history.history["loss"]).all()


def test_batches_mix_sources_in_their_shares():
    big = (np.zeros((90, 8, 8, 3), np.uint8), np.full(90, 30))
    small = (np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8), np.full(10, 5))
    batches = pipeline.MixedBatches([big, small], [0.75, 0.25], batch_size=16, seed=3)
    assert len(batches) == 100 // 16
    drawn = []
    for _epoch in range(2):
        for index in range(len(batches)):
            images, ages, weights = batches[index]
            assert images.shape == (16, 8, 8, 3) and weights.sum() == 16
            assert (ages == 5).sum() == 4  # a quarter of every batch from the small source
            drawn += [int(image[0, 0, 0]) for image in images[ages == 5]]
        batches.on_epoch_end()
    # The small source repeats, each of its images as often as the others, give or take one.
    counts = np.bincount(drawn, minlength=10)
    assert counts.sum() == 48 and counts.max() - counts.min() <= 1
    assert pipeline._shares_of(64, [2, 1, 1]) == [32, 16, 16] and pipeline._shares_of(10, [0.99, 0.01]) == [9, 1]


def test_age_balance_weights_lift_rare_ages_and_average_one():
    ages = np.array([25] * 90 + [15] * 9 + [80])
    assert np.array_equal(pipeline.age_balance_weights(ages, 0.0), np.ones(100))
    weights = pipeline.age_balance_weights(ages, 0.5)
    assert weights.mean() == pytest.approx(1.0, abs=1e-6)
    assert weights[0] < weights[90] < weights[99] < 1.1 * pipeline.MAX_BALANCE_WEIGHT  # the lone 80-year-old, capped
    assert np.allclose(pipeline.age_balance_weights(np.arange(20, 30).repeat(5), 0.5)[10:40], 1.0, atol=0.1)
    with pytest.raises(ValueError, match="age_balance"):
        configs.TrainConfig(age_balance=1.5)


def test_batches_carry_each_faces_weight():
    images = np.arange(12, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    weights = np.linspace(0.5, 1.6, 12).astype(np.float32)
    single = pipeline.ArrayBatches(images, np.arange(12), batch_size=8, weights=weights, device_count=2)
    drawn, ages, got = single[1]  # the last batch: 4 faces, no padding needed over 2 devices
    assert np.array_equal(got, weights[8:]) and np.array_equal(ages, np.arange(8, 12))
    ragged = pipeline.ArrayBatches(images[:11], np.arange(11), batch_size=8, weights=weights[:11], device_count=2)
    _, _, got = ragged[1]  # 3 faces and one zero-weight pad
    assert np.array_equal(got, [*weights[8:11], 0.0])
    mixed = pipeline.MixedBatches([(images, np.arange(12), weights), (images, np.arange(12))], [0.5, 0.5], batch_size=8)
    drawn, _, got = mixed[0]
    rows = drawn[:4, 0, 0, 0]
    assert np.array_equal(got[:4], weights[rows]) and np.array_equal(got[4:], np.ones(4))


def test_a_run_on_two_sources_reports_each_sources_validation(tmp_path, tiny_cache):
    rng = np.random.default_rng(1)

    def part(n, age):
        return cache.SplitArrays(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), np.full(n, age, np.int32),
                                 np.zeros(n, np.int8), np.full(n, -1, np.int8), np.array([f"{i}.jpg" for i in range(n)]))

    cache.write({"train": part(20, 10), "val": part(5, 10), "test": part(5, 10)}, 32, tiny_cache,
                split.PACKAGED / "aaf.csv")
    config = configs.TrainConfig(image_size=32, epochs=2, batch_size=16, sources=("utkface", "aaf"), source_shares=(0.5, 0.5))
    metrics = train.train(config, tmp_path / "run", tiny_cache, verbose=0)
    history = report.read_history(tmp_path / "run" / "history.csv")
    assert {"val_mae_utkface", "val_mae_aaf"} <= set(history[-1])
    row = history[-1]
    assert row["val_age_mae"] == pytest.approx((row["val_mae_utkface"] + row["val_mae_aaf"]) / 2, abs=1e-4)
    assert set(metrics["val_mae_per_source"]) == {"utkface", "aaf"}
    assert configs.TrainConfig.from_json(tmp_path / "run" / "config.json") == config


ALL_REDUCE_STEPS = """
from agejax import runtime
runtime.setup()
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
mesh = Mesh(np.array(jax.devices()), ("batch",))
@jax.jit
def step(weights, inputs):
    return weights - 0.01 * jax.grad(lambda w: jnp.mean(jnp.tanh(inputs @ w) ** 2))(weights)
weights = jax.device_put(np.ones((512, 512), np.float32) / 512, NamedSharding(mesh, PartitionSpec()))
batch = np.linspace(0, 1, 128 * 512, dtype=np.float32).reshape(128, 512)
for _ in range(300):  # queued ahead of the devices, many more than a device keeps in flight
    weights = step(weights, jax.device_put(batch, NamedSharding(mesh, PartitionSpec("batch"))))
print(len(jax.devices()), float(weights.sum()))
"""


def test_steps_queued_far_ahead_never_leave_a_device_without_a_thread():
    """XLA:CPU ran each device's program on a pool of one thread per core; with 2 devices on 2
    cores, an all-reduce waiting for the other device and a launch waiting for a device's queue
    held both threads, and XLA aborted after its rendezvous timeout (here cut to 10 s). This
    happened within 100 steps in every run before runtime.setup gave two threads per device."""
    environment = {key: value for key, value in os.environ.items() if key != "PJRT_NPROC"}
    environment["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2"
                                " --xla_cpu_collective_call_terminate_timeout_seconds=10")
    done = subprocess.run([sys.executable, "-c", ALL_REDUCE_STEPS], env=environment, cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "2"
