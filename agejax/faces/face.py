"""One face as it moves through agejax: found and aligned, then scored, then written out.

Detection fills ``box``, ``detector``, ``crop``, ``score`` and ``chip``; scoring fills ``age``,
``std``, the calibrated 90 % interval, ``p_under18`` and the age distribution of each view; the
CSV row and the demo's table and plot read them.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

Stage = Literal["hog", "cnn", "hog_rotated", ""]  # the detector stage that found a face; "" when not detected
Crop = Literal["face", "aligned", "whole"]  # a detected face, an aligned input, or the whole image
STAGES: tuple[Stage, ...] = ("hog", "cnn", "hog_rotated")
CROPS: tuple[Crop, ...] = ("face", "aligned", "whole")


@dataclasses.dataclass
class Face:
    """A face: where it is, how it was cut and, once scored, its age. std, low90, high90, p_under18
    and view_probs stay None where the model has no distribution head (or no calibration)."""

    box: tuple[int, int, int, int]  # left, top, right, bottom in the upright image's pixels
    detector: Stage = ""
    crop: Crop = "face"
    score: float = 0.0  # the detector's confidence
    chip: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)  # aligned uint8 (S, S, 3)
    age: float | None = None  # years
    std: float | None = None  # the distribution head's own uncertainty
    low90: float | None = None  # the 90 % prediction interval, calibrated on validation
    high90: float | None = None
    p_under18: float | None = None  # calibrated probability of being under 18 (an estimate, not verification)
    # (views, bins): the age distribution of the face and, where the model flips, of its mirror image
    view_probs: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda face: face.area, reverse=True)
