"""Shared fixtures and the test tiers. Prefect state is isolated per test session (PREFECT_HOME in a temp folder).

Tiers (README "Tests"): unit tests carry no marker; ``slow`` ones train beyond a few steps or start processes;
``flow`` ones run train-all on the session's Prefect server; ``system`` ones start servers, clusters or a
CLI process. Every flow and system test is slow too, and a test that asks for ``prefect_server`` is a flow
test unless marked system, so ``-m "not slow"`` never starts a flow. Each expensive case runs once, in a
session fixture below, and several tests read its outputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Isolate Prefect before it is imported anywhere: a previous session's cache or database is never hit.
_PREFECT_HOME = tempfile.mkdtemp(prefix="recognize-me-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(Path(_PREFECT_HOME) / "storage")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


#: Session fixtures whose readers run in one xdist worker, so each expensive case still runs once per session.
SHARED_CASES = ("me_flow_run", "served_demo", "uninterrupted_training")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker and before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """flow and system imply slow; asking for the session's Prefect server makes a test a flow test.

    ``make test`` runs on two xdist workers (``--dist loadgroup``): every test reading one of
    ``SHARED_CASES`` is in that case's group (one ``me_flow_run``, one served stack, one uninterrupted
    training per session), every other test in its module's group (module fixtures are built once). Each
    worker that runs a flow test starts its own session-wide Prefect test server (its own PREFECT_HOME)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "prefect_server" in fixtures and item.get_closest_marker("system") is None:
            item.add_marker(pytest.mark.flow)
        if (item.get_closest_marker("flow") or item.get_closest_marker("system")) and \
                item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("xdist_group") is None:
            case = next((name for name in SHARED_CASES if name in fixtures), None)
            item.add_marker(pytest.mark.xdist_group(case or item.path.stem))


@pytest.hookimpl(trylast=True)  # after xdist has put each test's group into its node id
def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run on xdist when its grouping is silently off (pytest-xdist#1386: pytest 9.2 ignores the
    group suffix), which would build every shared case once per worker."""
    if getattr(session.config.option, "loadgroup", False) and session.items and \
            not any("@" in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist's --dist loadgroup is not grouping tests with this pytest "
                                "(pytest-xdist#1386); install the versions in constraints.txt (make install)")


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


# --- expensive cases, each run once per session --------------------------------------------------------

@dataclass
class MeFlowRun:
    """The first train-all run with the recognize-me stage (``me_flow_run``) and what it was given."""

    config: Any  # PipelineConfig, without refresh
    run_dir: Path
    data: Path  # attribute files, me/ and others/ (a copy that tests may edit); images stay in demo_data
    clusters: list[int] = field(default_factory=list)  # n_workers of each Dask cluster the run asked for


@pytest.fixture(scope="session")
def me_flow_run(prefect_server, demo_data: Path, tmp_path_factory) -> MeFlowRun:
    """train-all with one CelebA model and every recognize-me strategy on demo data, refresh on.

    Read by ``test_flow_train_all`` (the stage's outputs, ``predict`` on its champion) and continued by
    ``test_flow_cache`` (reruns of the same config after edits to ``data``).
    """
    from me_fixtures import FEW_CELEBA_PHOTOS

    import flows.training
    from flows.train_all import train_all
    from recognize_me.catalog import STRATEGIES
    from recognize_me.config import PipelineConfig

    root = tmp_path_factory.mktemp("me_flow")
    data = root / "data"
    data.mkdir()
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        shutil.copy2(demo_data / name, data / name)
    for folder in ("me", "others"):
        shutil.copytree(demo_data / folder, data / folder)
    config = PipelineConfig(celeba_dir=data, images_dir=demo_data / "img_align_celeba", me_dir=data / "me",
                            others_dir=data / "others", output_root=root / "out", image_size=(32, 32),
                            epochs=1, batch_size=32, seed=11, models=["cnn_scheduled"], me_epochs=2, me_student_epochs=2,
                            me_min_photos=4, n_workers=2, me_strategies=list(STRATEGIES.names()),  # opt-in too
                            **FEW_CELEBA_PHOTOS)
    run = MeFlowRun(config=config, run_dir=root, data=data)
    original = flows.training.dask_runner

    def recording(address, n_workers):
        run.clusters.append(n_workers)
        return original(address, n_workers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flows.training, "dask_runner", recording)
        run.run_dir = Path(train_all(config=config.model_copy(update={"refresh": True}))).parent
    return run


@pytest.fixture(scope="session")
def served_demo(demo_data: Path, tmp_path_factory):
    """The prefect.yaml deployments served for real (on PostgreSQL when it is installed), one
    ``train-all/demo`` run on ``demo_data`` with the recognize-me stage and an overlapping run; see
    tests/served_stack.py."""
    from served_stack import run_served_demo

    return run_served_demo(tmp_path_factory.mktemp("served"), demo_data)


@pytest.fixture(scope="session")
def training_job(tmp_path_factory) -> tuple[Path, Path]:
    """``celeba_fixtures.write_training_job`` with 90 rows: ``(splits_csv, images_dir)``, read-only."""
    from celeba_fixtures import write_training_job

    return write_training_job(tmp_path_factory.mktemp("job"), n=90)


@dataclass
class FreshProcessRun:
    model_dir: Path  # run_dir/models/<model>
    hook_log: Path  # one JSON line per finished epoch
    seconds: float


@pytest.fixture(scope="session")
def uninterrupted_training(training_job: tuple[Path, Path], tmp_path_factory) -> FreshProcessRun:
    """``train_one_command``'s default job (baseline_cnn, 3 epochs, seed 5) on ``training_job``, run to the
    end in a fresh process: the reference of ``test_crash_resume``, seed 5 of ``test_reproducibility``."""
    import subprocess
    import time

    from celeba_fixtures import train_one_command

    root = tmp_path_factory.mktemp("uninterrupted")
    started = time.monotonic()
    done = subprocess.run(train_one_command(root, *training_job, root / "hook.log"), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return FreshProcessRun(root / "models" / "baseline_cnn", root / "hook.log", time.monotonic() - started)
