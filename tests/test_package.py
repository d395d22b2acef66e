"""The installable package: a wheel with the five commands and the shipped files, usable from any folder."""

from __future__ import annotations

import email
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

COMMANDS = ("agejax-batch", "agejax-train", "agejax-evaluate", "agejax-prepare", "agejax-demo")
requires_backend = pytest.mark.skipif(
    importlib.util.find_spec("hatchling") is None or importlib.util.find_spec("hatch_requirements_txt") is None,
    reason="the build backend is not installed (pip install -e '.[dev]')",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the backend comes from the dev extra, so nothing is downloaded.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(REPO)], check=True)
    return next(out.glob("agejax-*.whl"))


@requires_backend
def test_the_wheel_declares_the_commands_and_pinned_dependencies_and_carries_the_shipped_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(info))
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    for command in COMMANDS:
        assert f"{command} = agejax." in entry_points
    assert "keras==3.15.1" in metadata.get_all("Requires-Dist")
    # The shipped checkpoints serve their forward.onnx on ONNX Runtime; onnx writes it at export.
    assert {"onnxruntime==1.30.0", "onnx==1.23.2"} <= set(metadata.get_all("Requires-Dist"))
    assert "pytest==9.2.0; extra == 'dev'" in [r.replace('"', "'") for r in metadata.get_all("Requires-Dist")]
    for shipped in ("agejax/checkpoints/cnn/weights.npz", "agejax/checkpoints/cnn/metrics.json",
                    "agejax/checkpoints/cnn/forward.onnx", "agejax/checkpoints/resnet50/forward.onnx",
                    "agejax/data/splits/utkface.csv", "agejax/training/conv_choices.json", "agejax/examples/group.jpg",
                    "agejax/scoring.py", "agejax/cli/batch_predict.py", "agejax/app/app.py"):
        assert shipped in names


@requires_backend
def test_an_installed_wheel_finds_its_checkpoints_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    script = ("import sys; from agejax.serving.predict import CHECKPOINTS, Predictor; predictor = Predictor.load('cnn'); "
              "print(CHECKPOINTS); print(predictor.predict(__import__('numpy').zeros((1, 64, 64, 3), 'uint8')).age.shape); "
              "print(predictor.engine, 'keras' in sys.modules, 'jax' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the checkout's editable install
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    checkpoints, shape, engine = result.stdout.strip().splitlines()[-3:]
    assert Path(checkpoints) == site / "agejax" / "checkpoints" and shape == "(1,)"
    assert engine == "onnxruntime-int8 False False", "the shipped model serves (its int8 graph) without importing Keras or JAX"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help_from_another_folder(command, tmp_path):
    executable = shutil.which(command, path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip(f"{command} is not installed here (pip install -e .)")
    result = subprocess.run([executable, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: " + command)
