"""``train-all`` through Prefect against the same steps as plain Python, on generated demo data.

Each run is a fresh subprocess (wall time includes imports and, for Prefect, its temporary server):
  prefect        ``flows.train_all.train_all(config=...)`` with a fresh ``PREFECT_HOME``
  prefect-rerun  the same call again, same ``PREFECT_HOME``, unchanged data and config (cache hits)
  plain          fingerprint, ingest, inventory, check, split, ``train_one`` per model in a spawn
                 ``ProcessPoolExecutor`` (one process per model, TF threads shared as in the flow),
                 ``build_report``, champion registry
  single <model> ``train_one`` alone with all cores (the sequential reference)
The parallel-training wall is timed around ``run_parallel`` (Prefect, by wrapping it in the child) and
around the pool (plain); ``train_time_s`` comes from each model's ``metrics.json``.

    python -m benchmarks.orchestration [--n-images 800] [--epochs 2] [--repeats 1] [--wait-idle 20:15]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Bench, common_args, emit, median, run_child, wait_for_idle

MODELS = ["baseline_cnn", "cnn_scheduled"]
PREFECT_ENV_DROP = ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "PREFECT_LOCAL_STORAGE_PATH", "PREFECT_PROFILE")


def model_times(run_dir: Path, outcomes: list[dict]) -> dict[str, float]:
    out = {}
    for o in outcomes:
        folder = Path(o.get("model_dir") or Path(run_dir) / "models" / o["model"])
        out[o["model"]] = json.loads((folder / "metrics.json").read_text())["train_time_s"]
    return out


def prefect_child(config_path: Path) -> None:
    t0 = time.perf_counter()
    began = datetime.now(UTC)
    import flows.train_all as train_all_module
    from recognize_me.config import PipelineConfig

    config = PipelineConfig.model_validate_json(config_path.read_text())
    timed: dict[str, object] = {}
    original = train_all_module.run_parallel

    def run_parallel(jobs, *args, **kwargs):
        start = time.perf_counter()
        outcomes = original(jobs, *args, **kwargs)
        timed["train_parallel_s"], timed["outcomes"], timed["run_dir"] = \
            time.perf_counter() - start, outcomes, jobs[0].run_dir
        return outcomes
    train_all_module.run_parallel = run_parallel
    import_s = time.perf_counter() - t0
    from prefect import get_client

    t1 = time.perf_counter()
    with get_client(sync_client=True) as client:  # starts the temporary server of an unconfigured shell
        client.api_healthcheck()
    server_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    state = train_all_module.train_all(config=config, return_state=True)
    flow_s = time.perf_counter() - t1
    state.result()  # raise if the flow failed
    emit({"import_s": import_s, "server_s": server_s, "flow_s": flow_s, "train_parallel_s": timed["train_parallel_s"],
          "train_time_s": model_times(timed["run_dir"], timed["outcomes"]), "tasks": task_breakdown(began)})


def task_breakdown(since: datetime) -> list[dict]:
    """Task runs of this process' flow runs (name, final state, seconds) from the Prefect API."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(limit=200)
    out = []
    for r in runs:
        if r.expected_start_time and r.expected_start_time < since:
            continue
        secs = (r.end_time - r.start_time).total_seconds() if r.start_time and r.end_time else \
            r.total_run_time.total_seconds()
        out.append({"task": r.name, "state": r.state_name, "s": round(secs, 2)})
    return sorted(out, key=lambda d: d["task"])


def plain_child(config_path: Path) -> None:
    t0 = time.perf_counter()
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from recognize_me.config import PipelineConfig
    from recognize_me.data.check_report import raise_on_critical
    from recognize_me.data.splits import make_splits
    from recognize_me.data.validation import check_tables, inventory_tables, load_tables
    from recognize_me.evaluation.report import best_model_dir, build_report, test_set_digest
    from recognize_me.fileio import write_with
    from recognize_me.registry import Candidate, ModelRegistry
    from recognize_me.runs import create_run_dir, data_fingerprint, folder_signature
    from recognize_me.training.plan import plan_jobs, threads_per_worker, worker_count
    from recognize_me.training.train import train_one

    config = PipelineConfig.model_validate_json(config_path.read_text())
    import_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    run_dir = create_run_dir(config.output_root, config.run_name)
    tables = load_tables(config)
    paths = tables.paths
    source = data_fingerprint([paths.attr_file, paths.partition_file, paths.identity_file], config.data_json(),
                              extra=[folder_signature(paths.images_dir)])
    manifest = inventory_tables(tables)
    raise_on_critical(check_tables(config, tables, manifest, docs_dir=run_dir / "data_docs"))
    available = manifest.loc[manifest["exists"] & manifest["decodable"], "image_id"]
    splits = make_splits(available, seed=config.seed, fractions=config.split_fractions, partition=tables.partition,
                         identity=tables.identity, use_official=config.use_official_partition,
                         limit=config.limit_images)
    table = splits.merge(tables.attributes.frame, on="image_id", how="left")
    splits_csv = write_with(run_dir / "splits.csv", lambda p: table.to_csv(p, index=False))
    n_workers = worker_count(config, len(config.models))
    jobs = plan_jobs(config, run_dir, splits_csv, paths.images_dir, source, threads=threads_per_worker(n_workers))
    t2 = time.perf_counter()
    with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
        outcomes = [{k: v for k, v in s.items() if k != "per_attribute"} for s in pool.map(train_one, jobs)]
    train_parallel_s = time.perf_counter() - t2
    build_report(run_dir, splits_csv, paths.images_dir, config.attribute_names, outcomes)
    best = best_model_dir(run_dir, outcomes)
    metrics = json.loads((best / "metrics.json").read_text())
    ModelRegistry(Path(config.output_root) / "registry").consider(Candidate(
        task="celeba", model_dir=best, metric="mean_accuracy", value=float(metrics["mean_accuracy"]),
        test_set=test_set_digest(splits_csv, config.attribute_names),
        lineage={"data_fingerprint": source, "seed": config.seed, "run_dir": str(run_dir)}))
    emit({"import_s": import_s, "flow_s": time.perf_counter() - t1, "train_parallel_s": train_parallel_s,
          "pre_train_s": t2 - t1, "train_time_s": model_times(run_dir, outcomes), "run_dir": str(run_dir)})


def single_child(config_path: Path, model: str, splits_csv: Path) -> None:
    from recognize_me.config import PipelineConfig
    from recognize_me.training.plan import plan_jobs
    from recognize_me.training.train import train_one

    config = PipelineConfig.model_validate_json(config_path.read_text())
    Path(config.output_root).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(dir=config.output_root))
    job = next(j for j in plan_jobs(config, run_dir, splits_csv, Path(config.celeba_dir) / "img_align_celeba",
                                    "bench", threads=os.cpu_count() or 1) if j.model == model)
    t = time.perf_counter()
    summary = train_one(job)
    emit({"model": model, "train_one_s": time.perf_counter() - t, "train_time_s": summary["train_time_s"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=1, help="plain/Prefect pairs, each with a fresh PREFECT_HOME")
    parser.add_argument("--child", choices=["prefect", "plain", "single"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--splits", type=Path, help=argparse.SUPPRESS)
    common_args(parser)
    args = parser.parse_args()
    if args.child == "prefect":
        return prefect_child(args.config)
    if args.child == "plain":
        return plain_child(args.config)
    if args.child == "single":
        return single_child(args.config, args.model, args.splits)

    from recognize_me.config import PipelineConfig
    from recognize_me.demo.data import generate_demo_data

    tmp = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    data = tmp / "celeba"
    generate_demo_data(data, n_images=args.n_images)

    def config_file(name: str) -> Path:
        cfg = PipelineConfig(celeba_dir=data, models=MODELS, image_size=(args.size, args.size), epochs=args.epochs,
                             output_root=tmp / name)
        path = tmp / f"{name}.json"
        path.write_text(cfg.to_json())
        return path

    if args.wait_idle:
        wait_for_idle(deadline_utc=args.wait_idle)
    bench = Bench("orchestration", {"n_images": args.n_images, "models": MODELS, "image_size": args.size,
                                    "epochs": args.epochs, "repeats": args.repeats, "work_dir": str(tmp)})
    runs: dict[str, list[dict]] = {"plain": [], "prefect": [], "prefect-rerun": []}
    for i in range(args.repeats):
        runs["plain"].append(run_child("benchmarks.orchestration", "--child", "plain",
                                       "--config", str(config_file(f"plain{i}"))))
        home = tmp / f"prefect-home{i}"
        env = {k: v for k, v in os.environ.items() if k not in PREFECT_ENV_DROP} | {
            "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
        cfg = config_file(f"prefect{i}")
        for name in ("prefect", "prefect-rerun"):
            runs[name].append(run_child("benchmarks.orchestration", "--child", "prefect", "--config", str(cfg),
                                        env=env, replace_env=True))
        for name in runs:
            print(f"  {name}: {runs[name][-1]['wall_s']:.1f} s", flush=True)
    splits = Path(runs["plain"][0]["run_dir"]) / "splits.csv"
    single = {m: run_child("benchmarks.orchestration", "--child", "single", "--config", str(config_file("single")),
                           "--model", m, "--splits", str(splits)) for m in MODELS}

    med = {name: {k: median([r.get(k, 0.0) for r in rs])
                  for k in ("wall_s", "flow_s", "train_parallel_s", "import_s", "server_s")} for name, rs in runs.items()}
    for name, rs in runs.items():
        times = rs[-1]["train_time_s"]
        bench.row(variant=name, process_wall_s=med[name]["wall_s"], import_s=med[name]["import_s"],
                  server_start_s=med[name]["server_s"], pipeline_s=med[name]["flow_s"], train_parallel_s=med[name]["train_parallel_s"],
                  sum_train_time_s=sum(times.values()), train_time_s=times,
                  load_1min=max(r["load_1min"] for r in rs))
    for m, r in single.items():
        bench.row(variant=f"single {m} (all cores)", process_wall_s=r["wall_s"], train_parallel_s=None,
                  sum_train_time_s=r["train_time_s"], load_1min=r["load_1min"])
    for name in ("prefect", "prefect-rerun"):
        bench.notes.append(f"{name} task runs (last repeat): {runs[name][-1]['tasks']}")

    p, q, r = med["prefect"], med["plain"], med["prefect-rerun"]
    bench.ratio("prefect / plain, process wall", p["wall_s"] / q["wall_s"], "<= 1.05", p["wall_s"] / q["wall_s"] <= 1.05)
    bench.ratio("prefect / plain, pipeline call (server start excluded)", p["flow_s"] / q["flow_s"], "info", True)
    bench.ratio("prefect rerun / first, process wall", r["wall_s"] / p["wall_s"], "<= 0.05", r["wall_s"] / p["wall_s"] <= 0.05)
    bench.ratio("prefect rerun / first, flow call", r["flow_s"] / p["flow_s"], "info", True)
    sequential = sum(s["train_time_s"] for s in single.values())
    for name in ("plain", "prefect"):
        par, summed = med[name]["train_parallel_s"], sum(runs[name][-1]["train_time_s"].values())
        bench.ratio(f"{name}: parallel training wall / sum of its models' train_time_s", par / summed, "info", True)
        bench.ratio(f"{name}: parallel training wall / sum of single-model (alone) train_time_s",
                    par / sequential, "info (< 1: parallel wins)", True)
    bench.notes.append("pipeline_s: the flow call (Prefect, its temporary server already started: see "
                       "server_start_s) or the plain steps; process_wall_s: the whole subprocess")
    bench.finish(["variant", "process_wall_s", "import_s", "server_start_s", "pipeline_s", "train_parallel_s", "sum_train_time_s",
                  "train_time_s", "load_1min"])


if __name__ == "__main__":
    main()
