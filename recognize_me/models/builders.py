"""The model ladder: five named specs, each adding one thing over the previous one.

Every builder takes ``(input_shape, n_outputs, options)`` and returns a compiled ``keras.Model``
whose input is float32 RGB in [0, 1] (no rescaling inside) and whose output is one sigmoid per
attribute. Builders are deterministic given ``keras.utils.set_random_seed`` (called by the caller
before building); ``options.seed`` seeds the Dropout layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from recognize_me.models.losses import compile_multilabel
from recognize_me.models.residual import BN_MOMENTUM, ResidualUnit
from recognize_me.models.vgg import build_vgg16_finetune, fine_tune_vgg16
from recognize_me.training.budget import EpochPlan


@dataclass(frozen=True)
class BuildOptions:
    """Knobs shared by all builders."""

    learning_rate: float = 1e-3
    vgg_weights: str = "none"  # "imagenet", "none", or a path to a local .h5 / .weights.h5 file
    dropout: float = 0.3
    seed: int = 0


ModelBuilder = Callable[[tuple[int, int, int], int, BuildOptions], keras.Model]


@dataclass(frozen=True)
class ModelSpec:
    """One rung of the ladder: how to build it and how the training code should treat it."""

    name: str
    build: ModelBuilder
    callbacks: Callable[[BuildOptions, EpochPlan], list[keras.callbacks.Callback]]
    class_weighted_loss: bool
    tune_thresholds: bool
    fine_tune: Callable[[keras.Model, BuildOptions], keras.Model] | None
    description: str


CNN_FILTERS: tuple[int, ...] = (32, 64, 128, 256)
RESNET_STEM_FILTERS = 32
RESNET_UNITS: tuple[tuple[int, int], ...] = ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2))


def _check_shape(input_shape: tuple[int, int, int], n_outputs: int) -> None:
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {input_shape}")
    if int(n_outputs) < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")


def _head(x: keras.KerasTensor, n_outputs: int, options: BuildOptions) -> keras.KerasTensor:
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(options.dropout, seed=options.seed, name="head_dropout")(x)
    return keras.layers.Dense(n_outputs, activation="sigmoid", name="attributes", dtype="float32")(x)


def _plain_cnn(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions,
               name: str) -> keras.Model:
    """Blocks of Conv2D 3x3 (no bias) + BN + ReLU + MaxPool 2x2 with 32->64->128->256 filters."""
    _check_shape(input_shape, n_outputs)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, filters in enumerate(CNN_FILTERS, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{i}_relu")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{i}_pool")(x)
    model = keras.Model(inputs, _head(x, n_outputs, options), name=name)
    return compile_multilabel(model, options.learning_rate)


def build_baseline_cnn(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    return _plain_cnn(input_shape, n_outputs, options, "baseline_cnn")


def build_cnn_scheduled(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    return _plain_cnn(input_shape, n_outputs, options, "cnn_scheduled")


def build_cnn_thresholded(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    return _plain_cnn(input_shape, n_outputs, options, "cnn_thresholded")


def build_resnet(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    """Stem Conv 3x3 32 + BN + ReLU, then ResidualUnits 32,32,64/2,64,128/2,128,256/2, GAP, head."""
    _check_shape(input_shape, n_outputs)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Conv2D(RESNET_STEM_FILTERS, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    for i, (filters, strides) in enumerate(RESNET_UNITS, start=1):
        x = ResidualUnit(filters, strides=strides, name=f"res{i}")(x)
    model = keras.Model(inputs, _head(x, n_outputs, options), name="resnet")
    return compile_multilabel(model, options.learning_rate)


def no_callbacks(options: BuildOptions, plan: EpochPlan) -> list[keras.callbacks.Callback]:
    return []


def scheduled_callbacks(options: BuildOptions, plan: EpochPlan) -> list[keras.callbacks.Callback]:
    """Halve the LR when val_loss stalls for an epoch; stop after 3 stalled epochs, keeping the best."""
    return [
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
    ]


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="baseline_cnn",
            build=build_baseline_cnn,
            callbacks=no_callbacks,
            class_weighted_loss=False,
            tune_thresholds=False,
            fine_tune=None,
            description="Plain CNN: four Conv-BN-ReLU-MaxPool blocks (32-256 filters), global average "
                        "pooling, dropout and one sigmoid per attribute; fixed LR, 0.5 thresholds.",
        ),
        ModelSpec(
            name="cnn_scheduled",
            build=build_cnn_scheduled,
            callbacks=scheduled_callbacks,
            class_weighted_loss=False,
            tune_thresholds=False,
            fine_tune=None,
            description="Same CNN, plus a learning-rate schedule (halve on a val_loss plateau) and "
                        "early stopping that restores the best epoch.",
        ),
        ModelSpec(
            name="cnn_thresholded",
            build=build_cnn_thresholded,
            callbacks=scheduled_callbacks,
            class_weighted_loss=True,
            tune_thresholds=True,
            fine_tune=None,
            description="Same scheduled CNN, plus a positive-class-weighted loss for rare attributes and "
                        "per-attribute decision thresholds tuned on validation.",
        ),
        ModelSpec(
            name="resnet",
            build=build_resnet,
            callbacks=scheduled_callbacks,
            class_weighted_loss=True,
            tune_thresholds=True,
            fine_tune=None,
            description="Swaps the plain CNN for a small ResNet (seven residual units, 32-256 filters) "
                        "trained the same way (schedule, weighted loss, tuned thresholds).",
        ),
        ModelSpec(
            name="vgg16_finetune",
            build=build_vgg16_finetune,
            callbacks=scheduled_callbacks,
            class_weighted_loss=True,
            tune_thresholds=True,
            fine_tune=fine_tune_vgg16,
            description="Transfer learning: a frozen VGG16 base (ImageNet weights when available) with a "
                        "new head, then a second phase unfreezing block5 at a tenth of the LR.",
        ),
    )
}


def get_model_spec(name: str) -> ModelSpec:
    """The spec called ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}") from None


def count_params(model: keras.Model) -> int:
    """Total number of weights (trainable and not) of a built model."""
    return int(model.count_params())
