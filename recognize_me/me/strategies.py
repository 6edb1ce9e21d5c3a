"""How each "is this me?" strategy fits (named by its catalog entry's ``trainer``).

Every trainer takes ``(job, data, weights, on_epoch)``: the ``TransferJob``, the photo splits (``split ->
(crop paths, 0/1 labels (n, 1), rows)``), the class weights of the train split and an optional per-epoch
hook; it returns a :class:`Fitted`, whose ``score`` gives a split's "me" scores. ``train_transfer`` does
the rest (timing, evaluation, outputs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recognize_me.me.job import TransferHook, TransferJob
from recognize_me.me.logistic import fit_logistic_pooled
from recognize_me.me.surgery import (
    build_transfer_model,
    feature_extractor,
    flip_averaged_extractor,
    linear_classifier,
    load_base,
    set_base_trainable,
)
from recognize_me.training.scaffold import numbered_history, phase_epochs

if TYPE_CHECKING:
    import keras

FINE_TUNE_FRACTION = 1 / 3
FINE_TUNE_LR_FACTOR = 0.1


@dataclass
class Fitted:
    score: Callable[[str], np.ndarray]  # split name -> float64 "me" scores of its photos
    model: keras.Model | None = None  # the servable Keras model (None: nothing to save or promote)
    histories: list[pd.DataFrame] = field(default_factory=list)  # one per Keras training phase
    unfrozen: list[str] = field(default_factory=list)  # base layers trained in the fine-tuning phase
    extra: dict[str, Any] = field(default_factory=dict)  # strategy-specific metrics.json entries
    #: (0/1 labels, held-out scores) the threshold is chosen on; None: the validation split's scores
    selection: tuple[np.ndarray, np.ndarray] | None = None


def input_settings(job: TransferJob) -> dict[str, Any]:
    """``make_dataset`` keywords: the base's input size and crop, the job's batch size."""
    return dict(image_size=tuple(job.image_size), crop=job.crop, batch_size=job.batch_size)


def keras_scores(model: keras.Model, data: dict, common: dict[str, Any]) -> Callable[[str], np.ndarray]:
    from recognize_me.data.dataset import make_dataset

    def score(split: str) -> np.ndarray:
        paths, y, _ = data[split]
        return model.predict(make_dataset(paths, y, **common), verbose=0).reshape(-1).astype(np.float64)

    return score


def fit_feature_extraction(job: TransferJob, data: dict, weights: dict[int, float],
                           on_epoch: TransferHook | None = None) -> Fitted:
    """Frozen flip-averaged L2 features -> logistic regression -> one Keras model."""
    from recognize_me.data.dataset import make_dataset

    common = input_settings(job)
    extractor = flip_averaged_extractor(load_base(job.base_model_path, job.image_size), job.image_size,
                                        job.features)

    def embed(split: str) -> np.ndarray:
        paths, y, _ = data[split]
        return extractor.predict(make_dataset(paths, y, **common), verbose=0) if paths else np.zeros((0, 1))

    fit = fit_logistic_pooled(embed("train"), data["train"][1], content_groups(data, "train"), embed("val"),
                              data["val"][1], content_groups(data, "val"), job.seed)
    model = linear_classifier(extractor, fit.model.coef_[0], float(fit.model.intercept_[0]))
    return Fitted(score=keras_scores(model, data, common), model=model, selection=fit.selection,
                  extra={**fit.extra(), "feature_dim": int(extractor.outputs[0].shape[-1]),
                         "features": job.features})


def content_groups(data: dict, split: str) -> list[str]:
    """The photo content hash of each row of ``split`` (a photo's faces share it)."""
    return data[split][2]["sha256"].astype(str).tolist()


def fit_fine_tuning(job: TransferJob, data: dict, weights: dict[int, float],
                    on_epoch: TransferHook | None = None) -> Fitted:
    """A head on the frozen base for half the epochs, then the base's top third unfrozen at LR/10."""
    return _fit_head(job, data, weights, on_epoch, scratch=False, phases=phase_epochs(job.epochs, True))


def fit_from_scratch(job: TransferJob, data: dict, weights: dict[int, float],
                     on_epoch: TransferHook | None = None) -> Fitted:
    """The same architecture, freshly initialised, every layer trained for all the epochs."""
    return _fit_head(job, data, weights, on_epoch, scratch=True, phases=[job.epochs])


def fit_reference_dlib(job: TransferJob, data: dict, weights: dict[int, float],
                       on_epoch: TransferHook | None = None) -> Fitted:
    """dlib embeddings -> the same logistic regression; no Keras model."""
    from recognize_me.me.reference import fit_reference

    score, extra, selection = fit_reference(data, job.seed, content_groups(data, "train"),
                                            content_groups(data, "val"))
    return Fitted(score=score, extra=extra, selection=selection)


def _fit_head(job: TransferJob, data: dict, weights: dict[int, float], on_epoch: TransferHook | None,
              scratch: bool, phases: list[int]) -> Fitted:
    """A Dropout + sigmoid head on the base's pooled features, trained by Keras phase by phase (phase 2
    unfreezes the base's top at a lower rate)."""
    import keras

    from recognize_me.data.dataset import make_dataset

    common = input_settings(job)
    base = load_base(job.base_model_path, job.image_size)
    features = feature_extractor(keras.models.clone_model(base) if scratch else base)
    features.trainable = scratch
    model = build_transfer_model(features, job.image_size, job.seed)
    _compile(model, job.learning_rate)
    train_ds = make_dataset(data["train"][0], data["train"][1], shuffle=True, augment_flip=True,
                            seed=job.seed, **common)
    val_ds = make_dataset(data["val"][0], data["val"][1], **common) if data["val"][0] else None
    fitted = Fitted(score=keras_scores(model, data, common), model=model)
    for phase, epochs in enumerate(phases, start=1):
        if phase == 2:
            fitted.unfrozen = set_base_trainable(features, FINE_TUNE_FRACTION)
            _compile(model, job.learning_rate * FINE_TUNE_LR_FACTOR)
        offset = sum(phases[:phase - 1])
        fitted.histories.append(_fit_phase(model, train_ds, val_ds, epochs, weights, offset, sum(phases),
                                           job.strategy, on_epoch, phase))
    return fitted


def _fit_phase(model: keras.Model, train_ds: Any, val_ds: Any, epochs: int, weights: dict[int, float],
               offset: int, total: int, name: str, on_epoch: TransferHook | None, phase: int) -> pd.DataFrame:
    """One ``fit`` call; its history with the epochs numbered from ``offset + 1``."""
    from recognize_me.training.callbacks import EpochReporter

    callbacks = [EpochReporter(name, total, on_epoch, offset=offset)] if on_epoch else []
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights, shuffle=False,
                        verbose=0, callbacks=callbacks)  # the dataset shuffles itself (seeded)
    return numbered_history(history.history, offset, phase)


def _compile(model: keras.Model, learning_rate: float) -> None:
    from recognize_me.models.losses import compile_multilabel

    compile_multilabel(model, learning_rate)
