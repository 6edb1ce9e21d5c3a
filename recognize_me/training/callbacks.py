"""Keras callbacks used by training: epoch reporting to a caller's hook, fault injection for tests, and
what makes a killed run resume exactly (epoch-derived seeds, atomic backups)."""

from __future__ import annotations

import os
from typing import Any

import keras


class EpochReporter(keras.callbacks.Callback):
    """Calls ``hook(model_name, epoch, epochs, logs)`` after every epoch (the Prefect shell logs it).

    ``epochs``: the total, or an ``EpochPlan`` whose current ``epochs`` is reported (a time budget may
    change it after the first epoch)."""

    def __init__(self, model_name: str, epochs: Any, hook: Any, offset: int = 0) -> None:
        super().__init__()
        self.model_name, self.epochs, self.hook, self.offset = model_name, epochs, hook, offset

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        lr = self.model.optimizer.learning_rate
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(lr)))
        total = int(getattr(self.epochs, "epochs", self.epochs))
        self.hook(self.model_name, self.offset + epoch + 1, max(total, self.offset + epoch + 1), logs)


class FaultInjector(keras.callbacks.Callback):
    """Testing only: the process exits hard (as if OOM-killed) when the given epoch (0-based) begins."""

    def __init__(self, exit_epoch: int) -> None:
        super().__init__()
        self.exit_epoch = exit_epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.exit_epoch:
            os._exit(137)


class EpochSeeds(keras.callbacks.Callback):
    """Make every epoch's randomness a function of the epoch number, so a resumed run repeats it.

    Before each epoch: sets ``epoch_var`` (read by ``dataset.make_dataset(epoch=...)`` for the shuffle
    order and flips) to ``offset + epoch``, and moves every seed generator of the model (Dropout) to
    (its seed, ``(offset + epoch) * 2**24``). Keras' ``BackupAndRestore`` checkpoints weights and
    optimizer but neither the tf.data seed stream nor the seed generators' counters.
    """

    def __init__(self, epoch_var: Any, offset: int = 0) -> None:
        super().__init__()
        self.epoch_var, self.offset = epoch_var, offset

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        import numpy as np

        step = self.offset + epoch
        self.epoch_var.assign(step)
        for v in self.model.variables:
            if v.name == "seed_generator_state":
                seed = int(keras.ops.convert_to_numpy(v)[0])
                v.assign(np.array([seed, step * 2**24], dtype="int64"))


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose backup files are replaced atomically (written beside, then renamed).

    Keras writes ``latest.weights.h5`` and ``training_metadata.json`` in place: a process killed while
    writing leaves a truncated file that makes every rerun fail. Here a kill leaves the previous backup.
    The checkpoint is kept when training ends (``delete_checkpoint=False``): the caller removes it once
    the finished model is saved, so a kill in a later phase does not redo an earlier one.
    """

    def __init__(self, backup_dir: str) -> None:
        super().__init__(backup_dir, delete_checkpoint=False)

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Keras never resets the epoch a restore sets on the model: without this, a second fit() (the
        # fine-tuning phase) would start at the epoch restored for the first phase and skip epochs.
        self.model._initial_epoch = None
        super().on_train_begin(logs)

    def _save_model(self) -> None:
        import json

        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_weights = os.path.join(self.backup_dir, ".tmp-latest.weights.h5")
        tmp_meta = os.path.join(self.backup_dir, ".tmp-training_metadata.json")
        try:
            self.model.save_weights(filepath=tmp_weights, overwrite=True)
            with open(tmp_meta, "w", encoding="utf-8") as f:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_weights, self._weights_path)
            os.replace(tmp_meta, self._training_metadata_path)
        finally:
            for tmp in (tmp_weights, tmp_meta):
                if os.path.exists(tmp):
                    os.unlink(tmp)


class TimeBudget(keras.callbacks.Callback):
    """Fit the training into ``plan.budget_s`` seconds (counted from ``started``, a ``time.monotonic()``)
    and keep the best weights by ``monitor``.

    After every epoch it re-plans from the measured epoch times: ``plan.planned_epochs`` becomes the
    largest epoch count (at most ``plan.max_epochs``) whose remaining epochs plus ``reserve_s`` (the
    evaluation after training, measured as ``eval_factor`` x this epoch's validation time) still end within
    the budget. Training stops there; ``plan.stopped_by_budget`` says the budget, not ``max_epochs``, ended
    it. The first epoch (graph tracing, reading the input) is the estimate until a later one replaces it.
    The best epoch's weights (lowest ``monitor``) are restored when each ``fit`` ends; use the same instance
    for every phase of a model, so the best over all phases wins. ``first_of_two``: this fit is the first
    phase of a two-phase model and ends at half the plan.
    """

    def __init__(self, plan: Any, started: float, *, offset: int = 0, eval_factor: float = 2.0,
                 monitor: str = "val_loss", clock: Any = None) -> None:
        super().__init__()
        import time

        self.plan, self.started, self.offset, self.eval_factor, self.monitor = (
            plan, started, offset, eval_factor, monitor)
        self.clock = clock or time.monotonic
        self.epoch_s: list[float] = []
        self.val_s = 0.0
        self.first_of_two = False
        self.best: float | None = None
        self.best_weights: dict[str, Any] | None = None
        self._epoch_start = self._val_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self.clock()

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._val_start = self.clock()

    def on_test_end(self, logs: dict | None = None) -> None:
        self.val_s = self.clock() - self._val_start

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = self.clock()
        self.epoch_s.append(now - self._epoch_start)
        value = (logs or {}).get(self.monitor)
        if value is not None and (self.best is None or float(value) < self.best):
            self.best = float(value)
            self.best_weights = {v.path: keras.ops.convert_to_numpy(v) for v in self.model.weights}
        done = self.offset + epoch + 1
        if self.plan.budget_s is not None:
            self.plan.planned_epochs = self.plan_epochs(done, now)
        if done >= self.plan.epochs:
            self.model.stop_training = True
            self.plan.stopped_by_budget = self.plan.budget_s is not None and self.plan.epochs < self.plan.max_epochs
        elif self.first_of_two and done >= max(1, self.plan.epochs // 2):
            self.model.stop_training = True

    def plan_epochs(self, done: int, now: float) -> int:
        """Epochs (done included) that fit in what is left of the budget after the evaluation's reserve."""
        later = self.epoch_s[1:]
        per_epoch = max(later[-2:]) if later else self.epoch_s[0]
        left = self.plan.budget_s - (now - self.started) - self.eval_factor * self.val_s
        more = int(max(0.0, left) // max(per_epoch, 1e-6))
        return max(done, min(self.plan.max_epochs, done + more))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            for v in self.model.weights:
                if v.path in self.best_weights:
                    v.assign(self.best_weights[v.path])
