"""The training task: one model, run in its own worker process by the flow's task runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from recognize_me.console import import_tensorflow_quietly
from recognize_me.me.job import TransferJob
from recognize_me.me.transfer import train_transfer
from recognize_me.training.cache_keys import transfer_job_key
from recognize_me.training.seeding import isolated_default_seeds
from recognize_me.training.train import TrainJob, train_one


def artifact_key(prefix: str, name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"{prefix}-{name}".lower().replace("_", "-")


def train_cache_key(job: TrainJob) -> str:
    """The key ``train_model`` stores its result under (the flow looks it up before starting a cluster)."""
    return f"train-{job.model}-{job.cache_key()}"


def transfer_cache_key(job: TransferJob) -> str:
    return f"transfer-{job.strategy}-{transfer_job_key(job)}"


def _job_key(context, parameters) -> str:
    return train_cache_key(parameters["job"])


def _transfer_key(context, parameters) -> str:
    return transfer_cache_key(parameters["job"])


class ProgressReporter:
    """Logs through Prefect and moves the ``training-<name>`` progress artifact: after every (sub-)epoch
    (``on_epoch``) and at most once a minute inside one (``on_progress``: images done, images/s, ETA)."""

    def __init__(self, name: str) -> None:
        self.logger = get_run_logger()
        self.progress_id = create_progress_artifact(0.0, key=artifact_key("training", name),
                                                    description=f"{name}: share of the planned training done")

    def on_epoch(self, model: str, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        done = logs.pop("epochs_done", None)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(logs.items()))
        if done is None:
            self.logger.info("%s epoch %d/%d: %s", model, epoch, epochs, shown)
        else:
            self.logger.info("%s sub-epoch %d/%d (%.2f epochs done): %s", model, epoch, epochs, done, shown)
        update_progress_artifact(self.progress_id, 100.0 * epoch / epochs)

    def on_progress(self, model: str, progress: Any) -> None:
        self.logger.info("%s: %s", model, describe_progress(progress))
        update_progress_artifact(self.progress_id, 100.0 * progress.fraction)


def describe_progress(p: Any) -> str:
    """One line: images done of planned, epochs, images/s, ETA."""
    eta = "?" if p.eta_s == float("inf") else f"{p.eta_s / 60:.1f} min"
    return (f"{p.images_done:,} of {p.images_planned:,} training images ({p.epochs_done:.2f} epochs), "
            f"{p.images_per_s:,.0f} img/s, about {eta} of training left")


def progress_hook(name: str) -> Callable[[str, int, int, dict[str, float]], None]:
    """A per-epoch hook that logs through Prefect and moves a progress artifact keyed by ``name``."""
    return ProgressReporter(name).on_epoch


@task(name="train-model", task_run_name="train-{job.model}", cache_key_fn=_job_key, persist_result=True,
      retries=1)
def train_model(job: TrainJob) -> dict[str, Any]:
    import_tensorflow_quietly()
    reporter = ProgressReporter(job.model)
    summary = train_one(job, on_epoch=reporter.on_epoch, on_progress=reporter.on_progress)
    get_run_logger().info("%s: mean test accuracy %.4f in %.1f s", job.model, summary["mean_accuracy"],
                          summary["train_time_s"])
    return {k: v for k, v in summary.items() if k != "per_attribute"}


@task(name="train-transfer", task_run_name="transfer-{job.strategy}", cache_key_fn=_transfer_key,
      persist_result=True, retries=1)
def train_transfer_model(job: TransferJob) -> dict[str, Any]:
    import_tensorflow_quietly()
    with isolated_default_seeds(job.seed):  # Keras' unseeded layers: same weights whatever other threads do
        summary = train_transfer(job, on_epoch=progress_hook(f"me-{job.strategy}"))
    auc = summary["roc_auc"]
    get_run_logger().info("%s: test F1 %.3f, AUC %s in %.1f s", job.strategy, summary["f1"],
                          "n/a" if auc is None else f"{auc:.3f}", summary["train_time_s"])
    return summary


def collect_outcome(future: Any, job: TrainJob | TransferJob) -> dict[str, Any]:
    """The job's summary, or a ``failed`` row when its process died or it raised after its retry.

    A worker that dies hard never reports its task run's end, so the run is marked Crashed here.
    """
    try:
        return future.result()
    except BaseException as err:  # noqa: BLE001 - one model failing must not stop the others
        message = f"{type(err).__name__}: {err}"
        name = getattr(job, "model", None) or getattr(job, "strategy", "?")
        get_run_logger().error("%s failed: %s", name, message)
        _mark_crashed(getattr(future, "task_run_id", None), message)
        return {"model": name, "strategy": name, "status": "failed", "error": message}


def _mark_crashed(task_run_id: Any, message: str) -> None:
    from prefect import get_client
    from prefect.states import Crashed

    if task_run_id is None:
        return
    with get_client(sync_client=True) as client:
        run = client.read_task_run(task_run_id)
        if run.state is None or not run.state.is_final():
            client.set_task_run_state(task_run_id, Crashed(message=message), force=True)
