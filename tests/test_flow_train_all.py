"""train-all end to end on tiny synthetic data, under one session-wide Prefect server.

A bad attribute value stopping the flow before any model is ``test_bad_input``'s ``value_2`` flow case; an
unchanged rerun hitting the cache and keeping the champion is part of ``test_flow_cache``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from recognize_me.config import PipelineConfig

pytestmark = pytest.mark.flow


def _config(data: Path, out: Path, **kw) -> PipelineConfig:
    base = dict(celeba_dir=data, output_root=out, image_size=(32, 32), epochs=2, batch_size=32, seed=7,
                models=["baseline_cnn"])
    return PipelineConfig(**(base | kw))


def _artifact_keys(flow_run_id=None) -> set[str]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return {a.key for a in client.read_artifacts() if a.key}


def test_parallel_run_survives_a_dead_worker(prefect_server, demo_data, tmp_path):
    """Three models on two worker processes; one process exits hard at its first epoch every time."""
    from flows.train_all import train_all

    config = _config(demo_data, tmp_path, models=["baseline_cnn", "cnn_scheduled", "cnn_thresholded"],
                     fault_injection={"baseline_cnn": 0}, n_workers=2,
                     refresh=True)  # other tests of the session may have cached these very steps
    report = Path(train_all(config=config))
    run_dir = report.parent
    assert report.name == "report.html" and report.stat().st_size > 1000
    board = {row["model"]: row for row in json.loads((run_dir / "leaderboard.json").read_text())}
    assert board["baseline_cnn"]["status"] == "failed"
    assert board["cnn_scheduled"]["status"] == board["cnn_thresholded"]["status"] == "completed"
    assert board["majority_baseline"]["status"] == "baseline"
    for name in ("cnn_scheduled", "cnn_thresholded"):
        folder = run_dir / "models" / name
        for f in ("model.keras", "metrics.json", "history.csv", "config.json", "predictions_test.csv"):
            assert (folder / f).is_file(), f"{name}/{f} missing"
        saved = json.loads((folder / "config.json").read_text())
        assert saved["data_fingerprint"] and saved["pipeline_config"]["seed"] == 7
        assert len((folder / "history.csv").read_text().splitlines()) >= 2
    assert not (run_dir / "models" / "baseline_cnn" / "model.keras").exists()
    assert "baseline_cnn" in report.read_text() and "failed" in report.read_text()
    assert (run_dir / "data_docs").is_dir()
    run_config = json.loads((run_dir / "config.json").read_text())
    assert run_config["seed"] == 7 and len(run_config["data_fingerprint"]) == 64
    assert "tensorflow-cpu" in run_config["package_versions"] or "tensorflow" in run_config["package_versions"]
    assert json.loads((run_dir / "metrics.json").read_text())["leaderboard"][0]["model"]
    keys = _artifact_keys()
    assert {"leaderboard", "data-checks", "report", "training-cnn-scheduled"} <= keys


def test_recognize_me_stage_trains_every_strategy_side_by_side(me_flow_run, tmp_path, capsys):
    from recognize_me.registry import ModelRegistry

    run_dir = me_flow_run.run_dir
    registry = me_flow_run.config.output_root / "registry"
    for strategy in ("feature_extraction", "fine_tuning", "from_scratch", "dlib_resnet"):
        metrics = json.loads((run_dir / "me" / strategy / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert sum(map(sum, metrics["confusion_matrix"])) == metrics["test_photos"] > 0
        assert metrics["strangers_photos"] > 0 and 0.0 <= metrics["strangers_roc_auc"] <= 1.0
        assert (run_dir / "me" / strategy / "model.keras").is_file()
    index = json.loads((run_dir / "me" / "results.json").read_text())
    assert {r["strategy"] for r in index} == set(me_flow_run.config.me_strategies)
    report = (run_dir / "me_report.html").read_text()
    assert all(s in report for s in ("feature_extraction", "fine_tuning", "from_scratch", "distilled", "dlib_resnet",
                                     "reference_dlib"))
    assert "ROC curves (strangers)" in report and "recall_at_1pct_far" in report
    photos = pd.read_csv(run_dir / "photos" / "photos.csv")
    assert set(photos["detector"]) <= {"mtcnn", "mtcnn_padded", "celeba_frame"}  # every photo aligned
    chosen = pd.read_csv(run_dir / "photos_chosen" / "photos.csv")  # faces chosen: what the transfer trained on
    assert not (chosen["choice"] == "candidate").any() and "<h2>Multi-face 'me' photos</h2>" in report
    counts = json.loads((run_dir / "me" / "feature_extraction" / "metrics.json").read_text())["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == len(chosen)
    assert ModelRegistry(registry).champion("recognize_me") is not None
    assert {"recognize-me-metrics", "photo-checks", "promotion-recognize-me"} <= _artifact_keys()

    from recognize_me.cli import main

    me_photo = Path(photos.loc[(photos["label"] == "me") & photos["detector"].str.startswith("mtcnn"), "path"].iloc[0])
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    capsys.readouterr()
    assert main(["predict", str(me_photo), str(blank), "--registry", str(registry), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [Path(r["path"]).name for r in results] == [me_photo.name, "blank.png"]
    assert 0.0 <= results[0]["me_probability"] <= 1.0 and isinstance(results[0]["attributes"], list)
    assert results[1]["error"] == "no face found"
