"""Train and evaluate one attribute model in its own folder: the body of one parallel training job.

Everything a job needs travels as plain values and file paths (``TrainJob``), so a job can run in any
process or machine that sees the same files. The model folder ends up holding ``model.keras``,
``history.csv``, ``metrics.json``, ``config.json`` and ``predictions_test.csv``; every file is written
atomically.

Training is planned in optimizer steps (``training.budget.EpochPlan``): a Keras epoch is a *sub-epoch* of
``sub_epoch_steps`` batches, a whole epoch without a time budget and about 1/8 of the model's share with one
(sized from a measured step time), so the budget, the schedule, early stopping and the backups work however
large an epoch is. The training input is one seeded stream of batches (``dataset.make_train_stream``):
batch ``t`` is a pure function of (seed, t). A per-sub-epoch ``backup/`` (``AtomicBackupAndRestore``, plus
``plan.json`` with the sub-epoch size) lets a rerun resume a killed job at the step it reached, and
``EpochSeeds`` makes the dropout of each sub-epoch a function of its number, so the resumed run ends exactly
where an uninterrupted one does.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recognize_me.catalog import MODELS
from recognize_me.fileio import write_json
from recognize_me.training.scaffold import ModelFolder, phase_epochs

EpochHook = Callable[[str, int, int, dict[str, float]], None]  # (model, sub-epoch 1-based, sub-epochs, logs)
ProgressHook = Callable[[str, Any], None]  # (model, callbacks.Progress): at most once a minute inside an epoch

#: Validation after every sub-epoch (early stopping, the best weights, the budget's plan) reads at most this
#: many validation images, evenly spread over the split; thresholds and reported scores use the whole split.
VAL_MONITOR_IMAGES = 4096
#: Seconds between two in-epoch progress reports.
PROGRESS_EVERY_S = 60.0


@dataclass(frozen=True)
class TrainJob:
    model: str
    run_dir: Path
    splits_csv: Path  # image_id, split, one 0/1 column per attribute
    images_dir: Path
    attributes: tuple[str, ...]
    image_size: tuple[int, int] = (64, 64)
    crop: str = "square"
    epochs: int = 5  # upper bound in real epochs (passes over the train split)
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 42
    augment_flip: bool = True
    vgg_weights: str = "none"
    threads: int = 1
    precision: str = "float32"  # a Keras dtype policy name or "auto" (recognize_me.training.precision)
    budget_s: float | None = None  # seconds for training + evaluation (None: always max epochs)
    deadline: float | None = None  # time.time() by which training + evaluation end (plan_jobs; None: budget_s)
    sub_epoch_steps: int | None = None  # batches per Keras epoch (None: from the budget, else one epoch)
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
               spec, epoch_var, budget, on_progress: ProgressHook | None = None, n_train: int = 0) -> list:
    import keras

    from recognize_me.training.callbacks import (
        AtomicBackupAndRestore,
        EpochReporter,
        EpochSeeds,
        FaultInjector,
        StepProgress,
    )

    # The history row is logged before the backup is taken: a kill between the two makes the rerun redo
    # that sub-epoch and log it again (the duplicate is dropped on reading), never skip its row.
    cbs = [EpochSeeds(epoch_var, offset),
           keras.callbacks.CSVLogger(str(job.out_dir / f"history.phase{phase}.partial.csv"), append=True),
           AtomicBackupAndRestore(str(job.out_dir / "backup" / f"phase{phase}")),
           budget]  # after the restore (it reads the restored epoch), before the reporter (it reports the plan)
    if on_epoch is not None:
        cbs.append(EpochReporter(job.model, plan, on_epoch, offset=offset))
    if on_progress is not None:
        cbs.append(StepProgress(job.model, plan, n_train, job.batch_size, on_progress, offset=offset,
                                every_s=PROGRESS_EVERY_S))
    if job.fault_exit_epoch is not None:
        cbs.append(FaultInjector(job.fault_exit_epoch))
    return cbs + [_in_sub_epochs(cb, plan) for cb in spec.callbacks(_options(job), plan, offset)]


def _in_sub_epochs(callback, plan):
    """Model specs give early stopping's patience in real epochs; a Keras epoch here is a sub-epoch."""
    import keras

    if isinstance(callback, keras.callbacks.EarlyStopping):
        callback.patience = plan.sub_epochs_for(callback.patience)
    return callback


def _options(job: TrainJob):
    from recognize_me.models import BuildOptions

    return BuildOptions(learning_rate=job.learning_rate, vgg_weights=job.vgg_weights, seed=job.model_seed,
                        weight_decay=job.weight_decay)


def _loaders(job: TrainJob, data: dict[str, tuple]) -> tuple[dict[str, Any], str]:
    """Per split, what loads its images by position: the decoded array when the job has one, else the image
    files. Also says which input was used."""
    from recognize_me.data.dataset import array_loader, jpeg_loader
    from recognize_me.data.decoded_cache import DecodedImages

    if job.decoded is not None:
        cache = DecodedImages.open(job.decoded)  # read by positional reads: no process maps the file
        if cache.reader.shape[1:3] != tuple(job.image_size):
            raise ValueError(f"{job.decoded}: decoded at {cache.reader.shape[1:3]}, job wants {job.image_size}")
        return {split: array_loader(cache.reader, cache.rows(data[split][2])) for split in data}, "decoded array"
    return {split: jpeg_loader(data[split][0], job.image_size, job.crop) for split in data}, "jpeg"


def _record_path(job: TrainJob) -> Path:
    return job.out_dir / "backup" / "plan.json"


def _size_sub_epochs(job: TrainJob, plan, model, probe_ds, started: float,
                     eval_batches: tuple[float, float]) -> tuple[float | None, float]:
    """Set ``plan.sub_epoch_steps`` (and with a budget a first ``planned_steps``); returns the measured
    seconds per step (None without a budget) and the estimated seconds of one validation. A rerun of a
    killed job reads the size (and step time) its first run chose from ``backup/plan.json``, so its
    sub-epochs (and its resume point) are the same."""
    from recognize_me.training.budget import first_plan, sub_epoch_size
    from recognize_me.training.callbacks import measure_step_time

    record_path = _record_path(job)
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record.get("steps_per_epoch") != plan.steps_per_epoch:
        record = {}
    step_s = record.get("step_s")
    if plan.budget_s is not None and step_s is None:
        step_s = measure_step_time(model, next(iter(probe_ds)))
    if job.sub_epoch_steps is not None:
        steps = max(1, min(plan.steps_per_epoch, job.sub_epoch_steps))
    else:
        steps = record.get("sub_epoch_steps") or sub_epoch_size(plan.steps_per_epoch, step_s or 0.0, plan.budget_s)
    plan.sub_epoch_steps = int(steps)
    write_json(record_path, {"steps_per_epoch": plan.steps_per_epoch, "sub_epoch_steps": plan.sub_epoch_steps,
                             "step_s": step_s})
    if plan.budget_s is not None:
        return step_s, first_plan(plan, plan.budget_s - (time.monotonic() - started), step_s, *eval_batches)
    return step_s, 0.0


@dataclass
class _Fitting:
    """What one job trains: the split labels, the loaders of their images, the model (and the model that is
    fit, which differs for the identity model) and the map from a batch's labels to its Keras targets."""

    spec: Any  # models.ModelSpec
    data: dict[str, tuple]  # split -> (paths, labels, image ids)
    loaders: dict[str, Any]
    input_kind: str
    model: Any  # the keras.Model that is evaluated and saved
    fit_model: Any
    fit_labels: dict[str, np.ndarray]
    targets: Callable | None = None  # None: the labels are the targets

    @property
    def n_train(self) -> int:
        return len(self.data["train"][1])

    def mapped(self, ds):
        return ds if self.targets is None else ds.map(self.targets)


@dataclass
class _Hooks:
    on_epoch: EpochHook | None = None
    on_progress: ProgressHook | None = None


def train_one(job: TrainJob, on_epoch: EpochHook | None = None,
              on_progress: ProgressHook | None = None) -> dict[str, Any]:
    """Train ``job.model``, evaluate it on val and test, and write its folder. Returns the summary.

    ``on_epoch`` is called after every sub-epoch, ``on_progress`` at most every ``PROGRESS_EVERY_S`` seconds
    inside one. The steps (``training.scaffold``): set up -> plan -> fit phase by phase -> evaluate ->
    write."""
    from recognize_me.training.budget import EpochPlan, budget_left

    start, started = time.perf_counter(), time.monotonic()
    budget_s = budget_left(job.budget_s, job.deadline, time.time())
    policy = configure_tensorflow(job.threads, job.model_seed, job.precision)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    fitting = _set_up(job)
    plan = EpochPlan(max_epochs=job.epochs, budget_s=budget_s,
                     steps_per_epoch=-(-fitting.n_train // job.batch_size))
    histories, monitored, step_s = _fit(job, fitting, plan, started, _Hooks(on_epoch, on_progress))
    train_time = time.perf_counter() - start
    scores, tuned, test_scores = _evaluate(job, fitting)
    summary = {
        "model": job.model, "status": "completed", "description": fitting.spec.description,
        "model_dir": str(job.out_dir), "params": int(fitting.model.count_params()),
        "train_time_s": round(train_time, 2),
        **_plan_facts(job, plan, sum(len(h) for h in histories), step_s),
        "val_images_monitored": monitored,
        "budget_s": job.budget_s, "budget_left_at_start_s": None if budget_s is None else round(budget_s, 1),
        "stopped_by_budget": bool(plan.stopped_by_budget),
        "images_per_s": round(_images_run(plan, fitting.n_train, job.batch_size) / max(train_time, 1e-9), 1),
        "precision": policy, "input": fitting.input_kind, "seed": job.model_seed,
        **_weights_note(job),
        "test_images": len(fitting.data["test"][1]), **scores,
        "per_attribute": tuned.to_dict(orient="records"),
    }
    _write_outputs(job, fitting.model, histories, summary, test_scores, fitting.data["test"][2])
    return summary


def _set_up(job: TrainJob) -> _Fitting:
    """Labels, image loaders and the model(s) of ``job``, built under the model's own seed."""
    from recognize_me.models import get_model_spec, positive_weights, with_positive_weights
    from recognize_me.training.seeding import isolated_default_seeds

    spec = get_model_spec(job.model)
    data = load_split_labels(job.splits_csv, job.images_dir, job.attributes)
    if len(data["train"][1]) == 0:
        raise ValueError(f"{job.splits_csv}: no train images")
    loaders, input_kind = _loaders(job, data)
    with isolated_default_seeds(job.model_seed):
        model = spec.build((*job.image_size, 3), len(job.attributes), _options(job))
        if spec.class_weighted_loss:
            model = with_positive_weights(model, positive_weights(data["train"][1]).tolist(), job.learning_rate,
                                          weight_decay=_options(job).weight_decay)
        fitting = _Fitting(spec, data, loaders, input_kind, model, model, {k: v[1] for k, v in data.items()})
        if spec.identity_loss_weight > 0:
            fitting.fit_model, fitting.fit_labels, fitting.targets = _identity_fit(job, spec, model, data)
    return fitting


def _fit(job: TrainJob, fitting: _Fitting, plan, started: float,
         hooks: _Hooks) -> tuple[list[pd.DataFrame], int, float | None]:
    """Size the sub-epochs, then fit phase by phase within the plan. Returns the phases' histories, the
    number of validation images monitored and the measured seconds per step (None without a budget)."""
    import tensorflow as tf

    from recognize_me.data.dataset import evenly_spaced, make_eval_batches, make_train_stream
    from recognize_me.training.callbacks import TimeBudget

    n_train, n_val, n_test = (len(fitting.data[s][1]) for s in ("train", "val", "test"))
    monitored = evenly_spaced(n_val, VAL_MONITOR_IMAGES)
    val_ds = fitting.mapped(make_eval_batches(fitting.loaders["val"], fitting.fit_labels["val"], monitored,
                                              batch_size=job.batch_size))
    eval_batches = (len(monitored) / job.batch_size, (1.5 * n_val + n_test) / job.batch_size)
    probe = make_eval_batches(fitting.loaders["train"], fitting.fit_labels["train"],
                              np.arange(min(n_train, job.batch_size)), batch_size=job.batch_size)
    step_s, val_s = _size_sub_epochs(job, plan, fitting.fit_model, fitting.mapped(probe), started,
                                     eval_batches)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)  # the sub-epoch, set by EpochSeeds
    train_ds = fitting.mapped(make_train_stream(
        fitting.loaders["train"], fitting.fit_labels["train"], batch_size=job.batch_size,
        sub_epoch_steps=plan.sub_epoch_steps, max_epochs=job.epochs, start=epoch_var, seed=job.model_seed,
        augment_flip=job.augment_flip))
    budget = TimeBudget(plan, started, eval_factor=(1.5 * n_val + n_test) / max(1, len(monitored)))
    budget.val_s = val_s  # an estimate until the first validation
    histories = _fit_phases(job, fitting, plan, budget, (train_ds, val_ds, epoch_var), hooks)
    return histories, len(monitored), step_s


def _fit_phases(job: TrainJob, fitting: _Fitting, plan, budget, inputs: tuple,
                hooks: _Hooks) -> list[pd.DataFrame]:
    """Without a budget the phases' sub-epochs are fixed (``scaffold.phase_epochs``); with one, each fit's
    count is an upper bound and ``TimeBudget`` ends the first phase at half the plan and the second at the
    plan. A two-phase model's second phase is ``spec.fine_tune`` of the first's model."""
    from recognize_me.training.seeding import isolated_default_seeds

    train_ds, val_ds, epoch_var = inputs
    two_phase = fitting.spec.fine_tune is not None
    total = plan.max_sub_epochs
    phases = phase_epochs(total, two_phase) if job.budget_s is None else [total] * (1 + two_phase)
    histories: list[pd.DataFrame] = []
    done = 0
    for phase, epochs in enumerate(phases, start=1):
        if job.budget_s is not None:
            epochs = total - done
            if epochs <= 0 or done >= plan.sub_epochs:
                break
            budget.first_of_two = two_phase and phase == 1
        budget.offset = done
        if phase == 2:
            with isolated_default_seeds(job.model_seed + phase):
                fitting.model = fitting.fit_model = fitting.spec.fine_tune(fitting.model, _options(job))
        callbacks = _callbacks(job, phase, plan, done, hooks.on_epoch, fitting.spec, epoch_var, budget,
                               hooks.on_progress, fitting.n_train)
        fitting.fit_model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                              steps_per_epoch=plan.sub_epoch_steps, callbacks=callbacks, verbose=0,
                              shuffle=False)  # the stream is shuffled (seeded): Keras need not
        histories.append(_phase_history(job, phase))
        done += len(histories[-1])
    return histories


def _phase_history(job: TrainJob, phase: int) -> pd.DataFrame:
    """The phase's CSVLogger rows, each sub-epoch once (a resumed run may have logged one twice)."""
    history = pd.read_csv(job.out_dir / f"history.phase{phase}.partial.csv")
    history = history.rename(columns=lambda c: c.replace("attributes_", ""))  # identity model's names
    return history.drop_duplicates("epoch", keep="last").reset_index(drop=True).assign(phase=phase)


def _evaluate(job: TrainJob, fitting: _Fitting) -> tuple[dict[str, Any], pd.DataFrame, np.ndarray]:
    """Scores on val and test; thresholds tuned on val when the model tunes them. Returns (the scores for
    metrics.json, the per-attribute table, the test scores)."""
    from recognize_me.data.dataset import make_eval_batches
    from recognize_me.training.thresholds import evaluate_with_thresholds

    def scores_of(split: str) -> np.ndarray:
        batches = make_eval_batches(fitting.loaders[split], fitting.data[split][1], batch_size=job.batch_size)
        return fitting.model.predict(batches, verbose=0)

    predicted = {split: scores_of(split) for split in ("val", "test")}
    (_, y_val, _), (_, y_test, _) = fitting.data["val"], fitting.data["test"]
    tuned, scores = evaluate_with_thresholds(y_val, predicted["val"], y_test, predicted["test"],
                                             list(job.attributes), fitting.spec.tune_thresholds)
    return scores, tuned, predicted["test"]


def _images_run(plan, n_train: int, batch_size: int) -> int:
    whole, part = divmod(plan.steps_done, plan.steps_per_epoch)
    return whole * n_train + min(part * batch_size, n_train)


def _plan_facts(job: TrainJob, plan, sub_epochs_run: int, step_s: float | None) -> dict[str, Any]:
    return {"epochs_run": round(plan.steps_done / plan.steps_per_epoch, 2),
            "epochs_planned": round(plan.epochs, 2),
            "max_epochs": job.epochs, "steps_run": plan.steps_done, "steps_planned": plan.steps,
            "steps_per_epoch": plan.steps_per_epoch, "sub_epoch_steps": plan.sub_epoch_steps,
            "sub_epochs_run": sub_epochs_run, "step_s_measured": None if step_s is None else round(step_s, 4)}


def _identity_fit(job: TrainJob, spec, model, data: dict[str, tuple]) -> tuple:
    """The two-output training model, its labels per split and the map that splits a batch's labels into
    targets {"attributes", "identity"}: train images carry their identity index, validation images -1 (unseen
    people: no identity loss). The identity rides through the input pipeline as one more label column, so it
    is shuffled together with its image."""
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

    def with_column(split: str, column: np.ndarray) -> np.ndarray:
        return np.column_stack([data[split][1], column]).astype(np.float32)

    labels = {"train": with_column("train", ids), "val": with_column("val", np.full(len(data["val"][1]), -1)),
              "test": data["test"][1]}
    fit_model = identity_training_model(model, n_ids, model.loss,
                                        make_optimizer(job.learning_rate, _options(job).weight_decay),
                                        identity_weight=spec.identity_loss_weight)
    return fit_model, labels, split_targets


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
    preds = pd.DataFrame(test_scores, columns=list(job.attributes)).round(5)
    preds.insert(0, "image_id", test_ids)
    ModelFolder(out, config={"model": job.model, "job": _job_dict(job), **job.context}, metrics=summary,
                model=model, histories=histories, tables={"predictions_test.csv": preds}).write()
    for partial in out.glob("history.phase*.partial.csv"):
        partial.unlink()
    shutil.rmtree(out / "backup", ignore_errors=True)  # kept until now so a kill in any phase resumes


def _job_dict(job: TrainJob) -> dict[str, Any]:
    d = asdict(job)
    d.pop("context")
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
