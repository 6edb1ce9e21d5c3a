"""Shared fixtures. Prefect state is isolated per test session (PREFECT_HOME in a temp folder)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Isolate Prefect before it is imported anywhere: a previous session's cache or database is never hit.
_PREFECT_HOME = tempfile.mkdtemp(prefix="recognize-me-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(Path(_PREFECT_HOME) / "storage")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _float32_policy_after_each_test():
    """``train_one`` sets Keras' process-wide dtype policy (mixed_bfloat16 on this CPU); tests that run it
    in this process must not leave it to the next test."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect server on temporary SQLite for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """Small synthetic CelebA-format dataset (official layout) shared by the slow tests."""
    from recognize_me.demo.data import generate_demo_data

    root = tmp_path_factory.mktemp("demo")
    generate_demo_data(root, n_images=240, seed=3, n_me=12, n_others=12)
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real data is not shipped with the project)")
    return SHARED_DATA
