"""Reads UTKFace, reports skipped files, checks the frozen split and builds the decode-once cache.

The same command as `agejax-prepare`; the code is agejax/cli/prepare_data.py (`python scripts/prepare_data.py --help`).
"""

import sys

from agejax.cli.prepare_data import main

if __name__ == "__main__":
    sys.exit(main())
