"""Estimates the age of every face in a directory of images and writes one CSV row per face.

The same command as `agejax-batch`; the code is agejax/cli/batch_predict.py (`python scripts/batch_predict.py --help`).
"""

import sys

from agejax.cli.batch_predict import main

if __name__ == "__main__":
    sys.exit(main())
