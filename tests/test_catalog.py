"""recognize_me.catalog: every model, strategy and feature choice declared once, and what derives from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from recognize_me.catalog import (
    FEATURES,
    MODELS,
    PLUGINS_ENV,
    STRATEGIES,
    Catalog,
    Entry,
    model_table,
    resolve,
)
from recognize_me.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]


def _config(**kw) -> PipelineConfig:
    return PipelineConfig(**{"celeba_dir": "data", **kw})


def test_seed_offsets_are_distinct_and_unknown_models_have_none():
    from recognize_me.training.train import TrainJob

    offsets = [e.seed_offset for e in MODELS]
    assert len(set(offsets)) == len(offsets)
    job = TrainJob(model="resnet", run_dir=Path("r"), splits_csv=Path("s"), images_dir=Path("i"),
                   attributes=("Male",), seed=42)
    assert job.model_seed == 42 + MODELS.get("resnet").seed_offset == 3042
    with pytest.raises(ValueError, match="unknown model 'alexnet'; valid names: baseline_cnn"):
        _ = TrainJob(model="alexnet", run_dir=Path("r"), splits_csv=Path("s"), images_dir=Path("i"),
                     attributes=("Male",)).model_seed


def test_every_reference_resolves_to_a_function():
    for model in MODELS:
        refs = [model.builder, model.callbacks_factory] + ([model.fine_tuner] if model.fine_tuner else [])
        assert all(callable(resolve(ref)) for ref in refs), model.name
    assert all(callable(resolve(s.missing)) for s in STRATEGIES if s.missing)
    with pytest.raises(ValueError, match="module:function"):
        resolve("no_colon")


def test_config_choices_and_json_schema_come_from_the_catalogs():
    props = PipelineConfig.model_json_schema()["properties"]
    assert props["models"]["items"]["enum"] == list(MODELS.names())
    assert props["me_base_model"]["enum"] == list(MODELS.names())
    assert props["me_strategies"]["items"]["enum"] == list(STRATEGIES.names())
    assert props["me_features"]["enum"] == list(FEATURES.names())
    assert _config().me_strategies == [s.name for s in STRATEGIES if s.name != "distilled"]  # distilled: opt-in
    for field, value in [("models", ["transformer"]), ("me_base_model", "alexnet"), ("me_strategies", ["magic"]),
                         ("me_features", "pixels")]:
        with pytest.raises(ValidationError, match=field):
            _config(**{field: value})


def test_prefect_parameter_form_offers_the_catalog_names():
    from prefect.utilities.callables import parameter_schema

    from flows.train_all import train_all

    props = parameter_schema(train_all.fn).model_dump()["definitions"]["PipelineConfig"]["properties"]
    assert props["models"]["items"]["enum"] == list(MODELS.names())
    assert props["me_features"]["enum"] == list(FEATURES.names())


def test_promotable_and_availability_come_from_the_strategy_entries():
    assert [s.name for s in STRATEGIES if not s.promotable] == ["reference_dlib"]
    assert STRATEGIES.get("fine_tuning").min_epochs == 2
    assert STRATEGIES.get("feature_extraction").why_missing() is None


def test_a_catalog_refuses_twice_declared_names():
    with pytest.raises(ValueError, match="declared twice"):
        Catalog("thing", "THINGS", [Entry("a", "x"), Entry("a", "y")])


def test_readme_model_table_is_the_catalogs():
    assert model_table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_a_plugin_adds_a_model_everywhere(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "toy_model_plugin")
    assert MODELS.names()[-1] == "toy_cnn"
    assert _config(models=["toy_cnn"]).models == ["toy_cnn"]
    assert PipelineConfig.model_json_schema()["properties"]["models"]["items"]["enum"][-1] == "toy_cnn"
    monkeypatch.delenv(PLUGINS_ENV)
    assert "toy_cnn" not in MODELS
    with pytest.raises(ValidationError, match="toy_cnn"):
        _config(models=["toy_cnn"])


@pytest.mark.slow
def test_a_model_added_by_registration_alone_trains_through_the_flow(prefect_server, demo_data, tmp_path,
                                                                      monkeypatch):
    """The toy model exists only in its plugin module; the worker processes find it through the variable."""
    from toy_model_plugin import TOY_SEED_OFFSET

    from flows.train_all import train_all

    monkeypatch.setenv(PLUGINS_ENV, "toy_model_plugin")
    config = _config(celeba_dir=demo_data, output_root=tmp_path, models=["toy_cnn"], epochs=1, image_size=(32, 32),
                     batch_size=32, seed=7, n_workers=1, limit_images=120)
    report = Path(train_all(config=config))
    board = {row["model"]: row for row in json.loads((report.parent / "leaderboard.json").read_text())}
    assert board["toy_cnn"]["status"] == "completed"
    metrics = json.loads((report.parent / "models" / "toy_cnn" / "metrics.json").read_text())
    assert metrics["seed"] == 7 + TOY_SEED_OFFSET and metrics["epochs_run"] == 1
    assert metrics["description"] == "A test's one-convolution model."
    assert re.search(r"toy_cnn", report.read_text())
