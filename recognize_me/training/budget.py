"""How long one training runs, in optimizer steps: an upper bound until a time budget has measured it.

Keras epochs here are *sub-epochs*: ``sub_epoch_steps`` (S) batches of the training stream, at most one real
epoch (``steps_per_epoch``, E: one pass over the train split). Without a time budget S = E and a sub-epoch is
a real epoch. With one, S is sized so a sub-epoch takes a fraction of the model's share of the budget
(``sub_epoch_size``), so the budget, the learning-rate schedule, early stopping and the backups work at that
granularity however large the data is. ``max_epochs`` (the config's ``epochs``) stays the upper bound in real
epochs: training never runs more than ``max_epochs * E`` steps.

Shared, mutable state of one training process (one model): the time budget (``callbacks.TimeBudget``)
sets ``planned_steps``; the learning-rate schedule reads ``steps`` so that its cosine ends where training
ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A sub-epoch takes at most this fraction of a budgeted model's share (the budget re-plans after each one).
SUB_EPOCH_SHARE = 1 / 8
#: Never fewer batches per sub-epoch than this (unless an epoch is shorter): each one validates and backs up.
MIN_SUB_EPOCH_STEPS = 20


@dataclass
class EpochPlan:
    """Training length of one model in optimizer steps (see the module docstring).

    ``steps_per_epoch`` / ``sub_epoch_steps`` left ``None`` are bound to a ``fit``'s ``params["steps"]`` on
    first use (``bind``): then one Keras epoch is one real epoch.
    """

    max_epochs: int
    budget_s: float | None = None
    steps_per_epoch: int | None = None  # E: batches per pass over the train split
    sub_epoch_steps: int | None = None  # S: batches per Keras epoch, 1 <= S <= E
    planned_steps: int | None = None  # set by the time budget (None: max_steps)
    stopped_by_budget: bool = False
    steps_done: int = 0  # optimizer steps completed so far (all phases), kept by TimeBudget

    def bind(self, keras_steps: int) -> None:
        """Fill E and S from a fit's steps per Keras epoch when they were not given."""
        if self.sub_epoch_steps is None:
            self.sub_epoch_steps = int(keras_steps)
        if self.steps_per_epoch is None:
            self.steps_per_epoch = self.sub_epoch_steps

    @property
    def max_steps(self) -> int:
        return self.max_epochs * self._e()

    @property
    def steps(self) -> int:
        """The planned last step (exclusive): where the schedule ends and training stops."""
        planned = self.max_steps if self.planned_steps is None else self.planned_steps
        return max(1, min(planned, self.max_steps))

    @property
    def sub_epochs(self) -> int:
        """Keras epochs the plan needs (the last may be cut short at ``steps``)."""
        return math.ceil(self.steps / self._s())

    @property
    def max_sub_epochs(self) -> int:
        return math.ceil(self.max_steps / self._s())

    @property
    def epochs(self) -> float:
        """The plan in real epochs (passes over the train split)."""
        return self.steps / self._e()

    def sub_epochs_for(self, real_epochs: float) -> int:
        """A count given in real epochs (e.g. early stopping's patience) in sub-epochs, at least as many."""
        return max(int(math.ceil(real_epochs)), math.ceil(real_epochs * self._e() / self._s()))

    def _e(self) -> int:
        if self.steps_per_epoch is None:
            raise ValueError("EpochPlan: steps_per_epoch is unknown until bind() is called")
        return self.steps_per_epoch

    def _s(self) -> int:
        if self.sub_epoch_steps is None:
            raise ValueError("EpochPlan: sub_epoch_steps is unknown until bind() is called")
        return self.sub_epoch_steps


def sub_epoch_size(steps_per_epoch: int, step_s: float, budget_s: float | None,
                   share: float = SUB_EPOCH_SHARE, min_steps: int = MIN_SUB_EPOCH_STEPS) -> int:
    """Batches per sub-epoch: about ``share`` of ``budget_s`` at ``step_s`` seconds per step, between
    ``min_steps`` and one real epoch; a whole epoch without a budget."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if budget_s is None:
        return steps_per_epoch
    steps = int(budget_s * share / max(step_s, 1e-9))
    return max(1, min(steps_per_epoch, max(min_steps, steps)))


def steps_that_fit(left_s: float, step_s: float, val_s: float, sub_epoch_steps: int) -> int:
    """Training steps that fit in ``left_s`` seconds when every started sub-epoch of ``sub_epoch_steps``
    steps ends with a validation of ``val_s`` seconds."""
    if left_s <= 0:
        return 0
    step_s = max(step_s, 1e-9)
    full_cost = sub_epoch_steps * step_s + val_s
    full = int(left_s // full_cost)
    rest = left_s - full * full_cost - val_s
    partial = min(sub_epoch_steps - 1, int(max(0.0, rest) // step_s))
    return full * sub_epoch_steps + partial


def budget_left(budget_s: float | None, deadline: float | None, now: float) -> float | None:
    """The seconds a job may use from ``now``: its ``budget_s``, or less when its ``deadline`` (a
    ``time.time()`` by which its worker's stage share ends) comes first (a late start: a slow cluster start,
    an earlier job that overran)."""
    if budget_s is None or deadline is None:
        return budget_s
    return max(0.0, min(budget_s, deadline - now))


def first_plan(plan: EpochPlan, left_s: float, step_s: float, batches_per_validation: float,
               batches_to_evaluate: float) -> float:
    """The plan before any sub-epoch has run, from a measured ``step_s``: a validation or evaluation batch is
    a forward pass, counted as a third of a training step. Sets ``plan.planned_steps``; returns the
    estimated seconds of one validation."""
    val_s = step_s * batches_per_validation / 3
    eval_s = step_s * batches_to_evaluate / 3
    plan.planned_steps = steps_that_fit(left_s - eval_s, step_s, val_s, plan.sub_epoch_steps)
    return val_s
