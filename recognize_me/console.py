"""A quiet console: TensorFlow's C++ start-up lines and Prefect's telemetry off, real errors kept.

TensorFlow 2.21 writes its start-up lines (oneDNN notice, CPU feature guard, absl's "All log messages
before absl::InitializeLog()") to file descriptor 2 while it is being imported, before
``TF_CPP_MIN_LOG_LEVEL`` takes effect. ``import_tensorflow_quietly`` imports it with descriptor 2 captured
and writes back every captured line that is not one of those (and everything, when the import fails).
Call it first in any process that is about to use TensorFlow; later imports reuse the module.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from types import ModuleType

#: Defaults set unless the user set them: TensorFlow's C++ log level (warnings and errors still shown
#: above level 2 = errors only for INFO/WARNING) and Prefect's telemetry of a temporary server.
QUIET_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

#: Lines TensorFlow prints while starting; nothing else is dropped.
STARTUP_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ (port\.cc|cpu_feature_guard\.cc)[:\d]*\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)$")


class PredictRetracingFilter(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning about Keras' predict step, nothing else.

    TensorFlow counts traces per code object, so every model a worker process evaluates (each traces its
    own predict step once per batch shape) counts against the same function: the third model in one process
    triggers the warning although no model retraced. Retracing warnings about training steps still show.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "make_predict_function" in message)


PREDICT_RETRACING = PredictRetracingFilter()


class ClosingHeartbeatFilter(logging.Filter):
    """Drops a Dask worker's "Failed to communicate with scheduler during heartbeat" error and its
    traceback: when a local cluster closes, the scheduler may stop while a worker's heartbeat is in flight
    (seen under load at the end of a transfer stage). A scheduler lost during work still fails the task run,
    through Prefect, with its own message, so the dropped line tells a user nothing to act on."""

    MESSAGE = "Failed to communicate with scheduler during heartbeat"

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.MESSAGE)


def dask_setup(worker: object) -> None:
    """Dask preload hook (``preload=["recognize_me.console"]`` on a local cluster's workers): the worker
    process keeps its console free of the cluster-teardown heartbeat race (``ClosingHeartbeatFilter``)."""
    logging.getLogger("distributed.worker").addFilter(ClosingHeartbeatFilter())


def quiet_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set ``QUIET_DEFAULTS`` where unset (in ``os.environ`` by default); return the values in effect."""
    env = os.environ if environ is None else environ
    for name, value in QUIET_DEFAULTS.items():
        env.setdefault(name, value)
    return {name: env[name] for name in QUIET_DEFAULTS}


def drop_startup_lines(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not STARTUP_LINE.match(line.rstrip("\n")))


def import_tensorflow_quietly() -> ModuleType:
    """``import tensorflow`` without its start-up lines; any other output and any import error still shown.
    Also installs ``PREDICT_RETRACING`` on TensorFlow's logger (once)."""
    logging.getLogger("tensorflow").addFilter(PREDICT_RETRACING)  # a filter already there is not added again
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_environment()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            import tensorflow

            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            shown = text if failed else drop_startup_lines(text)
            if shown:
                sys.stderr.write(shown)
                sys.stderr.flush()
    return tensorflow


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """For a whole command: file descriptor 2 goes through a pipe whose reader drops TensorFlow's start-up
    lines and passes every other line on, so an import of TensorFlow anywhere in this process, or in a child
    process that inherits descriptor 2 (local Dask workers), prints none of them."""
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as source:
            for line in source:
                if not STARTUP_LINE.match(line.decode(errors="replace").rstrip("\r\n")):
                    os.write(real, line)

    reader = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes this process' write end; the reader ends when children close theirs
        reader.join(timeout=5)
        if not reader.is_alive():
            os.close(real)
