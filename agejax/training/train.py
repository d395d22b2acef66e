"""Training an age model from the decode-once cache, with resume and best-on-validation checkpoints.

A run directory holds everything a run writes:
    config.json      the TrainConfig
    git_commit.txt   the commit of the code that started the run
    history.csv      one row per epoch (loss, MAE, val loss, val MAE, learning rate)
    curves.png       the history as plots, redrawn every epoch
    backup/          model + optimizer state at the last epoch end (for resume; removed when done)
    best.weights.h5  weights of the epoch with the lowest validation MAE
    best.json        that epoch and its validation MAE
    model.keras      the best model, without optimizer state
    metrics.json     validation MAE of model.keras and run facts (the export scores the test split)

Rerunning the same command on the same run directory resumes from the last
completed epoch, so an interruption loses at most one epoch. With a time limit
(``stop_after_s``) a run ends cleanly at the last epoch end that fits and is
resumed by the next call: this is how a run survives a 10-minute GPU call.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import jax
import keras
import numpy as np

from agejax import SHIPPED_ROOT
from agejax.data import cache, pipeline, split
from agejax.evaluation import report
from agejax.training import distill, models
from agejax.training.callbacks import (
    BestCheckpoint,
    ElapsedTime,
    LogLearningRate,
    PerSourceValidation,
    PlotCurves,
    StopBeforeDeadline,
    val_mae,
)
from agejax.training.configs import TrainConfig


def setup_devices() -> str:
    """Data parallelism over every device of every process. Returns a description."""
    devices = jax.devices()
    if len(devices) > 1:
        # ArrayBatches already gives each process its share of every global batch.
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    return f"{len(devices)} x {devices[0].device_kind}{processes}"


def dtype_policy(config: TrainConfig) -> str:
    """The config's Keras dtype policy, "auto" resolved for the devices in use."""
    if config.dtype_policy != "auto":
        return config.dtype_policy
    return "mixed_bfloat16" if jax.devices()[0].platform == "gpu" else "float32"


def learning_rate_schedule(
    config: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up then cosine decay to 0 ("cosine"), or a constant rate."""
    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule != "cosine":
        raise ValueError(f"unknown schedule {config.schedule!r}; expected 'cosine' or 'constant'")
    total = config.epochs * steps_per_epoch
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, warmup_target=config.learning_rate, warmup_steps=warmup
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    return keras.optimizers.AdamW(
        learning_rate_schedule(config, steps_per_epoch), weight_decay=config.weight_decay
    )


def compiled_model(config: TrainConfig, steps_per_epoch: int, fast_convolutions: bool = True) -> keras.Model:
    """The config's model, compiled; its layers compute in the config's dtype policy."""
    keras.mixed_precision.set_dtype_policy(dtype_policy(config))  # Keras reads it when each layer is made
    model = models.build_from_config(config, fast_convolutions)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=models.loss_for(config.head, config.label_sigma, config.teacher_weight),
        weighted_metrics=[models.age_mae],  # weighted: padding rows carry weight 0
    )
    return model


def git_commit() -> str:
    """The commit of the code that trains, with '-dirty' if it has uncommitted changes.

    A copy without .git (the GPU machine's) reads it from AGEJAX_GIT_COMMIT instead.
    """
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "agejax", "scripts"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("AGEJAX_GIT_COMMIT", "unknown")
    return commit + ("-dirty" if dirty else "")


def _init_weights_file(path: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_absolute() and not file.exists():
        file = SHIPPED_ROOT / file  # e.g. checkpoints/cnn from any folder
    if not file.is_file() and not (file / "weights.npz").is_file():
        raise FileNotFoundError(f"init_weights {path!r} is neither a weights file nor a checkpoint folder; train that run first")
    return file


def load_initial_weights(model: keras.Model, path: Path) -> None:
    """An earlier run's best.weights.h5, or a checkpoint folder's weights (matched by path)."""
    if path.is_file():
        model.load_weights(path)
        return
    from agejax.serving import checkpoint

    stored = checkpoint.read_weights(path)
    missing = [w.path for w in model.weights if w.path not in stored]
    if missing:
        raise ValueError(f"{path} lacks weights this model has: {', '.join(missing[:5])}")
    model.set_weights([stored[w.path] for w in model.weights])


def training_targets(config: TrainConfig, source: str, ages: np.ndarray, cache_root: Path) -> np.ndarray:
    """A source's training targets: its ages, or (N, 1 + bins) ages and teacher distributions."""
    if not config.teachers:
        return ages
    teacher = distill.teacher_distributions(config.teachers, source, "train", cache_root)
    return np.concatenate([np.asarray(ages, np.float32)[:, None], teacher], axis=1)


def _check_run_dir(run_dir: Path, config: TrainConfig) -> None:
    saved = run_dir / "config.json"
    if saved.exists() and TrainConfig.from_json(saved) != config:
        raise ValueError(
            f"{run_dir} holds a run with another config ({saved}); pick a new --run-dir to start afresh"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(config.to_json())


def train(
    config: TrainConfig,
    run_dir: Path,
    cache_root: Path = cache.DEFAULT_ROOT,
    verbose: int | str = "auto",
    stop_after_s: float | None = None,
) -> dict:
    """Trains (or resumes) a run and writes model.keras and metrics.json into run_dir.

    With stop_after_s, training stops at the last epoch end that fits in that many
    seconds from now; the result then has "finished": False and rerunning resumes.
    """
    if config.backbone == "ensemble":
        raise ValueError("an ensemble is made from trained runs (scripts/ensemble.py), not trained")
    session_start = time.perf_counter()
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, config)
    if (run_dir / "metrics.json").exists():  # finished earlier: nothing left to do
        return json.loads((run_dir / "metrics.json").read_text())
    init_file = _init_weights_file(config.init_weights) if config.init_weights else None
    commit_file = run_dir / "git_commit.txt"  # the code that started the run, kept across resumes
    if not commit_file.exists():
        commit_file.write_text(git_commit() + "\n")
    keras.utils.set_random_seed(config.seed)
    device_info = setup_devices()
    train_parts = {s: cache.load_split("train", config.image_size, cache_root, mmap=False, source=s) for s in config.sources}
    val_parts = {s: cache.load_split("val", config.image_size, cache_root, source=s) for s in config.sources}
    targets = {s: training_targets(config, s, part.ages, cache_root) for s, part in train_parts.items()}
    val_arrays = val_parts[config.sources[0]]
    if len(config.sources) == 1:
        train_arrays = train_parts[config.sources[0]]
        train_batches = pipeline.ArrayBatches(
            pipeline.on_accelerator(train_arrays.images), targets[config.sources[0]], config.batch_size,
            shuffle=True, seed=config.seed, weights=pipeline.age_balance_weights(train_arrays.ages, config.age_balance),
        )
        val_batches = pipeline.ArrayBatches(val_arrays.images, val_arrays.ages, config.batch_size)
    else:
        shares = config.source_shares or [len(part) for part in train_parts.values()]
        train_batches = pipeline.MixedBatches(
            [(part.images, targets[s], pipeline.age_balance_weights(part.ages, config.age_balance))
             for s, part in train_parts.items()], shares, config.batch_size, config.seed,
        )
        val_batches = None  # PerSourceValidation scores every source's validation split
    model = compiled_model(config, len(train_batches))
    if init_file:  # a resumed run then restores its own backup over these
        load_initial_weights(model, init_file)
    title = f"{config.backbone} ({config.head} head, {config.image_size}px)"
    deadline = StopBeforeDeadline(session_start + (math.inf if stop_after_s is None else stop_after_s))
    callbacks = [
        *([PerSourceValidation(val_parts, config.batch_size)] if val_batches is None else []),
        LogLearningRate(),
        ElapsedTime(run_dir / "history.csv", session_start),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        BestCheckpoint(run_dir),
        PlotCurves(run_dir, title),
        deadline,
        # Last, so everything above is on disk before an epoch counts as done. Kept after
        # a deadline stop (the next call resumes from it), removed once the run is done.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
    ]
    start = time.perf_counter()
    model.fit(
        train_batches, validation_data=val_batches, epochs=config.epochs, callbacks=callbacks, verbose=verbose
    )
    train_seconds = time.perf_counter() - start
    history = report.read_history(run_dir / "history.csv")
    if deadline.stopped:
        return {
            "finished": False,
            "epochs_done": len(history),
            "epochs": config.epochs,
            "elapsed_s": history[-1].get("elapsed_s"),
            "message": f"stopped before the time limit after epoch {len(history)}; rerun the same command to resume",
        }
    shutil.rmtree(run_dir / "backup", ignore_errors=True)

    model.load_weights(run_dir / "best.weights.h5")
    model.save(run_dir / "model.keras", include_optimizer=False)
    best = json.loads((run_dir / "best.json").read_text())
    if jax.process_count() > 1:  # the predictions of a multi-process model are not all in this process
        final_val_mae = best["val_mae"]
    else:
        per_source = {s: round(val_mae(model, part, config.batch_size), 4) for s, part in val_parts.items()}
        final_val_mae = float(np.mean(list(per_source.values())))
    result = {
        "finished": True,
        "model": title,
        "config": dataclasses.asdict(config),
        "best_epoch": best["epoch"],
        "val_mae": round(final_val_mae, 4),
        **({"val_mae_per_source": per_source} if jax.process_count() == 1 else {}),
        "parameters": int(model.count_params()),
        "manifest_sha256": split.manifest_hash(),
        "git_commit": commit_file.read_text().strip(),
        "devices": device_info,
        "dtype_policy": dtype_policy(config),
        "processes": jax.process_count(),
        "train_seconds_last_session": round(train_seconds, 1),
        # Wall clock over all sessions, compilation included, up to the chosen epoch and in all.
        "elapsed_s_to_best_epoch": history[best["epoch"] - 1].get("elapsed_s"),
        "elapsed_s": history[-1].get("elapsed_s"),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
