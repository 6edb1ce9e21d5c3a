"""The prefect.yaml deployments, served for real: `prefect server start` + `python -m deployments.serve`.

A tiny train-all runs through `prefect deployment run train-all/demo --params ...`; a second run while the
first is busy must be cancelled (concurrency limit 1, CANCEL_NEW). Everything lives in tmp_path.
"""

from __future__ import annotations

import time

import pytest
import yaml

from deployments.screenshots import ROOT, api_client, cli_run, local_stack, tiny_config, wait_for_state
from recognize_me.config import PipelineConfig

pytestmark = pytest.mark.slow


def test_served_demo_deployment_runs_train_all_from_the_cli(tmp_path):
    config = tiny_config(tmp_path)
    PipelineConfig(**config)  # the override is a complete, valid config: prefect.yaml's defaults play no part
    spec = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}

    celeba = str(tmp_path / "my-celeba")
    with local_stack(tmp_path, serve=("demo", "nightly"), extra_env={"RECOGNIZE_ME_CELEBA_DIR": celeba}) as stack, \
            api_client(stack.api_url) as client:
        from prefect.client.schemas.objects import ConcurrencyLimitStrategy
        from prefect.exceptions import ObjectNotFound

        demo = client.read_deployment_by_name("train-all/demo")
        assert demo.global_concurrency_limit is not None and demo.global_concurrency_limit.limit == 1
        assert demo.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
        assert demo.parameters == spec["demo"]["parameters"]
        nightly = client.read_deployment_by_name("train-all/nightly")
        [schedule] = nightly.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 3 * * *", "UTC", True)
        assert schedule.schedule.cron == spec["nightly"]["schedules"][0]["cron"]
        assert nightly.parameters["config"]["celeba_dir"] == celeba  # from RECOGNIZE_ME_CELEBA_DIR
        with pytest.raises(ObjectNotFound):  # --only demo nightly
            client.read_deployment_by_name("train-all/celeba")

        started = time.monotonic()
        run_id = cli_run(stack, "demo", {"config": config})
        wait_for_state(stack, run_id, 600, lambda s: s.is_running() or s.is_final())
        overlapping = cli_run(stack, "demo", {"config": config})
        second = wait_for_state(stack, overlapping, 300)
        assert second.state.is_cancelled(), f"overlapping run ended {second.state.type}: {second.state.message}"

        run = wait_for_state(stack, run_id, 900)
        assert run.state.is_completed(), (f"train-all ended {run.state.type}: {run.state.message}\n"
                                          + "\n".join(s.tail(60) for s in stack.services))
        print(f"train-all/demo via serve: {time.monotonic() - started:.0f} s to Completed")
        assert run.parameters["config"]["output_root"] == str(tmp_path / "out")
        assert run.parameters["config"]["celeba_dir"] == config["celeba_dir"]  # not prefect.yaml's demo-data
        assert {"leaderboard", "data-checks", "report", "training-baseline-cnn"} <= {
            a.key for a in client.read_artifacts() if a.key}

    [report] = (tmp_path / "out").glob("*/report.html")  # one run folder: the cancelled run wrote nothing
    assert report.stat().st_size > 1000 and "baseline_cnn" in report.read_text()
    assert (report.parent / "models" / "baseline_cnn" / "metrics.json").is_file()
