"""The demo served for real and queried over HTTP with gradio_client."""

import os
import re
import socket

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import demo
from agejax import models
from agejax.predict import Predictor
from conftest import save_tiny_checkpoint


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "cnn")
    app = demo.build_app({"cnn": Predictor.load(folder)})
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    app.close()


def test_estimate_endpoint_returns_an_age_with_uncertainty(client, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)).save(path)
    answer = client.predict(handle_file(str(path)), "cnn", api_name="/estimate")
    match = re.fullmatch(r"(\d+) ± (\d+) years", answer)
    assert match and 0 <= int(match.group(1)) <= models.MAX_AGE


def test_missing_image_gets_a_clear_message(client):
    with pytest.raises(Exception, match="upload an image"):
        client.predict(None, "cnn", api_name="/estimate")
