"""Publish the comparative report as Prefect artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from recognize_me.evaluation.report import build_report


@task(name="publish-report")
def publish_report(run_dir: Path, splits_csv: Path, images_dir: Path, attributes: tuple[str, ...],
                   outcomes: list[dict[str, Any]]) -> Path:
    notes = ["CelebA's official val and test priors differ (e.g. Big_Lips about 15% vs 33% positive): "
             "thresholds tuned on val can mislead on test."]
    report = build_report(run_dir, splits_csv, images_dir, attributes, outcomes, notes)
    create_table_artifact(report.leaderboard, key="leaderboard", description="test-split leaderboard")
    table = report.per_attribute.round(4).reset_index(names="attribute").to_dict(orient="records")
    create_table_artifact(table, key="per-attribute-accuracy", description="test accuracy per attribute")
    best = report.leaderboard[0]
    failed = [o["model"] for o in outcomes if o.get("status") != "completed"]
    create_markdown_artifact(
        f"# train-all report\n\nBest: **{report.best_model}** (mean test accuracy "
        f"{best['mean_accuracy']:.4f}).\n\nFailed models: {', '.join(failed) or 'none'}.\n\n"
        f"Report: `{report.html_path}`\n", key="train-all-summary", description="run summary")
    create_link_artifact(report.html_path.resolve().as_uri(), link_text="report.html", key="report")
    get_run_logger().info("report written to %s", report.html_path)
    return report.html_path
