"""Turns a finished training run into a compact shipped checkpoint, and measures what compression cost.

    python scripts/export_checkpoint.py --run-dir runs/cnn --name cnn
    python scripts/export_checkpoint.py --run-dir checkpoints/cnn --name cnn   # re-export in place
    python scripts/export_checkpoint.py --run-dir checkpoints/cnn --name cnn --forward-only
    python scripts/export_checkpoint.py --run-dir checkpoints/cnn --name cnn --card-only

Writes checkpoints/<name>/: weights.npz (compressed), config.json, forward.onnx (the inference
graph that prediction runs on ONNX Runtime), metrics.json, history.csv, curves.png, a model card
(README.md) and the test reports of every prepared source (report/, report/<source>/). The code
is agejax/serving/export.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agejax import runtime
from agejax.cli import command_line
from agejax.data import cache


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    from agejax.serving import checkpoint, export
    from agejax.serving.predict import CHECKPOINTS, Predictor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run (holds model.keras)")
    parser.add_argument("--name", required=True, help="checkpoint name, e.g. cnn or resnet50")
    parser.add_argument("--weights-format", choices=checkpoint.FORMATS, default="int8")
    parser.add_argument("--cache-root", type=Path, default=cache.DEFAULT_ROOT)
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help=f"where to write (default {CHECKPOINTS})")
    parser.add_argument("--replace-worse", action="store_true",
                        help="replace a checkpoint that has a lower UTKFace validation MAE (refused otherwise)")
    parser.add_argument("--forward-only", action="store_true",
                        help=f"only rewrite a checkpoint's {checkpoint.FORWARD_FILE} (after a change to its graph); "
                             "weights and measurements stay")
    parser.add_argument("--card-only", action="store_true",
                        help="only rewrite a checkpoint's model card (README.md) from its metrics.json")
    args = parser.parse_args(argv)
    args.run_dir = args.run_dir.expanduser()  # quoted, "~/..." reaches here unexpanded
    if args.card_only:
        from agejax.serving.model_card import model_card

        (args.run_dir / "README.md").write_text(model_card(checkpoint.read_metrics(args.run_dir)))
        print(f"wrote {args.run_dir / 'README.md'}")
        return 0
    if args.forward_only:
        model, _ = checkpoint.load(args.run_dir)
        checkpoint.save_forward(model, args.run_dir)
        print(f"wrote {args.run_dir / checkpoint.FORWARD_FILE}; engine {Predictor.load(args.run_dir).engine}")
        return 0
    command = command_line("scripts/export_checkpoint.py", argv)
    try:
        shipped = export.export(args.run_dir, args.name, args.checkpoints, args.weights_format, args.cache_root,
                                args.replace_worse, command)
    except export.ExportRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in shipped.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
