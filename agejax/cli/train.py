"""Trains an age model on prepared sources (UTKFace by default); rerun the same command to resume.

    python scripts/train.py --preset cnn_96px_32ep --run-dir runs/cnn   # or: agejax-train --preset ...
    python scripts/train.py --preset cnn_96px_32ep --source utkface --source aaf --source-shares 0.75 0.25 --run-dir runs/mix
    python scripts/train.py --backbone resnet50 --image-size 64 --epochs 5 --run-dir runs/r50
    python scripts/train.py --preset cnn_96px_32ep --benchmark  # img/s: fast vs stock convolutions, and the floor
    python scripts/train.py --preset resnet50_gpu --run-dir runs/r50 --stop-after 540
    python scripts/train.py --preset cnn_96px_32ep --run-dir runs/cnn \
        --coordinator HOST0:1234 --num-processes 2 --process-id I   # on each of 2 hosts, I = 0, 1

With --stop-after SECONDS training ends at the last epoch end that fits, exits with
status 3 and resumes when rerun; a finished run exits with 0.

On CPU it spreads each batch over one virtual device per core (data parallel). With
--coordinator, N processes (on one or many hosts) form one jax.distributed system and
train one model over all their devices: the same global batch, each process feeding its
share. Every process needs the cache, and writes its own run directory (give each its
own on a shared disk). Build the cache first:
python scripts/prepare_data.py --source NAME=PATH --size <image size>
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from agejax import runtime
from agejax.data import cache
from agejax.training import configs

EXIT_UNFINISHED = 3  # stopped at --stop-after; rerun to resume


def yes_or_no(text: str) -> bool:
    """A boolean flag's value: true/false, yes/no, 1/0."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(configs.PRESETS), help="start from a named config")
    defaults = configs.TrainConfig()
    parser.add_argument("--source", action="append", dest="sources", metavar="NAME",
                        help="a prepared source to train on (utkface, aaf, or your own); once per source "
                        "(default utkface, or the preset's)")
    parser.add_argument("--source-shares", type=float, nargs="+", metavar="SHARE",
                        help="each source's share of every batch, in --source order (default: by size)")
    parser.add_argument("--teacher", action="append", dest="teachers", metavar="MODEL",
                        help="distil from this model (a shipped name, checkpoint folder or run directory); "
                        "once per teacher, averaged (default none, or the preset's)")
    for field in dataclasses.fields(configs.TrainConfig):
        if field.name in ("sources", "source_shares", "teachers"):
            continue
        kind = {"int": int, "float": float, "bool": yes_or_no}.get(str(field.type), str)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=kind, default=None,
            help=f"(default {getattr(defaults, field.name)!r}, or the preset's)",
        )
    parser.add_argument("--run-dir", type=Path, help="where the run writes; reuse it to resume")
    parser.add_argument("--benchmark", action="store_true",
                        help="instead of training, time real augmented steps with agejax's and with Keras' stock "
                             "convolutions, and steps on one on-device batch without augmentation (medians after "
                             "warm-up), as one JSON document")
    parser.add_argument("--steps", type=int, default=20, help="timed steps in --benchmark mode (default 20)")
    parser.add_argument("--stop-after", type=float, metavar="SECONDS",
                        help="stop cleanly before this many seconds have passed; rerun to resume")
    parser.add_argument("--cache-root", type=Path, default=cache.DEFAULT_ROOT)
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="train across processes with jax.distributed: process 0's address")
    parser.add_argument("--num-processes", type=int, help="with --coordinator: how many processes in all")
    parser.add_argument("--process-id", type=int, help="with --coordinator: this process, from 0")
    args = parser.parse_args(argv)
    distributed = (args.coordinator, args.num_processes, args.process_id)
    if any(value is not None for value in distributed) and None in distributed:
        parser.error("--coordinator, --num-processes and --process-id go together")
    if args.num_processes is not None and not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be from 0 to {args.num_processes - 1}")
    if args.stop_after is not None and args.stop_after < 0:
        parser.error("--stop-after must be a number of seconds, 0 or more (0: stop after one epoch)")
    if not args.benchmark and args.run_dir is None:
        parser.error("--run-dir is required to train")
    return args


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    args = parse_args(argv)
    config = configs.PRESETS[args.preset] if args.preset else configs.TrainConfig()
    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(config)
        if f.name not in ("sources", "source_shares", "teachers") and getattr(args, f.name) is not None
    }
    if args.teachers:
        overrides["teachers"] = tuple(args.teachers)
    if args.sources:
        overrides["sources"] = tuple(args.sources)
    if args.source_shares:
        overrides["source_shares"] = tuple(args.source_shares)
    try:
        config = dataclasses.replace(config, **overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import keras  # JAX starts at its first device query, on one CPU device per core (agejax/__init__.py)

    if args.coordinator:  # before any device query: the devices are every process's
        keras.distribution.initialize(args.coordinator, args.num_processes, args.process_id)
    from agejax.training import benchmark, train

    try:
        if args.benchmark:  # stdout is one JSON document, the config included
            metrics = benchmark.benchmark(config, args.steps, cache_root=args.cache_root)
        else:
            print(config.to_json(), end="")
            # A progress bar only on a terminal; a log file gets one line per epoch.
            verbose = "auto" if sys.stdout.isatty() else 2
            metrics = train.train(config, args.run_dir, args.cache_root, verbose, stop_after_s=args.stop_after)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0 if metrics.get("finished", True) else EXIT_UNFINISHED


if __name__ == "__main__":
    sys.exit(main())
