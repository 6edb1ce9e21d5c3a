"""Subflow: train every model in parallel, one process per model, on a local or existing Dask cluster."""

from __future__ import annotations

from typing import Any

import dask
from prefect import flow, get_client
from prefect_dask import DaskTaskRunner

from recognize_me.me.transfer import TransferJob
from recognize_me.training.train import TrainJob
from tasks.training import collect_outcome, train_model, train_transfer_model


@flow(name="train-models")
def train_models(jobs: list[TrainJob], refresh: bool = False) -> list[dict[str, Any]]:
    futures = [train_model.with_options(refresh_cache=refresh).submit(job) for job in jobs]
    return [collect_outcome(future, job) for future, job in zip(futures, jobs, strict=True)]


@flow(name="train-transfer-models")
def train_transfer_models(jobs: list[TransferJob]) -> list[dict[str, Any]]:
    futures = [train_transfer_model.submit(job) for job in jobs]
    return [collect_outcome(future, job) for future, job in zip(futures, jobs, strict=True)]


def dask_runner(address: str | None, n_workers: int) -> DaskTaskRunner:
    """An existing scheduler when ``address`` is set, else a local cluster of single-threaded processes.

    Local workers get this process's Prefect API URL, so their task runs land on the same server even
    when that server is the temporary one Prefect starts for an unconfigured shell.
    """
    if address:
        return DaskTaskRunner(address=address)
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": None,
                                          "env": {"PREFECT_API_URL": api_url}})


def run_parallel(jobs: list[TrainJob], address: str | None, n_workers: int,
                 refresh: bool = False) -> list[dict[str, Any]]:
    """A dead worker process makes Dask retry its job once, then report it failed (KilledWorker)."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        return train_models.with_options(task_runner=dask_runner(address, n_workers))(jobs, refresh=refresh)


def run_transfer_parallel(jobs: list[TransferJob], address: str | None, n_workers: int) -> list[dict[str, Any]]:
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        return train_transfer_models.with_options(task_runner=dask_runner(address, n_workers))(jobs)
