"""Training configurations: one dataclass, and the named presets the shipped models came from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

MIN_IMAGE_SIZE = 32  # the CNN's four stride-2 stages and the ResNet's need this much


@dataclasses.dataclass
class TrainConfig:
    backbone: str = "cnn"  # "cnn", "resnet50", or "ensemble" (members below; made, not trained)
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
    # Each face's loss weighs (its source's smoothed age density) ** -age_balance: 0 weighs all
    # faces alike, 0.5 lifts the ages a set holds few of (agejax.data.pipeline.age_balance_weights).
    # Training MAE is then weighted the same way; validation MAE never is.
    age_balance: float = 0.0
    # Distillation (agejax.training.distill): models whose mean age distribution on each
    # training face is mixed into its target, teacher_weight of it; the rest is the Gaussian
    # around the true age.
    teachers: tuple[str, ...] = ()
    teacher_weight: float = 0.5
    # An ensemble's models (agejax.training.ensemble): the configs of CNNs whose age
    # distributions it averages, each at its own input size.
    members: tuple[TrainConfig, ...] = ()
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
    max_noise: float = 0.0  # colour noise, each pixel and channel its own
    # Film grain: the same noise in every channel of a pixel, finer than the old-photo style's
    max_grain: float = 0.0
    # Old photographs: toned (sepia), faded, grainy; this share of images gets a random mix.
    old_photo_prob: float = 0.0
    # The labelled sources trained on (agejax.data.sources: each needs its cache at image_size)
    # and the share of each in every batch, in the same order; None means in proportion to
    # their training splits. Validation MAE is reported per source; the best epoch is the one
    # with the lowest mean over the sources.
    sources: tuple[str, ...] = ("utkface",)
    source_shares: tuple[float, ...] | None = None
    # Keras dtype policy of the train step: "auto" is mixed_bfloat16 on GPUs and float32 on
    # CPUs; "mixed_bfloat16" keeps activations in bfloat16 between layers (variables float32).
    dtype_policy: str = "auto"

    def __post_init__(self):
        self.sources = tuple(self.sources)  # JSON gives lists
        self.teachers = tuple(self.teachers)
        self.members = tuple(m if isinstance(m, TrainConfig) else TrainConfig(**m) for m in self.members)
        problems = [f"image_size {self.image_size} is under {MIN_IMAGE_SIZE} px"] * (self.image_size < MIN_IMAGE_SIZE)
        problems += [f"batch_size {self.batch_size} is not positive"] * (self.batch_size < 1)
        problems += [f"{name} {getattr(self, name)} is negative" for name in ("epochs", "learning_rate")
                     if getattr(self, name) < 0]
        if problems:
            raise ValueError("; ".join(problems))
        if (self.backbone == "ensemble") != bool(self.members):
            raise ValueError("an ensemble, and only an ensemble, has members")
        if self.teachers and self.head != "distribution":
            raise ValueError("teachers need the distribution head")
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight {self.teacher_weight} must be in [0, 1]")
        if self.source_shares is not None:
            self.source_shares = tuple(float(s) for s in self.source_shares)
            if len(self.source_shares) != len(self.sources) or min(self.source_shares) <= 0:
                raise ValueError(f"source_shares {self.source_shares} needs one positive share per source {self.sources}")
        if not 0.0 <= self.age_balance <= 1.0:
            raise ValueError(f"age_balance {self.age_balance} must be in [0, 1]")
        if self.dtype_policy not in DTYPE_POLICIES:
            raise ValueError(f"unknown dtype_policy {self.dtype_policy!r}; expected one of {DTYPE_POLICIES}")

    def augmentation(self) -> dict[str, float]:
        """The Augment layer's strengths."""
        return {name: getattr(self, name) for name in AUGMENTATION_FIELDS}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path) -> TrainConfig:
        return cls(**json.loads(Path(path).read_text()))


DTYPE_POLICIES = ("auto", "float32", "mixed_bfloat16")
AUGMENTATION_FIELDS = (
    "max_zoom", "max_shift", "max_brightness", "max_contrast",
    "max_rotation_deg", "grey_prob", "blur_prob", "dark_prob", "max_dimming", "max_noise", "max_grain",
    "old_photo_prob",
)

# The CPU ResNet50 recipe at 64 px, the first link of the shipped ResNet50's chain.
RESNET50_CPU = TrainConfig(
    backbone="resnet50", image_size=64, epochs=10, batch_size=64, learning_rate=1e-3, warmup_epochs=0.5,
    max_rotation_deg=10.0, grey_prob=0.1, blur_prob=0.1, dark_prob=0.1, max_noise=3.0,
)
# The shipped CNN's recipe from random initialisation: 96 px, the degradations of real photos, 32 epochs.
CNN_96PX_32EP = TrainConfig(
    backbone="cnn", image_size=96, epochs=32, batch_size=64, learning_rate=2e-3,
    max_rotation_deg=10.0, grey_prob=0.1, blur_prob=0.1, dark_prob=0.1, max_noise=3.0,
)
FINE_TUNE = dict(epochs=6, learning_rate=3e-4, warmup_epochs=0.3, init_weights="checkpoints/cnn")
# The 112 px run's best weights fine-tuned on both sources with old-photo styles twice as often.
FROM_112PX_24EP = dict(
    image_size=112, learning_rate=3e-4, warmup_epochs=0.3, sources=("utkface", "aaf"), source_shares=(0.75, 0.25),
    init_weights="~/.cache/agejax/runs/cnn_112px_mixed_24ep/best.weights.h5", old_photo_prob=0.3, grey_prob=0.15,
)

PRESETS: dict[str, TrainConfig] = {
    # UTKFace alone, from random initialisation (about 95 min on 2 CPU cores).
    "cnn_96px_32ep": CNN_96PX_32EP,
    # The first CNN on both sources: cnn_96px_32ep's checkpoint fine-tuned for 6 epochs on UTKFace
    # and All-Age-Faces, a quarter of every batch from All-Age-Faces; beside it, the same on
    # UTKFace alone. CHANGELOG.md names the commit whose checkpoints/cnn each starts from.
    "cnn_96px_mixed_ft": dataclasses.replace(
        CNN_96PX_32EP, **FINE_TUNE, sources=("utkface", "aaf"), source_shares=(0.75, 0.25)),
    "cnn_96px_utkface_ft": dataclasses.replace(CNN_96PX_32EP, **FINE_TUNE),
    # checkpoints/cnn at commit 032ce7d: cnn_96px_mixed_ft's checkpoint fine-tuned for 8 more
    # epochs with old-photo styles (sepia, fading, film grain) on 15 % of the images and more
    # grey ones, so that a photo's age is not read from its style.
    "cnn_96px_mixed_oldphoto_ft": dataclasses.replace(
        CNN_96PX_32EP, **{**FINE_TUNE, "epochs": 8, "learning_rate": 2e-4}, sources=("utkface", "aaf"),
        source_shares=(0.75, 0.25), old_photo_prob=0.15, grey_prob=0.15),
    # The shipped CNN (checkpoints/cnn at commit 21df337) fine-tuned for 4 epochs with monochrome
    # film grain on every image, which cured the 112 px CNN of reading grain as age; at 96 px it
    # did not (CHANGELOG.md).
    "cnn_96px_mixed_fine_grain_ft": dataclasses.replace(
        CNN_96PX_32EP, **{**FINE_TUNE, "epochs": 4, "learning_rate": 2e-4}, sources=("utkface", "aaf"),
        source_shares=(0.75, 0.25), old_photo_prob=0.15, grey_prob=0.15, max_grain=8.0),
    # checkpoints/cnn at commit 2213207: the one at commit 032ce7d fine-tuned for 6 epochs with
    # monochrome grain and distilled from itself and the 112 px CNN below: half of each training
    # face's target is the two models' mean age distribution for it, the rest its label. An earlier
    # commit's checkpoint is copied out by `git archive REV checkpoints/cnn | tar -x -C DIR --strip-components=2`.
    "cnn_96px_mixed_distilled_ft": dataclasses.replace(
        CNN_96PX_32EP, **{**FINE_TUNE, "epochs": 6, "learning_rate": 2e-4,
                          "init_weights": "~/.cache/agejax/checkpoints/cnn_032ce7d"},
        sources=("utkface", "aaf"), source_shares=(0.75, 0.25), old_photo_prob=0.15, grey_prob=0.15, max_grain=8.0,
        teachers=("~/.cache/agejax/checkpoints/cnn_032ce7d", "~/.cache/agejax/runs/cnn_112px_mixed_grain_8ep")),
    # The shipped ensemble's 96 px member: the whole 96 px schedule from random initialisation on
    # both sources, distilled from the start from the CNN above (checkpoints/cnn at 2213207) and
    # the 112 px CNN below.
    "cnn_96px_mixed_distilled_32ep": dataclasses.replace(
        CNN_96PX_32EP, sources=("utkface", "aaf"), source_shares=(0.75, 0.25), old_photo_prob=0.15, grey_prob=0.15,
        max_grain=8.0, teachers=("~/.cache/agejax/checkpoints/cnn_2213207", "~/.cache/agejax/runs/cnn_112px_mixed_grain_8ep")),
    # The same recipe at 112 px for 24 epochs (as many faces as cnn_112px_mixed_24ep), distilled
    # from the ensemble of the two (checkpoints/cnn at 1644b70). Not shipped: in the ensemble's
    # 112 px place it changed validation MAE by 0.01 and read teenagers older (CHANGELOG.md).
    "cnn_112px_mixed_distilled_24ep": dataclasses.replace(
        CNN_96PX_32EP, image_size=112, epochs=24, sources=("utkface", "aaf"), source_shares=(0.75, 0.25),
        old_photo_prob=0.15, grey_prob=0.15, max_grain=8.0, teachers=("~/.cache/agejax/checkpoints/cnn_1644b70",)),
    # Its best weights fine-tuned for 4 epochs on labels alone with each face's loss weighted by
    # the inverse square root of its age's density, so that teenagers pull harder. Not shipped: in
    # the ensemble's 112 px place it read teenagers younger but was worse on UTKFace validation.
    "cnn_112px_mixed_balanced_ft": dataclasses.replace(
        CNN_96PX_32EP, image_size=112, epochs=4, learning_rate=3e-4, warmup_epochs=0.3, sources=("utkface", "aaf"),
        source_shares=(0.75, 0.25), old_photo_prob=0.15, grey_prob=0.15, max_grain=8.0, age_balance=0.5,
        init_weights="~/.cache/agejax/runs/cnn_112px_mixed_distilled_24ep/best.weights.h5"),
    # cnn_96px_mixed_distilled_32ep's recipe distilled from the ensemble (checkpoints/cnn at
    # 1644b70), with each face's loss weighted by its age's density to the power -0.25: teenagers
    # pull harder than in the member it would replace, the 20s less than in the fine-tune above.
    # Not shipped: in the ensemble's 96 px place it was worse on UTKFace validation and read
    # teenagers no younger (CHANGELOG.md).
    "cnn_96px_mixed_balanced_distilled_32ep": dataclasses.replace(
        CNN_96PX_32EP, sources=("utkface", "aaf"), source_shares=(0.75, 0.25), old_photo_prob=0.15, grey_prob=0.15,
        max_grain=8.0, age_balance=0.25, teachers=("~/.cache/agejax/checkpoints/cnn_1644b70",)),
    # One run from random initialisation on both sources at 112 px, old-photo styles from the
    # start; 24 epochs of 420 batches see 645k faces, against cnn_96px_32ep's 568k. Not shipped:
    # film grain reads as age (CHANGELOG.md).
    "cnn_112px_mixed_24ep": dataclasses.replace(
        CNN_96PX_32EP, image_size=112, epochs=24, sources=("utkface", "aaf"), source_shares=(0.75, 0.25),
        old_photo_prob=0.15, grey_prob=0.15),
    # Its best weights fine-tuned for 4 epochs with old-photo styles twice as often and per-pixel
    # noise on every image (standard deviation up to 8 levels), finer than the styles' own grain.
    "cnn_112px_mixed_grain_ft": dataclasses.replace(
        CNN_96PX_32EP, **FROM_112PX_24EP, epochs=4, max_noise=8.0),
    # The same for 8 epochs: the 24-epoch run still trained no better than it validated.
    "cnn_112px_mixed_grain_8ep": dataclasses.replace(
        CNN_96PX_32EP, **FROM_112PX_24EP, epochs=8, max_noise=8.0),
    # As the 4-epoch fine-tune, with monochrome grain in place of the stronger colour noise.
    "cnn_112px_mixed_fine_grain_ft": dataclasses.replace(
        CNN_96PX_32EP, **FROM_112PX_24EP, epochs=4, max_grain=8.0),
    # The 8-epoch grain fine-tune's best weights distilled from the same two teachers as
    # cnn_96px_mixed_distilled_ft, with monochrome grain. Not shipped: worse on validation than
    # the weights it started from (CHANGELOG.md).
    "cnn_112px_mixed_distilled_ft": dataclasses.replace(
        CNN_96PX_32EP, **{**FROM_112PX_24EP, "learning_rate": 2e-4,
                          "init_weights": "~/.cache/agejax/runs/cnn_112px_mixed_grain_8ep/best.weights.h5"},
        epochs=6, max_grain=8.0, teachers=("cnn", "~/.cache/agejax/runs/cnn_112px_mixed_grain_8ep")),
    # The UTKFace ResNet50, in three runs, each from the last one's best weights: 10 epochs at
    # 64 px; 4 at 96 px with stronger tilt, grey, blur and darkening; 2 more in which darkened
    # images also lose up to half their light.
    "resnet50_cpu_10ep": RESNET50_CPU,
    "resnet50_96px_robust": dataclasses.replace(
        RESNET50_CPU, image_size=96, epochs=4, learning_rate=3e-4, warmup_epochs=0.25,
        max_rotation_deg=20.0, grey_prob=0.2, blur_prob=0.2, dark_prob=0.3,
        init_weights="~/.cache/agejax/runs/resnet50_64px_10ep/best.weights.h5",
    ),
    "resnet50_96px_dim": dataclasses.replace(
        RESNET50_CPU, image_size=96, epochs=2, learning_rate=1e-4, warmup_epochs=0.1,
        max_rotation_deg=20.0, grey_prob=0.2, blur_prob=0.2, dark_prob=0.3, max_dimming=0.5,
        init_weights="~/.cache/agejax/runs/resnet50_96px_robust/best.weights.h5",
    ),
    # The shipped ResNet50: the one above (checkpoints/resnet50 at commit 28b134f) fine-tuned on
    # both sources at 96 px, a quarter of every batch from All-Age-Faces, with the shipped CNN's
    # old-photo styles and bfloat16 activations (1.13x the float32 train step on AVX-512 BF16).
    # A peak rate of 5e-4 made validation worse within two epochs (CHANGELOG.md).
    "resnet50_96px_mixed_ft": dataclasses.replace(
        RESNET50_CPU, image_size=96, epochs=6, learning_rate=1e-4, warmup_epochs=0.3,
        init_weights="checkpoints/resnet50", sources=("utkface", "aaf"), source_shares=(0.75, 0.25),
        old_photo_prob=0.15, grey_prob=0.15, dtype_policy="mixed_bfloat16"),
    # The shipped ResNet50 (checkpoints/resnet50 at commit e38999f) fine-tuned as above for 4
    # epochs, distilled from the ensemble CNN (checkpoints/cnn at e38999f, copied as described
    # for cnn_96px_mixed_distilled_32ep): half of each face's target is the CNN's age distribution.
    # Not shipped: better on UTKFace's validation split, worse on All-Age-Faces' (CHANGELOG.md).
    "resnet50_96px_mixed_distilled_ft": dataclasses.replace(
        RESNET50_CPU, image_size=96, epochs=4, learning_rate=1e-4, warmup_epochs=0.3,
        init_weights="checkpoints/resnet50", sources=("utkface", "aaf"), source_shares=(0.75, 0.25),
        old_photo_prob=0.15, grey_prob=0.15, dtype_policy="mixed_bfloat16",
        teachers=("~/.cache/agejax/checkpoints/cnn_e38999f",)),
    # Full resolution on one GPU, on both shared sources.
    "resnet50_gpu": TrainConfig(backbone="resnet50", image_size=200, epochs=40, batch_size=256, learning_rate=2e-3,
                                sources=("utkface", "aaf"), source_shares=(0.75, 0.25)),
}
