"""Near-duplicate faces within and across sources, by a perceptual hash of the aligned chips.

Two web-scraped sets can hold the same photo, resized or recompressed: a face in one set's
training split and the other's test split would leak. Each aligned chip gets a 64-bit
perceptual hash (imagehash's pHash: the signs of the image's low DCT frequencies), and two
chips whose hashes differ in at most MAX_DISTANCE bits are taken for the same photo.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

# Bits in which two pHashes of one photo may differ after a re-alignment or a resize; aligned
# faces all look alike to pHash, and at 4 bits about half the pairs of the shared sets are two people.
MAX_DISTANCE = 2
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def phash(chips: np.ndarray) -> np.ndarray:
    """(N,) uint64 pHash of each uint8 chip (N, S, S, 3)."""
    import imagehash
    from PIL import Image

    values = []
    for chip in chips:
        bits = imagehash.phash(Image.fromarray(np.asarray(chip))).hash.reshape(-1)
        values.append(int("".join("1" if b else "0" for b in bits), 2))
    return np.array(values, np.uint64)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Hamming distances between two arrays of uint64 hashes."""
    xor = np.bitwise_xor(a[:, None], b[None, :])
    return _POPCOUNT[xor.view(np.uint8).reshape(*xor.shape, 8)].sum(axis=-1, dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class Duplicate:
    dropped: int  # index into the candidate hashes
    kept: int  # index into the reference hashes
    distance: int


def find_duplicates(candidates: np.ndarray, reference: np.ndarray | None = None,
                    max_distance: int = MAX_DISTANCE, block: int = 2048) -> list[Duplicate]:
    """Candidates that repeat a reference hash or, without a reference, an earlier candidate.

    Each dropped candidate names its nearest kept image. Within one set the earlier of two
    copies is kept, so the result does not depend on which pair is looked at first.
    """
    within = reference is None
    reference = candidates if within else reference
    found = []
    for start in range(0, len(candidates), block):
        d = distances(candidates[start:start + block], reference).astype(np.int16)
        if within:  # only earlier images count, and an image is not its own duplicate
            rows = np.arange(start, start + len(d))[:, None]
            d[np.arange(len(reference))[None, :] >= rows] = 255
        nearest = d.argmin(axis=1)
        for row in np.flatnonzero(d[np.arange(len(d)), nearest] <= max_distance):
            found.append(Duplicate(start + int(row), int(nearest[row]), int(d[row, nearest[row]])))
    return found


def drop_within(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> list[Duplicate]:
    """Duplicates inside one set; chained copies (a ~ b ~ c) keep only the first."""
    return find_duplicates(hashes, None, max_distance)


def overlap(candidates: Sequence[int] | np.ndarray, reference: np.ndarray, max_distance: int = MAX_DISTANCE) -> list[Duplicate]:
    """Candidates that repeat an image of another, earlier source."""
    return find_duplicates(np.asarray(candidates, np.uint64), reference, max_distance)
