"""train-all end to end on tiny synthetic data, under one session-wide Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from recognize_me.config import PipelineConfig

pytestmark = pytest.mark.slow


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


def test_bad_attribute_value_stops_before_any_model(prefect_server, demo_data, tmp_path):
    from flows.train_all import train_all
    from recognize_me.data.check_report import DataCheckError

    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (demo_data / "list_attr_celeba.txt").read_bytes().split(b"\r\n")
    lines[5] = lines[5][:-2] + b" 2"  # last attribute of the 4th image becomes 2
    (bad / "list_attr_celeba.txt").write_bytes(b"\r\n".join(lines))
    (bad / "list_eval_partition.txt").write_bytes((demo_data / "list_eval_partition.txt").read_bytes())
    config = _config(bad, tmp_path / "out", images_dir=demo_data / "img_align_celeba")
    with pytest.raises(DataCheckError) as info:
        train_all(config=config)
    assert "000004.jpg" in str(info.value)
    run_dirs = list((tmp_path / "out").iterdir())
    assert len(run_dirs) == 1 and not (run_dirs[0] / "models").exists()


def test_unchanged_rerun_hits_the_cache_and_keeps_the_champion(prefect_server, demo_data, tmp_path):
    from flows.train_all import train_all
    from recognize_me.registry import ModelRegistry

    config = _config(demo_data, tmp_path, models=["cnn_scheduled"], epochs=1, n_workers=1)
    # refresh: computes even if another test of this session cached the same steps, and caches anew
    first = Path(train_all(config=config.model_copy(update={"refresh": True}))).parent
    second = Path(train_all(config=config)).parent
    assert first != second
    assert (first / "models" / "cnn_scheduled" / "model.keras").is_file()
    assert not (second / "models").exists(), "an unchanged rerun must not train again"
    assert json.loads((second / "leaderboard.json").read_text())[0]["model"] in {"cnn_scheduled",
                                                                                   "majority_baseline"}
    registry = ModelRegistry(tmp_path / "registry")
    assert [v["version"] for v in registry.versions("celeba")] == [1]
    decisions = registry.decisions("celeba")
    assert [d["promoted"] for d in decisions] == [True, False]
    assert "champion kept" in decisions[1]["reason"]

    refreshed = Path(train_all(config=config.model_copy(update={"refresh": True}))).parent
    assert (refreshed / "models" / "cnn_scheduled" / "model.keras").is_file()
    assert (refreshed / "data_docs").is_dir() and not (second / "data_docs").exists()


def test_recognize_me_stage_trains_every_strategy_side_by_side(prefect_server, demo_data, tmp_path, capsys):
    from flows.train_all import train_all
    from recognize_me.registry import ModelRegistry

    config = _config(demo_data, tmp_path, models=["cnn_scheduled"], epochs=1, me_dir=demo_data / "me",
                     others_dir=demo_data / "others", me_epochs=2, me_min_photos=4, n_workers=2)
    run_dir = Path(train_all(config=config)).parent
    for strategy in ("feature_extraction", "fine_tuning", "from_scratch"):
        metrics = json.loads((run_dir / "me" / strategy / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert sum(map(sum, metrics["confusion_matrix"])) == metrics["test_photos"] > 0
        assert metrics["strangers_photos"] > 0 and 0.0 <= metrics["strangers_roc_auc"] <= 1.0
        assert (run_dir / "me" / strategy / "model.keras").is_file()
    report = (run_dir / "me_report.html").read_text()
    assert all(s in report for s in ("feature_extraction", "fine_tuning", "from_scratch", "reference_dlib"))
    assert "ROC curves (strangers)" in report and "recall_at_1pct_far" in report
    photos = pd.read_csv(run_dir / "photos" / "photos.csv")
    assert set(photos["detector"]) <= {"mtcnn", "mtcnn_padded", "celeba_frame"}  # every photo aligned
    chosen = pd.read_csv(run_dir / "photos_chosen" / "photos.csv")  # faces chosen: what the transfer trained on
    assert not (chosen["choice"] == "candidate").any() and "<h2>Multi-face 'me' photos</h2>" in report
    counts = json.loads((run_dir / "me" / "feature_extraction" / "metrics.json").read_text())["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == len(chosen)
    assert ModelRegistry(tmp_path / "registry").champion("recognize_me") is not None
    assert {"recognize-me-metrics", "photo-checks", "promotion-recognize-me"} <= _artifact_keys()

    from recognize_me.cli import main

    me_photo = Path(photos.loc[(photos["label"] == "me") & photos["detector"].str.startswith("mtcnn"), "path"].iloc[0])
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    capsys.readouterr()
    assert main(["predict", str(me_photo), str(blank), "--registry", str(tmp_path / "registry"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [Path(r["path"]).name for r in results] == [me_photo.name, "blank.png"]
    assert 0.0 <= results[0]["me_probability"] <= 1.0 and isinstance(results[0]["attributes"], list)
    assert results[1]["error"] == "no face found"
