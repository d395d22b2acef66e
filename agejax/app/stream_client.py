"""A client for the demo's webcam stream, speaking Gradio's streaming protocol as the browser does.

gradio_client does not stream inputs, so the benchmark and the tests use this: join the queue with
the first frame, then post each next frame to the open event once the last one's answer is back.

    with WebcamStream("http://127.0.0.1:7860/") as stream:
        for frame in frames:          # uint8 RGB arrays
            annotated = stream.send(frame)
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def moving_face_frames(count: int, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """A recording to stream: examples/grace_hopper.jpg moving left and right over a plain scene, one face in view."""
    from agejax import SHIPPED_ROOT

    face = Image.open(SHIPPED_ROOT / "examples" / "grace_hopper.jpg").convert("RGB")
    face.thumbnail((260, 260))
    frames = []
    for i in range(count):
        scene = Image.new("RGB", size, (96, 100, 104))
        scene.paste(face, (int(120 + 100 * np.sin(i / 15)), int(80 + 20 * np.cos(i / 10))))
        frames.append(np.asarray(scene))
    return frames


def write_y4m(frames: list[np.ndarray], path: str | Path, fps: int = 10) -> None:
    """A raw YUV 4:2:0 video, the format Chromium's fake camera plays."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y, u, v = Image.fromarray(frame).convert("YCbCr").split()
            handle.write(b"FRAME\n" + y.tobytes() + u.resize((width // 2, height // 2)).tobytes()
                         + v.resize((width // 2, height // 2)).tobytes())


def data_url(frame: np.ndarray, quality: int = 85) -> str:
    """A frame as the browser's webcam sends it: a JPEG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class WebcamStream:
    """One visitor's webcam stream to a named streaming endpoint; ``send`` returns each frame's answer."""

    def __init__(self, url: str, api_name: str = "webcam", timeout_s: float = 60.0):
        self.url = url.rstrip("/") + "/gradio_api"
        self.http = httpx.Client(timeout=timeout_s)
        config = self.http.get(url.rstrip("/") + "/config").json()
        matches = [i for i, dep in enumerate(config["dependencies"]) if dep.get("api_name") == api_name]
        if not matches:
            raise ValueError(f"{url} has no endpoint named {api_name!r}")
        self.fn_index = matches[0]
        self.trigger_id = config["dependencies"][self.fn_index]["targets"][0][0]
        self.session_hash = uuid.uuid4().hex
        self.event_id: str | None = None
        self._messages = None
        self._response = None
        self.latencies_s: list[float] = []

    def _body(self, frame: np.ndarray) -> dict:
        image = {"url": data_url(frame), "meta": {"_type": "gradio.FileData"}, "orig_name": "frame.jpg"}
        return {"data": [image, None], "event_data": None, "fn_index": self.fn_index, "trigger_id": self.trigger_id,
                "session_hash": self.session_hash}

    def _next_output(self) -> list:
        for line in self._messages:
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") not in (None, self.event_id):
                continue
            if message["msg"] in ("process_streaming", "process_generating"):
                return message["output"]["data"]
            if message["msg"] == "process_completed":
                if not message.get("success", False):
                    raise RuntimeError(f"the stream failed: {message.get('output')}")
                raise RuntimeError("the stream ended (its time limit, or the server closed it)")
        raise RuntimeError("the server closed the connection")

    def send(self, frame: np.ndarray) -> dict | None:
        """Sends one frame and waits for its answer (the annotated frame as Gradio's file data)."""
        start = time.perf_counter()
        if self.event_id is None:
            joined = self.http.post(f"{self.url}/queue/join", json=self._body(frame))
            joined.raise_for_status()
            self.event_id = joined.json()["event_id"]
            self._response = self.http.stream("GET", f"{self.url}/queue/data", params={"session_hash": self.session_hash},
                                              timeout=None)
            self._messages = self._response.__enter__().iter_lines()
        else:
            self.http.post(f"{self.url}/stream/{self.event_id}", json=self._body(frame)).raise_for_status()
        output = self._next_output()
        self.latencies_s.append(time.perf_counter() - start)
        return output[0]

    def fetch(self, answer: dict) -> Image.Image:
        """The annotated frame of an answer."""
        if answer.get("url", "").startswith("data:"):
            return Image.open(io.BytesIO(base64.b64decode(answer["url"].split(",", 1)[1])))
        return Image.open(io.BytesIO(self.http.get(answer["url"]).content))

    def close(self) -> None:
        if self.event_id is not None:
            self.http.post(f"{self.url}/stream/{self.event_id}/close")
        if self._response is not None:
            self._response.__exit__(None, None, None)
        self.http.close()

    def __enter__(self) -> WebcamStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
