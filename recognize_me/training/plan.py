"""Turn the config into one self-contained training job per model."""

from __future__ import annotations

import json
import os
from pathlib import Path

from recognize_me.config import PipelineConfig
from recognize_me.training.train import TrainJob


def worker_count(config: PipelineConfig, n_jobs: int, cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return max(1, config.n_workers or min(n_jobs, cores))


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    """TF threads per training process so that the workers share the cores without oversubscribing."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // n_workers)


def plan_jobs(config: PipelineConfig, run_dir: Path, splits_csv: Path, images_dir: Path,
              fingerprint: str, threads: int) -> list[TrainJob]:
    context = {"pipeline_config": json.loads(config.to_json()), "data_fingerprint": fingerprint,
               "base_seed": config.seed}
    return [TrainJob(model=name, run_dir=Path(run_dir), splits_csv=Path(splits_csv), images_dir=Path(images_dir),
                     attributes=config.attribute_names, image_size=config.image_size, crop=config.crop,
                     epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                     seed=config.seed, augment_flip=config.augment_flip, vgg_weights=config.vgg_weights,
                     threads=threads, context=context, fault_exit_epoch=config.fault_injection.get(name))
            for name in config.models]
