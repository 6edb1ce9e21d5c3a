"""The quiet console: TensorFlow's start-up lines dropped, everything else kept."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from recognize_me.console import (
    PREDICT_RETRACING,
    drop_startup_lines,
    import_tensorflow_quietly,
    quiet_environment,
)

STARTUP = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796156258.548643    5592 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results. To turn them off, set `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1796156264.529335    6043 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with "
    "the appropriate compiler flags.\n")


def test_startup_lines_dropped_other_lines_kept() -> None:
    other = "E0000 00:00:1.0 1 op_kernel.cc:1] real error\nsomething else\n"
    assert drop_startup_lines(STARTUP + other) == other


def test_quiet_environment_keeps_what_the_user_set() -> None:
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    assert quiet_environment(env) == {"TF_CPP_MIN_LOG_LEVEL": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@pytest.mark.slow
def test_tensorflow_import_prints_no_cpp_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("from recognize_me.console import import_tensorflow_quietly\n"
            "tf = import_tensorflow_quietly()\nprint(int(tf.reduce_sum(tf.constant([1, 2]))))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    assert "port.cc" not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr


def test_filtered_stderr_drops_startup_lines_of_this_process_and_its_children() -> None:
    code = ("import os, subprocess, sys\n"
            "from recognize_me.console import filtered_stderr\n"
            "with filtered_stderr():\n"
            "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
            "    print('kept from python', file=sys.stderr)\n"
            "    subprocess.run([sys.executable, '-c', \"import os; os.write(2, b'I0000 00:00:1.5 7 port.cc:153] "
            "oneDNN custom operations are on.\\\\nchild line\\\\n')\"], check=True)\n"
            "print('after', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["kept from python", "child line", "after"]


def test_only_the_predict_retracing_warning_is_dropped() -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)

    predict = ("5 out of the last 13 calls to <function TensorFlowTrainer.make_predict_function.<locals>."
               "one_step_on_data_distributed at 0x7f> triggered tf.function retracing. Tracing is expensive")
    train = predict.replace("make_predict_function", "make_train_function")
    assert not PREDICT_RETRACING.filter(record(predict))
    assert PREDICT_RETRACING.filter(record(train))
    assert PREDICT_RETRACING.filter(record("Some other TensorFlow warning"))
    import_tensorflow_quietly()
    import_tensorflow_quietly()
    assert logging.getLogger("tensorflow").filters.count(PREDICT_RETRACING) == 1


def test_cluster_teardown_heartbeat_error_is_dropped_and_other_errors_kept():
    import logging

    from recognize_me.console import ClosingHeartbeatFilter

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, (), None)

    keep = ClosingHeartbeatFilter()
    assert not keep.filter(record("Failed to communicate with scheduler during heartbeat."))
    assert keep.filter(record("Compute Failed")) and keep.filter(record("Worker is at 95% memory usage."))


@pytest.mark.slow
def test_local_cluster_workers_load_the_filter_by_preload():
    """The preload named in flows.training.dask_runner installs the filter inside each worker process."""
    import logging

    from distributed import Client, LocalCluster

    def filters() -> list[str]:
        return [type(f).__name__ for f in logging.getLogger("distributed.worker").filters]

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, preload=["recognize_me.console"]) as cluster, Client(cluster) as client:
        assert list(client.run(filters).values()) == [["ClosingHeartbeatFilter"]]
