"""Training speed: real train steps timed after warm-up, in one process.

Four variants of the same config run one after another:

    fast_convolutions   real augmented batches, agejax.conv's convolutions, the config's dtype
                        policy (how training runs)
    stock_convolutions  the same with Keras' stock Conv2D: the baseline for the speed-up
    on_device_floor     fast convolutions on one batch already on the device, augmentation off:
                        the input pipeline's floor
    float32, mixed_bfloat16
                        fast convolutions with each dtype policy (the config's own is
                        fast_convolutions' figures, not timed again)

The ratios between their median step times show what the convolutions gain, what
bfloat16 activations gain and what the input pipeline costs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import keras
import numpy as np

from agejax.data import cache, pipeline
from agejax.training.configs import DTYPE_POLICIES, TrainConfig
from agejax.training.train import compiled_model, dtype_policy, setup_devices

VARIANTS = ("fast_convolutions", "stock_convolutions", "on_device_floor", "float32", "mixed_bfloat16")


class StepTimer(keras.callbacks.Callback):
    """Wall time of every train step, waiting for the device to finish each one."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        jax.block_until_ready(logs)
        self.times.append(time.perf_counter() - self._start)


def forward_flops_per_image(model: keras.Model, image_size: int) -> float:
    """XLA's count of floating-point operations for one inference forward pass."""
    images = np.zeros((8, image_size, image_size, 3), np.uint8)
    compiled = jax.jit(lambda x: model(x, training=False)).lower(images).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"]) / len(images)


class CycledBatches(keras.utils.PyDataset):
    """Any number of steps from a sequence of batches, starting over at its end."""

    def __init__(self, batches, steps: int):
        super().__init__()
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        return self.batches[index % len(self.batches)]


def on_device_input(array: np.ndarray) -> jax.Array:
    """The array on the device(s), laid out as the train step takes it: Keras then moves nothing."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return jax.device_put(array)
    return jax.device_put(array, distribution.get_data_layout(array.shape).backend_layout)


def time_train_steps(
    config: TrainConfig, batches: Sequence[tuple], steps: int, warmup: int, fast_convolutions: bool = True,
    augment: bool = True,
) -> tuple[keras.Model, list[float]]:
    """A fresh model of the config, and the wall time of each of its warmup + steps train steps."""
    keras.utils.set_random_seed(config.seed)
    model = compiled_model(config, warmup + steps, fast_convolutions=fast_convolutions)
    if not augment:
        model.get_layer("augment").switch_off()
    timer = StepTimer()
    model.fit(CycledBatches(batches, warmup + steps), epochs=1, steps_per_epoch=warmup + steps,
              callbacks=[timer], verbose=0)
    return model, timer.times


def benchmark(config: TrainConfig, steps: int = 20, warmup: int = 3, cache_root: Path = cache.DEFAULT_ROOT) -> dict:
    """Median train-step times of each of VARIANTS, their img/s, compile times and ratios.

    Real data is the cached train split, in accelerator memory and reshuffled as in
    training (random images without a cache). The FLOP figures are XLA's count for the
    stock forward pass, so both variants are measured against the same work.
    """
    device_info = setup_devices()
    try:
        images = np.asarray(cache.load_split("train", config.image_size, cache_root).images)
        data_source = "cached train split"
    except FileNotFoundError:
        images = np.random.default_rng(0).integers(0, 255, (2048, config.image_size, config.image_size, 3), np.uint8)
        data_source = "random images (no cache)"
    ages = np.random.default_rng(0).integers(1, 90, len(images))
    batches = pipeline.ArrayBatches(
        pipeline.on_accelerator(images), ages, config.batch_size, shuffle=True, seed=config.seed
    )
    results = {"config": dataclasses.asdict(config), "devices": device_info, "dtype_policy": dtype_policy(config),
               "data": data_source}
    on_device = [tuple(on_device_input(part) for part in batches[0])]
    for variant in VARIANTS:
        if variant == dtype_policy(config):  # the config's own policy: fast_convolutions already timed it
            results[variant] = results["fast_convolutions"]
            continue
        floor = variant == "on_device_floor"
        variant_config = dataclasses.replace(config, dtype_policy=variant) if variant in DTYPE_POLICIES else config
        model, times = time_train_steps(
            variant_config, on_device if floor else batches, steps, warmup,
            fast_convolutions=variant != "stock_convolutions", augment=not floor,
        )
        step = float(np.median(times[warmup:]))
        results[variant] = {
            "timed_steps": len(times) - warmup,
            "first_step_s": round(times[0], 2),
            "compile_s_estimate": round(times[0] - step, 2),
            "median_step_ms": round(step * 1000, 2),
            "images_per_s": round(config.batch_size / step, 1),
        }
        if variant == "stock_convolutions":
            flops = forward_flops_per_image(model, config.image_size)
    results["forward_gflops_per_image"] = round(flops / 1e9, 3)
    # A train step costs about 3 forward passes (forward, and backward for inputs and weights).
    for variant in VARIANTS:
        results[variant]["train_tflops_per_s"] = round(3 * flops * results[variant]["images_per_s"] / 1e12, 4)
    step_ms = {variant: results[variant]["median_step_ms"] for variant in VARIANTS}
    results["fast_over_stock_speedup"] = round(step_ms["stock_convolutions"] / step_ms["fast_convolutions"], 3)
    results["bfloat16_over_float32_speedup"] = round(step_ms["float32"] / step_ms["mixed_bfloat16"], 3)
    results["real_over_on_device_step_ratio"] = round(step_ms["fast_convolutions"] / step_ms["on_device_floor"], 3)
    return results
