"""Keras callbacks used by training: epoch and in-epoch progress reporting to a caller's hook, the step plan
and time budget, fault injection for tests, and what makes a killed run resume exactly (epoch-derived
seeds, atomic backups). A Keras epoch is a sub-epoch of ``EpochPlan.sub_epoch_steps`` batches
(``training.budget``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import keras


class EpochReporter(keras.callbacks.Callback):
    """Calls ``hook(model_name, epoch, epochs, logs)`` after every Keras epoch (the Prefect shell logs it).

    ``epochs``: the total, or an ``EpochPlan`` whose current ``sub_epochs`` is reported (a time budget may
    change it); when the plan's Keras epochs are shorter than a pass over the train split, the logs also
    carry ``epochs_done``, the real epochs done so far (whole-epoch plans are reported as plain epochs)."""

    def __init__(self, model_name: str, epochs: Any, hook: Any, offset: int = 0) -> None:
        super().__init__()
        self.model_name, self.epochs, self.hook, self.offset = model_name, epochs, hook, offset

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        lr = self.model.optimizer.learning_rate
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(lr)))
        if hasattr(self.epochs, "sub_epochs"):
            total = self.epochs.sub_epochs
            if (self.epochs.sub_epoch_steps or 0) < (self.epochs.steps_per_epoch or 0):  # sub-epochs: say so
                logs["epochs_done"] = round(self.epochs.steps_done / self.epochs.steps_per_epoch, 3)
        else:
            total = int(self.epochs)
        self.hook(self.model_name, self.offset + epoch + 1, max(total, self.offset + epoch + 1), logs)


@dataclass(frozen=True)
class Progress:
    """Where a training stands inside its plan (``StepProgress``)."""

    steps_done: int
    steps_planned: int
    images_done: int
    images_planned: int
    images_per_s: float
    eta_s: float
    epochs_done: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.steps_done / max(1, self.steps_planned))


class StepProgress(keras.callbacks.Callback):
    """Calls ``hook(model_name, Progress)`` at most every ``every_s`` seconds of training, between batches,
    so a long epoch is never silent: images done, images/s (wall, validation included) since this ``fit``
    began, and the time left until the plan's last step at that speed."""

    def __init__(self, model_name: str, plan: Any, n_train: int, batch_size: int, hook: Any, *, offset: int = 0,
                 every_s: float = 60.0, clock: Any = None) -> None:
        super().__init__()
        import time

        self.model_name, self.plan, self.n_train, self.batch_size, self.hook = (
            model_name, plan, int(n_train), int(batch_size), hook)
        self.offset, self.every_s, self.clock = offset, float(every_s), clock or time.monotonic
        self._epoch = 0
        self._t0 = self._last = 0.0
        self._images0: int | None = None

    def images_at(self, step: int) -> int:
        """Training images seen after ``step`` optimizer steps (each real epoch ends with a partial batch)."""
        e = self.plan.steps_per_epoch
        return (step // e) * self.n_train + min((step % e) * self.batch_size, self.n_train)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.plan.bind(self.params["steps"])
        self._t0 = self._last = self.clock()
        self._images0 = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        step = (self.offset + self._epoch) * self.plan.sub_epoch_steps + batch + 1
        if self._images0 is None:  # the images before this fit's first step: a resumed run's speed is its own
            self._images0 = self.images_at(step - 1)
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self.hook(self.model_name, self.progress(step, now))

    def progress(self, step: int, now: float) -> Progress:
        images = self.images_at(step)
        planned = self.images_at(self.plan.steps)
        rate = (images - (self._images0 or 0)) / max(now - self._t0, 1e-9)
        eta = (planned - images) / rate if rate > 0 else float("inf")
        return Progress(step, self.plan.steps, images, planned, rate, max(0.0, eta),
                        step / self.plan.steps_per_epoch)


class FaultInjector(keras.callbacks.Callback):
    """Testing only: the process exits hard (as if OOM-killed) when the given epoch (0-based) begins."""

    def __init__(self, exit_epoch: int) -> None:
        super().__init__()
        self.exit_epoch = exit_epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.exit_epoch:
            os._exit(137)


class EpochSeeds(keras.callbacks.Callback):
    """Make every (sub-)epoch's randomness a function of its number, so a resumed run repeats it.

    Before each Keras epoch: sets ``epoch_var`` to ``offset + epoch`` (``dataset.make_train_stream`` reads
    it when a fit's iteration starts: the sub-epoch the stream begins at; ``dataset.make_dataset(epoch=...)``
    reads it every epoch for the shuffle order and flips), and moves every seed generator of the model
    (Dropout) to (its seed, ``(offset + epoch) * 2**24``). Keras' ``BackupAndRestore`` checkpoints weights
    and optimizer but neither the input position nor the seed generators' counters.
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
    """Stop training at the plan's last step (``plan.steps``, mid sub-epoch when it falls there), fit the plan
    into ``plan.budget_s`` seconds (counted from ``started``, a ``time.monotonic()``) when there is a budget,
    and then keep the best weights by ``monitor``.

    After every sub-epoch it re-plans from measured times: the seconds per training step and per validation
    (each the slower of the last two sub-epochs'; the first, which traces the graph, only until a later one
    exists: this VM switches between two speeds). Without a budget it only ends training at ``plan.steps``
    (the last weights are kept, as a fixed-length training's are). ``plan.planned_steps`` becomes the most steps (at most ``plan.max_steps``) whose training,
    their sub-epochs' validations and ``reserve`` (the evaluation after training, ``eval_factor`` x one
    validation) still end within the budget; ``plan.stopped_by_budget`` says the budget, not ``max_epochs``,
    ended it. Between batches it also stops at once when the time left no longer covers one validation and
    the reserve (the machine slowed down since the last plan). ``val_s`` may be preset with an estimate
    until the first validation measures it. The best sub-epoch's weights (lowest ``monitor``) are restored when each ``fit`` ends; use the
    same instance for every phase of a model, so the best over all phases wins. ``first_of_two``: this fit
    is the first phase of a two-phase model and ends after half the plan's sub-epochs. ``offset``: sub-epochs
    run by earlier phases. ``plan.steps_done`` is kept up to date after every batch.
    """

    def __init__(self, plan: Any, started: float, *, offset: int = 0, eval_factor: float = 2.0,
                 monitor: str = "val_loss", clock: Any = None) -> None:
        super().__init__()
        import time

        self.plan, self.started, self.offset, self.eval_factor, self.monitor = (
            plan, started, offset, eval_factor, monitor)
        self.clock = clock or time.monotonic
        self.step_s: list[float] = []
        self.val_s = 0.0
        self._val_hist: list[float] = []
        self.first_of_two = False
        self.best: float | None = None
        self.best_weights: dict[str, Any] | None = None
        self._epoch = 0
        self._epoch_start = self._val_start = 0.0
        self._validated = self._ended = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.plan.bind(self.params["steps"])
        restored = getattr(self.model, "_initial_epoch", None) or 0  # set by a backup restored just before
        self.plan.steps_done = max(self.plan.steps_done,
                                   min(self.plan.max_steps, (self.offset + restored) * self.plan.sub_epoch_steps))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch, self._validated, self._ended = epoch, False, False
        self._epoch_start = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.plan.steps_done = (self.offset + self._epoch) * self.plan.sub_epoch_steps + batch + 1
        if self.plan.steps_done >= self.plan.steps:
            self.model.stop_training = self._ended = True  # ends this epoch after its validation, then the fit
        elif self.plan.budget_s is not None and self._out_of_time(batch + 1):
            # the machine slowed down since the last plan: stop here, not a sub-epoch too late
            self.plan.planned_steps = self.plan.steps_done
            self.model.stop_training = self._ended = True

    def _out_of_time(self, steps: int) -> bool:
        """Whether the time left no longer covers one validation and the evaluation's reserve, both scaled by
        how much slower this sub-epoch's steps are than the fastest measured (the VM's two speeds)."""
        now = self.clock()
        slowdown = 1.0
        if self.step_s and steps >= 10:
            slowdown = max(1.0, (now - self._epoch_start) / steps / max(min(self.step_s), 1e-9))
        reserve = (1 + self.eval_factor) * self.seconds_per_validation() * slowdown
        return now - self.started + reserve >= self.plan.budget_s

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._val_start = self.clock()

    def on_test_end(self, logs: dict | None = None) -> None:
        self.val_s, self._validated = self.clock() - self._val_start, True
        self._val_hist.append(self.val_s)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = self.clock()
        steps = self.plan.steps_done - (self.offset + epoch) * self.plan.sub_epoch_steps
        train_s = now - self._epoch_start - (self.val_s if self._validated else 0.0)
        self.step_s.append(max(train_s, 0.0) / max(steps, 1))
        value = (logs or {}).get(self.monitor) if self.plan.budget_s is not None else None
        if value is not None and (self.best is None or float(value) < self.best):
            self.best = float(value)
            self.best_weights = {v.path: keras.ops.convert_to_numpy(v) for v in self.model.weights}
        if self.plan.budget_s is not None and not self._ended:
            self.plan.planned_steps = self.plan_steps(now)
        if self.plan.steps_done >= self.plan.steps:
            self.model.stop_training = True
            self.plan.stopped_by_budget = self.plan.budget_s is not None and self.plan.steps < self.plan.max_steps
        elif self.first_of_two and self.offset + epoch + 1 >= max(1, self.plan.sub_epochs // 2):
            self.model.stop_training = True

    def seconds_per_step(self) -> float:
        return _recent(self.step_s)

    def seconds_per_validation(self) -> float:
        return _recent(self._val_hist) if self._val_hist else self.val_s

    def plan_steps(self, now: float) -> int:
        """The planned last step: steps done plus the steps that fit in what is left of the budget after the
        evaluation's reserve."""
        from recognize_me.training.budget import steps_that_fit

        val_s = self.seconds_per_validation()
        left = self.plan.budget_s - (now - self.started) - self.eval_factor * val_s
        more = steps_that_fit(left, self.seconds_per_step(), val_s, self.plan.sub_epoch_steps)
        done = self.plan.steps_done
        return max(done, min(self.plan.max_steps, done + more))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            for v in self.model.weights:
                if v.path in self.best_weights:
                    v.assign(self.best_weights[v.path])


def _recent(seconds: list[float]) -> float:
    """The slower of the last two measurements, the first (graph tracing) only while it is the only one."""
    later = seconds[1:]
    return max(later[-2:]) if later else seconds[0]


def measure_step_time(model: Any, batch: tuple, steps: int = 3) -> float:
    """Seconds per training step of ``model`` on ``batch``, leaving the model, its optimizer and seed generators
    exactly as they were. A short ``fit`` on the repeated batch (the iterator-fed train function training
    uses): its first step traces the graph and is not counted. A time budget sizes sub-epochs with it."""
    import time

    import tensorflow as tf

    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in [*model.variables, *optimizer.variables]]
    ends: list[float] = []

    class Ends(keras.callbacks.Callback):
        def on_train_batch_end(self, b: int, logs: dict | None = None) -> None:
            ends.append(time.perf_counter())

    try:
        model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=steps + 1, epochs=1, verbose=0,
                  shuffle=False,
                  callbacks=[Ends()])
        return (ends[-1] - ends[0]) / steps
    finally:
        for v, value in saved:
            v.assign(value)
