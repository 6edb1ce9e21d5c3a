"""Train and evaluate one attribute model in its own folder: the body of one parallel training job.

Everything a job needs travels as plain values and file paths (``TrainJob``), so a job can run in any
process or machine that sees the same files. The model folder ends up holding ``model.keras``,
``history.csv``, ``metrics.json``, ``config.json`` and ``predictions_test.csv``; every file is written
atomically. A per-epoch ``backup/`` (``AtomicBackupAndRestore``) lets a rerun resume a killed job, and
``EpochSeeds`` makes each epoch's shuffle, flips and dropout a function of (seed, epoch), so the resumed
run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recognize_me.catalog import MODELS
from recognize_me.fileio import write_json, write_with
from recognize_me.runs import package_versions

EpochHook = Callable[[str, int, int, dict[str, float]], None]  # (model, epoch 1-based, epochs, logs)


@dataclass(frozen=True)
class TrainJob:
    model: str
    run_dir: Path
    splits_csv: Path  # image_id, split, one 0/1 column per attribute
    images_dir: Path
    attributes: tuple[str, ...]
    image_size: tuple[int, int] = (64, 64)
    crop: str = "square"
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 42
    augment_flip: bool = True
    vgg_weights: str = "none"
    threads: int = 1
    precision: str = "float32"  # a Keras dtype policy name or "auto" (recognize_me.training.precision)
    budget_s: float | None = None  # seconds for training + evaluation (None: always max epochs)
    decoded: Path | None = None  # decoded_cache folder holding every image of splits_csv (None: read JPEGs)
    context: dict[str, Any] = field(default_factory=dict)  # resolved config, fingerprint: saved in config.json
    fault_exit_epoch: int | None = None  # testing only: the process exits hard when this epoch begins

    @property
    def out_dir(self) -> Path:
        return Path(self.run_dir) / "models" / self.model

    @property
    def model_seed(self) -> int:
        """Base seed + the model's catalog offset, so models differ but stay reproducible."""
        return self.seed + MODELS.get(self.model).seed_offset

    def cache_key(self) -> str:
        """What the trained model depends on (splits, listed images, hyperparameters), not where it runs."""
        from recognize_me.training.cache_keys import train_job_key

        return train_job_key(self)


def configure_tensorflow(threads: int, seed: int, precision: str = "float32") -> str:
    """Per-process TF setup: thread pools sized to share the cores, GPU memory growth (when there are
    GPUs), seeds, deterministic ops, the dtype policy. Returns the policy name in force."""
    import keras
    import tensorflow as tf

    from recognize_me.training.precision import apply_precision

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # a reused worker process already initialised TF with the same settings
    tf.config.experimental.enable_op_determinism()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return apply_precision(precision)


def load_split_labels(splits_csv: Path, images_dir: Path, attributes: tuple[str, ...]) -> dict[str, tuple]:
    table = pd.read_csv(splits_csv, dtype={"image_id": str})
    out = {}
    for name in ("train", "val", "test"):
        rows = table[table["split"] == name]
        paths = [str(Path(images_dir) / i) for i in rows["image_id"]]
        out[name] = (paths, rows[list(attributes)].to_numpy(np.float32), rows["image_id"].tolist())
    return out


def _callbacks(job: TrainJob, phase: int, plan, offset: int, on_epoch: EpochHook | None,
               spec, epoch_var, budget=None) -> list:
    import keras

    from recognize_me.training.callbacks import (
        AtomicBackupAndRestore,
        EpochReporter,
        EpochSeeds,
        FaultInjector,
    )

    # The history row is logged before the backup is taken: a kill between the two makes the rerun redo
    # that epoch and log it again (the duplicate is dropped on reading), never skip its row.
    cbs = [EpochSeeds(epoch_var, offset),
           keras.callbacks.CSVLogger(str(job.out_dir / f"history.phase{phase}.partial.csv"), append=True),
           AtomicBackupAndRestore(str(job.out_dir / "backup" / f"phase{phase}"))]
    if budget is not None:
        cbs.append(budget)  # before the reporter: it reports the plan this epoch made
    if on_epoch is not None:
        cbs.append(EpochReporter(job.model, plan, on_epoch, offset=offset))
    if job.fault_exit_epoch is not None:
        cbs.append(FaultInjector(job.fault_exit_epoch))
    return cbs + list(spec.callbacks(_options(job), plan, offset))


def _options(job: TrainJob):
    from recognize_me.models import BuildOptions

    return BuildOptions(learning_rate=job.learning_rate, vgg_weights=job.vgg_weights, seed=job.model_seed,
                        weight_decay=job.weight_decay)


def _phase_epochs(epochs: int, two_phase: bool) -> list[int]:
    if not two_phase:
        return [epochs]
    first = max(1, epochs // 2)
    return [first, epochs - first] if epochs > first else [first]


def _datasets(job: TrainJob, data: dict[str, tuple], epoch_var) -> tuple[dict[str, Any], str]:
    """train (shuffled, flipped, epoch-seeded), val and test datasets; from the decoded array when the job
    has one, else from the image files. Also says which input was used."""
    from recognize_me.data.dataset import make_array_dataset, make_dataset
    from recognize_me.data.decoded_cache import DecodedImages

    common: dict[str, Any] = dict(batch_size=job.batch_size)
    if job.decoded is not None:
        cache = DecodedImages.open(job.decoded)
        if cache.images.shape[1:3] != tuple(job.image_size):
            raise ValueError(f"{job.decoded}: decoded at {cache.images.shape[1:3]}, job wants {job.image_size}")

        def build(split: str, **kw: Any):
            return make_array_dataset(cache.images, cache.rows(data[split][2]), data[split][1], **common, **kw)
        kind = "decoded array"
    else:
        common |= dict(image_size=job.image_size, crop=job.crop)

        def build(split: str, **kw: Any):
            return make_dataset(data[split][0], data[split][1], **common, **kw)
        kind = "jpeg"
    train = build("train", shuffle=True, augment_flip=job.augment_flip, seed=job.model_seed, epoch=epoch_var)
    return {"train": train, "val": build("val"), "test": build("test")}, kind


def train_one(job: TrainJob, on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Train ``job.model``, evaluate it on val and test, and write its folder. Returns the summary."""

    import tensorflow as tf

    from recognize_me.models import get_model_spec, positive_weights, with_positive_weights
    from recognize_me.training.budget import EpochPlan
    from recognize_me.training.callbacks import TimeBudget
    from recognize_me.training.seeding import isolated_default_seeds
    from recognize_me.training.thresholds import evaluate_with_thresholds

    start = time.perf_counter()
    started = time.monotonic()
    policy = configure_tensorflow(job.threads, job.model_seed, job.precision)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    spec = get_model_spec(job.model)
    data = load_split_labels(job.splits_csv, job.images_dir, job.attributes)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)  # set by EpochSeeds before each epoch
    ds, input_kind = _datasets(job, data, epoch_var)
    with isolated_default_seeds(job.model_seed):
        model = spec.build((*job.image_size, 3), len(job.attributes), _options(job))
        if spec.class_weighted_loss:
            model = with_positive_weights(model, positive_weights(data["train"][1]).tolist(), job.learning_rate,
                                          weight_decay=_options(job).weight_decay)
        fit_model, fit_ds = model, ds
        if spec.identity_loss_weight > 0:
            fit_model, fit_ds = _identity_fit(job, spec, model, data, epoch_var)
    plan = EpochPlan(max_epochs=job.epochs, budget_s=job.budget_s)
    n_val, n_test = max(1, len(data["val"][1])), len(data["test"][1])
    budget = (TimeBudget(plan, started, eval_factor=1.5 + n_test / n_val) if job.budget_s is not None else None)
    histories: list[pd.DataFrame] = []
    two_phase = spec.fine_tune is not None
    # Without a budget the phases' epochs are fixed; with one, each fit's epochs is an upper bound and
    # TimeBudget ends the first phase at half the plan and the second at the plan.
    phases = _phase_epochs(job.epochs, two_phase) if budget is None else [job.epochs] * (1 + two_phase)
    done = 0
    for phase, epochs in enumerate(phases, start=1):
        if budget is not None:
            epochs = job.epochs - done
            if epochs <= 0 or done >= plan.epochs:
                break
            budget.offset = done
            budget.first_of_two = two_phase and phase == 1
        if phase == 2:
            with isolated_default_seeds(job.model_seed + phase):
                model = fit_model = spec.fine_tune(model, _options(job))
        fit_model.fit(fit_ds["train"], validation_data=fit_ds["val"], epochs=epochs, verbose=0,
                  shuffle=False,  # tf.data shuffles; Keras warns when asked to
                  callbacks=_callbacks(job, phase, plan, done, on_epoch, spec, epoch_var, budget))
        history = pd.read_csv(job.out_dir / f"history.phase{phase}.partial.csv")
        history = history.rename(columns=lambda c: c.replace("attributes_", ""))  # identity model's names
        histories.append(history.drop_duplicates("epoch", keep="last").reset_index(drop=True).assign(phase=phase))
        done += len(histories[-1])
    train_time = time.perf_counter() - start

    val_scores = model.predict(ds["val"], verbose=0)
    test_scores = model.predict(ds["test"], verbose=0)
    y_val, y_test = data["val"][1], data["test"][1]
    tuned, scores = evaluate_with_thresholds(y_val, val_scores, y_test, test_scores, list(job.attributes),
                                             spec.tune_thresholds)
    summary = {
        "model": job.model, "status": "completed", "description": spec.description,
        "model_dir": str(job.out_dir),
        "params": int(model.count_params()), "train_time_s": round(train_time, 2),
        "epochs_run": done, "epochs_planned": int(plan.epochs), "max_epochs": job.epochs,
        "budget_s": job.budget_s, "stopped_by_budget": bool(plan.stopped_by_budget),
        "images_per_s": round(done * len(data["train"][1]) / max(train_time, 1e-9), 1),
        "precision": policy, "input": input_kind, "seed": job.model_seed,
        **_weights_note(job),
        "test_images": len(y_test), **scores, "per_attribute": tuned.to_dict(orient="records"),
    }
    _write_outputs(job, model, histories, summary, test_scores, data["test"][2])
    return summary


def _identity_fit(job: TrainJob, spec, model, data: dict[str, tuple], epoch_var) -> tuple:
    """The two-output training model and its train/val datasets, targets {"attributes", "identity"}: train
    images carry their identity index, validation images -1 (unseen people: no identity loss). The identity
    rides through the input pipeline as one more label column, so it is shuffled together with its image."""
    from recognize_me.models.identity import identity_indices, identity_training_model
    from recognize_me.models.losses import make_optimizer

    who = load_split_identities(job.splits_csv)
    ids, n_ids = identity_indices(who["train"], len(data["train"][1]))
    if n_ids < 2:
        raise ValueError(f"{job.model} needs an identity column with >= 2 train identities in {job.splits_csv} "
                         "(written when identity_CelebA.txt is present)")
    n_attr = len(job.attributes)

    def split_targets(x, y):
        return x, {"attributes": y[:, :n_attr], "identity": y[:, n_attr]}

    def with_column(split: str, column: np.ndarray) -> tuple:
        paths, labels, image_ids = data[split]
        return paths, np.column_stack([labels, column]).astype(np.float32), image_ids

    extended = {"train": with_column("train", ids), "val": with_column("val", np.full(len(data["val"][1]), -1)),
                "test": data["test"]}
    ds, _ = _datasets(job, extended, epoch_var)
    fit_model = identity_training_model(model, n_ids, model.loss,
                                        make_optimizer(job.learning_rate, _options(job).weight_decay),
                                        identity_weight=spec.identity_loss_weight)
    return fit_model, {"train": ds["train"].map(split_targets), "val": ds["val"].map(split_targets)}


def load_split_identities(splits_csv: Path) -> dict[str, np.ndarray | None]:
    """Per split, the ``identity`` column of splits.csv (NaN where unknown); ``None`` without the column."""
    table = pd.read_csv(splits_csv, dtype={"image_id": str})
    if "identity" not in table.columns:
        return {name: None for name in ("train", "val", "test")}
    return {name: table.loc[table["split"] == name, "identity"].to_numpy(dtype="float64")
            for name in ("train", "val", "test")}


def _weights_note(job: TrainJob) -> dict[str, Any]:
    """For the transfer model: which weights it started from (``none`` = trained from scratch)."""
    if not MODELS.get(job.model).reads_vgg_weights:
        return {}
    return {"vgg_weights": job.vgg_weights, "trained_from_scratch": job.vgg_weights.strip().lower() == "none"}


def _write_outputs(job: TrainJob, model, histories: list[pd.DataFrame], summary: dict[str, Any],
                   test_scores: np.ndarray, test_ids: list[str]) -> None:
    out = job.out_dir
    history = pd.concat(histories, ignore_index=True)
    write_with(out / "history.csv", lambda p: history.to_csv(p, index=False))
    preds = pd.DataFrame(test_scores, columns=list(job.attributes)).round(5)
    preds.insert(0, "image_id", test_ids)
    write_with(out / "predictions_test.csv", lambda p: preds.to_csv(p, index=False))
    write_json(out / "config.json", {"model": job.model, "job": _job_dict(job), **job.context,
                                     "package_versions": package_versions()})
    write_json(out / "metrics.json", summary)
    write_with(out / "model.keras", lambda p: model.save(p), suffix=".keras")  # last: marks completion
    for partial in out.glob("history.phase*.partial.csv"):
        partial.unlink()
    shutil.rmtree(out / "backup", ignore_errors=True)  # kept until now so a kill in any phase resumes


def _job_dict(job: TrainJob) -> dict[str, Any]:
    d = asdict(job)
    d.pop("context")
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
