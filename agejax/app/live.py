"""The webcam tab: each frame's faces found by HOG, scored, and kept steady from frame to frame.

A frame's faces are matched to the last frame's by box overlap; a matched face's box, age and
std are smoothed (an exponential moving average), so labels do not jump with every frame, and a
face that HOG misses for a frame or two is still drawn where it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from agejax.app import render
from agejax.data import images
from agejax.faces.face import Face
from agejax.scoring import FoundFaces, face_aligner, score_faces
from agejax.serving.predict import Predictor

SMOOTHING = 0.5  # weight of the newest frame in each face's moving average
MIN_OVERLAP = 0.3  # intersection over union that makes two frames' boxes one face
KEEP_MISSED_FRAMES = 2  # a face not found again is drawn for this many more frames
MAX_FRAME_SIDE = 640  # larger frames are scored downscaled: HOG's time grows with the pixels
FRAME_INTERVAL_S = 0.1  # the browser sends a frame this often (at most 10 a second)
TIME_LIMIT_S = 300  # one visitor's stream ends after this long, so it cannot hold the queue
CONCURRENT_STREAMS = 2  # streams served at once: one per core


@dataclasses.dataclass
class Track:
    """One face followed across frames: its smoothed box and age, and frames since it was last seen."""

    box: tuple[float, float, float, float]
    age: float
    std: float | None
    missed: int = 0

    def as_face(self) -> Face:
        return Face(tuple(int(round(v)) for v in self.box), detector="hog", age=self.age, std=self.std)


def overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def follow(tracks: list[Track], faces: list[Face]) -> list[Track]:
    """The tracks after one frame's scored faces: matched ones smoothed, new ones added, lost ones aged."""
    unmatched = list(range(len(tracks)))
    updated = []
    for face in faces:
        best = max(unmatched, key=lambda t: overlap(tracks[t].box, face.box), default=None)
        if best is not None and overlap(tracks[best].box, face.box) >= MIN_OVERLAP:
            unmatched.remove(best)
            old = tracks[best]
            mix = lambda previous, new: (1 - SMOOTHING) * previous + SMOOTHING * new  # noqa: E731
            updated.append(Track(
                tuple(mix(p, n) for p, n in zip(old.box, face.box)), mix(old.age, face.age),
                None if face.std is None or old.std is None else mix(old.std, face.std)))
        else:
            updated.append(Track(tuple(float(v) for v in face.box), face.age, face.std))
    for t in unmatched:
        if tracks[t].missed < KEEP_MISSED_FRAMES:
            updated.append(dataclasses.replace(tracks[t], missed=tracks[t].missed + 1))
    return updated


def score_frame(frame: np.ndarray, predictor: Predictor) -> list[Face]:
    """The faces of one RGB frame, HOG only (the cascade's later stages cost too much per frame)."""
    image = Image.fromarray(np.asarray(frame, np.uint8)).convert("RGB")
    scale = 1.0
    if max(image.size) > MAX_FRAME_SIDE:
        scale = max(image.size) / MAX_FRAME_SIDE
        image = image.resize((round(image.width / scale), round(image.height / scale)), Image.Resampling.BILINEAR)
    faces = face_aligner().faces(np.asarray(image), "hog")
    for face in faces:
        face.chip = images.to_square_array(Image.fromarray(face.chip), predictor.image_size)
    faces = score_faces([FoundFaces(faces=faces)], predictor)[0]
    for face in faces:
        face.box = tuple(int(round(v * scale)) for v in face.box)
    return faces


def make_live(predictor: Predictor) -> Callable[[np.ndarray | None, list | None], tuple[np.ndarray | None, list]]:
    """The stream handler: frame and tracks in, annotated frame and tracks out."""
    face_aligner()  # loaded before the first frame

    def live(frame: np.ndarray | None, tracks: list[Track] | None):
        if frame is None:
            return None, []
        tracks = follow(tracks or [], score_frame(frame, predictor))
        image = Image.fromarray(np.asarray(frame, np.uint8)).convert("RGB")
        return render.draw_faces(image, [track.as_face() for track in tracks]), tracks

    return live
