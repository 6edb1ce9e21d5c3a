"""The ``predict`` flow: is this me, and which CelebA attributes, for images or folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from recognize_me.me.predict import expand_paths, load_champions, load_run_models, summary_rows
from recognize_me.training.quiet import import_tensorflow_quietly


@task(name="predict-images")
def predict_images_task(paths: list[str], registry: str, run_dir: str | None) -> list[dict[str, Any]]:
    import_tensorflow_quietly()
    predictor = load_run_models(Path(run_dir)) if run_dir else load_champions(Path(registry))
    return predictor.predict(expand_paths([Path(p) for p in paths]))


@flow(name="predict")
def predict(paths: list[str], registry: str = "artifacts/registry", run_dir: str | None = None) -> list[dict]:
    results = predict_images_task(paths, registry, run_dir)
    create_table_artifact(summary_rows(results), key="predictions", description="is this me? + attributes")
    return results
