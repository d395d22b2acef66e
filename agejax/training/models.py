"""The two age regressors, each with either head.

Both take uint8 RGB images (any square size) and share one layout:
cast -> Augment (active only in training) -> backbone -> head.

* ``regression`` head: one output, the age in years.
* ``distribution`` head: a softmax over the integer ages 0..MAX_AGE; the prediction
  is its expected value and its standard deviation is the model's own uncertainty.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from agejax.data.augment import Augment
from agejax.data.labels import NUM_AGE_BINS
from agejax.training.configs import TrainConfig
from agejax.training.conv import FastConv2D, with_fast_convolutions

Tensor = Any  # a backend array while training, a symbolic KerasTensor while a model is built

BACKBONES = ("cnn", "resnet50")
HEADS = ("regression", "distribution")
# Train-split age statistics: the regression head predicts (age - mean) / std.
MEAN_TRAIN_AGE = 33.3
STD_TRAIN_AGE = 19.9


@keras.saving.register_keras_serializable(package="agejax")
class ToFloat(layers.Layer):
    """uint8 images in, float32 [0, 255] out: images cross to the device as bytes."""

    def call(self, images):
        return ops.cast(images, "float32")


@keras.saving.register_keras_serializable(package="agejax")
class ResNetPreprocess(layers.Layer):
    """The caffe-style input normalisation that ImageNet ResNet50 weights expect."""

    def call(self, images):
        return keras.applications.resnet50.preprocess_input(images)


def _conv_bn_relu(x, filters: int, strides: int = 1, name: str = "", conv_layer=FastConv2D):
    x = conv_layer(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def cnn_backbone(x: keras.KerasTensor, width: int = 32, fast_convolutions: bool = True,
                 prefix: str = "") -> keras.KerasTensor:
    """A VGG-style stack made for CPU speed: a strided stem, then two 3x3 convs per stage.

    The stride-2 stem halves the resolution before any wide layer, which is where
    most of the compute goes at 64-96 px. ``prefix`` starts every layer's name (an ensemble's members).
    """
    conv_layer = FastConv2D if fast_convolutions else layers.Conv2D
    widths = [width * 2**stage for stage in range(4)]
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{prefix}normalize")(x)
    x = _conv_bn_relu(x, widths[0], strides=2, name=f"{prefix}stem", conv_layer=conv_layer)
    for stage, width in enumerate(widths):
        x = _conv_bn_relu(x, width, name=f"{prefix}stage{stage}_a", conv_layer=conv_layer)
        x = _conv_bn_relu(x, width, name=f"{prefix}stage{stage}_b", conv_layer=conv_layer)
        if stage < len(widths) - 1:
            x = layers.MaxPooling2D(name=f"{prefix}stage{stage}_pool")(x)
    return x


def resnet50_backbone(x: keras.KerasTensor, weights: str | None = None,
                      fast_convolutions: bool = True) -> keras.KerasTensor:
    """keras.applications.ResNet50 without its top; ``weights`` may be "imagenet" or a file.

    With fast_convolutions its Conv2D layers become FastConv2D: the same layers and weights.
    """
    x = ResNetPreprocess(name="normalize")(x)
    backbone = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=tuple(x.shape[1:])
    )
    if fast_convolutions:
        backbone = with_fast_convolutions(backbone)
    return backbone(x)


def head(x: keras.KerasTensor, kind: str, dropout: float, prefix: str = "") -> keras.KerasTensor:
    x = layers.GlobalAveragePooling2D(name=f"{prefix}pool")(x)
    x = layers.Dropout(dropout, name=f"{prefix}dropout")(x)
    if kind == "regression":
        # Predict a standardised age and rescale it, so the last layer needs no large weights.
        standard = layers.Dense(1, dtype="float32", name="age_standardised")(x)
        return layers.Rescaling(STD_TRAIN_AGE, offset=MEAN_TRAIN_AGE, dtype="float32", name="age")(standard)
    if kind == "distribution":
        logits = layers.Dense(NUM_AGE_BINS, dtype="float32", name=f"{prefix}age_logits")(x)
        return layers.Softmax(dtype="float32", name=f"{prefix}age_probs")(logits)
    raise ValueError(f"unknown head {kind!r}; expected one of {HEADS}")


def build_model(
    backbone: str = "cnn",
    head_kind: str = "distribution",
    image_size: int = 64,
    weights: str | None = None,
    augment_seed: int | None = None,
    fast_convolutions: bool = True,
    augmentation: dict[str, float] | None = None,
    dropout: float = 0.2,
    cnn_width: int = 32,
) -> keras.Model:
    """An uncompiled age model taking uint8 (image_size, image_size, 3) images.

    fast_convolutions=False keeps Keras' stock Conv2D (the benchmark's baseline); the
    weights and outputs are the same either way. ``augmentation`` holds Augment's
    strengths (its defaults where left out).
    """
    inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    # Cast and augmentation stay float32 under a bfloat16 policy: the backbone casts after them.
    x = ToFloat(name="to_float", dtype="float32")(inputs)
    x = Augment(seed=augment_seed, name="augment", dtype="float32", **(augmentation or {}))(x)
    if backbone == "cnn":
        if weights is not None:
            raise ValueError("the cnn has no pretrained weights; train it or load a checkpoint")
        features = cnn_backbone(x, cnn_width, fast_convolutions=fast_convolutions)
    elif backbone == "resnet50":
        features = resnet50_backbone(x, weights, fast_convolutions)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")
    outputs = head(features, head_kind, dropout)
    return keras.Model(inputs, outputs, name=f"{backbone}_{head_kind}")


def build_from_config(config: TrainConfig, fast_convolutions: bool = True) -> keras.Model:
    """The model a TrainConfig describes, its augmentation and dropout included."""
    if config.backbone == "ensemble":
        from agejax.training import ensemble

        return ensemble.build(config, fast_convolutions)
    return build_model(
        config.backbone, config.head, config.image_size, weights=config.weights, augment_seed=config.seed,
        fast_convolutions=fast_convolutions, augmentation=config.augmentation(), dropout=config.dropout,
        cnn_width=config.cnn_width,
    )


def expected_age(probs: Tensor) -> Tensor:
    return ops.sum(probs * ops.arange(NUM_AGE_BINS, dtype=probs.dtype), axis=-1)


def point_prediction(y_pred: Tensor) -> Tensor:
    """The predicted age in years from either head's output."""
    if y_pred.shape[-1] == NUM_AGE_BINS:
        return expected_age(y_pred)
    return ops.squeeze(y_pred, -1)


def carries_teacher(y_true: Tensor) -> bool:
    """Whether targets are (N, 1 + bins): each age followed by a teacher's distribution."""
    return len(y_true.shape) == 2 and y_true.shape[-1] == NUM_AGE_BINS + 1


def true_ages(y_true: Tensor) -> Tensor:
    """The ages column of the targets: (N,), (N, 1), or (N, 1 + bins) with teacher distributions."""
    y_true = ops.cast(y_true, "float32")
    return y_true[:, 0] if carries_teacher(y_true) else ops.reshape(y_true, (-1,))


@keras.saving.register_keras_serializable(package="agejax")
def age_mae(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Mean absolute error in years, for either head."""
    return ops.abs(point_prediction(y_pred) - true_ages(y_true))


@keras.saving.register_keras_serializable(package="agejax")
class AgeDistributionLoss(keras.losses.Loss):
    """Label-distribution loss (DLDL-v2): KL to a Gaussian around the true age, plus L1 on the expectation.

    Targets of shape (N, 1 + bins) carry a teacher's distribution after the age: the target
    is then teacher_weight of it mixed with the Gaussian, and the L1 term aims at the mixture's mean.
    """

    def __init__(self, sigma: float = 2.0, l1_weight: float = 1.0, teacher_weight: float = 0.5,
                 name: str = "age_distribution", **kwargs):
        super().__init__(name=name, **kwargs)
        self.sigma = sigma
        self.l1_weight = l1_weight
        self.teacher_weight = teacher_weight

    def call(self, y_true, y_pred):
        ages = true_ages(y_true)
        bins = ops.arange(NUM_AGE_BINS, dtype="float32")[None, :]
        target = ops.exp(-0.5 * ops.square((bins - ages[:, None]) / self.sigma))
        target = target / ops.sum(target, axis=-1, keepdims=True)
        aim = ages
        if carries_teacher(y_true):
            teacher = ops.cast(y_true[:, 1:], "float32")
            target = (1 - self.teacher_weight) * target + self.teacher_weight * teacher
            aim = (1 - self.teacher_weight) * ages + self.teacher_weight * expected_age(teacher)
        probs = ops.clip(y_pred, 1e-7, 1.0)
        kl = ops.sum(target * (ops.log(ops.clip(target, 1e-7, 1.0)) - ops.log(probs)), axis=-1)
        return kl + self.l1_weight * ops.abs(expected_age(y_pred) - aim)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "l1_weight": self.l1_weight,
                "teacher_weight": self.teacher_weight}


def loss_for(head_kind: str, label_sigma: float = 2.0, teacher_weight: float = 0.5) -> keras.losses.Loss:
    if head_kind == "distribution":
        return AgeDistributionLoss(label_sigma, teacher_weight=teacher_weight)
    return keras.losses.MeanAbsoluteError()
