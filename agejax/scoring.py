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
from agejax.faces.face import Face

if TYPE_CHECKING:
    from agejax.faces.cascade import FaceAligner
    from agejax.serving.predict import Predictor

MAX_DECODE_SIDE = 2048  # larger photos are decoded downscaled; boxes are still in full-size pixels
NO_FACE = "no face found"


@dataclasses.dataclass
class FoundFaces:
    """What one image gave: its faces, ready to score (each with its chip), or the reason there are none."""

    error: str = ""  # empty when there are faces
    faces: list[Face] = dataclasses.field(default_factory=list)
    full_size: tuple[int, int] | None = None  # the upright image's width and height

    @property
    def count(self) -> int:
        return len(self.faces)


class UnusableImage(ValueError):
    """The bytes are not an image we can score; the message says why in a few words."""


def decode(payload: bytes, max_side: int = MAX_DECODE_SIDE) -> Image.Image:
    """RGB, upright, downscaled to fit max_side; every failure becomes an UnusableImage.

    An aligned crop needs no more than the model's input size: a JPEG then decodes at a
    reduced scale, in a fraction of the time (``python benchmarks/reduced_decode.py``).
    """
    if not payload:
        raise UnusableImage("empty file")
    try:
        return images.open_rgb(payload, max_side)
    except Image.DecompressionBombError:
        raise UnusableImage("image too large (decompression bomb limit)") from None
    except images.ImageTooLarge as err:
        raise UnusableImage(str(err)) from None
    except UnidentifiedImageError:
        raise UnusableImage("not an image") from None
    except Exception as err:  # PIL raises many types for damaged files
        raise UnusableImage(f"corrupt image ({type(err).__name__}: {str(err)[:80]})") from None


def read(path: str | os.PathLike, max_side: int = MAX_DECODE_SIDE) -> Image.Image:
    """decode() of a file; an unreadable file is an UnusableImage too."""
    try:
        payload = Path(path).read_bytes()
    except OSError as err:
        raise UnusableImage(f"cannot read file ({err.strerror or type(err).__name__})") from None
    return decode(payload, max_side)


@functools.cache
def face_aligner() -> FaceAligner:
    """This process's detector and landmark model, loaded at first use."""
    from agejax.faces.cascade import FaceAligner

    return FaceAligner()


def find_faces(
    image: Image.Image, image_size: int, *, aligned: bool = False, whole_if_no_face: bool = False,
    detector: str = "auto",
) -> FoundFaces:
    """The faces to score, each with its chip at the model's input size: every detected face, or
    the whole image when it is an aligned crop.

    image comes from decode() or read(); image_size is the model's input size. Without a
    face and without whole_if_no_face, the result carries the error NO_FACE.
    """
    full_width, full_height = image.info.get("full_size", image.size)
    found = FoundFaces(full_size=(full_width, full_height))
    scale = full_width / image.width
    if not aligned:
        faces = face_aligner().faces(np.asarray(image), detector)
        if faces:
            for face in faces:
                face.box = tuple(int(round(v * scale)) for v in face.box)
                face.chip = images.to_square_array(Image.fromarray(face.chip), image_size)
            found.faces = faces
            return found
        if not whole_if_no_face:
            found.error = NO_FACE
            return found
    chip = images.to_square_array(image, image_size)
    found.faces = [Face((0, 0, full_width, full_height), crop="aligned" if aligned else "whole", chip=chip)]
    return found


def bucket_size(count: int, largest: int) -> int:
    """The batch size for `count` faces: the next power of two, then `largest`.

    Where Keras serves, batches are padded to it: a few fixed shapes, each compiled once,
    and one face does not pay for a full batch.
    """
    if count >= largest:
        return largest
    return 1 << max(0, count - 1).bit_length()


@dataclasses.dataclass
class Scores:
    """The model's answer for a batch of chips; std and the interval are None where it has none."""

    age: np.ndarray
    std: np.ndarray | None
    low90: np.ndarray | None
    high90: np.ndarray | None
    p_under18: np.ndarray | None = None
    view_probs: np.ndarray | None = None  # (N, views, bins)


def score_chips(predictor: Predictor, chips: np.ndarray, batch_size: int) -> Scores:
    """Ages of aligned chips (N, S, S, 3) in one model call.

    Each face's score does not depend on how the images were batched or sharded: the
    Predictor's engine sees to that (predict.graph_forward, predict.keras_forward).
    """
    prediction = predictor.predict(np.asarray(chips), batch_size=batch_size)
    interval = predictor.interval(prediction, "90")
    low, high = interval if interval is not None else (None, None)
    return Scores(prediction.age, prediction.std, low, high, prediction.p_under18, prediction.view_probs)


def set_scores(faces: list[Face], scores: Scores, offset: int = 0) -> None:
    """Writes scores[offset:offset + len(faces)] into the faces."""
    for i, face in enumerate(faces, start=offset):
        face.age = float(scores.age[i])
        face.std = None if scores.std is None else float(scores.std[i])
        face.low90 = None if scores.low90 is None else float(scores.low90[i])
        face.high90 = None if scores.high90 is None else float(scores.high90[i])
        face.p_under18 = None if scores.p_under18 is None else float(scores.p_under18[i])
        face.view_probs = None if scores.view_probs is None else scores.view_probs[i].astype(np.float32)


def score_faces(found: list[FoundFaces], predictor: Predictor, largest_batch: int = 16) -> list[list[Face]]:
    """The faces of several images scored in one model call: one list per image ([] where it has none)."""
    faces = [face for item in found for face in item.faces]
    if faces:
        chips = np.stack([face.chip for face in faces])
        set_scores(faces, score_chips(predictor, chips, bucket_size(len(faces), largest_batch)))
    return [item.faces for item in found]


def score_image(
    image: str | os.PathLike | bytes | Image.Image, predictor: Predictor, *, aligned: bool = False,
    whole_if_no_face: bool = False, detector: str = "auto",
) -> list[Face]:
    """Every face in one image, largest first: [] when none is found.

    image is a path, the file's bytes, or a PIL image. Raises UnusableImage for data
    that is not a readable image. An aligned crop given as a path or bytes is decoded at
    the model's input size, as the batch CLI and the demo decode it; a PIL image is
    already decoded, so its chip is resized from full size and its ages can differ by
    a fraction of a year.
    """
    max_side = predictor.image_size if aligned else MAX_DECODE_SIDE
    if isinstance(image, bytes):
        image = decode(image, max_side)
    elif not isinstance(image, Image.Image):
        image = read(image, max_side)
    if image.mode != "RGB":
        image = image.convert("RGB")
    found = find_faces(image, predictor.image_size, aligned=aligned,
                       whole_if_no_face=whole_if_no_face, detector=detector)
    return score_faces([found], predictor)[0]
