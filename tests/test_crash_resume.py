"""A training process killed mid-run resumes from its per-epoch backup and ends exactly where an
uninterrupted run ends; a kill never leaves a partial file where a complete one is expected.

Why the resume is exact (recognize_me.training.train / training_callbacks / dataset): Keras' BackupAndRestore
saves weights, optimizer state and the epoch, but neither tf.data's reshuffle seed stream nor the Dropout
seed generators' counters. ``EpochSeeds`` makes both a function of (seed, epoch) instead, so the resumed
epochs see the same batches, flips and dropout masks as the uninterrupted run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from celeba_fixtures import image_ids, kill_when, train_one_command, write_images

DEADLINE_S = 600.0  # generous: the machine may be busy; the polls return as soon as the condition holds


def _summary(model_dir: Path) -> dict:
    """metrics.json without what legitimately differs between two runs (wall time, folder)."""
    summary = json.loads((model_dir / "metrics.json").read_text())
    for key in ("train_time_s", "images_per_s", "model_dir"):
        summary.pop(key)
    return summary


def _epochs(hook_log: Path) -> list[int]:
    if not hook_log.exists():
        return []
    return [json.loads(line)["epoch"] for line in hook_log.read_text().splitlines()]


def _backed_up_epochs(backup: Path) -> int:
    """Epochs completed according to the backup's metadata (0 while there is none or it is mid-write)."""
    try:
        return int(json.loads((backup / "training_metadata.json").read_text())["epoch"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith((".tmp-", ".model.keras.")) or p.suffix == ".tmp"]


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(training_job, uninterrupted_training,
                                                             tmp_path: Path) -> None:
    """The same job as the session's ``uninterrupted_training`` (same files, a fresh process), killed and rerun."""
    import keras

    splits_csv, images_dir = training_job
    started = time.monotonic()
    reference_s = uninterrupted_training.seconds
    reference_dir = uninterrupted_training.model_dir
    assert _epochs(uninterrupted_training.hook_log) == [1, 2, 3]

    # 1. start the same job elsewhere and SIGKILL it as soon as its first epoch is backed up
    out = tmp_path / "crashed" / "models" / "baseline_cnn"
    backup = out / "backup" / "phase1"
    rc = kill_when(train_one_command(tmp_path / "crashed", splits_csv, images_dir, tmp_path / "first.log"),
                   lambda: _backed_up_epochs(backup) >= 1, DEADLINE_S)
    assert rc == -signal.SIGKILL
    backed_up = _backed_up_epochs(backup)
    assert 1 <= backed_up < 3, "the kill must land mid-training"
    assert not (out / "metrics.json").exists()
    if (out / "model.keras").exists():  # never expected; if it were there it would have to be whole
        keras.models.load_model(out / "model.keras", safe_mode=True)
    assert sorted(p.name for p in backup.iterdir()) == ["latest.weights.h5", "training_metadata.json"]

    # 2. rerun the same job in a fresh process: it resumes after the backed-up epochs and finishes
    resumed = subprocess.run(train_one_command(tmp_path / "crashed", splits_csv, images_dir, tmp_path / "second.log"),
                             capture_output=True, text=True, timeout=DEADLINE_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    second = _epochs(tmp_path / "second.log")
    assert second == list(range(backed_up + 1, 4)), f"rerun reported epochs {second}: it did not resume"
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(history, pd.read_csv(reference_dir / "history.csv"))

    # 3. same final state as the uninterrupted run: metrics, per-attribute metrics, predictions
    assert _summary(out) == _summary(reference_dir)
    assert (out / "predictions_test.csv").read_bytes() == (reference_dir / "predictions_test.csv").read_bytes()

    # 4. nothing half-written or temporary is left behind; the finished model loads safely
    keras.models.load_model(out / "model.keras", safe_mode=True)
    assert _temp_files(tmp_path / "crashed") == []
    assert not (out / "backup").exists() and list(out.glob("history.phase*.partial.csv")) == []
    print(f"uninterrupted run {reference_s:.1f} s; killed after epoch {backed_up}, resumed run "
          f"{time.monotonic() - started:.1f} s in all")


# --- the pieces, in process (fast) ------------------------------------------------------------------

def _tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def test_a_kill_while_saving_the_backup_keeps_the_previous_one(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from recognize_me.training.callbacks import AtomicBackupAndRestore

    model = _tiny_model()
    callback = AtomicBackupAndRestore(str(tmp_path / "backup"))
    callback.set_model(model)
    callback.on_epoch_end(0)  # a complete backup of epoch 1
    weights = (tmp_path / "backup" / "latest.weights.h5").read_bytes()

    def dies_half_way(filepath, overwrite=True):
        Path(filepath).write_bytes(b"\x89HDF half a file")
        raise SystemExit("killed while writing")  # as far as the files go, like a SIGKILL here

    monkeypatch.setattr(model, "save_weights", dies_half_way)
    with pytest.raises(SystemExit):
        callback.on_epoch_end(1)
    monkeypatch.undo()
    assert (tmp_path / "backup" / "latest.weights.h5").read_bytes() == weights
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["latest.weights.h5",
                                                                       "training_metadata.json"]
    fresh = _tiny_model()
    restore = AtomicBackupAndRestore(str(tmp_path / "backup"))
    restore.set_model(fresh)
    restore.on_train_begin()  # loads, does not raise
    assert fresh._initial_epoch == 1


def test_second_phase_is_not_skipped_after_a_resumed_first_phase(tmp_path: Path) -> None:
    """A two-phase job (vgg16_finetune) resumed in phase 1 runs all of phase 2's epochs. Keras keeps
    the epoch restored for phase 1 on the model; AtomicBackupAndRestore resets it per fit()."""
    from recognize_me.training.callbacks import AtomicBackupAndRestore

    x, y = _xy()
    model = _tiny_model()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[AtomicBackupAndRestore(str(tmp_path / "phase1"))])
    resumed = _tiny_model()  # a fresh process: phase 1 is restored (already complete), phase 2 has no backup
    first = resumed.fit(x, y, epochs=2, verbose=0, callbacks=[AtomicBackupAndRestore(str(tmp_path / "phase1"))])
    second = resumed.fit(x, y, epochs=2, verbose=0, callbacks=[AtomicBackupAndRestore(str(tmp_path / "phase2"))])
    assert first.epoch == [] and second.epoch == [0, 1]


def test_epoch_order_and_dropout_depend_on_the_epoch_number_only(tmp_path: Path) -> None:
    """What a fresh process sees at epoch 2 equals what a process that ran epochs 0 and 1 sees at 2."""
    import keras
    import tensorflow as tf

    from recognize_me.data.dataset import make_dataset
    from recognize_me.training.callbacks import EpochSeeds

    keras.utils.set_random_seed(0)  # the process-wide seed 0 once broke the per-epoch shuffle (tensor seed)
    paths = [str(p) for p in write_images(tmp_path / "img", image_ids(24), size=(16, 16))]
    labels = np.arange(24, dtype=np.float32)[:, None]

    def epoch_batches(epoch_var, epochs: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        ds = make_dataset(paths, labels, image_size=(8, 8), crop="none", batch_size=24, shuffle=True,
                          augment_flip=True, seed=3, epoch=epoch_var)
        out = []
        for e in epochs:
            epoch_var.assign(e)
            x, y = next(iter(ds))
            out.append((x.numpy(), y.numpy()[:, 0]))
        return out

    straight = epoch_batches(tf.Variable(0, dtype=tf.int64), [0, 1, 2])
    resumed = epoch_batches(tf.Variable(0, dtype=tf.int64), [2])
    np.testing.assert_array_equal(straight[2][1], resumed[0][1])  # same order
    np.testing.assert_array_equal(straight[2][0], resumed[0][0])  # same flips
    assert not np.array_equal(straight[0][1], straight[1][1])  # still reshuffled every epoch
    assert sorted(straight[1][1].tolist()) == list(range(24))

    def dropout_mask(model, callback, epoch: int) -> np.ndarray:
        callback.on_epoch_begin(epoch)
        return model(np.ones((1, 64), "float32"), training=True).numpy()

    def dropout_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5, seed=1)])
        callback = EpochSeeds(tf.Variable(0, dtype=tf.int64), offset=0)
        callback.set_model(model)
        return model, callback

    model, callback = dropout_model()
    masks = [dropout_mask(model, callback, e) for e in (0, 1, 2)]
    model, callback = dropout_model()
    np.testing.assert_array_equal(dropout_mask(model, callback, 2), masks[2])
    assert not np.array_equal(masks[1], masks[2])


# --- overlapping runs never share a folder ------------------------------------------------------------

def test_concurrent_runs_with_generated_names_get_distinct_folders(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every thread first draws the same name (as two runs started in the same second with an unlucky
    token would): exactly one creates it, the others see FileExistsError and draw again."""
    import itertools
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from recognize_me import runs

    n = 12
    barrier = threading.Barrier(n)
    counter = itertools.count()
    drawn = threading.local()

    def colliding_name(now=None) -> str:
        if not getattr(drawn, "once", False):
            drawn.once = True
            return "20260101-000000-abcdef"
        return f"20260101-000000-{next(counter):06x}"

    monkeypatch.setattr(runs, "new_run_name", colliding_name)

    def start_run(_: int) -> Path:
        barrier.wait(timeout=60)
        return runs.create_run_dir(tmp_path / "artifacts", None)

    with ThreadPoolExecutor(max_workers=n) as pool:
        folders = list(pool.map(start_run, range(n)))
    assert len(set(folders)) == n and all(f.is_dir() for f in folders)
    assert Path(tmp_path / "artifacts" / "20260101-000000-abcdef").resolve() in folders
    assert sorted(p.resolve() for p in (tmp_path / "artifacts").iterdir()) == sorted(folders)


def test_concurrent_processes_get_distinct_run_folders(tmp_path: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from recognize_me.runs import create_run_dir

    root = tmp_path / "artifacts"
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        folders = list(pool.map(create_run_dir, [root] * 16, [None] * 16))
    assert len(set(folders)) == 16
    assert sorted(p.resolve() for p in root.iterdir()) == sorted(folders)


def test_an_explicit_run_name_is_shared_on_purpose(tmp_path: Path) -> None:
    """Documented behaviour: ``--run-name`` reuses its folder (that is how a rerun resumes)."""
    from recognize_me.runs import create_run_dir

    assert create_run_dir(tmp_path, "resume-me") == create_run_dir(tmp_path, "resume-me")
