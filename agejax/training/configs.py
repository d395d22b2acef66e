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
    # Start from an earlier run's whole model (its best.weights.h5: same backbone and head,
    # any image size), e.g. to fine-tune at a larger input or with stronger augmentation.
    init_weights: str | None = None
    dropout: float = 0.2  # before the head
    cnn_width: int = 32  # cnn only: the first stage's channels, doubled at each of the 4 stages
    label_sigma: float = 2.0  # distribution head: the years of the Gaussian each true age is spread over
    # Augmentation inside the train step (agejax.augment.Augment); the defaults are the
    # shipped CNN's. Rotation and the degradations teach robustness to real photos.
    max_zoom: float = 0.1
    max_shift: float = 0.06
    max_brightness: float = 0.15
    max_contrast: float = 0.2
    max_rotation_deg: float = 0.0
    grey_prob: float = 0.0
    blur_prob: float = 0.0
    dark_prob: float = 0.0
    max_dimming: float = 0.0  # darkened images also lose up to this share of their light
    max_noise: float = 0.0
    # Old photographs: toned (sepia), faded, grainy; this share of images gets a random mix.
    old_photo_prob: float = 0.0
    # The labelled sources trained on (agejax.data.sources: each needs its cache at image_size)
    # and the share of each in every batch, in the same order; None means in proportion to
    # their training splits. Validation MAE is reported per source; the best epoch is the one
    # with the lowest mean over the sources.
    sources: tuple[str, ...] = ("utkface",)
    source_shares: tuple[float, ...] | None = None

    def __post_init__(self):
        self.sources = tuple(self.sources)  # JSON gives lists
        if self.source_shares is not None:
            self.source_shares = tuple(float(s) for s in self.source_shares)
            if len(self.source_shares) != len(self.sources) or min(self.source_shares) <= 0:
                raise ValueError(f"source_shares {self.source_shares} needs one positive share per source {self.sources}")

    def augmentation(self) -> dict[str, float]:
        """The Augment layer's strengths."""
        return {name: getattr(self, name) for name in AUGMENTATION_FIELDS}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path) -> TrainConfig:
        return cls(**json.loads(Path(path).read_text()))


AUGMENTATION_FIELDS = (
    "max_zoom", "max_shift", "max_brightness", "max_contrast",
    "max_rotation_deg", "grey_prob", "blur_prob", "dark_prob", "max_dimming", "max_noise",
    "old_photo_prob",
)

# The CPU ResNet50 recipe (about 7 min an epoch here): the stand-in's optimiser (which reached
# validation 9.26 in 2 epochs, against 11.9-13.8 after 4-5 epochs with weight decay 0.05 and
# strong degradations), with the shipped CNN's mild degradations.
RESNET50_CPU = TrainConfig(
    backbone="resnet50", image_size=64, epochs=10, batch_size=64, learning_rate=1e-3, warmup_epochs=0.5,
    max_rotation_deg=10.0, grey_prob=0.1, blur_prob=0.1, dark_prob=0.1, max_noise=3.0,
)

CNN_96PX_32EP = TrainConfig(
    backbone="cnn", image_size=96, epochs=32, batch_size=64, learning_rate=2e-3,
    max_rotation_deg=10.0, grey_prob=0.1, blur_prob=0.1, dark_prob=0.1, max_noise=3.0,
)

PRESETS: dict[str, TrainConfig] = {
    # The first shipped CNN: 64 px keeps CPU training inside one session.
    "cnn_cpu": TrainConfig(backbone="cnn", image_size=64, epochs=30, batch_size=64, learning_rate=2e-3),
    # 96 px and the degradations of real photos over 22 epochs (validation 4.94 with the flip):
    # the shipped CNN until cnn_96px_32ep.
    "cnn_96px": TrainConfig(
        backbone="cnn", image_size=96, epochs=22, batch_size=64, learning_rate=2e-3,
        max_rotation_deg=10.0, grey_prob=0.1, blur_prob=0.1, dark_prob=0.1, max_noise=3.0,
    ),
    # The shipped CNN (checkpoints/cnn): the same over 32 epochs, about 2.8 min each on the
    # idle 2-core CPU (95 min in all; --stop-after splits it into resumable pieces).
    "cnn_96px_32ep": CNN_96PX_32EP,
    # The shipped 32-epoch CNN fine-tuned for 6 epochs on UTKFace and All-Age-Faces together,
    # a quarter of every batch from All-Age-Faces; and its control, the same on UTKFace alone.
    "cnn_96px_mixed_ft": dataclasses.replace(
        CNN_96PX_32EP, epochs=6, learning_rate=3e-4, warmup_epochs=0.3, init_weights="checkpoints/cnn",
        sources=("utkface", "aaf"), source_shares=(0.75, 0.25),
    ),
    # The same, with old-photo styles (sepia, fading, grain) on a quarter of the images and more grey ones.
    "cnn_96px_mixed_old_ft": dataclasses.replace(
        CNN_96PX_32EP, epochs=6, learning_rate=3e-4, warmup_epochs=0.3, init_weights="checkpoints/cnn",
        sources=("utkface", "aaf"), source_shares=(0.75, 0.25), old_photo_prob=0.25, grey_prob=0.2,
    ),
    "cnn_96px_utkface_ft": dataclasses.replace(
        CNN_96PX_32EP, epochs=6, learning_rate=3e-4, warmup_epochs=0.3, init_weights="checkpoints/cnn",
    ),
    # The first CPU ResNet50, 2 epochs (validation 9.13 with the flip): replaced by resnet50_cpu_10ep.
    "resnet50_cpu": TrainConfig(
        backbone="resnet50", image_size=64, epochs=2, batch_size=64, learning_rate=1e-3, warmup_epochs=0.2
    ),
    # Weight decay 0.05 and strong degradations over 30 epochs: validation stayed at 11.9-13.9
    # after 4-5 epochs, so it was stopped; kept so those runs can be reproduced.
    "resnet50_cpu_30ep": TrainConfig(
        backbone="resnet50", image_size=64, epochs=30, batch_size=64, learning_rate=1e-3, weight_decay=0.05,
        max_rotation_deg=12.0, grey_prob=0.15, blur_prob=0.2, dark_prob=0.15, max_noise=5.0,
    ),
    # The shipped ResNet50 until 2026-11-30, sized to finish in one session; the 96 px
    # presets below continue from its run.
    "resnet50_cpu_10ep": RESNET50_CPU,
    # The same recipe over 16 epochs (120 min here, in two pieces): validation 7.19 with the
    # flip, not better than the 10-epoch run's 7.16, so it was not shipped.
    "resnet50_cpu_16ep": dataclasses.replace(RESNET50_CPU, epochs=16),
    # resnet50_cpu_10ep's model fine-tuned at 96 px with stronger tilt, grey, blur and
    # darkening, which cost that model 1.1-1.3 years on degraded validation (validation 7.01
    # with the flip; tilt then cost 0.4, and dark photos 2.1). Train resnet50_cpu_10ep into
    # that run directory first.
    "resnet50_96px_robust": dataclasses.replace(
        RESNET50_CPU, image_size=96, epochs=4, learning_rate=3e-4, warmup_epochs=0.25,
        max_rotation_deg=20.0, grey_prob=0.2, blur_prob=0.2, dark_prob=0.3,
        init_weights="~/.cache/agejax/runs/resnet50_64px_10ep/best.weights.h5",
    ),
    # The shipped ResNet50 (checkpoints/resnet50): resnet50_96px_robust's model, two more
    # epochs in which darkened images also lose up to half their light.
    "resnet50_96px_dim": dataclasses.replace(
        RESNET50_CPU, image_size=96, epochs=2, learning_rate=1e-4, warmup_epochs=0.1,
        max_rotation_deg=20.0, grey_prob=0.2, blur_prob=0.2, dark_prob=0.3, max_dimming=0.5,
        init_weights="~/.cache/agejax/runs/resnet50_96px_robust/best.weights.h5",
    ),
    # Full resolution on one GPU.
    "resnet50_gpu": TrainConfig(backbone="resnet50", image_size=200, epochs=40, batch_size=256, learning_rate=2e-3),
}
