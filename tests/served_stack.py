"""One served ``train-all/demo`` run for the system tests (``served_demo`` in conftest.py).

``tests/test_deployments.py`` and ``tests/test_postgres_server.py`` read the same run: a real
``prefect server start`` (on a throwaway PostgreSQL cluster when PostgreSQL is installed, else on SQLite),
``python -m deployments.serve --only demo nightly``, ``prefect deployment run train-all/demo`` with the
recognize-me stage, and a second run started while the first is busy. Everything the tests assert on is
read while the stack is up; then every process is stopped (``finally`` blocks) and the facts are returned.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from me_fixtures import FEW_CELEBA_PHOTOS

from deployments.screenshots import (
    ROOT,
    api_client,
    cli_run,
    free_port,
    local_stack,
    tiny_config,
    wait_for_state,
)


class PostgresUnavailable(RuntimeError):
    """Why this machine cannot start a throwaway PostgreSQL cluster."""


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres_user() -> list[str]:
    """Command prefix: PostgreSQL refuses to run as root, so root runs it as the ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' system user to run PostgreSQL as") \
            from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL as another user")
    return [runuser, "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """initdb in a temporary folder, postgres on 127.0.0.1:<free port>, database ``prefect``; yields its
    asyncpg URL and removes everything on exit. Raises ``PostgresUnavailable`` before starting anything
    when PostgreSQL cannot run here."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): "
                                  "apt-get install postgresql")
    prefix = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="recognize-me-pg-"))
    data, port = root / "data", free_port()
    if prefix:
        shutil.chown(root, user="postgres", group="postgres")

    def run(*cmd: str) -> None:
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, timeout=120, cwd=root)

    started = False
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "prefect", "--auth=trust", "-E", "UTF8")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "60",
            "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start")
        started = True
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect")
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def count_flow_runs(url: str) -> int:
    """Rows of PostgreSQL's ``flow_run`` table, read directly (not through Prefect's API)."""
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return int(await conn.fetchval("select count(*) from flow_run"))
        finally:
            await conn.close()

    return asyncio.run(count())


@dataclass
class ServedDemo:
    """What the served stack showed, read before it was stopped."""

    workdir: Path
    config: dict[str, Any]  # the run's ``config`` parameter
    celeba_env: str  # RECOGNIZE_ME_CELEBA_DIR given to deployments.serve
    spec: dict[str, dict[str, Any]]  # prefect.yaml's deployments by name
    postgres_url: str | None  # None: the server ran on SQLite
    postgres_skip_reason: str
    demo: Any  # DeploymentResponse of train-all/demo
    nightly: Any
    celeba_served: bool  # whether train-all/celeba was registered (it must not be: --only demo nightly)
    overlapping: Any  # FlowRun started while the first was running
    run: Any  # FlowRun of the first run, final
    artifacts: list[Any]
    flow_runs_in_postgres: int | None
    logs: str  # the services' log tails, for failure messages
    seconds: float


def _serve_and_run(workdir: Path, config: dict[str, Any], celeba: str, postgres_url: str | None) -> dict[str, Any]:
    from prefect.exceptions import ObjectNotFound

    extra_env = {"RECOGNIZE_ME_CELEBA_DIR": celeba}
    if postgres_url:
        extra_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = postgres_url
    with local_stack(workdir, serve=("demo", "nightly"), extra_env=extra_env) as stack, \
            api_client(stack.api_url) as client:
        facts: dict[str, Any] = {"demo": client.read_deployment_by_name("train-all/demo"),
                                 "nightly": client.read_deployment_by_name("train-all/nightly")}
        try:
            client.read_deployment_by_name("train-all/celeba")
            facts["celeba_served"] = True
        except ObjectNotFound:
            facts["celeba_served"] = False
        run_id = cli_run(stack, "demo", {"config": config})
        wait_for_state(stack, run_id, 600, lambda s: s.is_running() or s.is_final())
        facts["overlapping"] = wait_for_state(stack, cli_run(stack, "demo", {"config": config}), 300)
        facts["run"] = wait_for_state(stack, run_id, 900)
        facts["artifacts"] = list(client.read_artifacts())
        facts["flow_runs_in_postgres"] = count_flow_runs(postgres_url) if postgres_url else None
        facts["logs"] = "\n".join(s.tail(60) for s in stack.services)
    return facts


def run_served_demo(workdir: Path, demo_data: Path) -> ServedDemo:
    """The served run on ``demo_data`` (linked as ``workdir/data``, where ``tiny_config`` looks first)."""
    started = time.monotonic()
    (workdir / "data").symlink_to(demo_data, target_is_directory=True)
    data = Path(tiny_config(workdir)["celeba_dir"])
    config = tiny_config(workdir) | {"me_dir": str(data / "me"), "others_dir": str(data / "others"),
                                     "me_epochs": 2, "me_min_photos": 4,
                                     # serving is under test, not the strategies: scikit-learn and Keras
                                     "me_strategies": ["feature_extraction", "fine_tuning"], **FEW_CELEBA_PHOTOS}
    spec = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    celeba = str(workdir / "my-celeba")
    try:
        with postgres_cluster() as url:
            facts = _serve_and_run(workdir, config, celeba, url)
        reason = ""
    except PostgresUnavailable as unavailable:
        facts, url, reason = _serve_and_run(workdir, config, celeba, None), None, str(unavailable)
    return ServedDemo(workdir=workdir, config=config, celeba_env=celeba, spec=spec, postgres_url=url,
                      postgres_skip_reason=reason, seconds=time.monotonic() - started, **facts)
