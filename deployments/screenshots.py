"""Screenshots of the Prefect UI after a tiny ``train-all`` run, and the throw-away local stack behind them.

    python -m deployments.screenshots                   # own server + serve + tiny demo run, then capture
    python -m deployments.screenshots --api-url URL     # capture from a server that has a finished run

Writes ``docs/screenshots/{flow-runs,flow-run,train-models,artifacts,leaderboard}.png`` with headless
Chromium driven by chromedriver (Debian: ``apt-get install chromium chromium-driver``; no Python package
beyond httpx). ``local_stack`` (a real ``prefect server start`` on a free port with its own
``PREFECT_HOME`` and SQLite, plus ``python -m deployments.serve``) is also what ``tests/test_deployments.py``
runs against.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
T = TypeVar("T")


# --- processes -----------------------------------------------------------------------------------

@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- last {n} lines of {self.name} ({self.log}) ---\n" + "\n".join(lines[-n:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, cmd: Sequence[str], log: Path, env: dict[str, str], cwd: Path = ROOT) -> Service:
    """Start ``cmd`` in its own process group (so ``stop`` reaches its children), output into ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Service(name, proc, log)


def stop(service: Service, grace_s: float = 15.0) -> None:
    """SIGTERM the process group and every descendant (flow runs start their own sessions), then SIGKILL."""
    import psutil

    try:
        root = psutil.Process(service.proc.pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.proc.pid, sig)
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)
        family = psutil.wait_procs(family, timeout=grace_s)[1]
        if not family:
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        service.proc.wait(timeout=5)


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str,
               watch: Sequence[Service] = (), every_s: float = 0.5) -> T:
    """Poll ``check`` until it returns a truthy value; fail early if a watched process exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        for s in watch:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited with {s.proc.returncode} while waiting for {what}\n"
                                   f"{s.tail()}")
        if time.monotonic() > deadline:
            tails = "\n".join(s.tail() for s in watch)
            raise TimeoutError(f"no {what} within {timeout_s:.0f} s\n{tails}")
        time.sleep(every_s)


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- the stack -------------------------------------------------------------------------------------

@dataclass
class Stack:
    api_url: str
    env: dict[str, str]
    workdir: Path
    services: list[Service] = field(default_factory=list)

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")


def stack_env(home: Path) -> dict[str, str]:
    """This process's environment with Prefect isolated in ``home`` (settings, SQLite, result storage)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_RUNNER_POLL_FREQUENCY="2",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return env


@contextlib.contextmanager
def local_stack(workdir: Path, serve: Sequence[str] | None = ("demo",), ui: bool = False,
                timeout_s: float = 180.0, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A real Prefect server on 127.0.0.1:<free port>, and ``deployments.serve --only <serve>`` against it.

    Everything (SQLite unless ``extra_env`` names another database, results, logs) lives under ``workdir``;
    every process is stopped on exit. ``extra_env`` is added to both processes' environment.
    """
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = stack_env(workdir / "prefect-home") | dict(extra_env or {})
    env_server = env | {"PREFECT_SERVER_UI_ENABLED": str(ui).lower(), "PREFECT_UI_API_URL": api_url}
    stack = Stack(api_url, env | {"PREFECT_API_URL": api_url}, workdir)
    try:
        server = start("prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host",
                                          "127.0.0.1", "--port", str(port)], workdir / "server.log", env_server)
        stack.services.append(server)
        wait_until(lambda: healthy(api_url), timeout_s, f"answer from {api_url}/health", [server])
        if serve is not None:
            served = start("deployments.serve", [sys.executable, "-m", "deployments.serve", "--api-url",
                                                 api_url, "--only", *serve], workdir / "serve.log", stack.env)
            stack.services.append(served)
            with api_client(api_url) as client:
                wait_until(lambda: _deployments_exist(client, serve), timeout_s,
                           f"deployments {list(serve)} registered", stack.services, every_s=1)
        yield stack
    finally:
        for service in reversed(stack.services):
            stop(service)


@contextlib.contextmanager
def api_client(api_url: str) -> Iterator[Any]:
    """A sync Prefect client for ``api_url``, whatever this process's own settings say."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def _deployments_exist(client: Any, names: Sequence[str]) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        for name in names:
            client.read_deployment_by_name(f"train-all/{name}")
    except ObjectNotFound:
        return False
    return True


def tiny_config(workdir: Path, models: Sequence[str] = ("baseline_cnn",), seed: int = 3) -> dict[str, Any]:
    """A complete ``config`` parameter for a train-all run of seconds: 120 synthetic images, 32x32, 1 epoch."""
    from recognize_me.demo.data import generate_demo_data

    data = workdir / "data"
    if not (data / "list_attr_celeba.txt").is_file():
        generate_demo_data(data, n_images=120, seed=3, n_me=8, n_others=8)
    return {"celeba_dir": str(data), "output_root": str(workdir / "out"), "models": list(models),
            "epochs": 1, "image_size": [32, 32], "batch_size": 32, "seed": seed}


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def cli_run(stack: Stack, deployment: str, parameters: dict[str, Any]) -> str:
    """``prefect deployment run train-all/<deployment> --params '<json>'``; returns the flow run id."""
    out = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", f"train-all/{deployment}",
                          "--params", json.dumps(parameters)], env=stack.env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or not (match := UUID_RE.search(out.stdout)):
        raise RuntimeError(f"prefect deployment run failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return match.group(0)


def wait_for_state(stack: Stack, flow_run_id: str, timeout_s: float,
                   done: Callable[[Any], bool] = lambda state: state.is_final()) -> Any:
    """Poll the API until the flow run's state satisfies ``done``; returns the flow run."""
    with api_client(stack.api_url) as client:
        def check() -> Any:
            run = client.read_flow_run(flow_run_id)
            return run if run.state is not None and done(run.state) else None

        return wait_until(check, timeout_s, f"flow run {flow_run_id} state", stack.services, every_s=1)


# --- screenshots -----------------------------------------------------------------------------------

def _which(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise FileNotFoundError(f"none of {names} found: apt-get install chromium chromium-driver")


class Browser:
    """Headless Chromium driven through chromedriver's W3C WebDriver HTTP API (httpx only, no selenium)."""

    def __init__(self, workdir: Path, size: tuple[int, int] = (1400, 1000)):
        port = free_port()
        self.driver = start("chromedriver", [_which("chromedriver"), f"--port={port}"], workdir / "chromedriver.log",
                            dict(os.environ))
        self.url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: self._ready(), 30, "chromedriver", [self.driver])
            args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={workdir / 'chromium-profile'}", f"--window-size={size[0]},{size[1]}"]
            caps = {"browserName": "chrome",
                    "goog:chromeOptions": {"binary": _which("chromium", "chromium-browser"), "args": args}}
            self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]
            self._call("POST", f"/session/{self.session}/goog/cdp/execute",  # the viewport, not the window
                       {"cmd": "Emulation.setDeviceMetricsOverride",
                        "params": {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}})
        except BaseException:
            stop(self.driver)
            raise

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/status", timeout=2).json()["value"]["ready"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=60)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"WebDriver {method} {path}: {value}")
        return value

    def screenshot(self, url: str, png: Path, expect: Sequence[str], timeout_s: float = 60.0) -> Path:
        """Open ``url``, wait until the page shows every ``expect`` text and stops changing, save a PNG."""
        s = f"/session/{self.session}"
        self._call("POST", f"{s}/url", {"url": url})

        def shows_all() -> bool:
            text = self._call("POST", f"{s}/execute/sync", {"script": "return document.body.innerText", "args": []})
            return all(t in text for t in expect)

        wait_until(shows_all, timeout_s, f"{expect} on {url}", every_s=1)
        shots: list[str] = []

        def settled() -> str | None:  # two identical frames one second apart: data loaded, fades finished
            shots.append(self._call("GET", f"{s}/screenshot"))
            return shots[-1] if len(shots) > 1 and shots[-1] == shots[-2] else None

        data = wait_until(settled, timeout_s, f"a still frame of {url}", every_s=1)
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(data))
        return png

    def close(self) -> None:
        with contextlib.suppress(httpx.HTTPError, RuntimeError):
            self._call("DELETE", f"/session/{self.session}")
        stop(self.driver)


def capture(api_url: str, out_dir: Path = SCREENSHOT_DIR, flow_run_id: str | None = None) -> list[Path]:
    """Flow runs list, one finished train-all run (graph and logs), its train-models subflow, the artifacts
    and the leaderboard artifact."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

    with api_client(api_url) as client:
        if flow_run_id is None:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train-all"])),
                                         sort=FlowRunSort.START_TIME_DESC)
            finished = [r for r in runs if r.state is not None and r.state.is_completed()]
            if not finished:
                raise RuntimeError(f"no completed train-all flow run at {api_url}")
            flow_run_id = str(finished[0].id)
        run = client.read_flow_run(flow_run_id)
        subflows = [r for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["train-models"])))
                    if r.start_time and run.start_time and r.start_time >= run.start_time
                    and (run.end_time is None or r.start_time <= run.end_time)]
        board = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["leaderboard"])),
                                      sort=ArtifactSort.CREATED_DESC, limit=1)
    ui = api_url.rstrip("/").removesuffix("/api")
    pages = {"flow-runs": (f"{ui}/runs", ["train-all", run.name, "Completed"]),
             "flow-run": (f"{ui}/runs/flow-run/{flow_run_id}", [run.name, "Completed", "Beginning flow run"]),
             "artifacts": (f"{ui}/artifacts", ["leaderboard", "data-checks", "training-"])}
    if subflows:  # the parallel training tasks, one per model, with their per-epoch logs
        pages["train-models"] = (f"{ui}/runs/flow-run/{subflows[0].id}", [subflows[0].name, "epoch 1/"])
    if board:
        pages["leaderboard"] = (f"{ui}/artifacts/artifact/{board[0].id}", ["majority_baseline", "completed"])
    with tempfile.TemporaryDirectory(prefix="recognize-me-browser-") as tmp:
        browser = Browser(Path(tmp))
        try:
            return [browser.screenshot(url, out_dir / f"{name}.png", expect)
                    for name, (url, expect) in pages.items()]
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", help="an existing server with a finished train-all run; "
                        "default: start a throw-away one and run train-all/demo on tiny data")
    parser.add_argument("--out", type=Path, default=SCREENSHOT_DIR)
    args = parser.parse_args(argv)
    if args.api_url:
        shots = capture(args.api_url, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="recognize-me-shots-") as tmp, \
                local_stack(Path(tmp), serve=("demo",), ui=True) as stack:
            run_id = cli_run(stack, "demo", {"config": tiny_config(Path(tmp), ["baseline_cnn", "cnn_scheduled"])})
            run = wait_for_state(stack, run_id, timeout_s=1200)
            if not run.state.is_completed():
                raise RuntimeError(f"train-all ended {run.state.type.value}: {run.state.message}")
            shots = capture(stack.api_url, args.out, run_id)
    for png in shots:
        print(f"{png} ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
