"""Checks the face-chip geometry against UTKFace: re-aligns real chips and compares them with the originals.

    python scripts/check_alignment.py --source ../shared/data/utkface/UTKFace-1of4.tar.gz --count 300

For each candidate padding it cuts a 200 px chip from every UTKFace chip (detect,
5 landmarks, dlib.get_face_chip) and prints the mean absolute pixel difference to
the original; the padding whose chips best reproduce the originals is the one to use.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from agejax.data import labels
from agejax.data.images import decode_face
from agejax.faces import cascade

PADDINGS = (0.1, 0.14, 0.16, 0.17, 0.18, 0.19, 0.2, 0.22, 0.25, 0.3, 0.4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", nargs="+", required=True, help="UTKFace archives or folders")
    parser.add_argument("--count", type=int, default=300, help="how many chips to re-align (default 300)")
    args = parser.parse_args(argv)

    records = labels.scan(args.source).records
    picked = records[:: max(1, len(records) // args.count)][: args.count]
    aligner = cascade.FaceAligner()
    originals, rects = [], []
    for _, payload in labels.iter_image_bytes(picked):
        if payload is None:
            continue
        chip = decode_face(payload, cascade.CHIP_SIZE)
        found = aligner.detect_hog(chip)  # the detector UTKFace was cut with
        if found:
            originals.append(chip)
            rects.append(max(found, key=lambda item: item[0].area())[0])
    print(f"faces found in {len(originals)} of {len(picked)} UTKFace chips")
    print("padding  mean |re-aligned - original| (0-255)  median")
    best = None
    for padding in PADDINGS:
        aligner.padding = padding
        differences = [
            np.abs(aligner.align(chip, rect).astype(np.float32) - chip).mean() for chip, rect in zip(originals, rects)
        ]
        mean, median = float(np.mean(differences)), float(np.median(differences))
        best = min(best or (mean, padding), (mean, padding))
        print(f"{padding:7.2f}  {mean:10.2f}  {median:10.2f}")
    print(f"best padding: {best[1]} (cascade.CHIP_PADDING is {cascade.CHIP_PADDING})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
