"""Transfer a trained CelebA model to the personal "is this me?" classifier.

Strategies (each runs in its own process, see ``flows.training.run_transfer_parallel``):

- ``feature_extraction``: the base stays frozen. Its L2-normalised features (the layer named
  ``embedding`` when the base has one, else the one named ``gap`` / its last global average pooling;
  ``features="concat"`` joins both, ``"spatial"`` flattens the map ``gap`` pools; ``auto`` = ``embedding``
  when the base has one, else ``spatial``) are averaged over the photo and its mirror image (test-time flip
  averaging) and fed to an L2-regularised logistic regression (scikit-learn; C chosen on validation
  AUC). The result is saved as one Keras model (base + flip averaging + a Dense layer holding the
  regression's weights), so ``predict`` serves it like any other.
- ``fine_tuning``: a Dropout + sigmoid head learns first on the frozen base (half the epochs), then the
  top third of the base's layers is unfrozen (BatchNormalization layers stay frozen, in inference mode)
  and training goes on at a tenth of the learning rate.
- ``from_scratch``: the same architecture, freshly initialised and fully trainable: the honest baseline.
- ``reference_dlib`` (optional, ``pip install .[reference]``): dlib's face-recognition ResNet embeddings
  (``face_recognition``) of the same aligned photos into the same logistic regression. Shown for
  comparison only: it has no Keras model, so it is never promoted and ``predict`` never serves it.

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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recognize_me.catalog import FEATURES, STRATEGIES
from recognize_me.fileio import write_json, write_with
from recognize_me.me.logistic import fit_logistic
from recognize_me.runs import package_versions

if TYPE_CHECKING:
    import keras

REFERENCE_STRATEGY = "reference_dlib"
FAR_TARGET = 0.01  # recall is also reported at this false-accept rate
TransferHook = Callable[[str, int, int, dict], None]  # (strategy, epoch 1-based, epochs, logs)

FEATURES_NAME = "celeba_features"  # the nested feature model inside a transfer model
HEAD_DROPOUT = 0.3
FINE_TUNE_FRACTION = 1 / 3
FINE_TUNE_LR_FACTOR = 0.1
POSITIVE_LABEL = "me"
CM_LABELS: tuple[str, str] = ("other", "me")  # confusion matrix order: index 0 = other, 1 = me


@dataclass(frozen=True)
class TransferJob:
    strategy: str  # a name in recognize_me.catalog.STRATEGIES
    base_model_path: Path  # a CelebA model's model.keras
    photos_csv: Path  # written by me.photo_set.prepare_photos
    out_dir: Path
    image_size: tuple[int, int]  # (height, width), as the base model was trained
    crop: str  # as the base model was trained ("none", "square", "face")
    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int = 1
    features: str = "auto"  # feature_extraction: which base layer(s) to read (recognize_me.catalog.FEATURES)

    def __post_init__(self) -> None:
        entry = STRATEGIES.get(self.strategy)  # ValueError naming the valid ones
        FEATURES.get(self.features)
        if self.epochs < entry.min_epochs:
            raise ValueError(f"{self.strategy} needs epochs >= {entry.min_epochs}, got {self.epochs}")
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


def named_feature_outputs(base: keras.Model, features: str = "auto") -> list[Any]:
    """The base's output tensors to use as features: ``embedding`` (a layer of that name), ``gap`` (a layer
    named ``gap``, else the last top-level ``GlobalAveragePooling2D``), ``concat`` (both), ``spatial``
    (the feature map that ``gap`` pools, flattened: keeps where on the aligned face a feature fires),
    ``auto`` (``embedding`` when the base has one, else ``spatial``: on the real faces it beat ``gap`` on
    validation AUC at 10, 25 and 45 photos). ``ValueError`` names what is missing."""
    import keras

    by_name = {layer.name: layer for layer in base.layers}
    pools = [layer for layer in base.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    gap = by_name.get("gap") or (pools[-1] if pools else None)
    embedding = by_name.get("embedding")
    if features == "auto":
        features = "embedding" if embedding is not None else "spatial"
    wanted = {"embedding": ["embedding"],
              "gap": ["gap"], "concat": ["embedding", "gap"], "spatial": ["gap"]}[features]
    layers = {"embedding": embedding, "gap": gap}
    missing = [name for name in wanted if layers[name] is None]
    if missing:
        raise ValueError(f"model {base.name!r} has no {' / '.join(missing)} layer for features={features!r}")
    if features == "spatial":
        return [keras.layers.Flatten(name="spatial_features")(gap.input)]
    return [layers[name].output for name in wanted]


def flip_averaged_extractor(base: keras.Model, image_size: tuple[int, int], features: str = "auto") -> keras.Model:
    """images -> mean of the L2-normalised features of the image and of its mirror image (frozen base)."""
    import keras

    from recognize_me.me.layers import HorizontalFlip

    outputs = [keras.layers.UnitNormalization(name=f"l2_{i}")(t) for i, t in
               enumerate(named_feature_outputs(base, features))]
    single = keras.Model(base.inputs, outputs[0] if len(outputs) == 1 else
                         keras.layers.Concatenate(name="features_concat")(outputs), name=FEATURES_NAME)
    single.trainable = False
    inputs = keras.Input(shape=(*image_size, 3), name="me_image")
    both = [single(inputs, training=False), single(HorizontalFlip(name="mirror")(inputs), training=False)]
    return keras.Model(inputs, keras.layers.Average(name="flip_average")(both), name="me_features")


def linear_classifier(extractor: keras.Model, coef: np.ndarray, intercept: float) -> keras.Model:
    """``extractor`` + Dense(1, sigmoid) holding a fitted logistic regression's weights."""
    import keras

    dense = keras.layers.Dense(1, activation="sigmoid", name="is_me")
    outputs = dense(extractor.outputs[0])
    dense.set_weights([np.asarray(coef, np.float32).reshape(-1, 1), np.array([intercept], np.float32)])
    return keras.Model(extractor.inputs, outputs, name="is_me_classifier")


def recall_at_far(y: np.ndarray, scores: np.ndarray, far: float = FAR_TARGET) -> float | None:
    """The highest recall of "me" reachable while accepting at most ``far`` of the others (None without
    both classes)."""
    from recognize_me.evaluation.metrics import roc_curve

    y = np.asarray(y).reshape(-1) > 0
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, np.asarray(scores, np.float64))
    return float(np.max(tpr[fpr <= far + 1e-12]))


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


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# --- training ---------------------------------------------------------------------------------

def _phases(job: TransferJob) -> list[int]:
    if job.strategy != "fine_tuning":
        return [job.epochs]
    first = max(1, job.epochs // 2)
    return [first, job.epochs - first]


def _load_base(job: TransferJob) -> keras.Model:
    import keras

    import recognize_me.models  # noqa: F401 - registers the custom layers the base may use

    base = keras.models.load_model(job.base_model_path, safe_mode=True, compile=False)
    expected = tuple(base.inputs[0].shape[1:3])
    if all(d is not None for d in expected) and tuple(int(d) for d in expected) != tuple(job.image_size):
        raise ValueError(f"base model {job.base_model_path} takes {expected} images but the job says "
                         f"image_size={job.image_size}")
    return base


def _fit_keras(job: TransferJob, data: dict, weights: dict[int, float], on_epoch: TransferHook | None,
               common: dict[str, Any]) -> tuple[keras.Model, list[pd.DataFrame], list[str]]:
    """fine_tuning / from_scratch: a Dropout + sigmoid head on the base's pooled features, trained by Keras."""
    import keras

    from recognize_me.data.dataset import make_dataset
    from recognize_me.training.callbacks import EpochReporter

    base = _load_base(job)
    scratch = job.strategy == "from_scratch"
    features = feature_extractor(keras.models.clone_model(base) if scratch else base)
    features.trainable = scratch
    model = build_transfer_model(features, job.image_size, job.seed)
    _compile(model, job.learning_rate)
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
    return model, histories, unfrozen


def _fit_features(job: TransferJob, data: dict, common: dict[str, Any]) -> tuple[keras.Model, dict[str, Any]]:
    """feature_extraction: frozen flip-averaged L2 features -> logistic regression -> one Keras model."""
    from recognize_me.data.dataset import make_dataset

    extractor = flip_averaged_extractor(_load_base(job), job.image_size, job.features)

    def embed(split: str) -> np.ndarray:
        paths, y, _ = data[split]
        return extractor.predict(make_dataset(paths, y, **common), verbose=0) if paths else np.zeros((0, 1))

    clf, c = fit_logistic(embed("train"), data["train"][1], embed("val"), data["val"][1], job.seed)
    model = linear_classifier(extractor, clf.coef_[0], float(clf.intercept_[0]))
    return model, {"logreg_C": c, "feature_dim": int(extractor.outputs[0].shape[-1]), "features": job.features}


def train_transfer(job: TransferJob, on_epoch: TransferHook | None = None) -> dict[str, Any]:
    """Train, choose the threshold on val, evaluate on test (and strangers) and write ``job.out_dir``.
    Returns the content of ``metrics.json`` (deterministic on CPU for a given ``job.seed``, except the
    times)."""
    from recognize_me.data.dataset import make_dataset
    from recognize_me.me.photo_set import load_photo_table
    from recognize_me.training.train import configure_tensorflow

    start = time.perf_counter()
    configure_tensorflow(job.threads, job.seed)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _split_data(load_photo_table(job.photos_csv))
    weights = class_weights(data["train"][1])
    common: dict[str, Any] = dict(image_size=tuple(job.image_size), crop=job.crop, batch_size=job.batch_size)

    model = None
    histories: list[pd.DataFrame] = []
    unfrozen: list[str] = []
    extra: dict[str, Any] = {}
    if job.strategy == REFERENCE_STRATEGY:
        from recognize_me.me.reference import fit_reference

        scorer, extra = fit_reference(data, job.seed)
    else:
        if job.strategy == "feature_extraction":
            model, extra = _fit_features(job, data, common)
        else:
            model, histories, unfrozen = _fit_keras(job, data, weights, on_epoch, common)
        keras_model = model

        def scorer(split: str) -> np.ndarray:
            paths, y, _ = data[split]
            ds = make_dataset(paths, y, **common)
            return keras_model.predict(ds, verbose=0).reshape(-1).astype(np.float64)
    train_time = time.perf_counter() - start

    scores = {split: scorer(split) if data[split][0] else np.zeros(0) for split in ("val", "test", "strangers")}
    summary = evaluate_scores(data, scores)
    summary.update({
        "strategy": job.strategy, "status": "completed", "promotable": STRATEGIES.get(job.strategy).promotable,
        "class_weight": {str(k): v for k, v in weights.items()}, "unfrozen_layers": unfrozen,
        "epochs_run": int(sum(len(h) for h in histories)),
        "params": int(model.count_params()) if model is not None else None,
        "train_time_s": round(train_time, 2), "seed": job.seed, "base_model": str(job.base_model_path),
        "image_size": list(job.image_size), "crop": job.crop, "out_dir": str(out), **extra,
    })
    _write_outputs(job, model, histories, summary, data, scores)
    return summary


def evaluate_scores(data: dict, scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Threshold (max F1 on val), test metrics, recall at ``FAR_TARGET``, and the strangers score: the test
    "me" photos against the ``strangers`` photos (people in no training split), at the same threshold."""
    from recognize_me.evaluation.metrics import binary_confusion, per_attribute_metrics, roc_auc
    from recognize_me.training.thresholds import choose_thresholds

    y_val, y_test = data["val"][1].reshape(-1), data["test"][1].reshape(-1)
    val_scores, test_scores = scores["val"], scores["test"]
    threshold = float(choose_thresholds(y_val[:, None], val_scores[:, None], metric="f1")[0]) \
        if len(y_val) else 0.5
    predicted = (test_scores >= threshold).astype(np.int8)
    test_metrics = per_attribute_metrics(y_test[:, None], predicted[:, None], [POSITIVE_LABEL]).iloc[0]
    val_metrics = per_attribute_metrics(y_val[:, None], (val_scores >= threshold)[:, None].astype(np.int8),
                                        [POSITIVE_LABEL]).iloc[0]
    counts = {split: {"me": int(y.sum()), "other": int(len(y) - y.sum())}
              for split, (_, y, _) in data.items() if split != "strangers" or len(y)}
    out: dict[str, Any] = {
        "threshold": threshold,
        "accuracy": float(test_metrics["accuracy"]),
        "balanced_accuracy": float(test_metrics["balanced_accuracy"]),
        "precision": float(test_metrics["precision"]), "recall": float(test_metrics["recall"]),
        "f1": float(test_metrics["f1"]), "roc_auc": _finite(roc_auc(y_test, test_scores)),
        "recall_at_1pct_far": recall_at_far(y_test, test_scores),
        "val_f1": float(val_metrics["f1"]), "val_roc_auc": _finite(roc_auc(y_val, val_scores)),
        "confusion_matrix": binary_confusion(y_test, predicted).tolist(),
        "confusion_matrix_labels": list(CM_LABELS), "counts": counts, "test_photos": len(y_test),
        "strangers_photos": int(len(scores["strangers"])),
    }
    if len(scores["strangers"]):
        me = test_scores[y_test > 0]
        y = np.r_[np.ones(len(me)), np.zeros(len(scores["strangers"]))]
        s = np.r_[me, scores["strangers"]]
        out.update(strangers_roc_auc=_finite(roc_auc(y, s)),
                   strangers_accuracy=float(np.mean((s >= threshold) == (y > 0))),
                   strangers_false_accept=float(np.mean(scores["strangers"] >= threshold)),
                   strangers_recall_at_1pct_far=recall_at_far(y, s))
    return out


def _job_dict(job: TransferJob) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(job).items()}


def _write_outputs(job: TransferJob, model: keras.Model | None, histories: list[pd.DataFrame],
                   summary: dict[str, Any], data: dict, scores: dict[str, np.ndarray]) -> None:
    out = Path(job.out_dir)
    if histories:
        history = pd.concat(histories, ignore_index=True)
        write_with(out / "history.csv", lambda p: history.to_csv(p, index=False))
    for split in ("test", "strangers"):
        rows, split_scores = data[split][2], scores[split]
        if split == "strangers" and not len(split_scores):
            continue
        preds = pd.DataFrame({
            "path": rows["path"].astype(str), "crop_path": rows["crop_path"].astype(str),
            "label": rows["label"].astype(str), "score": np.round(split_scores, 6),
            "predicted": np.where(split_scores >= summary["threshold"], CM_LABELS[1], CM_LABELS[0]),
        })
        write_with(out / f"predictions_{split}.csv", lambda p, f=preds: f.to_csv(p, index=False))
    write_json(out / "config.json", {"model": f"me_{job.strategy}", "job": _job_dict(job),
                                     "package_versions": package_versions()})
    write_json(out / "metrics.json", summary)
    if model is not None:
        write_with(out / "model.keras", lambda p: model.save(p), suffix=".keras")  # last: marks completion
