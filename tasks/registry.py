"""Promote a run's best model into the champion registry, only if it beats the champion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact

from recognize_me.registry import Candidate, Decision, ModelRegistry


@task(name="promote-champion")
def promote(output_root: Path, registry_task: str, model_dir: Path, metric: str, test_set: str,
            lineage: dict[str, Any]) -> Decision:
    metrics = json.loads((Path(model_dir) / "metrics.json").read_text())
    lineage = lineage | {"run_id": str(runtime.flow_run.id), "metrics": {k: v for k, v in metrics.items()
                                                                      if k != "per_attribute"}}
    candidate = Candidate(task=registry_task, model_dir=Path(model_dir), metric=metric,
                          value=float(metrics[metric]), test_set=test_set, lineage=lineage)
    decision = ModelRegistry(Path(output_root) / "registry").consider(candidate)
    verdict = "promoted" if decision.promoted else "not promoted"
    create_markdown_artifact(
        f"# Champion decision: {registry_task}\n\nCandidate `{Path(model_dir).name}` ({metric} "
        f"{candidate.value:.4f}) was **{verdict}**: {decision.reason}.\n\nChampion version: v{decision.version}\n",
        key=f"promotion-{registry_task}".replace("_", "-"), description=f"{registry_task}: {verdict}")
    get_run_logger().info("%s: %s (%s)", registry_task, verdict, decision.reason)
    return decision
