"""The steps every trained model of the project shares, CelebA attribute models (``training/train.py``) and
"is this me?" transfers (``me/transfer.py``, ``me/strategies.py``) alike: plan phases -> fit phase by
phase -> evaluate -> write the model folder atomically.

A model folder holds ``history.csv`` (one row per Keras epoch, its ``phase``), one CSV per prediction
table, ``config.json`` (what the job was given, plus the package versions), ``metrics.json`` and last
``model.keras``: its presence marks a completed folder, so an interrupted write never looks finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recognize_me.fileio import write_json, write_with
from recognize_me.runs import package_versions


def phase_epochs(epochs: int, two_phase: bool) -> list[int]:
    """Keras epochs per phase: a two-phase model (a head first, then part of the base unfrozen) spends half
    of them, at least one, in each; a one-epoch two-phase job has no second phase."""
    if not two_phase:
        return [epochs]
    first = max(1, epochs // 2)
    return [first, epochs - first] if epochs > first else [first]


def numbered_history(history: Mapping[str, list], offset: int, phase: int) -> pd.DataFrame:
    """A Keras ``History.history`` as a frame: ``epoch`` numbered from ``offset + 1``, then the metrics, then
    ``phase``."""
    frame = pd.DataFrame(dict(history))
    frame.insert(0, "epoch", np.arange(offset + 1, offset + len(frame) + 1))
    return frame.assign(phase=phase)


@dataclass
class ModelFolder:
    """Everything a finished job writes (see the module docstring)."""

    out_dir: Path
    config: dict[str, Any]  # config.json, without the package versions (added on writing)
    metrics: dict[str, Any]  # metrics.json
    model: Any = None  # a keras.Model, saved last; None: nothing to serve (a reference strategy)
    histories: list[pd.DataFrame] = field(default_factory=list)  # one per phase, concatenated to history.csv
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # file name -> frame (predictions)

    def write(self) -> None:
        out = Path(self.out_dir)
        if self.histories:
            history = pd.concat(self.histories, ignore_index=True)
            write_with(out / "history.csv", lambda p: history.to_csv(p, index=False))
        for name, frame in self.tables.items():
            write_with(out / name, lambda p, f=frame: f.to_csv(p, index=False))
        write_json(out / "config.json", {**self.config, "package_versions": package_versions()})
        write_json(out / "metrics.json", self.metrics)
        if self.model is not None:
            model = self.model
            write_with(out / "model.keras", lambda p: model.save(p), suffix=".keras")  # last: marks completion
