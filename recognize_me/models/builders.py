"""The model ladder: five named specs, each adding one thing over the previous one.

Every builder takes ``(input_shape, n_outputs, options)`` and returns a compiled ``keras.Model``
whose input is float32 RGB in [0, 1] (no rescaling inside) and whose output is one sigmoid per
attribute. Builders are deterministic given ``keras.utils.set_random_seed`` (called by the caller
before building); ``options.seed`` seeds the Dropout layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import keras

from recognize_me.models.identity import embedding_head
from recognize_me.models.losses import compile_multilabel
from recognize_me.models.residual import BN_MOMENTUM, ResidualUnit
from recognize_me.models.vgg import build_vgg16_finetune, fine_tune_vgg16
from recognize_me.training.budget import EpochPlan
from recognize_me.training.schedule import WarmupCosineSchedule


@dataclass(frozen=True)
class BuildOptions:
    """Knobs shared by all builders."""

    learning_rate: float = 1e-3
    vgg_weights: str = "none"  # "imagenet", "none", or a path to a local .h5 / .weights.h5 file
    dropout: float = 0.3
    seed: int = 0
    weight_decay: float = 0.0  # > 0: AdamW with this decoupled decay (see losses.make_optimizer)
    warmup_epochs: float = 1.0  # warm-up of the cosine schedule (scheduled rungs)
    embedding_dim: int = 128  # identity-aware rung: size of the "embedding" layer


ModelBuilder = Callable[[tuple[int, int, int], int, BuildOptions], keras.Model]


#: (filters, convolutions) per block of the plain CNN. The second convolution in the two small-map blocks
#: costs ~40-50% more time per epoch and wins on validation at equal time (benchmarks/results/recipe_search.md).
CNN_BLOCKS: tuple[tuple[int, int], ...] = ((32, 1), (64, 1), (128, 2), (256, 2))
RESNET_STEM_FILTERS = 32
RESNET_STEM_STRIDES = 2  # halves H and W before the units: the ResNet costs about what the plain CNN costs
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
    """Blocks of (Conv2D 3x3 (no bias) + BN + ReLU) x 1, 1, 2, 2 + MaxPool 2x2 with 32->64->128->256 filters."""
    _check_shape(input_shape, n_outputs)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, (filters, convs) in enumerate(CNN_BLOCKS, start=1):
        for j in range(1, convs + 1):
            suffix = "" if j == 1 else str(j)  # block3_conv, block3_conv2, ...
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv{suffix}")(x)
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i}_bn{suffix}")(x)
            x = keras.layers.Activation("relu", name=f"block{i}_relu{suffix}")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{i}_pool")(x)
    model = keras.Model(inputs, _head(x, n_outputs, options), name=name)
    return _compile(model, options)


def _compile(model: keras.Model, options: BuildOptions) -> keras.Model:
    return compile_multilabel(model, options.learning_rate, weight_decay=options.weight_decay)


def build_baseline_cnn(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    return _plain_cnn(input_shape, n_outputs, options, "baseline_cnn")


def build_cnn_scheduled(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    return _plain_cnn(input_shape, n_outputs, options, "cnn_scheduled")


def build_cnn_thresholded(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    return _plain_cnn(input_shape, n_outputs, options, "cnn_thresholded")


def _resnet_trunk(inputs: keras.KerasTensor) -> keras.KerasTensor:
    """Strided stem Conv 3x3/2 32 + BN + ReLU, then ResidualUnits 32,32,64/2,64,128/2,128,256/2."""
    x = keras.layers.Conv2D(RESNET_STEM_FILTERS, 3, strides=RESNET_STEM_STRIDES, padding="same", use_bias=False,
                            name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    for i, (filters, strides) in enumerate(RESNET_UNITS, start=1):
        x = ResidualUnit(filters, strides=strides, name=f"res{i}")(x)
    return x


def build_resnet(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    """The residual trunk (strided stem), GAP, head."""
    _check_shape(input_shape, n_outputs)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    model = keras.Model(inputs, _head(_resnet_trunk(inputs), n_outputs, options), name="resnet")
    return _compile(model, options)


def build_resnet_identity(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    """The ResNet plus an L2-normalised ``"embedding"`` (trained on identities by
    ``identity.identity_training_model``); the attribute head reads the pooled features and the embedding,
    so the embedding is part of the saved inference model (image -> attribute sigmoids)."""
    _check_shape(input_shape, n_outputs)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(_resnet_trunk(inputs))
    embedding = embedding_head(pooled, options.embedding_dim)
    x = keras.layers.Dropout(options.dropout, seed=options.seed, name="head_dropout")(pooled)
    x = keras.layers.Concatenate(name="head_features")([x, embedding])
    attributes = keras.layers.Dense(n_outputs, activation="sigmoid", name="attributes", dtype="float32")(x)
    return _compile(keras.Model(inputs, attributes, name="resnet_identity"), options)


def no_callbacks(options: BuildOptions, plan: EpochPlan, offset: int = 0) -> list[keras.callbacks.Callback]:
    return []


def scheduled_callbacks(options: BuildOptions, plan: EpochPlan, offset: int = 0) -> list[keras.callbacks.Callback]:
    """Warm-up then cosine decay to ``plan.epochs`` (set per batch); stop after 3 epochs without a better
    val_loss, keeping the best. ``offset``: epochs already run in an earlier phase of the same model."""
    return [
        WarmupCosineSchedule(plan, options.learning_rate, warmup_epochs=options.warmup_epochs, offset=offset),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
    ]


def fine_tune_callbacks(options: BuildOptions, plan: EpochPlan, offset: int = 0) -> list[keras.callbacks.Callback]:
    """``scheduled_callbacks``; the second phase (``offset`` > 0) peaks at a tenth of the rate, as
    ``vgg.fine_tune_vgg16`` compiles it, continuing the same cosine (no second warm-up)."""
    if offset > 0:
        options = replace(options, learning_rate=options.learning_rate / 10.0)
    return scheduled_callbacks(options, plan, offset)


@dataclass(frozen=True)
class ModelSpec:
    """One rung of the ladder: how to build it and how the training code should treat it."""

    name: str
    build: ModelBuilder
    description: str
    # Defaults: what every rung from cnn_thresholded on does.
    callbacks: Callable[[BuildOptions, EpochPlan, int], list[keras.callbacks.Callback]] = scheduled_callbacks
    # Plain BCE everywhere: a positive-class-weighted loss bought no F1 over F1-tuned thresholds and cost
    # accuracy (benchmarks/results/recipe_search.md); True recompiles with losses.WeightedBinaryCrossentropy.
    class_weighted_loss: bool = False
    tune_thresholds: bool = True
    fine_tune: Callable[[keras.Model, BuildOptions], keras.Model] | None = None
    identity_loss_weight: float = 0.0  # > 0: also trained on identities (models.identity), train split only


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="baseline_cnn",
            build=build_baseline_cnn,
            callbacks=no_callbacks,
            tune_thresholds=False,
            description="Plain CNN: four blocks of Conv-BN-ReLU (two in the last two blocks) and MaxPool "
                        "(32-256 filters), global average pooling, dropout and one sigmoid per attribute; fixed LR, "
                        "0.5 thresholds.",
        ),
        ModelSpec(
            name="cnn_scheduled",
            build=build_cnn_scheduled,
            tune_thresholds=False,
            description="Same CNN, plus a learning-rate schedule (warm-up, then cosine decay to the planned "
                        "last epoch) and early stopping that restores the best epoch.",
        ),
        ModelSpec(
            name="cnn_thresholded",
            build=build_cnn_thresholded,
            description="Same scheduled CNN, plus per-attribute decision thresholds tuned on validation for "
                        "the mostly-negative labels (for accuracy; F1-tuned ones for F1).",
        ),
        ModelSpec(
            name="resnet",
            build=build_resnet,
            description="Swaps the plain CNN for a small ResNet (strided stem, seven residual units, 32-256 "
                        "filters) trained the same way (schedule, tuned thresholds).",
        ),
        ModelSpec(
            name="vgg16_finetune",
            build=build_vgg16_finetune,
            callbacks=fine_tune_callbacks,
            fine_tune=fine_tune_vgg16,
            description="Transfer learning: a frozen VGG16 base (ImageNet weights when available) with a "
                        "new head, then a second phase unfreezing block5 at a tenth of the LR.",
        ),
        ModelSpec(
            name="resnet_identity",
            build=build_resnet_identity,
            identity_loss_weight=0.1,  # measured on val: 1.0 swamped the attribute loss (recipe_search.md)
            description="The ResNet plus an L2-normalised 128-d \"embedding\" trained on the train split's "
                        "identities with a CosFace margin softmax (s=30, m=0.35); the base for \"is this me?\".",
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
