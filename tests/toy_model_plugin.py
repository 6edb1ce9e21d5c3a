"""A catalog plugin used by tests/test_catalog.py: one tiny CelebA model, declared as any plugin declares one
(``RECOGNIZE_ME_PLUGINS=toy_model_plugin``)."""

from __future__ import annotations

from recognize_me.catalog import ModelEntry

TOY_SEED_OFFSET = 7000


def build_toy(input_shape, n_outputs, options):
    """One strided convolution, global average pooling, one sigmoid per attribute."""
    import keras

    from recognize_me.models.losses import compile_multilabel

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, name="toy_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(n_outputs, activation="sigmoid", name="attributes", dtype="float32")(x)
    return compile_multilabel(keras.Model(inputs, outputs, name="toy_cnn"), options.learning_rate)


MODELS = [ModelEntry(name="toy_cnn", builder=build_toy, seed_offset=TOY_SEED_OFFSET, budget_weight=0.5,
                     description="A test's one-convolution model.")]
