"""Training configurations: one dataclass, and the named presets the shipped models came from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass
class TrainConfig:
    backbone: str = "cnn"  # "cnn" or "resnet50"
    head: str = "distribution"  # "distribution" or "regression"
    image_size: int = 64
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine" (with warm-up) or "constant"
    warmup_epochs: float = 1.0
    seed: int = 0
    weights: str | None = None  # resnet50 only: "imagenet" (needs a download) or a weights file

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path) -> TrainConfig:
        return cls(**json.loads(Path(path).read_text()))


PRESETS: dict[str, TrainConfig] = {
    # The shipped CNN: 64 px keeps CPU training inside one session.
    "cnn_cpu": TrainConfig(backbone="cnn", image_size=64, epochs=30, batch_size=64, learning_rate=2e-3),
    # A CPU stand-in for the ResNet50 until a GPU run replaces it: at 8.5 img/s an
    # epoch takes about 35 min here, so two epochs fit beside a session's other work.
    "resnet50_cpu": TrainConfig(
        backbone="resnet50", image_size=64, epochs=2, batch_size=64, learning_rate=1e-3, warmup_epochs=0.2
    ),
    # Full resolution on one GPU.
    "resnet50_gpu": TrainConfig(backbone="resnet50", image_size=200, epochs=40, batch_size=256, learning_rate=2e-3),
}
