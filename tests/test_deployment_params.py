"""prefect.yaml's deployments match the CLI and take the CelebA folder from the user's environment."""

from __future__ import annotations

from pathlib import Path

import yaml

from deployments.serve import ROOT, missing_variables, resolve_variables, servable
from recognize_me.cli import DEMO_DIR, demo_defaults
from recognize_me.config import PipelineConfig

SPEC = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}


def test_demo_deployment_is_the_demo_command() -> None:
    deployed = PipelineConfig(**SPEC["demo"]["parameters"]["config"])
    cli = PipelineConfig(**demo_defaults(DEMO_DIR))
    assert deployed.me_dir == Path("demo-data/me") and deployed.others_dir == Path("demo-data/others")
    assert deployed.model_copy(update={"generate_demo_data": False}) == cli


def test_real_data_deployments_read_the_celeba_folder_from_the_environment() -> None:
    for name in ("celeba", "nightly"):
        params = SPEC[name]["parameters"]
        assert "shared/data" not in str(params)
        assert missing_variables(SPEC[name], {}) == ["RECOGNIZE_ME_CELEBA_DIR"]
        resolved = resolve_variables(params, {"RECOGNIZE_ME_CELEBA_DIR": "/data/celeba"})
        assert PipelineConfig(**resolved["config"]).celeba_dir == Path("/data/celeba")


def test_unset_variable_leaves_the_deployment_out(capsys) -> None:
    entries = servable(list(SPEC.values()), {})
    assert [e["name"] for e in entries] == ["demo", "library"]
    assert "set RECOGNIZE_ME_CELEBA_DIR" in capsys.readouterr().out
    entries = servable(list(SPEC.values()), {"RECOGNIZE_ME_CELEBA_DIR": "/x"})
    assert entries[1]["parameters"]["config"]["celeba_dir"] == "/x"


def test_find_me_deployment_is_the_find_flow_with_a_folder_parameter() -> None:
    import inspect

    from deployments.serve import entrypoint_flow
    from flows.find import find_me

    entry = SPEC["library"]
    assert entrypoint_flow(entry["entrypoint"]) is find_me and find_me.name == "find-me"
    params = inspect.signature(find_me.fn).parameters
    assert set(entry["parameters"]) <= set(params)
    assert params["photos_dir"].default is inspect.Parameter.empty  # each run names its folder
    assert entry["concurrency_limit"]["limit"] == 1
    from prefect.utilities.callables import parameter_schema

    assert parameter_schema(find_me).required == ["photos_dir"]  # what the UI asks for on "Run"
