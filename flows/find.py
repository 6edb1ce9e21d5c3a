"""The ``find-me`` flow: scan a photo library for the user, every face of every photo, incrementally."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from tqdm import tqdm

from flows.training import dask_runner
from recognize_me.me.library import PLAN_JSON, FindSpec, default_out_dir, progress_line, read_plan
from recognize_me.training.plan import threads_per_worker
from tasks.find import judge_photos, load_find_spec, plan_library_scan, publish_find_report

LOG_EVERY_S = 10.0


@flow(name="judge-library")
def judge_library(spec: FindSpec, plan_json: Path, threads: int, console_progress: bool = False) -> int:
    """Judge every chunk of the plan on the task runner's workers; progress in the UI, the log and (CLI)
    a bar on stdout (stderr goes through the CLI's line filter)."""
    plan = read_plan(plan_json)
    futures = [judge_photos.submit(spec, plan.root, chunk, threads) for chunk in plan.chunks]
    progress_id = create_progress_artifact(0.0, key="find-me-progress", description="photos judged")
    logger, start, logged, done = get_run_logger(), time.monotonic(), 0.0, 0
    with tqdm(total=plan.to_judge, unit="photo", disable=not console_progress, leave=False, file=sys.stdout) as bar:
        for future in as_completed(futures):
            n = future.result()
            done += n
            bar.update(n)
            update_progress_artifact(progress_id, 100.0 * done / plan.to_judge)
            if time.monotonic() - logged >= LOG_EVERY_S or done == plan.to_judge:
                logged = time.monotonic()
                logger.info(progress_line(done, plan.to_judge, logged - start))
    return done


@flow(name="find-me", log_prints=True)
def find_me(photos_dir: Path, run_dir: Path | None = None, registry: Path = Path("artifacts/registry"),
            out_dir: Path | None = None, workers: int = 2, chunk_size: int = 16, dask_address: str | None = None,
            console_progress: bool = False, threshold: float | None = None) -> str:
    """Find the user in ``photos_dir`` (recursive) with a run's best models (``run_dir``) or the registry's
    champions; writes ``matches.csv`` and ``contact_sheet.html`` to ``out_dir``. Returns the sheet's path.
    ``threshold`` replaces the "is this me?" threshold chosen on validation (None keeps it)."""
    spec = load_find_spec(Path(out_dir) if out_dir else default_out_dir(photos_dir), run_dir, registry, threshold)
    plan = plan_library_scan(Path(photos_dir), spec, chunk_size, workers)
    if plan.chunks:
        n = min(workers, len(plan.chunks))
        judge_library.with_options(task_runner=dask_runner(dask_address, n))(
            spec, spec.out_dir / PLAN_JSON, threads_per_worker(n), console_progress)
    return str(publish_find_report(spec, plan))
