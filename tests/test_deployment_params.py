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
    assert [e["name"] for e in entries] == ["demo"]
    assert "set RECOGNIZE_ME_CELEBA_DIR" in capsys.readouterr().out
    entries = servable(list(SPEC.values()), {"RECOGNIZE_ME_CELEBA_DIR": "/x"})
    assert entries[1]["parameters"]["config"]["celeba_dir"] == "/x"
