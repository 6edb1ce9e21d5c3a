"""Identity supervision for a base model: an L2-normalised embedding trained with a CosFace margin softmax.

The saved model (``model.keras``) maps an image to the 40 attribute sigmoids like every other rung; its
layer ``"embedding"`` (unit-length vectors) is what transfer to "is this me?" uses. For training only, a
second output scores the embedding against one learnt unit vector per train identity
(``CosineClassifier``); ``CosFaceLoss`` subtracts the margin from the true identity's cosine and scales by
``s`` before the softmax (Wang et al., CosFace, CVPR 2018). Identity label ``-1`` (validation and test
images: the official split is identity-disjoint, so their people are unseen) contributes no loss.

All classes are registered, so the models load with ``keras.models.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from recognize_me.models.residual import BN_MOMENTUM

EMBEDDING_LAYER = "embedding"
IDENTITY_OUTPUT = "identity"
ATTRIBUTES_OUTPUT = "attributes"
UNKNOWN_IDENTITY = -1


@keras.saving.register_keras_serializable(package="recognize_me")
class CosineClassifier(keras.layers.Layer):
    """``cos(embedding, w_c)`` for every class ``c``: inputs and class vectors are L2-normalised.

    Kept in float32 under mixed precision (the margin and the scale need the precision).
    """

    def __init__(self, n_classes: int, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.n_classes = int(n_classes)
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), self.n_classes), name="kernel",
                                      initializer="glorot_uniform")
        self.built = True

    def call(self, inputs: Any) -> Any:
        x = ops.normalize(ops.cast(inputs, self.compute_dtype), axis=-1)
        w = ops.normalize(self.kernel, axis=0)
        return ops.matmul(x, w)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], self.n_classes)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_classes": self.n_classes}


@keras.saving.register_keras_serializable(package="recognize_me")
class CosFaceLoss(keras.losses.Loss):
    """Large-margin cosine loss on ``CosineClassifier`` outputs.

    ``loss = CE(softmax(s * (cos - m * onehot(y))), y)`` per example; examples with ``y < 0`` (unknown
    identity) give 0. ``y_true`` holds integer identity indices (any numeric dtype).
    """

    def __init__(self, scale: float = 30.0, margin: float = 0.35, name: str = "cosface_loss",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if scale <= 0 or margin < 0:
            raise ValueError(f"scale must be > 0 and margin >= 0, got scale={scale}, margin={margin}")
        self.scale, self.margin = float(scale), float(margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        cos = ops.cast(y_pred, "float32")
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        known = ops.cast(labels >= 0, "float32")
        onehot = ops.one_hot(ops.maximum(labels, 0), ops.shape(cos)[-1], dtype="float32")
        logits = self.scale * (cos - self.margin * onehot)
        ce = keras.losses.categorical_crossentropy(onehot, logits, from_logits=True)
        return ce * known

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "margin": self.margin}


def embedding_head(features: keras.KerasTensor, dim: int = 128) -> keras.KerasTensor:
    """Dense (no bias) + BN + unit normalisation; the last layer is named ``"embedding"``."""
    x = keras.layers.Dense(dim, use_bias=False, name="embedding_dense")(features)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="embedding_bn")(x)
    return keras.layers.UnitNormalization(axis=-1, name=EMBEDDING_LAYER)(x)


def identity_training_model(model: keras.Model, n_identities: int, attribute_loss: Any, learning_rate: float,
                            identity_weight: float = 1.0, scale: float = 30.0, margin: float = 0.35) -> keras.Model:
    """A compiled two-output model sharing ``model``'s layers: ``{"attributes": sigmoids, "identity":
    cosines}``. Train it; save/evaluate ``model`` (its weights are the trained ones)."""
    if EMBEDDING_LAYER not in [layer.name for layer in model.layers]:
        raise ValueError(f"model {model.name!r} has no layer named {EMBEDDING_LAYER!r}")
    cosines = CosineClassifier(n_identities, name=IDENTITY_OUTPUT)(model.get_layer(EMBEDDING_LAYER).output)
    train_model = keras.Model(model.inputs, {ATTRIBUTES_OUTPUT: model.outputs[0], IDENTITY_OUTPUT: cosines},
                              name=f"{model.name}_training")
    optimizer = type(model.optimizer).from_config(model.optimizer.get_config()) if model.optimizer else \
        keras.optimizers.Adam(learning_rate)
    train_model.compile(
        optimizer=optimizer,
        loss={ATTRIBUTES_OUTPUT: attribute_loss, IDENTITY_OUTPUT: CosFaceLoss(scale, margin)},
        loss_weights={ATTRIBUTES_OUTPUT: 1.0, IDENTITY_OUTPUT: float(identity_weight)},
        metrics={ATTRIBUTES_OUTPUT: [keras.metrics.BinaryAccuracy(name="accuracy")]},
    )
    return train_model


def identity_indices(identities: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """Map raw identity numbers to 0..K-1 (``K`` returned); missing (NaN/None/negative) -> -1.
    ``None`` gives ``n`` unknowns and ``K = 0``."""
    if identities is None:
        return np.full(n, UNKNOWN_IDENTITY, dtype="int64"), 0
    raw = np.asarray(identities, dtype="float64").reshape(-1)
    known = np.isfinite(raw) & (raw >= 0)
    out = np.full(raw.shape[0], UNKNOWN_IDENTITY, dtype="int64")
    uniq, inv = np.unique(raw[known].astype("int64"), return_inverse=True)
    out[known] = inv
    return out, int(uniq.size)
