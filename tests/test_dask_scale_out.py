"""Scale out: train-all sends its training tasks to an existing Dask cluster (`dask scheduler` + 2 workers)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from deployments.screenshots import ROOT, free_port, start, stop, wait_until
from recognize_me.config import PipelineConfig

pytestmark = pytest.mark.system


def test_train_all_on_an_external_dask_cluster(prefect_server, demo_data, tmp_path):
    import distributed
    import psutil
    from prefect.settings import PREFECT_API_URL

    from flows.train_all import train_all

    # External workers report task runs to the API themselves: they need the server's URL in their env.
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), TF_CPP_MIN_LOG_LEVEL="2")
    address = f"tcp://127.0.0.1:{free_port()}"
    services = []
    try:
        services.append(start("dask scheduler", [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                                                 "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                              tmp_path / "scheduler.log", env, cwd=ROOT))
        for i in range(2):
            services.append(start(f"dask worker {i}", [sys.executable, "-m", "dask", "worker", address,
                                                       "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                                  tmp_path / f"worker-{i}.log", env, cwd=ROOT))
        client = wait_until(lambda: _connect(distributed, address), 60, f"scheduler at {address}", services)
        with client:
            wait_until(lambda: len(client.scheduler_info(n_workers=-1)["workers"]) == 2, 120, "2 Dask workers",
                       services)
            worker_pids = client.run(os.getpid)
            ours = {p.pid for s in services[1:] for p in psutil.Process(s.proc.pid).children(recursive=True)}
            assert set(worker_pids.values()) <= ours and os.getpid() not in worker_pids.values()

            config = PipelineConfig(celeba_dir=demo_data, output_root=tmp_path / "out", image_size=(32, 32),
                                    epochs=1, batch_size=32, seed=11, refresh=True, dask_address=address,
                                    models=["baseline_cnn", "cnn_scheduled"])
            run_dir = Path(train_all(config=config)).parent

            def train_keys_executed(dask_worker) -> list[str]:  # nested: shipped by value to the workers
                """Keys of the train-model tasks this worker executed, from its state machine's log."""
                return sorted({str(entry[0]) for entry in dask_worker.state.log
                               if str(entry[0]).startswith("train_model") and "executing" in entry})

            executed = client.run(train_keys_executed)
        assert set(executed) == set(worker_pids), "a worker left the cluster during the run"
        assert all(len(keys) == 1 for keys in executed.values()), f"one model per worker expected: {executed}"
    finally:
        for service in reversed(services):
            stop(service)

    board = {row["model"]: row for row in json.loads((run_dir / "leaderboard.json").read_text())}
    for name in ("baseline_cnn", "cnn_scheduled"):
        assert board[name]["status"] == "completed"
        for f in ("model.keras", "metrics.json", "config.json"):
            assert (run_dir / "models" / name / f).is_file(), f"{name}/{f} missing"


def _connect(distributed, address: str):
    try:
        return distributed.Client(address, timeout="2s")
    except OSError:
        return None
