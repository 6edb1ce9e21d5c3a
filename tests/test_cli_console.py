"""`recognize-me demo` through the CLI in a fresh process: a quiet, useful console."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from me_fixtures import FEW_CELEBA_PHOTOS

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[1]
TF_CPP_LINE = re.compile(r"^[IWE]\d{4} |cpu_feature_guard|oneDNN custom operations|absl::InitializeLog", re.M)


def test_demo_console_has_no_traceback_and_no_tensorflow_cpp_line(tmp_path):
    # the CLI itself must turn telemetry and TF's C++ logs down: the test's own settings are removed
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "TF_CPP")) and k != "PYTHONWARNINGS"}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONPATH": str(ROOT),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    cmd = [sys.executable, "-m", "recognize_me.cli", "demo", "--data", str(tmp_path / "demo"), "--images", "160",
           "--models", "baseline_cnn", "cnn_scheduled", "--epochs", "2", "--image-size", "32", "32",
           "--me-epochs", "2", "--me-strategies", "feature_extraction", "fine_tuning",  # scikit-learn and Keras
           *(f"--{k.replace('_', '-')}={v}" for k, v in FEW_CELEBA_PHOTOS.items()),
           "--output-root", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert not TF_CPP_LINE.search(out), TF_CPP_LINE.search(out).group(0)
    assert "shuffle=True" not in out and "dashboard" not in out.lower() and "still alive" not in out
    assert "best model:" in out and "recognize-me report:" in out
    for model in ("baseline_cnn", "cnn_scheduled"):
        for epoch in (1, 2):
            assert len(re.findall(rf"\b{model} epoch {epoch}/2: ", out)) == 1, f"{model} epoch {epoch}"
    print(f"recognize-me demo: {len(out.splitlines())} console lines")
