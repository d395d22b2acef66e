"""Feeding in-memory uint8 arrays to Keras, on any number of data-parallel devices and processes.

No decoding happens here: batches are slices of the decode-once cache. Data
parallelism needs every batch to split evenly across devices, so training drops
the ragged remainder (a new shuffle every epoch means every image is still seen)
and evaluation pads the last batch with zero-weight copies that are cut off again.
Across processes (jax.distributed) every process draws the same global batch and
hands Keras its own contiguous share, which is what its local devices hold.
"""

from __future__ import annotations

import math

import jax
import keras
import numpy as np

from agejax.data.labels import NUM_AGE_BINS

# The age histogram behind balancing weights is smoothed over neighbouring ages, since a face
# of 14 and one of 15 look alike (label-distribution smoothing, Yang et al., ICML 2021).
BALANCE_SMOOTHING_YEARS = 2.0
MAX_BALANCE_WEIGHT = 3.0


def age_balance_weights(ages: np.ndarray, power: float) -> np.ndarray:
    """Per-face loss weights, (smoothed age density) ** -power, with mean 1.

    power 0 weighs every face alike; 0.5 (inverse square root) lifts the ages a training set
    holds few of, such as teenagers and the old, so the model is pulled less towards the
    crowded 20s and 30s.
    """
    ages = np.clip(np.rint(np.asarray(ages)).astype(int), 0, NUM_AGE_BINS - 1)
    if power == 0 or len(ages) == 0:
        return np.ones(len(ages), np.float32)
    counts = np.bincount(ages, minlength=NUM_AGE_BINS).astype(np.float64)
    offsets = np.arange(-3 * BALANCE_SMOOTHING_YEARS, 3 * BALANCE_SMOOTHING_YEARS + 1)
    kernel = np.exp(-0.5 * (offsets / BALANCE_SMOOTHING_YEARS) ** 2)
    density = np.convolve(counts, kernel / kernel.sum(), mode="same")
    weights = density[ages] ** -power
    # Capped, so the few faces past 90 (some of them mislabelled) cannot dominate a batch.
    weights = np.minimum(weights / weights.mean(), MAX_BALANCE_WEIGHT)
    return (weights / weights.mean()).astype(np.float32)


def on_accelerator(images: np.ndarray) -> np.ndarray | jax.Array:
    """The images in accelerator memory, where batches are then gathered without a host copy.

    On a CPU they stay where they are: host memory is already the device's memory.
    """
    if jax.default_backend() == "cpu":
        return images
    return jax.device_put(images)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (images, ages, weights), or of images alone when ages is None.

    images is a NumPy array (or memory map) or a jax.Array already on the device; ages may be
    (N, 1 + bins) targets, each age followed by a teacher's distribution; weights, one per
    face, scale each face's loss (default 1; padding rows weigh 0).
    """

    def __init__(
        self,
        images: np.ndarray | jax.Array,
        ages: np.ndarray | None = None,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        device_count: int | None = None,
        weights: np.ndarray | None = None,
    ):
        super().__init__()
        self.device_count = device_count or jax.device_count()  # over all processes
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        if batch_size % self.device_count:
            raise ValueError(
                f"batch size {batch_size} does not split over {self.device_count} devices; "
                f"use a multiple of {self.device_count}"
            )
        if shuffle and len(images) < batch_size:
            raise ValueError(f"{len(images)} training images are fewer than one batch of {batch_size}")
        self.images = images
        self.ages = None if ages is None else np.asarray(ages, np.float32)
        self.weights = np.ones(len(images), np.float32) if weights is None else np.asarray(weights, np.float32)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images)) if shuffle else np.arange(len(images))

    def __len__(self) -> int:
        if self.shuffle:
            return len(self.images) // self.batch_size
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        pad = -len(rows) % self.device_count
        weights = np.concatenate([self.weights[rows], np.zeros(pad, np.float32)])
        if pad:
            rows = np.concatenate([rows, np.repeat(rows[-1:], pad)])
        if self.process_count > 1:  # this process's share of the global batch
            share = len(rows) // self.process_count
            rows = rows[self.process_index * share : (self.process_index + 1) * share]
            weights = weights[self.process_index * share : (self.process_index + 1) * share]
        images = self.images[rows]  # a jax.Array is gathered on its device
        if isinstance(images, np.ndarray):
            images = np.asarray(images)  # a plain array, not a memory-map slice
        if self.ages is None:
            return (images,)
        return images, self.ages[rows], weights

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.images))


class MixedBatches(keras.utils.PyDataset):
    """Training batches of (images, ages, weights) drawn from several sources in fixed shares.

    Each part is (images, ages) or (images, ages, per-face weights); ages may be targets as
    ArrayBatches takes them.

    Every batch holds the same number of images from each source (its share of the batch,
    rounded so they add up); each source is shuffled anew whenever it runs out, so a small
    source repeats within an epoch rather than being diluted. An epoch is as many batches as
    all sources' images fill.
    """

    def __init__(self, parts: list[tuple[np.ndarray, ...]], shares: list[float], batch_size: int = 64,
                 seed: int = 0):
        super().__init__()
        if len(parts) != len(shares) or min(shares) <= 0:
            raise ValueError("one positive share per source is needed")
        device_count = jax.device_count()
        if batch_size % device_count:
            raise ValueError(f"batch size {batch_size} does not split over {device_count} devices")
        self.parts = [(part[0], np.asarray(part[1], np.float32),
                       np.asarray(part[2], np.float32) if len(part) > 2 else np.ones(len(part[1]), np.float32))
                      for part in parts]
        self.counts = _shares_of(batch_size, shares)
        self.batch_size = batch_size
        self.steps = sum(len(part[0]) for part in parts) // batch_size
        self.rng = np.random.default_rng(seed)
        self.orders = [self.rng.permutation(len(part[0])) for part in parts]
        self.positions = [0] * len(parts)
        self._plan_epoch()

    def _take(self, part: int, count: int) -> np.ndarray:
        taken = []
        while count:
            order, at = self.orders[part], self.positions[part]
            chunk = order[at:at + count]
            taken.append(chunk)
            count -= len(chunk)
            self.positions[part] = at + len(chunk)
            if self.positions[part] == len(order):
                self.orders[part], self.positions[part] = self.rng.permutation(len(order)), 0
        return np.concatenate(taken)

    def _plan_epoch(self) -> None:
        self.plan = [[self._take(part, count) for part, count in enumerate(self.counts)] for _ in range(self.steps)]

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        rows = self.plan[index]
        images = np.concatenate([np.asarray(self.parts[p][0][r]) for p, r in enumerate(rows)])
        ages = np.concatenate([self.parts[p][1][r] for p, r in enumerate(rows)])
        weights = np.concatenate([self.parts[p][2][r] for p, r in enumerate(rows)])
        return images, ages, weights

    def on_epoch_end(self) -> None:
        self._plan_epoch()


def _shares_of(batch_size: int, shares: list[float]) -> list[int]:
    """Whole counts in proportion to shares that add up to batch_size, each at least 1."""
    exact = np.asarray(shares, float) / np.sum(shares) * batch_size
    counts = np.maximum(np.floor(exact).astype(int), 1)
    for index in np.argsort(counts - exact):  # largest remainders first
        if counts.sum() >= batch_size:
            break
        counts[index] += 1
    while counts.sum() > batch_size:
        counts[np.argmax(counts)] -= 1
    return counts.tolist()


def predict_outputs(model: keras.Model, images: np.ndarray, batch_size: int = 128, verbose: int = 0) -> np.ndarray:
    """Model outputs for every image, in order, whatever the device count and batch size."""
    devices = jax.device_count()
    batches = ArrayBatches(images, batch_size=math.ceil(batch_size / devices) * devices)
    return np.asarray(model.predict(batches, verbose=verbose))[: len(images)]
