"""Turn the config into one self-contained training job per model, each with its share of the time budget.

With ``time_budget_min`` the jobs are packed onto the ``n_workers`` processes longest-first (each job to
the worker that is free first), every worker's jobs then share the whole budget in proportion to their
weights (minus a fixed start-up allowance per job), and the jobs are returned in the order of their planned
start, so a runner that hands the next job to the first free worker reproduces the packing.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
from pathlib import Path

from recognize_me.catalog import MODELS
from recognize_me.config import PipelineConfig
from recognize_me.training.train import TrainJob


def worker_count(config: PipelineConfig, n_jobs: int, cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return max(1, config.n_workers or min(n_jobs, cores))


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    """TF threads per training process so that the workers share the cores without oversubscribing."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // n_workers)


#: Seconds per job outside train_one's clock: process start, TensorFlow import, saving, task bookkeeping.
JOB_OVERHEAD_S = 20.0


def budget_weight(model: str, vgg_weights: str = "none") -> float:
    """The model's share of a worker's time (``recognize_me.catalog``), given the run's ``vgg_weights``."""
    return MODELS.get(model).share(vgg_weights)


@dataclasses.dataclass(frozen=True)
class Slot:
    name: str
    worker: int
    start_s: float
    budget_s: float


def pack_budget(weights: dict[str, float], total_s: float, n_workers: int,
                overhead_s: float = JOB_OVERHEAD_S) -> list[Slot]:
    """Budgets that make every worker's jobs end within ``total_s``; slots in order of planned start.

    Longest-first list scheduling on the weights decides which jobs share a worker; each worker's time
    (``total_s`` minus ``overhead_s`` per job) is then split in proportion to its jobs' weights.
    """
    if total_s <= 0 or n_workers < 1:
        raise ValueError(f"need a positive budget and at least one worker, got {total_s} s, {n_workers}")
    order = sorted(weights, key=lambda n: (-weights[n], n))
    free = [(0.0, w) for w in range(min(n_workers, len(order)) or 1)]
    on_worker: dict[int, list[str]] = {}
    for name in order:
        load, w = heapq.heappop(free)
        on_worker.setdefault(w, []).append(name)
        heapq.heappush(free, (load + weights[name], w))
    slots = []
    for w, names in on_worker.items():
        usable = max(0.0, total_s - overhead_s * len(names))
        scale = usable / sum(weights[n] for n in names)
        t = 0.0
        for name in names:
            budget = weights[name] * scale
            slots.append(Slot(name, w, t, budget))
            t += budget + overhead_s
    return sorted(slots, key=lambda s: (s.start_s, s.worker))


def plan_jobs(config: PipelineConfig, run_dir: Path, splits_csv: Path, images_dir: Path,
              fingerprint: str, threads: int, n_workers: int = 1, decoded: Path | None = None,
              now: float | None = None) -> list[TrainJob]:
    """One job per model; with ``time_budget_min`` each has its budget and they come in start order.

    ``now``: the stage's start (``time.time()``); with it each budgeted job also gets a ``deadline``, its
    slot's end (start + budget + half the start-up allowance), so a job that starts late (a slow cluster or
    process start, an earlier job's overrun) shortens its training instead of pushing the stage's end."""
    context = {"pipeline_config": json.loads(config.to_json()), "data_fingerprint": fingerprint,
               "base_seed": config.seed}
    jobs = [TrainJob(model=name, run_dir=Path(run_dir), splits_csv=Path(splits_csv), images_dir=Path(images_dir),
                     attributes=config.attribute_names, image_size=config.image_size, crop=config.crop,
                     epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                     weight_decay=config.weight_decay,
                     seed=config.seed, augment_flip=config.augment_flip, vgg_weights=config.vgg_weights,
                     threads=threads, context=context, fault_exit_epoch=config.fault_injection.get(name),
                     precision=config.precision, decoded=decoded)
            for name in config.models]
    if config.time_budget_min is None:
        return jobs
    by_name = {j.model: j for j in jobs}
    slots = pack_budget({j.model: budget_weight(j.model, j.vgg_weights) for j in jobs},
                        config.time_budget_min * 60.0, n_workers)
    return [dataclasses.replace(by_name[s.name], budget_s=round(s.budget_s, 1),
                                deadline=None if now is None else now + s.start_s + s.budget_s + JOB_OVERHEAD_S / 2)
            for s in slots]
