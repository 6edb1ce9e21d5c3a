"""The builders of the model ladder (registered, with how each is trained, in ``recognize_me.catalog``).

Every builder takes ``(input_shape, n_outputs, options)`` and returns a compiled ``keras.Model``
whose input is float32 RGB in [0, 1] (no rescaling inside) and whose output is one sigmoid per
attribute. Builders are deterministic given ``keras.utils.set_random_seed`` (called by the caller
before building); ``options.seed`` seeds the Dropout layers.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from recognize_me.catalog import MODELS
from recognize_me.catalog import ModelEntry as ModelSpec
from recognize_me.models.identity import embedding_head
from recognize_me.models.losses import compile_multilabel
from recognize_me.models.options import BuildOptions
from recognize_me.models.residual import BN_MOMENTUM, ResidualUnit

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


def resnet_trunk(inputs: keras.KerasTensor) -> keras.KerasTensor:
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
    model = keras.Model(inputs, _head(resnet_trunk(inputs), n_outputs, options), name="resnet")
    return _compile(model, options)


def build_resnet_identity(input_shape: tuple[int, int, int], n_outputs: int, options: BuildOptions) -> keras.Model:
    """The ResNet plus an L2-normalised ``"embedding"`` (trained on identities by
    ``identity.identity_training_model``); the attribute head reads the pooled features and the embedding,
    so the embedding is part of the saved inference model (image -> attribute sigmoids)."""
    _check_shape(input_shape, n_outputs)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(resnet_trunk(inputs))
    embedding = embedding_head(pooled, options.embedding_dim)
    x = keras.layers.Dropout(options.dropout, seed=options.seed, name="head_dropout")(pooled)
    x = keras.layers.Concatenate(name="head_features")([x, embedding])
    attributes = keras.layers.Dense(n_outputs, activation="sigmoid", name="attributes", dtype="float32")(x)
    return _compile(keras.Model(inputs, attributes, name="resnet_identity"), options)


def get_model_spec(name: str) -> ModelSpec:
    """The catalog entry of the model called ``name``; ``ValueError`` listing the valid names otherwise."""
    return MODELS.get(name)


def count_params(model: keras.Model) -> int:
    """Total number of weights (trainable and not) of a built model."""
    return int(model.count_params())
