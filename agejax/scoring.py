"""The age of every face in an image: decode, find and align the faces, score them.

    from agejax.serving.predict import Predictor
    from agejax.scoring import score_image
    predictor = Predictor.load("cnn")
    for face in score_image("photo.jpg", predictor):
        print(face.box, face.age, face.low90, face.high90, face.detector)

The batch CLI and the demo use the same two steps: ``find_faces`` (no JAX, so it runs
in worker processes) and ``score_faces`` (one model call for the faces of many images).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from agejax.data import images

if TYPE_CHECKING:
    from agejax.faces.cascade import FaceAligner
    from agejax.serving.predict import Predictor

MAX_DECODE_SIDE = 2048  # larger photos are decoded downscaled; boxes are still in full-size pixels
NO_FACE = "no face found"
CROPS = ("face", "aligned", "whole")  # how a scored crop was cut


@dataclasses.dataclass(frozen=True)
class FaceAge:
    """One scored face. std, low90 and high90 are None where the model has no uncertainty."""

    box: tuple[int, int, int, int]  # left, top, right, bottom in the upright image's pixels
    age: float  # years
    std: float | None  # the distribution head's own uncertainty
    low90: float | None  # the 90 % prediction interval, calibrated on validation
    high90: float | None
    detector: str  # the detector stage that found it (agejax.faces.STAGES), "" when not detected
    crop: str  # one of CROPS: a detected face, an aligned input, or the whole image


@dataclasses.dataclass
class FoundFaces:
    """The face chips cut from one image, ready to score, or the reason there are none."""

    error: str = ""  # empty when there are chips
    crops: list[str] = dataclasses.field(default_factory=list)
    detectors: list[str] = dataclasses.field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = dataclasses.field(default_factory=list)
    chips: np.ndarray | None = None  # (faces, size, size, 3) uint8
    full_size: tuple[int, int] | None = None  # the upright image's width and height

    @property
    def count(self) -> int:
        return 0 if self.chips is None else len(self.chips)


class UnusableImage(ValueError):
    """The bytes are not an image we can score; the message says why in a few words."""


def decode(payload: bytes) -> Image.Image:
    """RGB, upright, downscaled to MAX_DECODE_SIDE; every failure becomes an UnusableImage."""
    if not payload:
        raise UnusableImage("empty file")
    try:
        return images.open_rgb(payload, MAX_DECODE_SIDE)
    except Image.DecompressionBombError:
        raise UnusableImage("image too large (decompression bomb limit)") from None
    except images.ImageTooLarge as err:
        raise UnusableImage(str(err)) from None
    except UnidentifiedImageError:
        raise UnusableImage("not an image") from None
    except Exception as err:  # PIL raises many types for damaged files
        raise UnusableImage(f"corrupt image ({type(err).__name__}: {str(err)[:80]})") from None


def read(path: str | os.PathLike) -> Image.Image:
    """decode() of a file; an unreadable file is an UnusableImage too."""
    try:
        payload = Path(path).read_bytes()
    except OSError as err:
        raise UnusableImage(f"cannot read file ({err.strerror or type(err).__name__})") from None
    return decode(payload)


@functools.cache
def face_aligner() -> FaceAligner:
    """This process's detector and landmark model, loaded at first use."""
    from agejax.faces.cascade import FaceAligner

    return FaceAligner()


def find_faces(
    image: Image.Image, image_size: int, *, aligned: bool = False, whole_if_no_face: bool = False,
    detector: str = "auto",
) -> FoundFaces:
    """The chips to score: each detected face, or the whole image when it is an aligned crop.

    image comes from decode() or read(); image_size is the model's input size. Without a
    face and without whole_if_no_face, the result carries the error NO_FACE.
    """
    full_width, full_height = image.info.get("full_size", image.size)
    found = FoundFaces(full_size=(full_width, full_height))
    scale = full_width / image.width
    if not aligned:
        faces = face_aligner().faces(np.asarray(image), detector)
        if faces:
            found.crops = ["face"] * len(faces)
            found.detectors = [face.detector for face in faces]
            found.boxes = [tuple(int(round(v * scale)) for v in face.box) for face in faces]
            found.chips = np.stack([images.to_square_array(Image.fromarray(face.chip), image_size) for face in faces])
            return found
        if not whole_if_no_face:
            found.error = NO_FACE
            return found
    found.crops = ["aligned" if aligned else "whole"]
    found.detectors = [""]
    found.boxes = [(0, 0, full_width, full_height)]
    found.chips = images.to_square_array(image, image_size)[np.newaxis]
    return found


def bucket_size(count: int, largest: int) -> int:
    """The batch size for `count` faces: the next power of two, then `largest`.

    Where Keras serves, batches are padded to it: a few fixed shapes, each compiled once,
    and one face does not pay for a full batch.
    """
    if count >= largest:
        return largest
    return 1 << max(0, count - 1).bit_length()


def score_chips(predictor: Predictor, chips: np.ndarray, batch_size: int) -> list[tuple]:
    """(age, std, low90, high90) per chip; std and the interval are None where the model has none.

    Each face's score does not depend on how the images were batched or sharded: the
    Predictor's engine sees to that (predict.graph_forward, predict.keras_forward).
    """
    count = len(chips)
    prediction = predictor.predict(np.asarray(chips), batch_size=batch_size)
    interval = predictor.interval(prediction, "90")
    return [
        (
            float(prediction.age[i]),
            None if prediction.std is None else float(prediction.std[i]),
            None if interval is None else float(interval[0][i]),
            None if interval is None else float(interval[1][i]),
        )
        for i in range(count)
    ]


def face_ages(found: FoundFaces, scores: list[tuple]) -> list[FaceAge]:
    """The found faces with their scores from score_chips, in the same order."""
    return [
        FaceAge(box, age, std, low, high, detector, crop)
        for crop, detector, box, (age, std, low, high) in zip(found.crops, found.detectors, found.boxes, scores)
    ]


def score_faces(found: list[FoundFaces], predictor: Predictor, largest_batch: int = 16) -> list[list[FaceAge]]:
    """The faces of several images scored in one model call: one list per image ([] where it has none)."""
    chips = [chip for item in found if item.chips is not None for chip in item.chips]
    scores = score_chips(predictor, np.stack(chips), bucket_size(len(chips), largest_batch)) if chips else []
    per_image = []
    for item in found:
        per_image.append(face_ages(item, scores[: item.count]))
        scores = scores[item.count :]
    return per_image


def score_image(
    image: str | os.PathLike | bytes | Image.Image, predictor: Predictor, *, aligned: bool = False,
    whole_if_no_face: bool = False, detector: str = "auto",
) -> list[FaceAge]:
    """Every face in one image, largest first: [] when none is found.

    image is a path, the file's bytes, or a PIL image. Raises UnusableImage for data
    that is not a readable image.
    """
    if isinstance(image, bytes):
        image = decode(image)
    elif not isinstance(image, Image.Image):
        image = read(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    found = find_faces(image, predictor.image_size, aligned=aligned,
                       whole_if_no_face=whole_if_no_face, detector=detector)
    return score_faces([found], predictor)[0]
