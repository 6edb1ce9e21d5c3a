"""A Prefect server on a real PostgreSQL database runs the served train-all/demo deployment.

The README tells users to put a shared server on PostgreSQL; this proves that setup end to end: a
throwaway PostgreSQL cluster in a temporary folder on 127.0.0.1 (run as the ``postgres`` system user
when the tests run as root), ``prefect server start`` on it, the deployments served, ``prefect deployment
run train-all/demo`` (recognize-me stage included) to Completed, artifacts read back through the API.
The stack and its run are the session's ``served_demo`` (tests/served_stack.py, shared with
tests/test_deployments.py), which stops everything it starts. Skipped with a message when PostgreSQL is
absent (``.ci/run`` installs Debian's ``postgresql`` package; the served stack then runs on SQLite).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.system


def test_served_demo_deployment_on_a_postgresql_backed_server(served_demo):
    if served_demo.postgres_url is None:
        pytest.skip(served_demo.postgres_skip_reason)
    run = served_demo.run
    assert run.state.is_completed(), f"train-all ended {run.state.type}: {run.state.message}\n{served_demo.logs}"
    keys = {a.key for a in served_demo.artifacts if a.key}
    assert {"leaderboard", "data-checks", "report", "recognize-me-metrics", "photo-checks"} <= keys
    [board] = [a for a in served_demo.artifacts if a.key == "leaderboard"]
    assert "baseline_cnn" in str(board.data)
    assert served_demo.flow_runs_in_postgres >= 1, "the flow runs must be stored in PostgreSQL"
    print(f"served stack on PostgreSQL: {served_demo.seconds:.0f} s wall")
