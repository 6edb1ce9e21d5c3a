"""Transfer a trained CelebA model to the personal "is this me?" classifier.

``train_transfer`` runs one strategy (each in its own process, see ``flows.training.run_transfer_parallel``):
load the photo splits, fit (the strategy's trainer in ``me/strategies.py``, named by its entry in
``recognize_me.catalog.STRATEGIES``; model surgery in ``me/surgery.py``), score, evaluate
(``me/evaluation.py``) and write the outputs. The strategies:

- ``feature_extraction``: the base stays frozen. Its L2-normalised features (the layer named
  ``embedding`` when the base has one, else the one named ``gap`` / its last global average pooling;
  ``features="concat"`` joins both, ``"spatial"`` flattens the map ``gap`` pools; ``auto`` = ``embedding``
  when the base has one, else ``spatial``) are averaged over the photo and its mirror image (test-time flip
  averaging) and fed to an L2-regularised logistic regression (scikit-learn). C and the threshold are chosen
  on out-of-fold scores of train+val (5 folds grouped by photo content, ``me/logistic.py``) and the
  regression is refit on train+val: every held-out "me" photo counts, not only the validation split's few.
  The result is saved as one Keras model (base + flip averaging + a Dense layer holding the
  regression's weights), so ``predict`` serves it like any other.
- ``fine_tuning``: a Dropout + sigmoid head learns first on the frozen base (half the epochs), then the
  top third of the base's layers is unfrozen (BatchNormalization layers stay frozen, in inference mode)
  and training goes on at a tenth of the learning rate.
- ``from_scratch``: the same architecture, freshly initialised and fully trainable: the honest baseline.
- ``distilled`` and ``dlib_resnet``: feature extraction from another base than the CelebA model: the student
  distilled from dlib's embeddings (``me/student.py``), or dlib's face-recognition ResNet itself rebuilt in
  Keras from its weights file (``me/dlib_resnet.py``; no dlib at run time).
- ``reference_dlib`` (optional, ``pip install .[reference]``): dlib's face-recognition ResNet embeddings
  (``face_recognition``) of the same aligned photos into the same logistic regression. Shown for
  comparison only: it has no Keras model, so it is never promoted and ``predict`` never serves it.

The decision threshold maximises F1 on the validation split (on the out-of-fold scores for the logistic
strategies); the test split is only used for the final
metrics. The output folder is written by ``training.scaffold.ModelFolder``, as a CelebA model's is:
``model.keras`` (written last: it marks completion), ``metrics.json``, ``config.json``, ``history.csv`` and
``predictions_test.csv``, every file atomically.

Pure core: no Prefect; TensorFlow and Keras are imported when a job runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recognize_me.catalog import STRATEGIES
from recognize_me.me.evaluation import CM_LABELS, POSITIVE_LABEL, evaluate_scores
from recognize_me.me.job import TransferHook, TransferJob
from recognize_me.me.strategies import Fitted
from recognize_me.training.scaffold import ModelFolder

SCORED_SPLITS = ("val", "test", "strangers")


def base_input_settings(base_model_path: Path) -> tuple[tuple[int, int], str]:
    """(image_size, crop) the CelebA model at ``base_model_path`` was trained with, from the
    ``config.json`` beside it (``job.image_size``, ``job.crop``)."""
    config_path = Path(base_model_path).parent / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json beside {base_model_path}: cannot tell its image size and crop")
    job = json.loads(config_path.read_text(encoding="utf-8"))["job"]
    size = job["image_size"]
    return (int(size[0]), int(size[1])), str(job["crop"])


def split_data(table: pd.DataFrame) -> dict[str, tuple[list[str], np.ndarray, pd.DataFrame]]:
    """``split -> (crop paths, 0/1 "me" labels (n, 1), rows)`` for train, val, test and strangers."""
    out = {}
    for split in ("train", "val", "test", "strangers"):
        rows = table[table["split"] == split].reset_index(drop=True)
        y = (rows["label"] == POSITIVE_LABEL).to_numpy(np.float32)[:, None]
        out[split] = (rows["crop_path"].astype(str).tolist(), y, rows)
    return out


def class_weights(y: np.ndarray) -> dict[int, float]:
    """``n / (2 * n_class)`` per class (so both classes weigh the same in total)."""
    y = np.asarray(y).reshape(-1) > 0
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"the train split needs both 'me' and 'other' photos (has {n_pos} 'me', {n_neg} 'other')")
    return {0: y.size / (2.0 * n_neg), 1: y.size / (2.0 * n_pos)}


def train_transfer(job: TransferJob, on_epoch: TransferHook | None = None) -> dict[str, Any]:
    """Train, choose the threshold on val, evaluate on test (and strangers) and write ``job.out_dir``.
    Returns the content of ``metrics.json`` (deterministic on CPU for a given ``job.seed``, except the
    times)."""
    from recognize_me.me.photo_set import load_photo_table
    from recognize_me.training.train import configure_tensorflow

    start = time.perf_counter()
    configure_tensorflow(job.threads, job.seed)
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    data = split_data(load_photo_table(job.photos_csv))
    weights = class_weights(data["train"][1])
    fitted = STRATEGIES.get(job.strategy).train(job, data, weights, on_epoch)
    train_time = time.perf_counter() - start

    scores = {split: fitted.score(split) if data[split][0] else np.zeros(0) for split in SCORED_SPLITS}
    summary = evaluate_scores(data, scores, fitted.selection) | _run_facts(job, fitted, weights, train_time)
    _write_outputs(job, fitted, summary, data, scores)
    return summary


def _run_facts(job: TransferJob, fitted: Fitted, weights: dict[int, float], train_time: float) -> dict[str, Any]:
    return {
        "strategy": job.strategy, "status": "completed", "promotable": STRATEGIES.get(job.strategy).promotable,
        "class_weight": {str(k): v for k, v in weights.items()}, "unfrozen_layers": fitted.unfrozen,
        "epochs_run": int(sum(len(h) for h in fitted.histories)),
        "params": int(fitted.model.count_params()) if fitted.model is not None else None,
        "train_time_s": round(train_time, 2), "seed": job.seed, "base_model": str(job.base_model_path),
        "image_size": list(job.image_size), "crop": job.crop, "out_dir": str(Path(job.out_dir)), **fitted.extra,
    }


def _job_dict(job: TransferJob) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(job).items()}


def _write_outputs(job: TransferJob, fitted: Fitted, summary: dict[str, Any], data: dict,
                   scores: dict[str, np.ndarray]) -> None:
    tables = {}
    for split in ("test", "strangers"):
        rows, split_scores = data[split][2], scores[split]
        if split == "strangers" and not len(split_scores):
            continue
        tables[f"predictions_{split}.csv"] = pd.DataFrame({
            "path": rows["path"].astype(str), "crop_path": rows["crop_path"].astype(str),
            "label": rows["label"].astype(str), "score": np.round(split_scores, 6),
            "predicted": np.where(split_scores >= summary["threshold"], CM_LABELS[1], CM_LABELS[0]),
        })
    ModelFolder(Path(job.out_dir), config={"model": f"me_{job.strategy}", "job": _job_dict(job)},
                metrics=summary, model=fitted.model, histories=fitted.histories, tables=tables).write()
