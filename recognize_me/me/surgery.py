"""Model surgery for "is this me?": cut a CelebA model at its pooled features, put a new head on it, unfreeze
its top, or wrap it with flip averaging and a fitted linear layer. Keras is imported when a function runs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

FEATURES_NAME = "celeba_features"  # the nested feature model inside a transfer model
HEAD_DROPOUT = 0.3


def load_base(path, image_size: tuple[int, int]) -> keras.Model:
    """The CelebA model saved at ``path`` (safe mode, uncompiled); ``ValueError`` when it takes another size."""
    import keras

    import recognize_me.models  # noqa: F401 - registers the custom layers the base may use

    base = keras.models.load_model(path, safe_mode=True, compile=False)
    expected = tuple(base.inputs[0].shape[1:3])
    if all(d is not None for d in expected) and tuple(int(d) for d in expected) != tuple(image_size):
        raise ValueError(f"base model {path} takes {expected} images but the job says "
                         f"image_size={image_size}")
    return base


def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in graph order, nested models replaced by their own layers, inputs left out."""
    import keras

    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            out.extend(flat_layers(layer))
        else:
            out.append(layer)
    return out


def feature_extractor(base: keras.Model) -> keras.Model:
    """``base`` cut at the output of its last top-level ``GlobalAveragePooling2D`` (sharing weights)."""
    import keras

    pools = [layer for layer in base.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if not pools:
        raise ValueError(f"model {base.name!r} has no GlobalAveragePooling2D layer to cut at; transfer needs "
                         f"a CelebA model whose head starts with global average pooling")
    return keras.Model(base.inputs, pools[-1].output, name=FEATURES_NAME)


def build_transfer_model(features: keras.Model, image_size: tuple[int, int], seed: int) -> keras.Model:
    """``features`` + Dropout + Dense(1, sigmoid). Keras passes the outer ``training`` flag into nested
    models, so the base's BatchNormalization layers are kept in inference mode by freezing them
    (a frozen BatchNormalization layer always uses its moving statistics)."""
    import keras

    inputs = keras.Input(shape=(*image_size, 3), name="me_image")
    x = features(inputs, training=False)
    x = keras.layers.Dropout(HEAD_DROPOUT, seed=seed, name="me_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="is_me")(x)
    return keras.Model(inputs, outputs, name="is_me_classifier")


def named_feature_outputs(base: keras.Model, features: str = "auto") -> list[Any]:
    """The base's output tensors to use as features: ``embedding`` (a layer of that name), ``gap`` (a layer
    named ``gap``, else the last top-level ``GlobalAveragePooling2D``), ``concat`` (both), ``spatial``
    (the feature map that ``gap`` pools, flattened: keeps where on the aligned face a feature fires),
    ``auto`` (``embedding`` when the base has one, else ``spatial``: on the real faces it beat ``gap`` on
    validation AUC at 10, 25 and 45 photos). ``ValueError`` names what is missing."""
    import keras

    by_name = {layer.name: layer for layer in base.layers}
    pools = [layer for layer in base.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    gap = by_name.get("gap") or (pools[-1] if pools else None)
    embedding = by_name.get("embedding")
    if features == "auto":
        features = "embedding" if embedding is not None else "spatial"
    wanted = {"embedding": ["embedding"],
              "gap": ["gap"], "concat": ["embedding", "gap"], "spatial": ["gap"]}[features]
    layers = {"embedding": embedding, "gap": gap}
    missing = [name for name in wanted if layers[name] is None]
    if missing:
        raise ValueError(f"model {base.name!r} has no {' / '.join(missing)} layer for features={features!r}")
    if features == "spatial":
        return [keras.layers.Flatten(name="spatial_features")(gap.input)]
    return [layers[name].output for name in wanted]


def flip_averaged_extractor(base: keras.Model, image_size: tuple[int, int], features: str = "auto") -> keras.Model:
    """images -> mean of the L2-normalised features of the image and of its mirror image (frozen base)."""
    import keras

    from recognize_me.me.layers import HorizontalFlip

    outputs = [keras.layers.UnitNormalization(name=f"l2_{i}")(t) for i, t in
               enumerate(named_feature_outputs(base, features))]
    single = keras.Model(base.inputs, outputs[0] if len(outputs) == 1 else
                         keras.layers.Concatenate(name="features_concat")(outputs), name=FEATURES_NAME)
    single.trainable = False
    inputs = keras.Input(shape=(*image_size, 3), name="me_image")
    both = [single(inputs, training=False), single(HorizontalFlip(name="mirror")(inputs), training=False)]
    return keras.Model(inputs, keras.layers.Average(name="flip_average")(both), name="me_features")


def linear_classifier(extractor: keras.Model, coef: np.ndarray, intercept: float) -> keras.Model:
    """``extractor`` + Dense(1, sigmoid) holding a fitted logistic regression's weights."""
    import keras

    dense = keras.layers.Dense(1, activation="sigmoid", name="is_me")
    outputs = dense(extractor.outputs[0])
    dense.set_weights([np.asarray(coef, np.float32).reshape(-1, 1), np.array([intercept], np.float32)])
    return keras.Model(extractor.inputs, outputs, name="is_me_classifier")


def set_base_trainable(features: keras.Model, fraction: float) -> list[str]:
    """Freeze ``features`` except the top ``fraction`` of :func:`flat_layers` (rounded up);
    BatchNormalization layers, also those inside custom layers, always stay frozen. Returns the names
    of the layers that have trainable weights afterwards."""
    import keras

    features.trainable = True
    layers = flat_layers(features)
    n_top = math.ceil(len(layers) * fraction) if fraction > 0 else 0
    unfrozen = []
    for i, layer in enumerate(layers):
        layer.trainable = i >= len(layers) - n_top
        for sub in layer._flatten_layers(include_self=True, recursive=True):
            if isinstance(sub, keras.layers.BatchNormalization):
                sub.trainable = False
        if layer.trainable and layer.trainable_weights:
            unfrozen.append(layer.name)
    return unfrozen
