"""Keras layers of the "is this me?" models (registered for ``load_model(..., safe_mode=True)``).

Importing this module registers them; Keras itself is imported here, so import it only where Keras is used.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="recognize_me")
class HorizontalFlip(keras.layers.Layer):
    """Mirror images left to right (always, in training and inference): test-time flip averaging."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=-2)

    def compute_output_shape(self, input_shape):
        return input_shape
