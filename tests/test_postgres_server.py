"""A Prefect server on a real PostgreSQL database runs the served train-all/demo deployment.

The README tells users to put a shared server on PostgreSQL; this proves that setup end to end: a
throwaway PostgreSQL cluster in a temporary folder on 127.0.0.1 (run as the ``postgres`` system user
when the tests run as root), ``prefect server start`` on it, the deployments served, ``prefect deployment
run train-all/demo`` (recognize-me stage included) to Completed, artifacts read back through the API.
Everything it starts is stopped in ``finally`` blocks. Skipped with a message when PostgreSQL is absent
(``.ci/run`` installs Debian's ``postgresql`` package).
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
from pathlib import Path

import pytest

from deployments.screenshots import api_client, cli_run, free_port, local_stack, tiny_config, wait_for_state

pytestmark = pytest.mark.slow


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
        pytest.skip("running as root and there is no 'postgres' system user to run PostgreSQL as")
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    return [runuser, "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """initdb in a temporary folder, postgres on 127.0.0.1:<free port>, database ``prefect``; yields its
    asyncpg URL and removes everything on exit."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
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


def _count_flow_runs(url: str) -> int:
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return int(await conn.fetchval("select count(*) from flow_run"))
        finally:
            await conn.close()

    return asyncio.run(count())


def test_served_demo_deployment_on_a_postgresql_backed_server(tmp_path):
    started = time.monotonic()
    data = Path(tiny_config(tmp_path)["celeba_dir"])
    config = tiny_config(tmp_path) | {"me_dir": str(data / "me"), "others_dir": str(data / "others"),
                                      "me_epochs": 2, "me_min_photos": 4}
    with postgres_cluster() as url, \
            local_stack(tmp_path, serve=("demo",),
                        extra_env={"PREFECT_SERVER_DATABASE_CONNECTION_URL": url}) as stack, \
            api_client(stack.api_url) as client:
        run_id = cli_run(stack, "demo", {"config": config})
        run = wait_for_state(stack, run_id, 900)
        assert run.state.is_completed(), (f"train-all ended {run.state.type}: {run.state.message}\n"
                                          + "\n".join(s.tail(60) for s in stack.services))
        keys = {a.key for a in client.read_artifacts() if a.key}
        assert {"leaderboard", "data-checks", "report", "recognize-me-metrics", "photo-checks"} <= keys
        [board] = [a for a in client.read_artifacts() if a.key == "leaderboard"]
        assert "baseline_cnn" in str(board.data)
        assert _count_flow_runs(url) >= 1, "the flow runs must be stored in PostgreSQL"
    print(f"PostgreSQL-backed server test: {time.monotonic() - started:.0f} s wall")
