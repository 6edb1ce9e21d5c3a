"""Loss and compile helpers for multi-label (one sigmoid per attribute) models.

``WeightedBinaryCrossentropy`` up-weights the positive term of each attribute, so rare attributes
(e.g. ``Bald``) are not learnt as "always absent". It is a registered serialisable class, so a
model compiled with it loads with ``keras.models.load_model(path, safe_mode=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

_EPSILON = 1e-7


def accuracy_metric() -> keras.metrics.Metric:
    """The metric every model is compiled with (element-wise accuracy at 0.5, logged as ``accuracy``)."""
    return keras.metrics.BinaryAccuracy(name="accuracy")


#: Names (substrings) of variables AdamW does not decay: batch-norm scales/offsets and biases.
NO_DECAY = ("gamma", "beta", "bias")


def make_optimizer(learning_rate: float, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam when ``weight_decay`` is 0, else AdamW (decoupled decay, not applied to BN and biases)."""
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if weight_decay == 0:
        return keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    return optimizer


def compile_multilabel(model: keras.Model, learning_rate: float, loss: Any = None,
                       weight_decay: float = 0.0) -> keras.Model:
    """Compile ``model`` in place with ``make_optimizer(learning_rate, weight_decay)``, ``loss`` (default
    binary cross-entropy) and the binary ``accuracy`` metric; returns the model."""
    model.compile(
        optimizer=make_optimizer(learning_rate, weight_decay),
        loss=loss if loss is not None else keras.losses.BinaryCrossentropy(),
        metrics=[accuracy_metric()],
    )
    return model


@keras.saving.register_keras_serializable(package="recognize_me")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on probabilities with a per-attribute weight on the positive term.

    ``loss = -mean_k( w_k * y_k * log(p_k) + (1 - y_k) * log(1 - p_k) )``

    Args:
        pos_weight: one weight per output column (attribute); 1.0 everywhere equals plain BCE.
    """

    def __init__(self, pos_weight: Sequence[float], name: str = "weighted_binary_crossentropy",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        weights = [float(w) for w in np.asarray(pos_weight, dtype="float64").reshape(-1)]
        if not weights:
            raise ValueError("pos_weight must hold at least one weight")
        if any(not np.isfinite(w) or w <= 0 for w in weights):
            raise ValueError(f"pos_weight must be finite and > 0, got {weights}")
        self.pos_weight = weights

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        weight = ops.convert_to_tensor(self.pos_weight, dtype=y_pred.dtype)
        p = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
        per_element = -(weight * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
        return ops.mean(per_element, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"pos_weight": list(self.pos_weight)})
        return config


def positive_weights(labels: np.ndarray, min_weight: float = 1.0, max_weight: float = 10.0) -> np.ndarray:
    """Per-column ``n_negative / n_positive`` of binary ``labels`` (N, K), clipped to
    [``min_weight``, ``max_weight``]. Values > 0 count as positive (so 0/1 and -1/1 both work);
    a column with no positives gets ``max_weight``."""
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty (N, K) array, got shape {y.shape}")
    pos = (y > 0).sum(axis=0).astype("float64")
    neg = y.shape[0] - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pos > 0, neg / np.maximum(pos, 1.0), max_weight)
    return np.clip(ratio, min_weight, max_weight)


def with_positive_weights(model: keras.Model, pos_weight: Sequence[float], learning_rate: float,
                          weight_decay: float = 0.0) -> keras.Model:
    """Recompile ``model`` (in place; also returned) with ``WeightedBinaryCrossentropy(pos_weight)``,
    a fresh optimizer (``make_optimizer``) and the binary ``accuracy`` metric."""
    weights = [float(w) for w in np.asarray(pos_weight, dtype="float64").reshape(-1)]
    n_outputs = model.outputs[0].shape[-1] if model.outputs else None
    if n_outputs is not None and len(weights) != n_outputs:
        raise ValueError(f"pos_weight has {len(weights)} values but the model has {n_outputs} outputs")
    return compile_multilabel(model, learning_rate, loss=WeightedBinaryCrossentropy(weights),
                              weight_decay=weight_decay)
