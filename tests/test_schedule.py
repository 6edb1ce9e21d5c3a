"""Warm-up + cosine learning-rate schedule driven by the EpochPlan."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from recognize_me.training.budget import EpochPlan
from recognize_me.training.schedule import WarmupCosineSchedule, warmup_cosine


def test_warmup_is_linear_then_cosine_reaches_floor_at_end():
    base, total, warm = 1e-2, 100, 10
    rates = [warmup_cosine(s, total, base, warm, min_fraction=0.0) for s in range(total + 5)]
    assert rates[0] == pytest.approx(base / warm)
    assert rates[warm - 1] == pytest.approx(base)  # peak at the end of warm-up
    assert rates[warm] == pytest.approx(base)
    assert np.all(np.diff(rates[warm:total]) < 0)  # strictly decreasing after warm-up
    assert rates[(warm + total) // 2] == pytest.approx(base / 2)  # half-way down the cosine
    assert rates[total] == pytest.approx(0.0, abs=1e-12) and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(total, total, base, warm, min_fraction=0.1) == pytest.approx(base * 0.1)


def test_invalid_arguments_rejected():
    with pytest.raises(ValueError, match="base_lr"):
        warmup_cosine(0, 10, 0.0, 1)
    with pytest.raises(ValueError, match="min_fraction"):
        warmup_cosine(0, 10, 1.0, 1, min_fraction=2.0)


class _Recorder(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


class _ChangePlan(keras.callbacks.Callback):
    """Stands in for the time budget: after the first epoch it plans ``epochs`` epochs in total."""

    def __init__(self, plan: EpochPlan, epochs: int) -> None:
        super().__init__()
        self.plan, self.epochs = plan, epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.plan.planned_steps = self.epochs * self.params["steps"]


def _fit(plan: EpochPlan, epochs: int, extra: list) -> list[float]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    recorder = _Recorder()
    x, y = np.ones((40, 3), "float32"), np.zeros((40, 1), "float32")
    model.fit(x, y, batch_size=10, epochs=epochs, verbose=0,
              callbacks=[WarmupCosineSchedule(plan, 0.1, warmup_epochs=1, min_fraction=0.0), recorder, *extra])
    return recorder.rates


def test_callback_sets_rate_per_batch_and_ends_at_planned_epoch():
    rates = _fit(EpochPlan(max_epochs=4), 4, [])
    assert len(rates) == 16  # 4 steps per epoch
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # warm-up over the first epoch
    expected = [warmup_cosine(s, 16, 0.1, 4) for s in range(16)]
    assert rates == pytest.approx(expected)


def test_callback_follows_a_plan_changed_after_the_first_epoch():
    plan = EpochPlan(max_epochs=10)
    rates = _fit(plan, 3, [_ChangePlan(plan, 3)])
    assert plan.epochs == 3
    # first epoch aimed at 10 epochs; afterwards the cosine ends at epoch 3 (and the warm-up is capped at a
    # quarter of the 12 planned steps, so step 4 is already on the cosine)
    assert rates[4:] == pytest.approx([warmup_cosine(s, 12, 0.1, 3) for s in range(4, 12)])
    assert rates[-1] < 0.01  # last batch of the new plan is near the bottom, not 3/10 of the way


def test_offset_continues_the_schedule_of_an_earlier_phase():
    plan = EpochPlan(max_epochs=4)
    cb = WarmupCosineSchedule(plan, 0.1, warmup_epochs=1, offset=2)
    cb.set_params({"steps": 5})
    assert cb.rate(0, 0) == pytest.approx(warmup_cosine(10, 20, 0.1, 5, 0.01))
