"""Seeded hostile image files: real JPEG, PNG, WebP, GIF and TIFF files, damaged.

    python tests/fuzz_images.py DIR --count 5000 --seed 1    # write a folder for a long run
    python scripts/batch_predict.py DIR -q --on-no-face whole -o fuzz.csv

Each file is one mutation of a valid image (a real face photo among them): a
truncation, flipped bytes, another format's header, a huge declared size, zero
length, odd EXIF orientation or junk EXIF. The suite runs a few hundred of them.
"""

from __future__ import annotations

import argparse
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tif"}
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"GIF89a", b"II*\x00", b"BM"]
HERE = Path(__file__).resolve().parent


def base_images(rng: np.random.Generator) -> list[Image.Image]:
    """A real face photo and two synthetic ones, small so thousands of files stay cheap."""
    face = Image.open(HERE.parent / "examples" / "utkface_4.jpg").convert("RGB").resize((96, 96))
    ramp = np.linspace(0, 255, 80)[np.newaxis, :, np.newaxis] * np.ones((60, 1, 3))
    noise = rng.integers(0, 256, (48, 64, 3), np.uint8)
    return [face, Image.fromarray(ramp.astype(np.uint8)), Image.fromarray(noise)]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _with_exif_orientation(image: Image.Image, value: int) -> bytes:
    exif = image.getexif()
    exif[0x0112] = value
    return encode(image, "JPEG", exif=exif)


def _huge_declared_size(payload: bytes, fmt: str, rng: np.random.Generator) -> bytes:
    """The header claims far more pixels than the data holds."""
    width, height = (int(v) for v in rng.integers(20_000, 65_535, 2))
    data = bytearray(payload)
    if fmt == "PNG":  # IHDR at byte 16, with its CRC fixed so only the size is wrong
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    elif fmt == "GIF":
        data[6:10] = struct.pack("<HH", width, height)
    elif fmt == "JPEG":
        marker = data.find(b"\xff\xc0")
        if marker > 0:
            data[marker + 5 : marker + 9] = struct.pack(">HH", height, width)
    else:
        data[-8:] = struct.pack("<II", width, height)
    return bytes(data)


def mutate(payload: bytes, fmt: str, image: Image.Image, rng: np.random.Generator) -> tuple[str, bytes]:
    """One (kind, bytes) mutation of an encoded image."""
    kind = str(rng.choice(["truncate", "flip", "header", "huge", "empty", "exif", "junk_exif", "splice", "intact"]))
    data = bytearray(payload)
    if kind == "truncate":
        return kind, bytes(data[: int(rng.integers(0, len(data)))])
    if kind == "flip":
        for position in rng.integers(0, len(data), int(rng.integers(1, 24))):
            data[position] ^= int(rng.integers(1, 256))
        return kind, bytes(data)
    if kind == "header":
        magic = MAGIC[int(rng.integers(len(MAGIC)))]
        return kind, magic + bytes(data[len(magic) :])
    if kind == "huge":
        return kind, _huge_declared_size(payload, fmt, rng)
    if kind == "empty":
        return kind, b""
    if kind == "exif":
        return kind, _with_exif_orientation(image, int(rng.choice([0, 2, 5, 8, 9, 255, 65535])))
    if kind == "junk_exif":
        junk = bytes(rng.integers(0, 256, int(rng.integers(8, 200)), np.uint8))
        return kind, b"\xff\xd8\xff\xe1" + struct.pack(">H", len(junk) + 8) + b"Exif\x00\x00" + junk + payload[2:]
    if kind == "splice":
        start = int(rng.integers(0, len(data)))
        return kind, bytes(data[:start]) + bytes(rng.integers(0, 256, int(rng.integers(1, 400)), np.uint8)) + bytes(
            data[start:])
    return kind, payload


def write_fuzz_folder(folder: Path, count: int, seed: int = 0) -> dict[str, str]:
    """Writes count damaged files; returns {file name: mutation kind}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = base_images(rng)
    written = {}
    for i in range(count):
        fmt = list(FORMATS)[i % len(FORMATS)]
        image = images[int(rng.integers(len(images)))]
        kind, payload = mutate(encode(image, fmt), fmt, image, rng)
        name = f"{i:05d}_{kind}{FORMATS[fmt]}"
        (folder / name).write_bytes(payload)
        written[name] = kind
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    written = write_fuzz_folder(args.folder, args.count, args.seed)
    print(f"wrote {len(written)} files to {args.folder}")


if __name__ == "__main__":
    main()
