"""Trains an age model on the cached UTKFace split; rerun the same command to resume.

The same command as `agejax-train`; the code is agejax/cli/train.py (`python scripts/train.py --help`).
"""

import sys

from agejax.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
