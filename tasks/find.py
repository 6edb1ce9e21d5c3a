"""Tasks of the ``find-me`` flow: plan the scan, judge chunks of photos, publish matches and contact sheet."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from recognize_me.console import import_tensorflow_quietly, quiet_environment
from recognize_me.me.contact_sheet import match_rows, summarize, write_contact_sheet, write_matches
from recognize_me.me.library import FindSpec, LibraryPhoto, ScanPlan, judge_chunk, load_results, plan_scan
from recognize_me.me.predict import load_champions, load_run_models


@task(name="load-find-models")
def load_find_spec(out_dir: Path, run_dir: Path | None, registry: Path, threshold: float | None = None) -> FindSpec:
    chosen = load_run_models(Path(run_dir)) if run_dir else load_champions(Path(registry))
    predictor = chosen.with_threshold(threshold)
    get_run_logger().info("is-me model: %s (threshold %.3f%s); attributes: %s", predictor.me_strategy,
                          predictor.threshold, "" if threshold is None else f", given; its own {chosen.threshold:.3f}",
                          predictor.attribute_model_name)
    return FindSpec(predictor=predictor, out_dir=Path(out_dir))


@task(name="plan-scan")
def plan_library_scan(photos_dir: Path, spec: FindSpec, chunk_size: int, workers: int) -> ScanPlan:
    plan = plan_scan(photos_dir, spec, chunk_size, workers)
    get_run_logger().info("%d photos (%d already judged by these models), %d files skipped",
                          len(plan.photos), len(plan.photos) - plan.to_judge, len(plan.skipped))
    return plan


@task(name="judge-photos", task_run_name="judge-{chunk[0].rel}", retries=1)
def judge_photos(spec: FindSpec, root: Path, chunk: tuple[LibraryPhoto, ...], threads: int) -> int:
    quiet_environment()
    tf = import_tensorflow_quietly()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # a reused worker process already set its threads
    return len(judge_chunk(spec, root, chunk))


@task(name="publish-find-report")
def publish_find_report(spec: FindSpec, plan: ScanPlan) -> Path:
    results = load_results(spec, plan.photos)
    write_matches(results, spec.out_dir)
    threshold, floor = spec.predictor.threshold, spec.near_miss_floor
    sheet = write_contact_sheet(results, plan.skipped, spec.out_dir, threshold=threshold, near_miss=floor,
                                title=f"Photos of you in {plan.root}")
    counts = summarize(results, plan.skipped, floor)
    found = match_rows([r for r in results if r.get("is_me")])
    top = found[found["is_me"] == True].sort_values("me_probability", ascending=False).head(50)  # noqa: E712
    create_table_artifact(top.to_dict(orient="records"), key="find-me-matches",
                          description="faces judged to be you (most likely first, at most 50)")
    create_markdown_artifact(
        f"# find-me: {plan.root}\n\n{counts['photos']} photos, {counts['faces']} faces: **you in "
        f"{counts['found']}**, {counts['near_misses']} near misses, {counts['not_judged']} files not judged.\n\n"
        f"`{spec.out_dir / 'matches.csv'}`\n", key="find-me-summary", description="library scan summary")
    create_link_artifact(sheet.resolve().as_uri(), link_text="contact_sheet.html", key="find-me-contact-sheet")
    get_run_logger().info("you in %d of %d photos; contact sheet %s", counts["found"], counts["photos"], sheet)
    return sheet
