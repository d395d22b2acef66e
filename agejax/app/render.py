"""What the demo shows of scored faces: the annotated photo, the faces table and the message."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from agejax.faces.face import Face
from agejax.scoring import NO_FACE, FoundFaces

DISPLAY_SIDE = 1280  # the annotated photo is shown at most this large
BOX_COLOUR = (255, 196, 0)
TABLE_HEADERS = ["face", "age", "± (std)", "90 % interval", "box (left, top, right, bottom)", "found by"]


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


def face_table(faces: list[Face]) -> list[list]:
    return [
        [index, round(face.age, 1), "" if face.std is None else round(face.std, 1),
         "" if face.low90 is None else f"{face.low90:.0f}-{face.high90:.0f}",
         ", ".join(map(str, face.box)), face.detector]
        for index, face in enumerate(faces)
    ]


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


def unknown_model(name: str, installed) -> str:
    return f"**No model named {name!r} is installed.** Choose one of: {', '.join(installed)}."
