"""Keras callbacks used by training: epoch reporting to a caller's hook, and fault injection for tests."""

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
