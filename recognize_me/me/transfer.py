"""Transfer a trained CelebA attribute model to the personal "is this me?" classifier.

Two strategies, both on the base model's convolutional features (everything up to its global average
pooling) with a new head (Dropout + one sigmoid):

- ``feature_extraction``: the base stays frozen; only the head learns.
- ``fine_tuning``: the head learns first on the frozen base (half the epochs), then the top third of
  the base's layers is unfrozen (BatchNormalization layers stay frozen, in inference mode) and
  training goes on at a tenth of the learning rate.

The decision threshold maximises F1 on the validation split; the test split is only used for the final
metrics. The output folder gets ``model.keras`` (written last: it marks completion), ``metrics.json``,
``config.json``, ``history.csv`` and ``predictions_test.csv``, every file atomically.

Pure core: no Prefect; TensorFlow and Keras are imported when a job runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from recognize_me.fileio import write_json, write_with

if TYPE_CHECKING:
    import keras

Strategy = Literal["feature_extraction", "fine_tuning", "from_scratch"]
#: ``from_scratch`` is the baseline the transfers are measured against: the same architecture,
#: freshly initialised and fully trainable (no CelebA knowledge).
STRATEGIES: tuple[str, ...] = ("feature_extraction", "fine_tuning", "from_scratch")
TransferHook = Callable[[str, int, int, dict], None]  # (strategy, epoch 1-based, epochs, logs)

FEATURES_NAME = "celeba_features"  # the nested feature model inside a transfer model
HEAD_DROPOUT = 0.3
FINE_TUNE_FRACTION = 1 / 3
FINE_TUNE_LR_FACTOR = 0.1
POSITIVE_LABEL = "me"
CM_LABELS: tuple[str, str] = ("other", "me")  # confusion matrix order: index 0 = other, 1 = me


@dataclass(frozen=True)
class TransferJob:
    strategy: Strategy
    base_model_path: Path  # a CelebA model's model.keras
    photos_csv: Path  # written by me_photos.prepare_photos
    out_dir: Path
    image_size: tuple[int, int]  # (height, width), as the base model was trained
    crop: str  # as the base model was trained ("none", "square", "face")
    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.epochs < (2 if self.strategy == "fine_tuning" else 1):
            raise ValueError(f"{self.strategy} needs epochs >= {2 if self.strategy == 'fine_tuning' else 1}, "
                             f"got {self.epochs}")
        if self.batch_size < 1 or self.learning_rate <= 0 or self.threads < 1:
            raise ValueError("batch_size and threads must be >= 1 and learning_rate > 0")


def base_input_settings(base_model_path: Path) -> tuple[tuple[int, int], str]:
    """(image_size, crop) the CelebA model at ``base_model_path`` was trained with, from the
    ``config.json`` beside it (``job.image_size``, ``job.crop``)."""
    config_path = Path(base_model_path).parent / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json beside {base_model_path}: cannot tell its image size and crop")
    job = json.loads(config_path.read_text(encoding="utf-8"))["job"]
    size = job["image_size"]
    return (int(size[0]), int(size[1])), str(job["crop"])


# --- model surgery ----------------------------------------------------------------------------

def flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in graph order, nested models replaced by their own layers, inputs left out."""
    import keras

    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            out.extend(flat_layers(layer))
        else:
            out.append(layer)
    return out


def feature_extractor(base: keras.Model) -> keras.Model:
    """``base`` cut at the output of its last top-level ``GlobalAveragePooling2D`` (sharing weights)."""
    import keras

    pools = [layer for layer in base.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if not pools:
        raise ValueError(f"model {base.name!r} has no GlobalAveragePooling2D layer to cut at; transfer needs "
                         f"a CelebA model whose head starts with global average pooling")
    return keras.Model(base.inputs, pools[-1].output, name=FEATURES_NAME)


def build_transfer_model(features: keras.Model, image_size: tuple[int, int], seed: int) -> keras.Model:
    """``features`` + Dropout + Dense(1, sigmoid). Keras passes the outer ``training`` flag into nested
    models, so the base's BatchNormalization layers are kept in inference mode by freezing them
    (a frozen BatchNormalization layer always uses its moving statistics)."""
    import keras

    inputs = keras.Input(shape=(*image_size, 3), name="me_image")
    x = features(inputs, training=False)
    x = keras.layers.Dropout(HEAD_DROPOUT, seed=seed, name="me_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="is_me")(x)
    return keras.Model(inputs, outputs, name="is_me_classifier")


def set_base_trainable(features: keras.Model, fraction: float) -> list[str]:
    """Freeze ``features`` except the top ``fraction`` of :func:`flat_layers` (rounded up);
    BatchNormalization layers, also those inside custom layers, always stay frozen. Returns the names
    of the layers that have trainable weights afterwards."""
    import keras

    features.trainable = True
    layers = flat_layers(features)
    n_top = math.ceil(len(layers) * fraction) if fraction > 0 else 0
    unfrozen = []
    for i, layer in enumerate(layers):
        layer.trainable = i >= len(layers) - n_top
        for sub in layer._flatten_layers(include_self=True, recursive=True):
            if isinstance(sub, keras.layers.BatchNormalization):
                sub.trainable = False
        if layer.trainable and layer.trainable_weights:
            unfrozen.append(layer.name)
    return unfrozen


def _compile(model: keras.Model, learning_rate: float) -> None:
    from recognize_me.models.losses import compile_multilabel

    compile_multilabel(model, learning_rate)


# --- data -------------------------------------------------------------------------------------

def _split_data(table: pd.DataFrame) -> dict[str, tuple[list[str], np.ndarray, pd.DataFrame]]:
    out = {}
    for split in ("train", "val", "test"):
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


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# --- training ---------------------------------------------------------------------------------

def _phases(job: TransferJob) -> list[int]:
    if job.strategy != "fine_tuning":
        return [job.epochs]
    first = max(1, job.epochs // 2)
    return [first, job.epochs - first]


def train_transfer(job: TransferJob, on_epoch: TransferHook | None = None) -> dict[str, Any]:
    """Train, choose the threshold on val, evaluate on test and write ``job.out_dir``. Returns the
    content of ``metrics.json`` (deterministic on CPU for a given ``job.seed``, except the times)."""
    import keras

    import recognize_me.models  # noqa: F401 - registers the custom layers the base may use
    from recognize_me.data.dataset import make_dataset
    from recognize_me.evaluation.metrics import binary_confusion, per_attribute_metrics, roc_auc
    from recognize_me.me.photo_set import load_photo_table
    from recognize_me.training.callbacks import EpochReporter
    from recognize_me.training.thresholds import choose_thresholds
    from recognize_me.training.train import configure_tensorflow

    start = time.perf_counter()
    configure_tensorflow(job.threads, job.seed)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _split_data(load_photo_table(job.photos_csv))
    weights = class_weights(data["train"][1])

    base = keras.models.load_model(job.base_model_path, safe_mode=True, compile=False)
    expected = tuple(base.inputs[0].shape[1:3])
    if all(d is not None for d in expected) and tuple(int(d) for d in expected) != tuple(job.image_size):
        raise ValueError(f"base model {job.base_model_path} takes {expected} images but the job says "
                         f"image_size={job.image_size}")
    scratch = job.strategy == "from_scratch"
    features = feature_extractor(keras.models.clone_model(base) if scratch else base)
    features.trainable = scratch
    model = build_transfer_model(features, job.image_size, job.seed)
    _compile(model, job.learning_rate)

    common: dict[str, Any] = dict(image_size=tuple(job.image_size), crop=job.crop, batch_size=job.batch_size)
    train_ds = make_dataset(data["train"][0], data["train"][1], shuffle=True, augment_flip=True,
                            seed=job.seed, **common)
    val_ds = make_dataset(data["val"][0], data["val"][1], **common) if data["val"][0] else None

    phases = _phases(job)
    histories: list[pd.DataFrame] = []
    unfrozen: list[str] = []
    for phase, epochs in enumerate(phases, start=1):
        if phase == 2:
            unfrozen = set_base_trainable(features, FINE_TUNE_FRACTION)
            _compile(model, job.learning_rate * FINE_TUNE_LR_FACTOR)
        offset = sum(phases[:phase - 1])
        callbacks = [EpochReporter(job.strategy, sum(phases), on_epoch, offset=offset)] if on_epoch else []
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights, shuffle=False,
                            verbose=0, callbacks=callbacks)  # the dataset shuffles itself (seeded)
        frame = pd.DataFrame(history.history)
        frame.insert(0, "epoch", np.arange(offset + 1, offset + len(frame) + 1))
        histories.append(frame.assign(phase=phase))
    train_time = time.perf_counter() - start

    def scores(split: str) -> np.ndarray:
        paths, y, _ = data[split]
        if not paths:
            return np.zeros(0, dtype=np.float64)
        ds = make_dataset(paths, y, **common)
        return model.predict(ds, verbose=0).reshape(-1).astype(np.float64)

    val_scores, test_scores = scores("val"), scores("test")
    y_val, y_test = data["val"][1].reshape(-1), data["test"][1].reshape(-1)
    threshold = float(choose_thresholds(y_val[:, None], val_scores[:, None], metric="f1")[0]) \
        if len(y_val) else 0.5
    predicted = (test_scores >= threshold).astype(np.int8)
    test_metrics = per_attribute_metrics(y_test[:, None], predicted[:, None], [POSITIVE_LABEL]).iloc[0]
    val_metrics = per_attribute_metrics(y_val[:, None], (val_scores >= threshold)[:, None].astype(np.int8),
                                        [POSITIVE_LABEL]).iloc[0]
    counts = {split: {"me": int(y.sum()), "other": int(len(y) - y.sum())}
              for split, (_, y, _) in data.items()}
    summary: dict[str, Any] = {
        "strategy": job.strategy, "status": "completed", "threshold": threshold,
        "accuracy": float(test_metrics["accuracy"]),
        "balanced_accuracy": float(test_metrics["balanced_accuracy"]),
        "precision": float(test_metrics["precision"]), "recall": float(test_metrics["recall"]),
        "f1": float(test_metrics["f1"]), "roc_auc": _finite(roc_auc(y_test, test_scores)),
        "val_f1": float(val_metrics["f1"]), "val_roc_auc": _finite(roc_auc(y_val, val_scores)),
        "confusion_matrix": binary_confusion(y_test, predicted).tolist(),
        "confusion_matrix_labels": list(CM_LABELS), "counts": counts, "test_photos": len(y_test),
        "class_weight": {str(k): v for k, v in weights.items()}, "unfrozen_layers": unfrozen,
        "epochs_run": int(sum(len(h) for h in histories)), "params": int(model.count_params()),
        "train_time_s": round(train_time, 2), "seed": job.seed, "base_model": str(job.base_model_path),
        "image_size": list(job.image_size), "crop": job.crop, "out_dir": str(out),
    }
    _write_outputs(job, model, histories, summary, data["test"][2], test_scores, predicted)
    return summary


def _job_dict(job: TransferJob) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(job).items()}


def _write_outputs(job: TransferJob, model: keras.Model, histories: list[pd.DataFrame], summary: dict[str, Any],
                   test_rows: pd.DataFrame, test_scores: np.ndarray, predicted: np.ndarray) -> None:
    from recognize_me.training.train import package_versions

    out = Path(job.out_dir)
    history = pd.concat(histories, ignore_index=True)
    write_with(out / "history.csv", lambda p: history.to_csv(p, index=False))
    preds = pd.DataFrame({
        "path": test_rows["path"].astype(str), "crop_path": test_rows["crop_path"].astype(str),
        "label": test_rows["label"].astype(str), "score": np.round(test_scores, 6),
        "predicted": np.where(predicted > 0, CM_LABELS[1], CM_LABELS[0]),
    })
    write_with(out / "predictions_test.csv", lambda p: preds.to_csv(p, index=False))
    write_json(out / "config.json", {"model": f"me_{job.strategy}", "job": _job_dict(job),
                                     "package_versions": package_versions()})
    write_json(out / "metrics.json", summary)
    write_with(out / "model.keras", lambda p: model.save(p), suffix=".keras")  # last: marks completion
