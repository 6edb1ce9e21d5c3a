"""A serialisable residual unit (two 3x3 convolutions with an identity or projected skip).

``get_config`` holds only the constructor arguments, so a model using the unit round-trips through
``.keras`` files with ``keras.models.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

from typing import Any

import keras

#: Moving statistics settle within a few hundred steps (Keras' 0.99 default lags on short runs and
#: makes validation far worse than training).
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="recognize_me")
class ResidualUnit(keras.layers.Layer):
    """``activation(BN(conv3x3(activation(BN(conv3x3_strided(x))))) + skip(x))``.

    The skip is the identity when the spatial size and channel count are unchanged, otherwise a
    1x1 strided convolution followed by batch normalisation (decided in ``build`` from the input's
    channel count).

    Args:
        filters: output channels.
        strides: stride of the first 3x3 convolution (and of the projection); 2 halves H and W.
        activation: name of a Keras activation (e.g. ``"relu"``); stored as that string.
    """

    def __init__(self, filters: int, strides: int = 1, activation: str = "relu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(activation, str):
            raise TypeError(f"activation must be the name of a Keras activation, got {activation!r}")
        self.filters = int(filters)
        self.strides = int(strides)
        if self.filters < 1 or self.strides < 1:
            raise ValueError(f"filters and strides must be >= 1, got filters={filters}, strides={strides}")
        self.activation = activation
        self._activation_fn = keras.activations.get(activation)

        # Sub-layers share this layer's dtype policy: a model trained under mixed_bfloat16 and loaded in a
        # float32 process (transfer, predict) must not mix bfloat16 and float32 tensors in ``x + skip``.
        policy = self.dtype_policy
        self.conv1 = keras.layers.Conv2D(
            self.filters, 3, strides=self.strides, padding="same", use_bias=False, name="conv1", dtype=policy)
        self.bn1 = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn1", dtype=policy)
        self.conv2 = keras.layers.Conv2D(self.filters, 3, strides=1, padding="same", use_bias=False, name="conv2",
                                         dtype=policy)
        self.bn2 = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn2", dtype=policy)
        # The projection depends on the input channel count, so it is created in build().
        self.skip_conv: keras.layers.Conv2D | None = None
        self.skip_bn: keras.layers.BatchNormalization | None = None

    @property
    def projects_skip(self) -> bool:
        """True once built with a 1x1 convolution + BN on the skip path."""
        return self.skip_conv is not None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        in_channels = input_shape[-1]
        if self.strides > 1 or in_channels != self.filters:
            self.skip_conv = keras.layers.Conv2D(self.filters, 1, strides=self.strides, padding="same",
                                                 use_bias=False, name="skip_conv", dtype=self.dtype_policy)
            self.skip_bn = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="skip_bn",
                                                           dtype=self.dtype_policy)
        # Build every sub-layer now so their variables exist before weights are loaded.
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(shape)
        self.conv2.build(shape)
        self.bn2.build(self.conv2.compute_output_shape(shape))
        if self.skip_conv is not None and self.skip_bn is not None:
            self.skip_conv.build(input_shape)
            self.skip_bn.build(self.skip_conv.compute_output_shape(input_shape))
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = self.conv1(inputs)
        x = self.bn1(x, training=training)
        x = self._activation_fn(x)
        x = self.conv2(x)
        x = self.bn2(x, training=training)
        skip = inputs
        if self.skip_conv is not None and self.skip_bn is not None:
            skip = self.skip_bn(self.skip_conv(inputs), training=training)
        return self._activation_fn(x + skip)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return self.conv1.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides, "activation": self.activation})
        return config
