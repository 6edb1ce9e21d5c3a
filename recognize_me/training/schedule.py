"""Learning-rate schedule: linear warm-up, then cosine decay to the planned last optimizer step.

The planned end is read from an ``EpochPlan`` (``plan.steps``) at every batch, so when the time budget
changes the plan after a sub-epoch, the cosine re-aims at the new end from the current step on and reaches
its floor where training stops. The rate is a pure function of (sub-epoch, batch, plan), so a run resumed
from a backup sets exactly the rates an uninterrupted run sets.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from recognize_me.training.budget import EpochPlan

#: The warm-up never takes more than this fraction of the planned steps (a budget of about one epoch
#: would otherwise spend it all warming up).
MAX_WARMUP_FRACTION = 0.25


def warmup_cosine(step: int, total_steps: int, base_lr: float, warmup_steps: int,
                  min_fraction: float = 0.0) -> float:
    """The rate at ``step`` (0-based): ``base_lr * (step + 1) / warmup_steps`` during warm-up, then a half
    cosine from ``base_lr`` down to ``base_lr * min_fraction`` at ``total_steps``; flat after the end."""
    if base_lr <= 0:
        raise ValueError(f"base_lr must be > 0, got {base_lr}")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")
    warmup_steps = max(0, int(warmup_steps))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, int(total_steps) - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    floor = base_lr * min_fraction
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every batch (see ``warmup_cosine``).

    Args:
        plan: the process's ``EpochPlan``; ``plan.steps`` is the planned last step of the whole training
            (all phases), re-read every batch.
        base_lr: peak rate, reached at the end of warm-up.
        warmup_epochs: warm-up length in real epochs (fractions allowed; converted to steps), at most
            ``MAX_WARMUP_FRACTION`` of the planned steps.
        min_fraction: final rate as a fraction of ``base_lr``.
        offset: Keras epochs (sub-epochs) already run before this ``fit`` (a second training phase), so the
            schedule continues instead of restarting.
    """

    def __init__(self, plan: EpochPlan, base_lr: float, warmup_epochs: float = 1.0, min_fraction: float = 0.01,
                 offset: int = 0) -> None:
        super().__init__()
        self.plan, self.base_lr, self.warmup_epochs = plan, float(base_lr), float(warmup_epochs)
        self.min_fraction, self.offset = float(min_fraction), int(offset)
        self._epoch = 0

    def _keras_steps(self) -> int:
        steps = (self.params or {}).get("steps")
        if not steps:
            raise ValueError("WarmupCosineSchedule needs a dataset of known length (params['steps'] is unset)")
        return int(steps)

    def rate(self, epoch: int, batch: int) -> float:
        """The rate for ``batch`` (0-based) of Keras epoch ``epoch`` (0-based, counted within this ``fit``)."""
        self.plan.bind(self._keras_steps())
        step = (self.offset + epoch) * self.plan.sub_epoch_steps + batch
        total = self.plan.steps
        warmup = min(round(self.warmup_epochs * self.plan.steps_per_epoch), round(MAX_WARMUP_FRACTION * total))
        return warmup_cosine(step, total, self.base_lr, warmup, self.min_fraction)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate.assign(self.rate(self._epoch, batch))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def get_config(self) -> dict[str, Any]:  # for logging what ran
        return {"base_lr": self.base_lr, "warmup_epochs": self.warmup_epochs,
                "min_fraction": self.min_fraction, "offset": self.offset}
