"""Evaluates age models on a labelled set and writes a report folder (metrics.json, PNG plots, report.md).

The same command as `agejax-evaluate`; the code is agejax/cli/evaluate.py (`python scripts/evaluate.py --help`).
"""

import sys

from agejax.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
