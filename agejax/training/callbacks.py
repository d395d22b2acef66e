"""The callbacks a training run uses: best weights by validation, per-source validation, the
learning rate and wall clock in the history, curves, and a clean stop before a deadline."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import keras
import numpy as np
from jax.experimental import multihost_utils

from agejax.data import cache, pipeline
from agejax.evaluation import metrics, report
from agejax.serving.predict import summarize_outputs

MONITOR = "val_age_mae"


def val_mae(model: keras.Model, arrays: cache.SplitArrays, batch_size: int) -> float:
    """The model's MAE on the validation split (the test split is scored only by the export)."""
    outputs = pipeline.predict_outputs(model, arrays.images, batch_size)
    return metrics.mae(arrays.ages, summarize_outputs(outputs)[0])


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation MAE; survives a resume."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.weights_path = run_dir / "best.weights.h5"
        self.record_path = run_dir / "best.json"
        self.best = math.inf

    def on_train_begin(self, logs=None):
        if self.record_path.exists():
            self.best = json.loads(self.record_path.read_text())["val_mae"]

    def on_epoch_end(self, epoch, logs=None):
        value = float(logs[MONITOR])
        if value < self.best:
            self.best = value
            self.model.save_weights(self.weights_path)
            self.record_path.write_text(json.dumps({"epoch": epoch + 1, "val_mae": value}) + "\n")


class LogLearningRate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(np.asarray(rate))


class ElapsedTime(keras.callbacks.Callback):
    """Logs wall-clock seconds since the run started (data loading and compilation included),
    summed over every session of a resumed run."""

    def __init__(self, history_path: Path, session_start: float):
        super().__init__()
        rows = report.read_history(history_path) if history_path.exists() else []
        self.earlier_sessions = float(rows[-1].get("elapsed_s", 0.0)) if rows else 0.0
        self.session_start = session_start

    def on_epoch_end(self, epoch, logs=None):
        logs["elapsed_s"] = round(self.earlier_sessions + time.perf_counter() - self.session_start, 1)


class StopBeforeDeadline(keras.callbacks.Callback):
    """Ends training at an epoch end when another epoch would not finish before the deadline.

    Across processes the first one decides for all, so none waits for the others forever.
    """

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline  # a time.perf_counter() value
        self.longest_epoch = 0.0
        self.stopped = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.longest_epoch = max(self.longest_epoch, now - self.epoch_start)
        stop = epoch + 1 < self.params["epochs"] and now + self.longest_epoch > self.deadline
        if jax.process_count() > 1:
            stop = bool(multihost_utils.broadcast_one_to_all(np.array(stop)))
        if stop:
            self.model.stop_training = True
            self.stopped = True


class PlotCurves(keras.callbacks.Callback):
    def __init__(self, run_dir: Path, title: str):
        super().__init__()
        self.run_dir, self.title = run_dir, title

    def on_epoch_end(self, epoch, logs=None):
        report.plot_history(self.run_dir / "history.csv", self.run_dir / "curves.png", self.title)


class PerSourceValidation(keras.callbacks.Callback):
    """Each source's validation MAE after every epoch (val_mae_<source>), and their mean as
    val_age_mae, the figure the best epoch is chosen by: every source counts the same."""

    def __init__(self, parts: dict, batch_size: int):
        super().__init__()
        self.parts, self.batch_size = parts, batch_size

    def on_epoch_end(self, epoch, logs=None):
        errors = {name: val_mae(self.model, part, self.batch_size) for name, part in self.parts.items()}
        logs.update({f"val_mae_{name}": value for name, value in errors.items()})
        logs[MONITOR] = float(np.mean(list(errors.values())))
