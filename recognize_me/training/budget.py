"""How many epochs one training runs: an upper bound until a time budget has measured the first epoch.

Shared, mutable state of one training process (one model): the time-budget callback writes it after the
first epoch; the learning-rate schedule reads it so that a cosine decay ends where training ends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpochPlan:
    max_epochs: int
    budget_s: float | None = None
    planned_epochs: int | None = None  # set once the first epoch's time is known (None: no budget yet)
    stopped_by_budget: bool = False

    @property
    def epochs(self) -> int:
        """The number of epochs the schedule should plan for right now."""
        return self.planned_epochs if self.planned_epochs is not None else self.max_epochs
