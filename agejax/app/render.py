"""What the demo shows of scored faces: the annotated photo, the faces table and the message."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agejax.faces.face import Face
from agejax.scoring import NO_FACE, FoundFaces

DISPLAY_SIDE = 1280  # the annotated photo is shown at most this large
BOX_COLOUR = (255, 196, 0)
TABLE_HEADERS = ["face", "age", "± (std)", "90 % interval", "p_under18 (estimate)", "box (left, top, right, bottom)",
                 "found by"]


def face_label(face: Face) -> str:
    return f"{face.age:.0f} ± {face.std:.0f}" if face.std is not None else f"{face.age:.0f}"


def draw_faces(image: Image.Image, faces: list[Face]) -> Image.Image:
    """The photo, at most DISPLAY_SIDE wide, with a box and an age label on every face."""
    full_width = image.info.get("full_size", image.size)[0]
    image = image.copy()
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    scale = image.width / full_width
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(14, image.width // 32))
    line = max(2, image.width // 300)
    for face in faces:
        left, top, right, bottom = (v * scale for v in face.box)
        if face.crop == "face":
            draw.rectangle([left, top, right, bottom], outline=BOX_COLOUR, width=line)
        text = face_label(face)
        _, _, text_width, text_bottom = draw.textbbox((0, 0), text, font=font)
        height = text_bottom + 2 * line
        label_top = top - height if top >= height else top  # above the box, or inside it at the image's edge
        draw.rectangle([left, label_top, left + text_width + 2 * line, label_top + height], fill=BOX_COLOUR)
        draw.text((left + line, label_top + line), text, font=font, fill=(0, 0, 0))
    return image


INTERVAL_DIGITS = 1  # the faces JSON's interval ends; the plot's legend rounds those


def interval_text(low: float, high: float) -> str:
    """Whole years from the JSON's rounded ends, so that the table and the plot's legend agree."""
    return f"{round(low, INTERVAL_DIGITS):.0f}-{round(high, INTERVAL_DIGITS):.0f}"


def face_table(faces: list[Face]) -> list[list]:
    return [
        [index, round(face.age, 1), "" if face.std is None else round(face.std, 1),
         "" if face.low90 is None else interval_text(face.low90, face.high90),
         "" if face.p_under18 is None else f"{face.p_under18:.2f}",
         ", ".join(map(str, face.box)), face.detector]
        for index, face in enumerate(faces)
    ]


def faces_json(faces: list[Face], display_scale: float) -> dict:
    """What the face picker and its plot need, and the named API returns: every face's figures and
    distributions. display_scale maps full-size pixels to the annotated photo's."""
    def rounded(value: float | None, digits: int = 2) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "display_scale": display_scale,
        "faces": [
            {"face": index, "box": list(face.box), "age": rounded(face.age), "std": rounded(face.std),
             "low90": rounded(face.low90, INTERVAL_DIGITS), "high90": rounded(face.high90, INTERVAL_DIGITS),
             "p_under18": rounded(face.p_under18, 3),
             "views": None if face.view_probs is None else np.round(face.view_probs, 5).tolist()}
            for index, face in enumerate(faces)
        ],
    }


def display_scale(photo: Image.Image, annotated: Image.Image) -> float:
    """How draw_faces scaled the photo's full-size pixels into the annotated one."""
    return annotated.width / photo.info.get("full_size", photo.size)[0]


def face_at(faces: dict, x: float, y: float) -> int | None:
    """The face whose box holds a click at (x, y) on the annotated photo (the smallest, where boxes nest)."""
    scale = faces["display_scale"]
    hits = [face for face in faces["faces"]
            if face["box"][0] * scale <= x <= face["box"][2] * scale and face["box"][1] * scale <= y <= face["box"][3] * scale]
    if not hits:
        return None
    return min(hits, key=lambda face: (face["box"][2] - face["box"][0]) * (face["box"][3] - face["box"][1]))["face"]


def face_choices(faces: dict | None) -> list[tuple[str, int]]:
    return [(f"face {face['face']}: {face['age']:.0f} years", face["face"]) for face in (faces or {}).get("faces", [])]


def explain(found: FoundFaces) -> str:
    """The message under the photo: how many faces, or why there are none."""
    if found.error == NO_FACE:
        return ("**No face found in this image.** Tick *Score the whole image when no face is found* to "
                "estimate anyway, or try a photo where the face is larger, frontal and well lit.")
    if found.error:
        return (f"**This file could not be used: {found.error}.** Please upload a photo as JPEG, PNG, WebP, BMP, "
                "TIFF or GIF.")
    count = found.count
    text = {"face": f"Found {count} face{'s' * (count > 1)}.", "aligned": "Scored as an aligned face crop.",
            "whole": "No face found: scored the whole image, so treat the estimate with care."}[found.faces[0].crop]
    width, height = found.full_size
    if min(width, height) < 48:
        text += f" The image is only {width} x {height} pixels: estimates from so few pixels are unreliable."
    return (f"{text} Labels read *age ± the model's own uncertainty* (years); on the test split the "
            "90 % interval held the true age about 9 times in 10.")


def unknown_model(name: str, installed: Iterable[str]) -> str:
    return f"**No model named {name!r} is installed.** Choose one of: {', '.join(installed)}."
