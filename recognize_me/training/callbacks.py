"""Keras callbacks used by training: epoch reporting to a caller's hook, fault injection for tests, and
what makes a killed run resume exactly (epoch-derived seeds, atomic backups)."""

from __future__ import annotations

import os
from typing import Any

import keras


class EpochReporter(keras.callbacks.Callback):
    """Calls ``hook(model_name, epoch, epochs, logs)`` after every epoch (the Prefect shell logs it)."""

    def __init__(self, model_name: str, epochs: int, hook: Any, offset: int = 0) -> None:
        super().__init__()
        self.model_name, self.epochs, self.hook, self.offset = model_name, epochs, hook, offset

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        lr = self.model.optimizer.learning_rate
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(lr)))
        self.hook(self.model_name, self.offset + epoch + 1, self.epochs, logs)


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
