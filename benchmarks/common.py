"""Helpers shared by the benchmarks: machine info, timing, fresh subprocesses, JSON results, tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recognize_me import runs

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CELEBA = Path(os.environ.get("RECOGNIZE_ME_CELEBA", REPO.parent / "shared" / "data" / "celeba"))
PACKAGES = ("recognize-me", "tensorflow-cpu", "tensorflow", "keras", "tf-keras", "prefect", "prefect-dask",
            "dask", "great-expectations", "pandas", "numpy", "pillow")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    return runs.package_versions(PACKAGES)


def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform()}


def require_celeba(*parts: str) -> Path:
    """The real CelebA folder (or a file in it); exit 0 with a clear message when it is absent."""
    path = CELEBA.joinpath(*parts)
    if not path.exists():
        print(f"SKIPPED: {path} not found. These benchmarks need the real CelebA files in {CELEBA} "
              f"(set RECOGNIZE_ME_CELEBA to use another folder).")
        sys.exit(0)
    return path


class Bench:
    """Collects one benchmark's numbers; ``finish()`` writes ``results/<name>.json`` and prints a table."""

    def __init__(self, name: str, params: dict[str, Any]) -> None:
        self.name, self.params = name, params
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.load_start = load()
        self.rows: list[dict[str, Any]] = []
        self.ratios: list[dict[str, Any]] = []
        self.notes: list[str] = []
        print(f"[{self.name}] {self.started}  load average {self.load_start}  nproc {os.cpu_count()}",
              flush=True)

    def row(self, **values: Any) -> dict[str, Any]:
        values.setdefault("load_1min", load()[0])
        self.rows.append(values)
        return values

    def ratio(self, name: str, value: float, target: str, met: bool) -> None:
        self.ratios.append({"ratio": name, "value": round(value, 3), "target": target,
                            "met": "yes" if met else "NO"})

    def finish(self, columns: Sequence[str]) -> Path:
        load_end = load()
        result = {"benchmark": self.name, "date": self.started,
                  "finished": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                  "load_average_start": self.load_start, "load_average_end": load_end,
                  "package_versions": package_versions(), "params": self.params, "rows": self.rows,
                  "ratios": self.ratios, "notes": self.notes}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
        tmp.replace(path)
        print()
        print(table(self.rows, columns))
        if self.ratios:
            print()
            print(table(self.ratios, ["ratio", "value", "target", "met"]))
        for note in self.notes:
            print(f"note: {note}")
        print(f"\nload average start {self.load_start}, end {load_end}; written {path}")
        return path


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w)  # noqa: E731
                                  for i, (v, w) in enumerate(zip(vals, widths, strict=True)))
    return "\n".join([line(list(columns)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def run_child(module: str, *args: str, env: dict[str, str] | None = None, replace_env: bool = False,
              timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in a fresh process; its last stdout line must be a JSON object.

    ``env`` is added to this process' environment, or replaces it when ``replace_env``. Adds the child's
    wall time (``wall_s``, imports included) to the returned dict.
    """
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(env or {}) if replace_env else {**os.environ, **(env or {})}, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{module} {' '.join(args)} printed no JSON:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {**json.loads(lines[-1]), "wall_s": wall}


def emit(result: dict[str, Any]) -> None:
    """A child's answer to ``run_child``: one JSON line on stdout, with its peak RSS."""
    import resource

    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    result["load_1min"] = load()[0]
    print(json.dumps(result, default=str), flush=True)


def wait_for_idle(max_load: float = 1.5, deadline_utc: str | None = None, poll_s: float = 60) -> list[float]:
    """Block until the 1-minute load average is below ``max_load`` or the deadline (HH:MM UTC) passes."""
    while True:
        now = datetime.now(UTC)
        if load()[0] < max_load:
            return load()
        if deadline_utc is not None and now.strftime("%H:%M") >= deadline_utc:
            print(f"deadline {deadline_utc} UTC reached with load {load()}: running anyway", flush=True)
            return load()
        print(f"{now:%H:%M:%S} load {load()}: waiting for < {max_load}", flush=True)
        time.sleep(poll_s)


def common_args(parser) -> None:
    parser.add_argument("--wait-idle", metavar="HH:MM", default=None,
                        help="wait until the load average is below 1.5, at most until HH:MM UTC")
