"""Security defaults: models load in safe mode and hold no Lambda layer; servers bind to localhost.

Image ids that could leave the image folder (``..``, ``/``, ``\\``) are never opened: covered by
``test_inventory.test_unsafe_ids_are_never_opened`` and ``test_checks.test_unsafe_image_id`` (and, on
files, ``test_bad_input``'s ``id_with_dot_dot`` / ``id_with_separator`` cases); training only reads the
ids ``split-data`` took from the manifest's existing, decodable rows.
"""

from __future__ import annotations

import ast
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from recognize_me.catalog import MODELS

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("recognize_me", "flows", "tasks", "deployments")


def _python_files() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


def _load_model_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name == "load_model":
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return calls


def test_every_load_model_call_passes_safe_mode_true() -> None:
    calls = _load_model_calls()
    assert len(calls) >= 2, "expected the predict and transfer loaders"  # the check below is not vacuous
    unsafe = [where for where, call in calls
              if not any(k.arg == "safe_mode" and isinstance(k.value, ast.Constant) and k.value.value is True
                         for k in call.keywords)]
    assert unsafe == [], f"load_model without safe_mode=True at {unsafe}"


def test_unsafe_deserialization_is_never_enabled() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _python_files()
                 if "enable_unsafe_deserialization" in p.read_text(encoding="utf-8")
                 or "safe_mode=False" in p.read_text(encoding="utf-8")]
    assert offenders == []


def _all_layers(model) -> list:
    return model._flatten_layers(include_self=False, recursive=True)  # nested models and layers too


@pytest.mark.parametrize("name", MODELS.names())
def test_no_builder_uses_a_lambda_layer(name: str) -> None:
    import keras

    from recognize_me.models import BuildOptions

    spec = MODELS.get(name)
    options = BuildOptions(vgg_weights="none", seed=1)
    model = spec.build((32, 32, 3), 3, options)
    if spec.fine_tune is not None:
        model = spec.fine_tune(model, options)
    layers = _all_layers(model)
    assert len(layers) > 5
    assert [type(layer).__name__ for layer in layers if isinstance(layer, keras.layers.Lambda)] == []
    assert '"Lambda"' not in json.dumps(model.get_config(), default=str)  # nothing to deserialise as code


def test_transfer_model_has_no_lambda_layer() -> None:
    import keras

    from recognize_me.me.surgery import build_transfer_model, feature_extractor
    from recognize_me.models import BuildOptions

    base = MODELS.get("cnn_scheduled").build((32, 32, 3), 3, BuildOptions(seed=1))
    model = build_transfer_model(feature_extractor(base), (32, 32), seed=1)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in _all_layers(model))


def test_a_lambda_layer_is_refused_on_load(tmp_path: Path) -> None:
    """What safe_mode=True buys: a saved model holding a Python lambda does not load."""
    import keras

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)unsafe|lambda"):
        keras.models.load_model(tmp_path / "lambda.keras", safe_mode=True)


def test_prefect_server_is_started_on_localhost_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments import serve

    started: list[list[str]] = []

    class FakeServer:
        returncode = None

        def __init__(self, command, **kwargs):
            started.append(list(command))

        def poll(self):
            return None

        def terminate(self):
            pass

    monkeypatch.setattr(serve.subprocess, "Popen", FakeServer)
    monkeypatch.setattr(serve, "server_healthy", lambda url, timeout=2.0: bool(started))  # up once started
    proc = serve.ensure_server("http://127.0.0.1:4321/api", wait_s=5, log=tmp_path / "server.log")
    assert isinstance(proc, FakeServer) and len(started) == 1
    command = started[0]
    assert command[:4] == [sys.executable, "-m", "prefect", "server"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "4321"
    assert "0.0.0.0" not in command


def test_local_dask_cluster_binds_localhost_without_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.training as train_models

    class FakeClient:
        api_url = "http://127.0.0.1:4200/api/"

    @contextmanager
    def fake_get_client(sync_client: bool = False):
        yield FakeClient()

    monkeypatch.setattr(train_models, "get_client", fake_get_client)  # no Prefect server needed
    runner = train_models.dask_runner(None, 1)
    assert runner.cluster_kwargs["host"] == "127.0.0.1"
    assert runner.cluster_kwargs["dashboard_address"] is None  # no dashboard port is opened
    assert runner.cluster_kwargs["n_workers"] == 1 and runner.cluster_kwargs["processes"] is True
