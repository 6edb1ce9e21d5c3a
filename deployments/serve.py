"""Serve the deployments of ``prefect.yaml`` from this process (no work pool or worker needed).

``python -m deployments.serve`` (or ``make serve``) starts a local Prefect server on 127.0.0.1 when no
server is reachable, then serves every entry of prefect.yaml whose environment variables are set
(``train-all/demo``, ``train-all/celeba``, ``train-all/nightly``, ``find-me/library``). From another
shell: ``prefect deployment run train-all/demo``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from recognize_me.training.quiet import quiet_environment

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_API = "http://127.0.0.1:4200/api"


ENV_TEMPLATE = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


def load_deployments(path: Path = ROOT / "prefect.yaml") -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["deployments"]


def missing_variables(entry: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Environment variables named by ``{{ $NAME }}`` in the entry's parameters that are not set."""
    names = ENV_TEMPLATE.findall(json.dumps(entry.get("parameters") or {}))
    return sorted({n for n in names if not environ.get(n)})


def resolve_variables(value: Any, environ: Mapping[str, str]) -> Any:
    """``{{ $NAME }}`` replaced by ``environ[NAME]`` everywhere in ``value``, as ``prefect deploy`` does."""
    if isinstance(value, str):
        return ENV_TEMPLATE.sub(lambda m: environ[m.group(1)], value)
    if isinstance(value, dict):
        return {k: resolve_variables(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_variables(v, environ) for v in value]
    return value


def servable(entries: list[dict[str, Any]], environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """Entries with their variables resolved; an entry whose variable is unset is left out, with a note."""
    out = []
    for entry in entries:
        missing = missing_variables(entry, environ)
        if missing:
            print(f"not serving {entry['name']}: set {', '.join(missing)} (see prefect.yaml)", flush=True)
            continue
        out.append(entry | {"parameters": resolve_variables(entry.get("parameters"), environ)})
    return out


def entrypoint_flow(entrypoint: str):
    """The flow object an entrypoint such as ``flows/train_all.py:train_all`` names (imported, not exec'd)."""
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def runner_deployments(entries: list[dict[str, Any]]) -> list:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.schedules import Cron

    out = []
    for entry in entries:
        limit = entry.get("concurrency_limit")
        out.append(entrypoint_flow(entry["entrypoint"]).to_deployment(
            name=entry["name"], description=entry.get("description"), tags=entry.get("tags"),
            parameters=entry.get("parameters"),
            schedules=[Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
                       for s in entry.get("schedules", [])] or None,
            concurrency_limit=ConcurrencyLimitConfig(**limit) if limit else None))
    return out


def server_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def ensure_server(api_url: str, wait_s: float = 90.0, log: Path = ROOT / "artifacts" / "prefect-server.log"):
    """Start ``prefect server start`` on 127.0.0.1 (SQLite) unless ``api_url`` already answers."""
    if server_healthy(api_url):
        return None
    port = api_url.split(":")[-1].split("/")[0]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", port], stdout=out, stderr=subprocess.STDOUT,
                                env=os.environ | {"PREFECT_UI_API_URL": api_url})
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if server_healthy(api_url):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}; see {log}")
        time.sleep(0.5)
    proc.terminate()
    raise TimeoutError(f"prefect server did not answer at {api_url} within {wait_s:.0f} s; see {log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", default=os.environ.get("PREFECT_API_URL", DEFAULT_API))
    parser.add_argument("--only", nargs="+", help="serve only these deployment names")
    args = parser.parse_args(argv)
    quiet_environment()
    server = ensure_server(args.api_url)
    os.environ["PREFECT_API_URL"] = args.api_url
    from prefect import serve

    entries = servable([e for e in load_deployments() if not args.only or e["name"] in args.only], os.environ)
    print(f"serving {[e['name'] for e in entries]} against {args.api_url}; UI: {args.api_url[:-4]}", flush=True)
    try:
        serve(*runner_deployments(entries))
    finally:
        if server is not None:
            server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
