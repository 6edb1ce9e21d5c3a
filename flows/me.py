"""Subflow of train-all: transfer the CelebA model to "is this me?" by every configured strategy, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow

from flows.training import run_transfer_parallel
from recognize_me.config import PipelineConfig
from recognize_me.me.photo_set import photo_test_set_digest
from recognize_me.me.plan import pick_base_model, plan_transfer_jobs, skipped_strategies, wants_base
from recognize_me.me.report import best_transfer_dir
from recognize_me.training.plan import threads_per_worker, worker_count
from tasks.me import choose_me_faces, convert_dlib_base, publish_me_report, train_distilled_student
from tasks.registry import promote


@flow(name="recognize-me")
def recognize_me_stage(config: PipelineConfig, run_dir: Path, photos_csv: Path, outcomes: list[dict[str, Any]],
                       data_fingerprint: str, splits_csv: Path, images_dir: Path) -> str | None:
    base = pick_base_model(outcomes, config.me_base_model, run_dir)
    if base is None:
        print("no CelebA model completed: nothing to transfer from")
        return None
    skipped = skipped_strategies(config)
    for row in skipped:
        print(row["error"])
    skip = tuple(r["strategy"] for r in skipped)
    dlib = convert_dlib_base(config) if wants_base(config, skip, "dlib") else None
    photos_csv = choose_me_faces(config, run_dir, photos_csv, dlib or base)  # a face-recognition network if any
    n_workers = worker_count(config, 2)
    student = None
    if wants_base(config, skip, "student"):
        student = config.me_student_model or train_distilled_student(config, run_dir, splits_csv, images_dir,
                                                                     data_fingerprint)
    jobs = plan_transfer_jobs(config, run_dir, photos_csv, base, threads=threads_per_worker(n_workers),
                              skip=skip, student=student, dlib=dlib)
    results = run_transfer_parallel(jobs, config.dask_address, n_workers, refresh=config.refresh) + skipped
    report = publish_me_report(run_dir, results)
    best = best_transfer_dir(results)
    if best is not None:
        promote(config.output_root, "recognize_me", best, "f1", photo_test_set_digest(photos_csv),
                lineage={"data_fingerprint": data_fingerprint, "seed": config.seed, "run_dir": str(run_dir),
                         "base_model": str(base), "config": json.loads(config.to_json())})
    return str(report)
