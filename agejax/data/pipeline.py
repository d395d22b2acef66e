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


def on_accelerator(images: np.ndarray) -> np.ndarray | jax.Array:
    """The images in accelerator memory, where batches are then gathered without a host copy.

    On a CPU they stay where they are: host memory is already the device's memory.
    """
    if jax.default_backend() == "cpu":
        return images
    return jax.device_put(images)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (images, ages, weights), or of images alone when ages is None.

    images is a NumPy array (or memory map) or a jax.Array already on the device.
    """

    def __init__(
        self,
        images: np.ndarray | jax.Array,
        ages: np.ndarray | None = None,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        device_count: int | None = None,
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
        weights = np.ones(len(rows) + pad, np.float32)
        if pad:
            rows = np.concatenate([rows, np.repeat(rows[-1:], pad)])
            weights[-pad:] = 0.0
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


def predict_outputs(model: keras.Model, images: np.ndarray, batch_size: int = 128, verbose: int = 0) -> np.ndarray:
    """Model outputs for every image, in order, whatever the device count and batch size."""
    devices = jax.device_count()
    batches = ArrayBatches(images, batch_size=math.ceil(batch_size / devices) * devices)
    return np.asarray(model.predict(batches, verbose=verbose))[: len(images)]
