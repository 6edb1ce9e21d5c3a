"""The ``train-all/celeba`` configuration, run through the flow on the real CelebA images: per model the mean
test accuracy (the model's own thresholds, tuned on validation where it tunes them, and at 0.5), balanced
accuracy, mean F1, epochs planned/run, whether the time budget stopped it, train time and images/s; the
run's wall time; date, machine (cores, CPU flags that matter to TensorFlow), load before and after.

The configuration is the ``celeba`` deployment's parameters in ``prefect.yaml`` (its ``celeba_dir`` replaced
by the CelebA folder of ``benchmarks/common.py``); flags override single settings for a short check:

    python -m benchmarks.celeba_accuracy                      # the full configuration (about an hour)
    python -m benchmarks.celeba_accuracy --time-budget-min 3 --models cnn_scheduled resnet --epochs 4

Writes ``results/celeba_accuracy.json`` (``results/celeba_accuracy_check.json`` when any flag overrides
the deployment's configuration, so a short check never replaces the full run's numbers).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Bench, common_args, require_celeba, wait_for_idle

#: CPU flags that decide TensorFlow's fast paths here (oneDNN bf16 / AMX, AVX-512, AVX2).
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
OVERRIDES = ("time_budget_min", "models", "epochs", "image_size", "precision")


def deployment_config(name: str = "celeba") -> dict[str, Any]:
    import yaml

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        if deployment["name"] == name:
            return dict(deployment["parameters"]["config"])
    raise SystemExit(f"prefect.yaml has no deployment named {name!r}")


def cpu_flags_of_interest() -> list[str]:
    from recognize_me.training.precision import cpu_flags

    flags = cpu_flags()
    return [f for f in FLAGS_OF_INTEREST if f in flags]


def model_rows(run_dir: Path, outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for o in outcomes:
        if o.get("status") != "completed":
            rows.append({"model": o.get("model"), "status": o.get("status"), "error": o.get("error")})
            continue
        m = json.loads((Path(o["model_dir"]) / "metrics.json").read_text())
        rows.append({"model": m["model"], "status": "completed", "mean_accuracy": m["mean_accuracy"],
                     "mean_accuracy_0_5": m["at_threshold_0_5"]["mean_accuracy"],
                     "mean_balanced_accuracy": m["mean_balanced_accuracy"], "mean_f1": m["mean_f1"],
                     "epochs_run": m["epochs_run"], "epochs_planned": m.get("epochs_planned"),
                     "stopped_by_budget": m.get("stopped_by_budget"), "budget_s": m.get("budget_s"),
                     "train_time_s": m["train_time_s"], "images_per_s": m.get("images_per_s"),
                     "precision": m.get("precision"), "input": m.get("input"),
                     "from_scratch": m.get("trained_from_scratch")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget-min", type=float)
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int, nargs=2)
    parser.add_argument("--precision")
    parser.add_argument("--output-root", type=Path, default=REPO / "artifacts",
                        help="run folders and the decoded-image cache (default: the repository's artifacts/)")
    common_args(parser)
    args = parser.parse_args()
    celeba = require_celeba("list_attr_celeba.txt").parent

    from flows.train_all import train_all
    from recognize_me.config import PipelineConfig

    values = deployment_config() | {"celeba_dir": str(celeba), "output_root": str(args.output_root)}
    overridden = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    config = PipelineConfig.model_validate(values | overridden)
    if args.wait_idle:
        wait_for_idle(deadline_utc=args.wait_idle)
    name = "celeba_accuracy_check" if overridden else "celeba_accuracy"
    bench = Bench(name, {"config": json.loads(config.to_json()), "overrides": overridden,
                         "cpu_flags": cpu_flags_of_interest()})
    start = time.perf_counter()
    report = Path(train_all(config))
    wall = time.perf_counter() - start
    run_dir = report.parent
    outcomes = [{"model": m, "status": "completed", "model_dir": str(run_dir / "models" / m)}
                if (run_dir / "models" / m / "model.keras").exists() else {"model": m, "status": "failed"}
                for m in config.models]
    for row in model_rows(run_dir, outcomes):
        bench.row(**row)
    bench.params |= {"run_dir": str(run_dir), "wall_s": round(wall, 1)}
    budget = f", budget {config.time_budget_min} min for training" if config.time_budget_min else ""
    bench.notes.append(f"run wall time {wall:.0f} s ({wall / 60:.1f} min){budget}; run folder {run_dir}")
    bench.finish(["model", "status", "mean_accuracy", "mean_accuracy_0_5", "mean_balanced_accuracy", "mean_f1",
                  "epochs_run", "epochs_planned", "stopped_by_budget", "train_time_s", "images_per_s",
                  "precision", "input", "load_1min"])


if __name__ == "__main__":
    main()
