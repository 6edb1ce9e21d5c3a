"""``train-all`` through Prefect against the same steps as plain Python, on generated demo data.

Every Prefect run talks to one RUNNING ``prefect server start`` (127.0.0.1, free port, temporary
``PREFECT_HOME``, analytics off), as a user's runs do; each run is a fresh subprocess (wall time includes
imports):
  prefect        ``flows.train_all.train_all(config=...)`` with fresh result storage
  prefect-rerun  the same call again, same storage, unchanged data and config (cache hits: no cluster)
  me-first       the same config plus ``me_dir``/``others_dir`` (CelebA models must stay cached)
  me-rerun       that again, unchanged
  me-new-photo   after adding one "me" photo (only the photo step and the transfers may run)
  plain          fingerprint, ingest, inventory, check, split, ``train_one`` per model in a spawn
                 ``ProcessPoolExecutor`` (one process per model, TF threads shared as in the flow),
                 ``build_report``, champion registry
  single <model> ``train_one`` alone with all cores (the sequential reference)
  demo-first     with ``--demo``: ``recognize-me demo``'s configuration (all six models, recognize-me on the
                 demo photos, 1,600 images) on its own storage, the run a new user starts with
  demo-rerun     that again, unchanged
The parallel-training wall is timed around ``run_parallel`` (Prefect, by wrapping it in the child) and
around the pool (plain); ``train_time_s`` comes from each model's ``metrics.json``.

    python -m benchmarks.orchestration [--n-images 800] [--epochs 2] [--repeats 1] [--demo] [--wait-idle 20:15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Bench, common_args, emit, median, run_child, wait_for_idle
from deployments.screenshots import local_stack

MODELS = ["baseline_cnn", "cnn_scheduled"]
#: Tasks that run every time by design (they are what tells whether anything changed, or they publish).
CHEAP_TASKS = {"create-run-folder", "ensure-demo-data", "fingerprint-sources", "save-run-config", "split-data",
               "publish-report", "promote", "publish-me-report"}
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
    with get_client(sync_client=True) as client:  # the running server (or a temporary one if none is set)
        client.api_healthcheck()
    server_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    state = train_all_module.train_all(config=config, return_state=True)
    flow_s = time.perf_counter() - t1
    state.result()  # raise if the flow failed
    tasks = task_breakdown(began)
    emit({"import_s": import_s, "server_s": server_s, "flow_s": flow_s, "train_parallel_s": timed["train_parallel_s"],
          "train_time_s": model_times(timed["run_dir"], timed["outcomes"]), "tasks": tasks,
          "computed": sorted({t["task"] for t in tasks if t["state"] != "Cached"} - CHEAP_TASKS)})


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
        name = re.sub(r"-[0-9a-f]{3}$", "", r.name)  # "split-data-1a2" -> "split-data"; "train-resnet" stays
        out.append({"task": name, "state": r.state_name, "s": round(secs, 2)})
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
    parser.add_argument("--demo", action="store_true",
                        help="also time recognize-me demo's configuration, first run and unchanged rerun")
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

    def config_file(name: str, me: bool = False) -> Path:
        photos = {"me_dir": data / "me", "others_dir": data / "others", "me_epochs": 2} if me else {}
        cfg = PipelineConfig(celeba_dir=data, models=MODELS, image_size=(args.size, args.size), epochs=args.epochs,
                             output_root=tmp / name, **photos)
        path = tmp / f"{name}{'-me' if me else ''}.json"
        path.write_text(cfg.to_json())
        return path

    if args.wait_idle:
        wait_for_idle(deadline_utc=args.wait_idle)
    bench = Bench("orchestration", {"n_images": args.n_images, "models": MODELS, "image_size": args.size,
                                    "epochs": args.epochs, "me_epochs": 2, "repeats": args.repeats,
                                    "server": "running prefect server start (SQLite)", "work_dir": str(tmp)})
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS + (DEMO_VARIANTS if args.demo else ())}
    with local_stack(tmp / "server", serve=None) as stack:
        for i in range(args.repeats):
            runs["plain"].append(run_child("benchmarks.orchestration", "--child", "plain",
                                           "--config", str(config_file(f"plain{i}"))))
            env = stack.env | {"PREFECT_LOCAL_STORAGE_PATH": str(tmp / f"storage{i}")}
            cfg = config_file(f"prefect{i}")
            me_cfg = config_file(f"prefect{i}", me=True)
            for name in ("prefect", "prefect-rerun"):
                runs[name].append(run_child("benchmarks.orchestration", "--child", "prefect", "--config", str(cfg),
                                            env=env, replace_env=True))
            for name in ("me-first", "me-rerun", "me-new-photo"):
                if name == "me-new-photo":
                    add_me_photo(data / "me", i)
                runs[name].append(run_child("benchmarks.orchestration", "--child", "prefect", "--config",
                                            str(me_cfg), env=env, replace_env=True))
            if args.demo:
                demo_cfg = demo_config_file(tmp / "demo", i)
                for name in DEMO_VARIANTS:
                    runs[name].append(run_child("benchmarks.orchestration", "--child", "prefect", "--config",
                                                str(demo_cfg), env=stack.env | {
                                                    "PREFECT_LOCAL_STORAGE_PATH": str(tmp / f"demo-storage{i}")},
                                                replace_env=True))
            for name in (n for n in runs if runs[n]):
                print(f"  {name}: {runs[name][-1]['wall_s']:.1f} s, computed {runs[name][-1].get('computed')}",
                      flush=True)
    splits = Path(runs["plain"][0]["run_dir"]) / "splits.csv"
    single = {m: run_child("benchmarks.orchestration", "--child", "single", "--config", str(config_file("single")),
                           "--model", m, "--splits", str(splits)) for m in MODELS}

    med = {name: {k: median([r.get(k, 0.0) for r in rs])
                  for k in ("wall_s", "flow_s", "train_parallel_s", "import_s", "server_s")} for name, rs in runs.items()}
    for name, rs in runs.items():
        times = rs[-1]["train_time_s"]
        bench.row(variant=name, process_wall_s=med[name]["wall_s"], import_s=med[name]["import_s"],
                  pipeline_s=med[name]["flow_s"], train_parallel_s=med[name]["train_parallel_s"],
                  sum_train_time_s=sum(times.values()), computed=" ".join(rs[-1].get("computed", ["(all)"])),
                  load_1min=max(r["load_1min"] for r in rs))
    for m, r in single.items():
        bench.row(variant=f"single {m} (all cores)", process_wall_s=r["wall_s"], train_parallel_s=None,
                  sum_train_time_s=r["train_time_s"], load_1min=r["load_1min"])
    for name in ("prefect", "prefect-rerun", "me-new-photo") + (("demo-rerun",) if args.demo else ()):
        bench.notes.append(f"{name} task runs (last repeat): {runs[name][-1]['tasks']}")

    p, q, r = med["prefect"], med["plain"], med["prefect-rerun"]
    bench.ratio("prefect / plain, process wall (running server)", p["wall_s"] / q["wall_s"], "<= 1.05",
                p["wall_s"] / q["wall_s"] <= 1.05)
    bench.ratio("prefect / plain, pipeline call (running server)", p["flow_s"] / q["flow_s"], "info", True)
    bench.ratio("prefect rerun / first, process wall", r["wall_s"] / p["wall_s"], "<= 0.05", r["wall_s"] / p["wall_s"] <= 0.05)
    bench.ratio("prefect rerun / first, flow call", r["flow_s"] / p["flow_s"], "info", True)
    if args.demo:
        d, e = med["demo-first"], med["demo-rerun"]
        bench.ratio("demo rerun / demo first, process wall", e["wall_s"] / d["wall_s"], "<= 0.05",
                    e["wall_s"] / d["wall_s"] <= 0.05)
    bench.ratio("me rerun / me first, process wall", med["me-rerun"]["wall_s"] / med["me-first"]["wall_s"], "info", True)
    sequential = sum(s["train_time_s"] for s in single.values())
    for name in ("plain", "prefect"):
        par, summed = med[name]["train_parallel_s"], sum(runs[name][-1]["train_time_s"].values())
        bench.ratio(f"{name}: parallel training wall / sum of its models' train_time_s", par / summed, "info", True)
        bench.ratio(f"{name}: parallel training wall / sum of single-model (alone) train_time_s",
                    par / sequential, "info (< 1: parallel wins)", True)
    bench.notes.append("pipeline_s: the flow call (Prefect, against the running server) or the plain steps; "
                       "process_wall_s: the whole subprocess, imports included; computed: tasks that were not "
                       f"cache hits, without the ones that run every time ({', '.join(sorted(CHEAP_TASKS))})")
    bench.finish(["variant", "process_wall_s", "import_s", "pipeline_s", "train_parallel_s", "sum_train_time_s",
                  "computed", "load_1min"])


VARIANTS = ("plain", "prefect", "prefect-rerun", "me-first", "me-rerun", "me-new-photo")
DEMO_VARIANTS = ("demo-first", "demo-rerun")


def demo_config_file(folder: Path, i: int) -> Path:
    """``recognize-me demo``'s configuration on freshly generated demo data (its own output folder)."""
    from recognize_me.cli import demo_defaults
    from recognize_me.config import PipelineConfig
    from recognize_me.demo.data import DEMO_IMAGES, generate_demo_data

    data = folder / "data"
    if not (data / "list_attr_celeba.txt").exists():
        generate_demo_data(data, n_images=DEMO_IMAGES, seed=0)
    path = folder / f"demo{i}.json"
    path.write_text(PipelineConfig(**demo_defaults(data), output_root=folder / f"out{i}").to_json())
    return path


def add_me_photo(me_dir: Path, i: int) -> None:
    """One more "me" photo: a mirrored copy of the first one under a new name."""
    from PIL import Image, ImageOps

    first = sorted(p for p in me_dir.iterdir() if p.is_file())[0]
    ImageOps.mirror(Image.open(first).convert("RGB")).save(me_dir / f"added_{i}_{first.stem}.png")


if __name__ == "__main__":
    main()
