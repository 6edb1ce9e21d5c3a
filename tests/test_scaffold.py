"""training.scaffold: the phase split and the model folder every trained model writes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recognize_me.training.scaffold import ModelFolder, numbered_history, phase_epochs


@pytest.mark.parametrize(("epochs", "two_phase", "expected"), [
    (5, False, [5]), (1, True, [1]), (2, True, [1, 1]), (5, True, [2, 3]), (8, True, [4, 4]),
])
def test_phase_epochs_split_half_and_half_at_least_one_first(epochs, two_phase, expected):
    assert phase_epochs(epochs, two_phase) == expected


def test_numbered_history_counts_from_the_offset_and_names_the_phase():
    frame = numbered_history({"loss": [0.5, 0.4], "val_loss": [0.6, 0.55]}, offset=3, phase=2)
    assert frame.columns.tolist() == ["epoch", "loss", "val_loss", "phase"]
    assert frame["epoch"].tolist() == [4, 5] and frame["phase"].tolist() == [2, 2]


class _SavedLast:
    """A stand-in model that records which files existed when it was saved."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def save(self, path) -> None:
        from pathlib import Path

        self.seen = sorted(p.name for p in Path(path).parent.iterdir() if not p.name.startswith("."))
        Path(path).write_bytes(b"model")


def test_model_folder_writes_every_file_and_the_model_last(tmp_path):
    model = _SavedLast()
    histories = [numbered_history({"loss": [1.0]}, 0, 1), numbered_history({"loss": [0.5]}, 1, 2)]
    ModelFolder(tmp_path, config={"model": "m", "job": {"seed": 1}}, metrics={"auc": 0.9}, model=model,
                histories=histories, tables={"predictions_test.csv": pd.DataFrame({"id": ["a"], "s": [0.1]})}
                ).write()
    assert model.seen == ["config.json", "history.csv", "metrics.json", "predictions_test.csv"]
    assert (tmp_path / "model.keras").read_bytes() == b"model"
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "m" and config["job"] == {"seed": 1} and "python" in config["package_versions"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"auc": 0.9}


def test_model_folder_without_a_model_or_history_writes_no_model_file(tmp_path):
    ModelFolder(tmp_path, config={"model": "ref"}, metrics={"auc": 0.5}).write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.json"]
