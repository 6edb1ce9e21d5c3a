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
from celeba_fixtures import train_one_command

pytestmark = pytest.mark.slow


def _summary(model_dir: Path) -> dict:
    summary = json.loads((model_dir / "metrics.json").read_text())
    for key in ("train_time_s", "images_per_s", "model_dir"):  # wall time and location legitimately differ
        summary.pop(key)
    return summary


def test_two_runs_of_the_same_job_are_identical(training_job, tmp_path: Path) -> None:
    splits_csv, images_dir = training_job
    commands = [train_one_command(tmp_path / run, splits_csv, images_dir, tmp_path / f"{run}.log", epochs=2,
                                  model="cnn_thresholded")  # schedule, early stopping and tuned thresholds: the most moving parts
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


def test_a_different_seed_gives_different_predictions(training_job, uninterrupted_training, tmp_path: Path) -> None:
    """The comparison above can fail: the seed does reach the result. Seed 5 is the session's
    ``uninterrupted_training`` (baseline_cnn, 3 epochs); this runs the same job with seed 6."""
    splits_csv, images_dir = training_job
    done = subprocess.run(train_one_command(tmp_path / "b", splits_csv, images_dir, tmp_path / "b.log", seed=6),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    a = uninterrupted_training.model_dir / "predictions_test.csv"
    b = tmp_path / "b" / "models" / "baseline_cnn" / "predictions_test.csv"
    assert json.loads((uninterrupted_training.model_dir / "config.json").read_text())["job"]["seed"] == 5
    assert a.read_bytes() != b.read_bytes()


def test_models_built_while_other_threads_draw_from_random_are_identical() -> None:
    """What made two flow runs differ: Keras' default seeds come from Python's shared ``random``."""
    import hashlib
    import random
    import threading

    import keras

    from recognize_me.models import BuildOptions, get_model_spec
    from recognize_me.training.seeding import isolated_default_seeds

    drawn, stop = [], threading.Event()

    def other_thread() -> None:  # as Prefect's and Dask's background threads in a worker
        while not stop.is_set():
            drawn.append(random.random())
            stop.wait(0.0002)

    def build() -> str:
        keras.backend.clear_session()
        keras.utils.set_random_seed(43)
        with isolated_default_seeds(43):
            model = get_model_spec("cnn_scheduled").build((32, 32, 3), 4, BuildOptions(seed=43))
        return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()

    quiet = build()
    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    try:
        busy = [build() for _ in range(2)]
    finally:
        stop.set()
        thread.join()
    assert len(drawn) > 10
    assert busy == [quiet, quiet]


@pytest.mark.flow
def test_two_flow_runs_with_more_models_than_workers_train_identical_models(prefect_server, demo_data,
                                                                            tmp_path: Path) -> None:
    """Through the flow and Dask, three models on two worker processes (one worker is reused, and busy
    with Prefect's and Dask's threads): the smallest setting where runs differed before the fix."""
    from flows.train_all import train_all
    from recognize_me.config import PipelineConfig

    models = ["baseline_cnn", "cnn_scheduled", "cnn_thresholded"]
    dirs = []
    for run in ("a", "b"):
        config = PipelineConfig(celeba_dir=demo_data, output_root=tmp_path, run_name=run, models=models,
                                image_size=(32, 32), epochs=1, batch_size=32, seed=5, n_workers=2, refresh=True)
        dirs.append(Path(train_all(config=config)).parent / "models")
    for model in models:
        a, b = (d / model for d in dirs)
        assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes(), model
        assert (a / "predictions_test.csv").read_bytes() == (b / "predictions_test.csv").read_bytes(), model
