"""The whole CelebA on one machine: train-all/celeba's configuration on a folder with all 202,599 listed images.

Builds (OUTSIDE the repo, default ``/tmp/recognize-me-full-scale/celeba``) a CelebA folder whose
``img_align_celeba/`` holds every id of ``list_attr_celeba.txt``: the shared images under their own ids
(symbolic links to them) and every other id a link to one of the shared images (round-robin). The labels of
those rows do not match their pixels: **this measures time and memory only, never accuracy.** The text files
are copied.

Then runs ``recognize-me train`` with the parameters of the ``celeba`` deployment in ``prefect.yaml`` (six
models, 64x64, 40 epochs at most, a 50-minute training budget) twice in a fresh process each: a first run and
an unchanged rerun (``--run-name`` differs, the caches are shared). It records per run the wall time, the
peak RSS of the largest process and of the whole process tree (sampled every second), the wall time between
the flow's stage completions (from the log's timestamps), each model's training time against its budget
share, and rerun / first run.

    python -m benchmarks.full_scale [--build-only] [--target DIR] [--output DIR] [--budget-min 50] [--models M ...]
                                    [--first-only]

Takes about an hour per run on two cores; run it only on a quiet machine (``--wait-for-idle``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.celeba_accuracy import deployment_config
from benchmarks.common import CELEBA, REPO, Bench, require_celeba, wait_for_idle

DEFAULT_TARGET = Path("/tmp/recognize-me-full-scale")
TEXT_FILES = ("list_attr_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt")
#: ``HH:MM:SS.mmm | LEVEL | Task run 'name-abc' - Finished in state Completed()`` (Prefect's console format)
FINISHED = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d+) \| \w+\s*\| Task run '([\w\-]+?)(?:-[0-9a-z]{3})?' - Finished")


def listed_ids(attr_file: Path) -> list[str]:
    """The image ids of an attribute file in CelebA's text layout (count line, names line, rows)."""
    with open(attr_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = 2 if lines and lines[0].strip().isdigit() else 1
    return [line.split()[0] for line in lines[start:] if line.strip()]


def build_full_folder(source: Path, target: Path) -> dict[str, int]:
    """``target/`` as a CelebA folder with every listed id present (see the module docstring); outside the
    repository only. Reuses links already there. Returns counts (listed, own, linked)."""
    source, target = Path(source).resolve(), Path(target).resolve()
    if target == REPO or REPO in target.parents:
        raise ValueError(f"{target} is inside the repository {REPO}: build the full-size folder elsewhere")
    images = target / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    for name in TEXT_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    ids = listed_ids(source / "list_attr_celeba.txt")
    shared = sorted(p.name for p in (source / "img_align_celeba").iterdir() if p.is_file())
    if not shared:
        raise ValueError(f"{source / 'img_align_celeba'} holds no images")
    have = set(shared)
    donors = itertools.cycle(shared)
    own = linked = 0
    existing = set(os.listdir(images))
    for image_id in ids:
        if image_id in have:
            own += 1
            origin = source / "img_align_celeba" / image_id
        else:
            linked += 1
            origin = source / "img_align_celeba" / next(donors)
        if image_id not in existing:
            os.symlink(origin, images / image_id)
    return {"listed": len(ids), "own": own, "linked": linked}


class RssSampler:
    """Peak memory of the largest process and of the whole tree under ``pid``, sampled every ``every_s``.

    Per process, RSS counts the pages of the memory-mapped decoded array it has touched (file pages the
    kernel shares between processes and may drop at any time); ``private`` is RSS less those shared pages
    (Linux ``RssAnon``: heap, TensorFlow's buffers), the memory that process alone holds. ``peaks`` keeps
    each process's largest sample with its role (``flow`` for the root, else its command line's tail).
    """

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        import psutil

        self.root, self.every_s = psutil.Process(pid), every_s
        self.max_process = self.max_private = self.max_tree = 0
        self.peaks: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def largest(self) -> dict[str, Any]:
        """The process with the largest private memory: role, peak RSS and peak private GiB."""
        if not self.peaks:
            return {}
        top = max(self.peaks.values(), key=lambda p: p["private"])
        return {"role": top["role"], "rss_gib": round(top["rss"] / 2**30, 2),
                "private_gib": round(top["private"] / 2**30, 2)}

    def _role(self, p) -> str:
        if p.pid == self.root.pid:
            return "flow"
        try:
            return " ".join(p.cmdline())[-80:]
        except Exception:  # noqa: BLE001 - a process that has just ended
            return "?"

    def _sample(self, p) -> int:
        info = p.memory_info()
        private = max(info.rss - getattr(info, "shared", 0), 0)
        peak = self.peaks.setdefault(p.pid, {"role": self._role(p), "rss": 0, "private": 0})
        peak["rss"], peak["private"] = max(peak["rss"], info.rss), max(peak["private"], private)
        self.max_process, self.max_private = max(self.max_process, info.rss), max(self.max_private, private)
        return info.rss

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for p in procs:
                try:
                    sizes.append(self._sample(p))
                except psutil.Error:
                    continue
            if sizes:
                self.max_tree = max(self.max_tree, sum(sizes))
            self._stop.wait(self.every_s)


def stage_times(log: str) -> list[tuple[str, float]]:
    """(task name, seconds since the previous task's completion) from a run's console log."""
    out, previous = [], None
    for line in log.splitlines():
        m = FINISHED.match(line)
        if not m:
            continue
        h, mi, s, frac, name = m.groups()
        t = int(h) * 3600 + int(mi) * 60 + int(s) + float(f"0.{frac}")
        out.append((name, round(t - previous, 1) if previous is not None else 0.0))
        previous = t
    return out


def train_command(celeba: Path, output_root: Path, run_name: str, budget_min: float,
                  models: list[str] | None = None) -> list[str]:
    config = deployment_config()
    config.update(celeba_dir=str(celeba), output_root=str(output_root), run_name=run_name,
                  time_budget_min=budget_min)
    if models:
        config["models"] = list(models)
    path = output_root / f"{run_name}.config.json"
    output_root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return [sys.executable, "-m", "recognize_me.cli", "train", "--config", str(path)]


def run_once(celeba: Path, output_root: Path, run_name: str, budget_min: float,
             models: list[str] | None = None) -> dict[str, Any]:
    # Prefect's task cache lives in PREFECT_HOME: one per output folder, so a first run is never served
    # from an earlier benchmark's cache (the rerun shares it with its first run, as intended)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_HOME": str(output_root / "prefect-home")}
    command = train_command(celeba, output_root, run_name, budget_min, models)  # creates output_root
    log_path = output_root / f"{run_name}.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        with RssSampler(proc.pid) as rss:
            proc.wait()
    wall = time.monotonic() - start
    models = []
    for metrics in sorted((output_root / run_name / "models").glob("*/metrics.json")):
        m = json.loads(metrics.read_text())
        models.append({k: m.get(k) for k in ("model", "train_time_s", "budget_s", "epochs_run", "epochs_planned",
                                             "sub_epoch_steps", "stopped_by_budget", "input", "mean_accuracy")})
    return {"run": run_name, "returncode": proc.returncode, "wall_s": round(wall, 1),
            "peak_rss_process_gib": round(rss.max_process / 2**30, 2),
            "peak_rss_tree_gib": round(rss.max_tree / 2**30, 2),
            "peak_private_process_gib": round(rss.max_private / 2**30, 2), "largest_process": rss.largest(),
            "stages": stage_times(log_path.read_text(errors="replace")), "models": models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET)
    parser.add_argument("--budget-min", type=float, default=50.0)
    parser.add_argument("--models", nargs="+", default=None,
                        help="a subset of the deployment's models (default: all of them)")
    parser.add_argument("--output", type=Path, default=None,
                        help="run folders, caches and PREFECT_HOME (default: TARGET/artifacts)")
    parser.add_argument("--result-name", default="full_scale",
                        help="benchmarks/results/<name>.json (a subset run should not overwrite full_scale.json)")
    parser.add_argument("--first-only", action="store_true", help="skip the unchanged rerun")
    parser.add_argument("--build-only", action="store_true", help="build the folder, run nothing")
    parser.add_argument("--wait-for-idle", action="store_true", help="wait until the load average is low")
    args = parser.parse_args(argv)
    source = require_celeba("list_attr_celeba.txt").parent
    with_links = args.target / "celeba"
    counts = build_full_folder(source, with_links)
    print(f"{with_links}: {counts['listed']:,} listed ids, {counts['own']:,} shared images under their own ids, "
          f"{counts['linked']:,} links to them (their labels do not match their pixels: time and memory only)")
    if args.build_only:
        return 0
    if args.wait_for_idle:
        wait_for_idle()
    bench = Bench(args.result_name, {"celeba": str(CELEBA), "target": str(with_links), **counts,
                                 "budget_min": args.budget_min, "models": args.models or "all of the deployment's",
                                 "config": deployment_config()})
    bench.notes.append("Every id beyond the shared images is a link to one of them: labels do not match pixels; "
                       "the numbers are time and memory, not accuracy.")
    output = args.output or args.target / "artifacts"
    runs = [run_once(with_links, output, name, args.budget_min, args.models)
            for name in ("first", "rerun")[:1 if args.first_only else 2]]
    for r in runs:
        train_s = sum(s for name, s in r["stages"] if name.startswith(("train-", "transfer-")))  # train-<model>
        bench.row(run=r["run"], wall_s=r["wall_s"], peak_rss_process_gib=r["peak_rss_process_gib"],
                  peak_private_process_gib=r["peak_private_process_gib"],
                  largest_process=json.dumps(r["largest_process"]),
                  peak_rss_tree_gib=r["peak_rss_tree_gib"], returncode=r["returncode"],
                  stages=json.dumps(r["stages"]), models=json.dumps(r["models"]), train_tasks_s=train_s)
    worst = max((m["train_time_s"] or 0) / (m["budget_s"] or 1) for m in runs[0]["models"]) if runs[0]["models"] else 0
    bench.ratio("slowest model's training / its budget share (first run)", worst, "<= 1.05", worst <= 1.05)
    if len(runs) > 1:
        bench.ratio("unchanged rerun / first run (wall)", runs[1]["wall_s"] / max(runs[0]["wall_s"], 1e-9),
                    "small", runs[1]["wall_s"] < 0.2 * runs[0]["wall_s"])
    bench.finish(["run", "wall_s", "peak_rss_process_gib", "peak_private_process_gib", "peak_rss_tree_gib", "returncode", "train_tasks_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
