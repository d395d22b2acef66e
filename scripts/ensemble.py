"""Makes an ensemble of trained CNNs: one model that averages their age distributions.

    python scripts/ensemble.py --member RUN_A --member RUN_B --run-dir RUN
    python scripts/export_checkpoint.py --run-dir RUN --name cnn

A member is a finished run directory (its full-precision model.keras), a checkpoint (its
weights are already compressed), or ENSEMBLE#N, the N-th member (from 0) of an ensemble run or
checkpoint: `--member "cnn#0"` is the shipped ensemble's first CNN. The ensemble takes faces
at the first member's input size.
The code is agejax/training/ensemble.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agejax import runtime


def main(argv: list[str] | None = None) -> int:
    runtime.setup()
    from agejax.training import ensemble

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--member", action="append", required=True,
                        help="a run directory, a checkpoint, or ENSEMBLE#N; twice or more")
    parser.add_argument("--run-dir", type=Path, required=True, help="where to write the ensemble's run")
    args = parser.parse_args(argv)
    try:
        result = ensemble.write_run(args.member, args.run_dir.expanduser())
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
