"""The ``train-all`` flow: ingest -> check -> split -> train in parallel -> evaluate -> report."""

from __future__ import annotations

import json
import time

from prefect import flow

from flows.me import recognize_me_stage
from flows.training import run_parallel
from recognize_me.config import PipelineConfig
from recognize_me.data.validation import inventory_cache_dir
from recognize_me.evaluation.report import best_model_dir, test_set_digest
from recognize_me.training.plan import plan_jobs, threads_per_worker, worker_count
from tasks.data import (
    check_data,
    create_run_folder,
    decode_images,
    ensure_demo_data,
    fingerprint_sources,
    ingest_celeba,
    inventory,
    save_run_config,
    split_data,
)
from tasks.evaluation import publish_report
from tasks.me import prepare_me_photos
from tasks.registry import promote


@flow(name="train-all", log_prints=True)
def train_all(config: PipelineConfig) -> str:
    run_dir = create_run_folder(config)
    ensure_demo_data(config)
    source = fingerprint_sources(config)
    save_run_config(config, run_dir, source)
    cached = {"refresh_cache": config.refresh}
    tables = ingest_celeba.with_options(**cached)(config, source)
    manifest = inventory.with_options(**cached)(tables, source, inventory_cache_dir(config))
    check_data.with_options(**cached)(config, tables, manifest, run_dir, source)
    splits_csv = split_data(config, tables, manifest, run_dir)
    photos_csv = prepare_me_photos.with_options(**cached)(config, run_dir, splits_csv, tables.paths.images_dir) \
        if config.me_dir else None

    decoded = decode_images(config, splits_csv, tables.paths.images_dir, source)
    n_workers = worker_count(config, len(config.models))
    jobs = plan_jobs(config, run_dir, splits_csv, tables.paths.images_dir, source,
                     threads=threads_per_worker(n_workers), n_workers=n_workers, decoded=decoded,
                     now=time.time())  # budgeted jobs end by their slot's end, however late they start
    outcomes = run_parallel(jobs, config.dask_address, n_workers, refresh=config.refresh)

    report = publish_report(run_dir, splits_csv, tables.paths.images_dir, config.attribute_names, outcomes)
    best = best_model_dir(run_dir, outcomes)
    if best is not None:
        promote(config.output_root, "celeba", best, "mean_accuracy",
                test_set_digest(splits_csv, config.attribute_names),
                lineage={"data_fingerprint": source, "seed": config.seed, "run_dir": str(run_dir),
                         "config": json.loads(config.to_json())})
    if photos_csv is not None:
        me_report = recognize_me_stage(config, run_dir, photos_csv, outcomes, source, splits_csv,
                                       tables.paths.images_dir)
        print(f"recognize-me report: {me_report}")
    print(f"report: {report}")
    return str(report)
