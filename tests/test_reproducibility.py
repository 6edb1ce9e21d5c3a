"""Same job, same seed, two fresh processes, two folders: identical metrics and identical predictions.

The splits are reproducible too: ``make_splits`` twice on the same inputs gives the same frame
(``test_splits.test_same_seed_same_frame_different_seed_different`` and
``test_splits.test_limit_keeps_at_most_limit_all_splits_deterministic``; not repeated here).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from celeba_fixtures import train_one_command, write_training_job

pytestmark = pytest.mark.slow


def _summary(model_dir: Path) -> dict:
    summary = json.loads((model_dir / "metrics.json").read_text())
    for key in ("train_time_s", "model_dir"):  # wall time and location legitimately differ
        summary.pop(key)
    return summary


def test_two_runs_of_the_same_job_are_identical(tmp_path: Path) -> None:
    splits_csv, images_dir = write_training_job(tmp_path / "job", n=90)
    commands = [train_one_command(tmp_path / run, splits_csv, images_dir, tmp_path / f"{run}.log", epochs=2,
                                  model="cnn_thresholded")  # class-weighted loss + tuned thresholds: the most moving parts
                for run in ("a", "b")]
    for command in commands:  # one after the other: two cores, and each process is single-threaded anyway
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = (tmp_path / run / "models" / "cnn_thresholded" for run in ("a", "b"))
    assert _summary(a) == _summary(b)
    assert _summary(a)["epochs_run"] == 2 and len(_summary(a)["per_attribute"]) == 3
    assert (a / "predictions_test.csv").read_bytes() == (b / "predictions_test.csv").read_bytes()
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    config_a, config_b = (json.loads((m / "config.json").read_text()) for m in (a, b))
    assert config_a["job"]["seed"] == config_b["job"]["seed"] == 5


def test_a_different_seed_gives_different_predictions(tmp_path: Path) -> None:
    """The comparison above can fail: the seed does reach the result."""
    splits_csv, images_dir = write_training_job(tmp_path / "job", n=90)
    for run, seed in (("a", 5), ("b", 6)):
        done = subprocess.run(train_one_command(tmp_path / run, splits_csv, images_dir, tmp_path / f"{run}.log",
                                                epochs=1, seed=seed), capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = (tmp_path / run / "models" / "baseline_cnn" / "predictions_test.csv" for run in ("a", "b"))
    assert a.read_bytes() != b.read_bytes()
