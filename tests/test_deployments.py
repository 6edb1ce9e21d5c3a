"""The prefect.yaml deployments, served for real: `prefect server start` + `python -m deployments.serve`.

A tiny train-all runs through `prefect deployment run train-all/demo --params ...`; a second run while the
first is busy must be cancelled (concurrency limit 1, CANCEL_NEW). Everything lives in a temporary folder.
The stack and its run are the session's ``served_demo`` (tests/served_stack.py), shared with
tests/test_postgres_server.py.
"""

from __future__ import annotations

import pytest

from recognize_me.config import PipelineConfig

pytestmark = pytest.mark.system


def test_served_demo_deployment_runs_train_all_from_the_cli(served_demo):
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    served = served_demo
    PipelineConfig(**served.config)  # the override is a complete, valid config: prefect.yaml's defaults play no part
    spec = served.spec

    demo = served.demo
    assert demo.global_concurrency_limit is not None and demo.global_concurrency_limit.limit == 1
    assert demo.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    assert demo.parameters == spec["demo"]["parameters"]
    nightly = served.nightly
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 3 * * *", "UTC", True)
    assert schedule.schedule.cron == spec["nightly"]["schedules"][0]["cron"]
    assert nightly.parameters["config"]["celeba_dir"] == served.celeba_env  # from RECOGNIZE_ME_CELEBA_DIR
    assert not served.celeba_served  # --only demo nightly

    second = served.overlapping
    assert second.state.is_cancelled(), f"overlapping run ended {second.state.type}: {second.state.message}"
    run = served.run
    assert run.state.is_completed(), f"train-all ended {run.state.type}: {run.state.message}\n{served.logs}"
    print(f"train-all/demo via serve: {served.seconds:.0f} s, stack included")
    assert run.parameters["config"]["output_root"] == str(served.workdir / "out")
    assert run.parameters["config"]["celeba_dir"] == served.config["celeba_dir"]  # not prefect.yaml's demo-data
    assert {"leaderboard", "data-checks", "report", "training-baseline-cnn"} <= {
        a.key for a in served.artifacts if a.key}

    [report] = (served.workdir / "out").glob("*/report.html")  # one run folder: the cancelled run wrote nothing
    assert report.stat().st_size > 1000 and "baseline_cnn" in report.read_text()
    assert (report.parent / "models" / "baseline_cnn" / "metrics.json").is_file()
