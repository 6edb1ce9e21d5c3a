"""Cache keys hold exactly what each step reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

from recognize_me.me.job import TransferJob
from recognize_me.training import cache_keys
from recognize_me.training.cache_keys import (
    files_signature,
    job_key,
    photo_set_digest,
    train_job_key,
    transfer_job_key,
    tree_signature,
)
from recognize_me.training.train import TrainJob


@dataclass(frozen=True)
class Job:
    data: Path
    out_dir: Path
    lr: float = 0.1


def test_job_key_reads_file_contents_not_paths(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("x\n1\n")
    b.write_text("x\n1\n")
    key = job_key(Job(a, tmp_path / "o1"), exclude={"out_dir"})
    assert job_key(Job(b, tmp_path / "o2"), exclude={"out_dir"}) == key  # moved input, other output folder
    assert job_key(Job(a, tmp_path / "o1", lr=0.2), exclude={"out_dir"}) != key  # hyperparameter
    b.write_text("x\n2\n")
    assert job_key(Job(b, tmp_path / "o1"), exclude={"out_dir"}) != key  # content


def _splits(tmp_path: Path, label: int = 1) -> tuple[Path, Path]:
    images = tmp_path / "img"
    images.mkdir(exist_ok=True)
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        (images / name).write_bytes(b"jpeg" + name.encode())
    splits = tmp_path / "splits.csv"
    pd.DataFrame({"image_id": ["1.jpg", "2.jpg"], "split": ["train", "test"], "Male": [label, 0]}).to_csv(
        splits, index=False)
    return splits, images


def test_train_key_ignores_where_it_runs_and_sees_labels_and_listed_images(tmp_path: Path) -> None:
    splits, images = _splits(tmp_path)
    job = TrainJob(model="baseline_cnn", run_dir=tmp_path / "r1", splits_csv=splits, images_dir=images,
                   attributes=("Male",), context={"data_fingerprint": "a", "pipeline_config": {"me_dir": "x"}})
    key = train_job_key(job)
    assert train_job_key(replace(job, run_dir=tmp_path / "r2", threads=2, context={"data_fingerprint": "b"},
                                 decoded=tmp_path)) == key  # the decoded-image cache folder is where, not what
    assert train_job_key(replace(job, epochs=9)) != key
    (images / "3.jpg").write_bytes(b"not listed: not read")
    assert train_job_key(job) == key
    (images / "1.jpg").write_bytes(b"replaced listed image")
    assert train_job_key(job) != key
    key = train_job_key(job)
    _splits(tmp_path, label=0)
    assert train_job_key(job) != key


def test_transfer_key_is_base_model_photo_set_hyperparameters_and_recipe(tmp_path: Path, monkeypatch) -> None:
    crops = tmp_path / "crops"
    crops.mkdir()
    for i in range(3):
        (crops / f"{i}.png").write_bytes(bytes([i]) * 10)
    photos = tmp_path / "photos.csv"

    def write_photos(n: int) -> None:
        pd.DataFrame({"crop_path": [str(crops / f"{i}.png") for i in range(n)], "label": ["me"] * n,
                      "split": ["train"] * n}).to_csv(photos, index=False)

    write_photos(2)
    base = tmp_path / "model.keras"
    base.write_bytes(b"weights")
    job = TransferJob(strategy="feature_extraction", base_model_path=base, photos_csv=photos,
                      out_dir=tmp_path / "me1", image_size=(32, 32), crop="square")
    key = transfer_job_key(job)
    assert transfer_job_key(replace(job, out_dir=tmp_path / "me2", threads=2)) == key
    assert transfer_job_key(replace(job, strategy="fine_tuning")) != key
    digest = photo_set_digest(photos)
    write_photos(3)
    assert photo_set_digest(photos) != digest and transfer_job_key(job) != key
    write_photos(2)
    base.write_bytes(b"other weights")
    assert transfer_job_key(job) != key
    base.write_bytes(b"weights")
    assert transfer_job_key(job) == key
    monkeypatch.setattr(cache_keys, "TRANSFER_RECIPE", cache_keys.TRANSFER_RECIPE + 1)
    assert transfer_job_key(job) != key, "a new fitting recipe must not reuse a cached transfer"


def test_tree_signature_sees_files_in_sub_folders(tmp_path: Path) -> None:
    (tmp_path / "anna").mkdir()
    (tmp_path / "anna" / "1.png").write_bytes(b"x")
    before = tree_signature(tmp_path)
    (tmp_path / "anna" / "2.png").write_bytes(b"y")
    assert tree_signature(tmp_path) != before
    assert tree_signature(None) == tree_signature(tmp_path / "empty-or-absent")


def test_files_signature_counts_absent_files(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"a")
    present = files_signature(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "b.jpg").write_bytes(b"b")
    assert files_signature(tmp_path, ["a.jpg", "b.jpg"]) != present
    os.utime(tmp_path / "b.jpg", ns=(1, 1))
    assert files_signature(tmp_path, ["b.jpg", "a.jpg"]) != present


def test_job_key_needs_a_dataclass() -> None:
    with pytest.raises(TypeError, match="dataclass"):
        job_key({"a": 1})
