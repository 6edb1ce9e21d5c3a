"""Per-model training recipes: the Keras callbacks a model's ``fit`` gets (named by its catalog entry's
``callbacks_factory``). Each takes ``(options, plan, offset)``; ``offset`` is the number of epochs already
run in an earlier phase of the same model."""

from __future__ import annotations

from dataclasses import replace

import keras

from recognize_me.models.options import BuildOptions
from recognize_me.training.budget import EpochPlan
from recognize_me.training.schedule import WarmupCosineSchedule


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
