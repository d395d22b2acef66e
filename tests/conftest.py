"""Shared fixtures: generated UTKFace-like images and the optional real data in ../shared."""

from __future__ import annotations

import os

# Two virtual CPU devices, as in training; must be set before JAX starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import io
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agejax import runtime
from agejax.data import split

runtime.enough_client_threads()  # before JAX starts its backend, at the first test that uses it

REPO = Path(__file__).resolve().parents[1]
SHARED_UTKFACE = REPO.parent / "shared" / "data" / "utkface"
MALFORMED = (
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
)

requires_shared = pytest.mark.skipif(
    not any(SHARED_UTKFACE.glob("*.tar.gz")), reason=f"UTKFace archives not found in {SHARED_UTKFACE}"
)


def jpeg_bytes(seed: int, size: int = 40) -> bytes:
    """A small random RGB JPEG, different for each seed."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def manifest_names() -> dict[str, list[str]]:
    """Real file names from the committed manifest, 6 per split, so fixtures land in known splits."""
    assignment = split.read_manifest()
    names: dict[str, list[str]] = {s: [] for s in split.SPLITS}
    for name, part in sorted(assignment.items()):
        if len(names[part]) < 6:
            names[part].append(name)
    return names


def write_images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(jpeg_bytes(zlib.crc32(name.encode()) + i))
    return folder


def write_archive(path: Path, folder: Path) -> Path:
    """A .tar.gz that extracts to UTKFace/, like the official archive."""
    with tarfile.open(path, "w:gz") as archive:
        for file in sorted(folder.iterdir()):
            archive.add(file, arcname=f"UTKFace/{file.name}")
    return path


def save_tiny_checkpoint(folder: Path, head: str = "distribution") -> Path:
    """An untrained 32 px CNN saved as a checkpoint: real loading and prediction, in seconds."""
    from agejax.serving import checkpoint
    from agejax.training import models
    from agejax.training.configs import TrainConfig

    checkpoint.save(models.build_model("cnn", head, 32), TrainConfig(head=head, image_size=32), folder, "float16")
    return folder


def save_tiny_run(folder: Path, config, model=None) -> Path:
    """A training run's directory as scripts/train.py leaves it: model.keras and config.json."""
    from agejax.training import models

    folder.mkdir(parents=True)
    (model or models.build_from_config(config)).save(folder / "model.keras")
    (folder / "config.json").write_text(config.to_json())
    return folder


@pytest.fixture
def utk_folder(tmp_path, manifest_names) -> Path:
    names = [n for part in split.SPLITS for n in manifest_names[part]]
    return write_images(tmp_path / "UTKFace", names + list(MALFORMED))


def group_photo() -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A 1280 x 640 photo with three real faces of three sizes, and where each portrait was pasted.

    The portrait is matplotlib's sample photo of Grace Hopper (US Navy, public domain),
    installed with matplotlib, so the test needs no download and no UTKFace image.
    """
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        portrait = Image.open(handle).convert("RGB")
    canvas = Image.new("RGB", (1280, 640), (190, 190, 190))
    placed = []
    for (left, top), size in (((330, 20), (512, 600)), ((20, 60), (256, 300)), ((950, 330), (160, 188))):
        canvas.paste(portrait.resize(size), (left, top))
        placed.append((left, top, left + size[0], top + size[1]))
    return canvas, placed


def load_script(name: str):
    """A script under scripts/ that is not a console script, as a module, so tests call its main() in process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
