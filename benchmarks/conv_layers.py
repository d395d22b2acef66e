"""Per-layer convolution timings on this CPU, and the formulation table agejax.conv reads.

    python benchmarks/conv_layers.py            # print the per-layer breakdown
    python benchmarks/conv_layers.py --write    # and regenerate agejax/conv_choices.json

Every distinct convolution of both backbones at each --image-sizes resolution is timed
in each formulation of each pass (forward, input gradient, weight gradient), on a batch
split over 2 virtual CPU devices as in training. Figures are medians of --repeats calls
after a warm-up call. A pass leaves XLA only for a formulation at least --margin faster,
so noise cannot flip a choice.

A layer's gain alone need not survive in the whole train step (XLA fuses the stock
convolution with its neighbours). So each model's whole train step is then timed with
stock convolutions and with the table, in alternating rounds; where the table is not at least
WHOLE_STEP_MARGIN faster, the shapes only that model uses go back to XLA. Writes
benchmarks/results/conv_layers.json.
"""

from __future__ import annotations

import os

# Two virtual CPU devices, as scripts/train.py uses; must be set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import agejax  # noqa: F401  # isort: skip  (first: it sets the Keras backend)
import jax
import keras
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from agejax import runtime
from agejax.training import benchmark, conv, models
from agejax.training.configs import TrainConfig
from agejax.training.train import setup_devices

runtime.enough_client_threads()  # before JAX starts its backend

RESULTS = Path(__file__).resolve().parent / "results" / "conv_layers.json"
WHOLE_STEP_MARGIN = 0.02
WHOLE_STEP_WARMUP, WHOLE_STEPS = 2, 5  # per round of a model's whole-step timing


def convolutions(backbone: str, image_size: int) -> list[tuple]:
    """(input shape without batch, kernel shape, strides, padding) of every Conv2D, in model order."""
    model = models.build_model(backbone, "distribution", image_size, fast_convolutions=False)
    found = []

    def visit(layer):
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                visit(inner)
        elif isinstance(layer, keras.layers.Conv2D):
            found.append((tuple(layer.input.shape[1:]), tuple(layer.kernel.shape), tuple(layer.strides), layer.padding))

    visit(model)
    return found


def median_seconds(function, args, repeats: int) -> float:
    jax.block_until_ready(function(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_shape(input_shape, kernel_shape, strides, padding, batch: int, repeats: int) -> dict:
    """Seconds per call of every formulation of every pass for one convolution."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    split_batch = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(batch, *input_shape)).astype(np.float32), split_batch)
    w = jax.device_put(rng.normal(size=kernel_shape).astype(np.float32), replicated)
    y_shape = jax.eval_shape(lambda x, w: conv.forward(x, w, strides, padding, "xla"), x, w).shape
    dy = jax.device_put(rng.normal(size=y_shape).astype(np.float32), split_batch)
    # One kernel offset makes "offsets" the same computation as "patches".
    formulations = conv.FORMULATIONS if kernel_shape[0] * kernel_shape[1] > 1 else ("xla", "patches")
    seconds = {}
    for how in formulations:
        seconds.setdefault("forward", {})[how] = median_seconds(
            jax.jit(lambda x, w, how=how: conv.forward(x, w, strides, padding, how)), (x, w), repeats)
        seconds.setdefault("input_grad", {})[how] = median_seconds(
            jax.jit(lambda x, w, dy, how=how: conv.input_grad(x, w, dy, strides, padding, how)), (x, w, dy), repeats)
        seconds.setdefault("weight_grad", {})[how] = median_seconds(
            jax.jit(lambda x, w, dy, how=how: conv.weight_grad(x, w, dy, strides, padding, how)), (x, w, dy), repeats)
    flops = 2 * batch * y_shape[1] * y_shape[2] * int(np.prod(kernel_shape))
    return {"flops_per_pass": flops, "seconds": seconds}


def pick(seconds: dict[str, float], margin: float) -> str:
    fastest = min(seconds, key=seconds.get)
    return fastest if seconds[fastest] * (1 + margin) < seconds["xla"] else "xla"


def step_times(backbone: str, image_size: int, batch: int, table: dict | None) -> list[float]:
    """Train-step times after warm-up on one on-device batch: stock convolutions (table None) or the table's."""
    config = TrainConfig(backbone=backbone, image_size=image_size, batch_size=batch)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, image_size, image_size, 3), np.uint8)
    ages = rng.uniform(1, 90, batch).astype(np.float32)
    data = [(benchmark.on_device_input(images), benchmark.on_device_input(ages))]
    with conv.choices_in_force(table or {}):
        _, times = benchmark.time_train_steps(config, data, WHOLE_STEPS, WHOLE_STEP_WARMUP,
                                              fast_convolutions=table is not None, augment=False)
    return times[WHOLE_STEP_WARMUP:]


def keep_whole_step_gains(rows: dict, table: dict, batch: int, rounds: int = 2) -> tuple[dict, dict]:
    """Each model's whole step, stock and with the table; drops the shapes of models it does not speed up."""
    setup_devices()
    verdicts = {}
    for model in sorted({m for row in rows.values() for m in row["used_by"]}):
        own = [key for key in table if rows[key]["used_by"] == [model]]
        if not own:
            continue
        backbone, size = model.split("@")
        stock_times, table_times = [], []
        for _ in range(rounds):  # alternating, so a slow spell of the machine hits both
            stock_times += step_times(backbone, int(size), batch, None)
            table_times += step_times(backbone, int(size), batch, table)
        stock, chosen = statistics.median(stock_times), statistics.median(table_times)
        kept = chosen * (1 + WHOLE_STEP_MARGIN) < stock
        verdicts[model] = {"stock_step_ms": round(stock * 1e3, 1), "table_step_ms": round(chosen * 1e3, 1),
                           "speedup": round(stock / chosen, 3), "own_shapes": own, "kept": kept}
        print(f"{model:14s} whole step: stock {stock * 1e3:7.0f} ms, table {chosen * 1e3:7.0f} ms, "
              f"{stock / chosen:.3f}x -> {'keeps' if kept else 'drops'} its {len(own)} own shapes", flush=True)
    dropped = {key for verdict in verdicts.values() if not verdict["kept"] for key in verdict["own_shapes"]}
    return {key: choices for key, choices in table.items() if key not in dropped}, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(models.BACKBONES))
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[64, 96])
    parser.add_argument("--batch", type=int, default=64, help="global batch, split over the devices (default 64)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--margin", type=float, default=0.1, help="how much faster a formulation must be (0.1 = 10%%)")
    parser.add_argument("--write", action="store_true", help=f"regenerate {conv.CHOICES_PATH.name}")
    args = parser.parse_args()

    # Which model layers share each shape, so the breakdown can weigh a shape by its count.
    users = collections.defaultdict(list)
    for backbone in args.backbones:
        for size in args.image_sizes:
            for layer_shape in convolutions(backbone, size):
                users[conv.shape_key((None, *layer_shape[0]), *layer_shape[1:])].append(
                    (f"{backbone}@{size}", layer_shape))

    rows = {}
    for key, uses in users.items():
        input_shape, kernel_shape, strides, padding = uses[0][1]
        timing = time_shape(input_shape, kernel_shape, strides, padding, args.batch, args.repeats)
        choices = {name: pick(timing["seconds"][name], args.margin) for name in conv.PASSES}
        stock = sum(timing["seconds"][name]["xla"] for name in conv.PASSES)
        chosen = sum(timing["seconds"][name][choices[name]] for name in conv.PASSES)
        rows[key] = {**timing, "choices": choices, "used_by": sorted({model for model, _ in uses}),
                     "layers": len(uses), "speedup": round(stock / chosen, 2)}
        print(f"{key:38s} x{len(uses):<3d} " + "  ".join(
            f"{name} {timing['seconds'][name]['xla'] * 1e3:7.1f} -> {timing['seconds'][name][choices[name]] * 1e3:6.1f} ms"
            f" ({timing['flops_per_pass'] / timing['seconds'][name][choices[name]] / 1e9:5.1f} GFLOP/s, {choices[name]})"
            for name in conv.PASSES), flush=True)

    print("\nmodel          stock ms  chosen ms  speedup   (one train step's convolutions, all passes)")
    for model in sorted({m for row in rows.values() for m in row["used_by"]}):
        stock = chosen = 0.0
        for key, uses in users.items():
            count = sum(1 for name, _ in uses if name == model)
            seconds = rows[key]["seconds"]
            stock += count * sum(seconds[p]["xla"] for p in conv.PASSES)
            chosen += count * sum(seconds[p][rows[key]["choices"][p]] for p in conv.PASSES)
        print(f"{model:14s} {stock * 1e3:8.0f} {chosen * 1e3:10.0f} {stock / chosen:8.2f}x")

    print()
    choices = {key: row["choices"] for key, row in rows.items() if row["choices"] != conv.STOCK}
    choices, whole_steps = keep_whole_step_gains(rows, choices, args.batch)

    settings = {k: getattr(args, k) for k in ("backbones", "image_sizes", "batch", "repeats", "margin")}
    settings["whole_step_margin"] = WHOLE_STEP_MARGIN
    settings["devices"] = f"{len(jax.devices())} x {jax.devices()[0].device_kind}"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"settings": settings, "shapes": rows, "whole_steps": whole_steps}, indent=1) + "\n")
    if args.write:
        table = {"generated_by": "python benchmarks/conv_layers.py --write", "settings": settings, "choices": choices}
        conv.CHOICES_PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        print(f"wrote {conv.CHOICES_PATH} ({len(choices)} of {len(rows)} shapes leave XLA)")


if __name__ == "__main__":
    main()
