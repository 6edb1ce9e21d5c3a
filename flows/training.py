"""Subflow: train every model in parallel, one process per model, on a local or existing Dask cluster."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import dask
from prefect import Flow, Task, flow, get_client
from prefect.results import get_result_store
from prefect_dask import DaskTaskRunner

from recognize_me.console import quiet_environment
from recognize_me.me.job import TransferJob
from recognize_me.training.train import TrainJob
from tasks.training import (
    collect_outcome,
    train_cache_key,
    train_model,
    train_transfer_model,
    transfer_cache_key,
)


@flow(name="train-models")
def train_models(jobs: list[TrainJob], refresh: bool = False) -> list[dict[str, Any]]:
    futures = [train_model.with_options(refresh_cache=refresh).submit(job) for job in jobs]
    return [collect_outcome(future, job) for future, job in zip(futures, jobs, strict=True)]


@flow(name="train-transfer-models")
def train_transfer_models(jobs: list[TransferJob], refresh: bool = False) -> list[dict[str, Any]]:
    futures = [train_transfer_model.with_options(refresh_cache=refresh).submit(job) for job in jobs]
    return [collect_outcome(future, job) for future, job in zip(futures, jobs, strict=True)]


def uncached_jobs(task: Task, key: Callable[[Any], str], jobs: list, refresh: bool) -> list:
    """The jobs whose result is not in ``task``'s Prefect result store (all of them when ``refresh``).

    Asked before any cluster exists, so a rerun whose jobs are all cached starts no process.
    """
    if refresh:
        return list(jobs)
    store = get_result_store().update_for_task(task)
    return [job for job in jobs if not store.exists(key(job))]


def dask_runner(address: str | None, n_workers: int) -> DaskTaskRunner:
    """An existing scheduler when ``address`` is set, else a local cluster of single-threaded processes.

    Local workers get this process's Prefect API URL, so their task runs land on the same server even
    when that server is the temporary one Prefect starts for an unconfigured shell.
    """
    if address:
        return DaskTaskRunner(address=address)
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    runner = DaskTaskRunner(cluster_class="distributed.LocalCluster",
                            cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                            "host": "127.0.0.1", "dashboard_address": None,
                                            "preload": ["recognize_me.console"],  # its dask_setup
                                            "env": {"PREFECT_API_URL": api_url, "DASK_LOGGING__DISTRIBUTED": "warning",
                                                    **quiet_environment(dict(os.environ))}})
    # Dask's start-up INFO lines (addresses, the unasked-for dashboard) stay out of the console;
    # its warnings and errors do not.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    logging.getLogger("distributed.nanny").addFilter(_no_shutdown_kill_line)
    runner.logger.addFilter(_no_dashboard_line)
    # the scheduler's HTTP server falls back to a free port when 8787 is taken; nobody asked for it
    warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
    return runner


def _no_dashboard_line(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("The Dask dashboard is available")


def _no_shutdown_kill_line(record: logging.LogRecord) -> bool:
    """At cluster close a worker still finishing its threads is killed after 4 s: routine, not a failure."""
    return not str(record.msg).startswith("Worker process still alive after")


def run_stage(subflow: Flow, task: Task, key: Callable[[Any], str], jobs: list, address: str | None,
                   n_workers: int, refresh: bool) -> list[dict[str, Any]]:
    """``subflow`` on Dask, with no more local workers than there are jobs to compute. When every job is a
    cache hit, its body runs in the calling flow instead (each task reads its stored result in a thread):
    no cluster, and no subflow, whose teardown alone costs up to a second (Prefect's heartbeat thread).
    A dead worker process makes Dask retry its job once, then report it failed (KilledWorker)."""
    todo = uncached_jobs(task, key, jobs, refresh)
    if not todo:
        return subflow.fn(jobs, refresh=refresh)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        runner = dask_runner(address, min(n_workers, len(todo)))
        return subflow.with_options(task_runner=runner)(jobs, refresh=refresh)


def run_parallel(jobs: list[TrainJob], address: str | None, n_workers: int,
                 refresh: bool = False) -> list[dict[str, Any]]:
    return run_stage(train_models, train_model, train_cache_key, jobs, address, n_workers, refresh)


def run_transfer_parallel(jobs: list[TransferJob], address: str | None, n_workers: int,
                          refresh: bool = False) -> list[dict[str, Any]]:
    return run_stage(train_transfer_models, train_transfer_model, transfer_cache_key, jobs, address,
                          n_workers, refresh)
