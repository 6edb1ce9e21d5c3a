"""The distilled "is this me?" base: teacher embeddings (cached by content), the student's inputs, its training
and folder, and how the plan transfers from it. A cheap stand-in teacher; dlib is never needed here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recognize_me.me.student import (
    StudentSettings,
    celeba_student_images,
    centred,
    distill_student,
    face_region,
    student_inputs,
)
from recognize_me.me.teacher import CHUNK, chunked, filled_frame, teacher_embeddings

CALLS: list[int] = []


def colour_teacher(frames: np.ndarray) -> np.ndarray:
    """Stand-in teacher: each frame's mean colour in four quadrants (12-d); counts its calls."""
    CALLS.append(len(frames))
    h, w = frames.shape[1] // 2, frames.shape[2] // 2
    quads = [frames[:, :h, :w], frames[:, :h, w:], frames[:, h:, :w], frames[:, h:, w:]]
    return np.concatenate([q.mean(axis=(1, 2)) for q in quads], axis=1).astype(np.float32)


def _celeba_like(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 178x218 JPEGs: a bright face-box-sized blob whose colour varies per image."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((218, 178, 3), 40, np.uint8)
        img[60:168, 36:142] = rng.integers(60, 255, size=3, dtype=np.uint8)
        img[90:110, 60:120] = rng.integers(0, 255, size=3, dtype=np.uint8)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(img).save(path, quality=95)
        paths.append(path)
    return paths


def test_filled_frame_keeps_the_face_box_and_replicates_its_border(tmp_path):
    path = _celeba_like(tmp_path, 1)[0]
    frame = filled_frame(path)
    assert frame.shape == (218, 178, 3)
    # outside the face box, every pixel repeats the box's nearest edge pixel: the dark background is gone
    assert np.array_equal(frame[0, 36:142], frame[60, 36:142]) and frame[:60].min() > 50


def test_teacher_embeddings_are_cached_by_content(tmp_path):
    paths = _celeba_like(tmp_path / "img", 5)
    CALLS.clear()
    first = teacher_embeddings(paths, tmp_path / "cache", colour_teacher, processes=1)
    again = teacher_embeddings(paths, tmp_path / "cache", colour_teacher, processes=1)
    assert first.shape == (5, 12) and first.dtype == np.float32 and CALLS == [5]
    assert np.array_equal(first, again)
    Image.fromarray(np.zeros((218, 178, 3), np.uint8)).save(paths[2])  # same name, new content
    changed = teacher_embeddings(paths, tmp_path / "cache", colour_teacher, processes=1)
    assert CALLS == [5, 5] and not np.array_equal(changed[2], first[2]) and np.array_equal(changed[0], first[0])
    assert len(list((tmp_path / "cache").glob("teacher-*.npy"))) == 2
    with pytest.raises(ValueError, match="no images"):
        teacher_embeddings([], tmp_path / "cache", colour_teacher)


def test_teacher_chunks_share_a_few_hundred_images_evenly_and_cap_large_sets():
    paths = [Path(f"{i}.jpg") for i in range(2 * CHUNK + 13)]
    assert [len(c) for c in chunked(paths[:212], 2)] == [106, 106]
    assert [len(c) for c in chunked(paths[:5], 2)] == [3, 2]
    assert [len(c) for c in chunked(paths, 2)] == [CHUNK, CHUNK, 13]
    assert [len(c) for c in chunked(paths[:7], 1)] == [7]
    assert [p for c in chunked(paths, 3) for p in c] == paths


def test_face_box_crop_of_the_pipeline_matches_the_students_training_view(tmp_path):
    """Prediction crops "face_box" with tf (data.dataset); the student trained on the centre of the padded,
    resized face box (cv2). Both must show the same region, or the student sees a shifted face."""
    import tensorflow as tf

    from recognize_me.data.dataset import crop_and_resize

    yy, xx = np.mgrid[0:218, 0:178]
    frame = np.stack([xx * 1.4, yy * 1.1, (xx + yy) * 0.6], axis=-1).astype(np.uint8)  # smooth gradients
    settings = StudentSettings(size=64)
    off = (settings.side - settings.size) // 2
    trained = face_region(frame, settings.side)[off:off + 64, off:off + 64].astype(float)
    served = crop_and_resize(tf.constant(frame), (64, 64), "face_box").numpy().astype(float)
    assert np.abs(trained - served).mean() < 2.0


def test_celeba_student_images_are_train_and_val_only_and_a_seeded_sample(tmp_path):
    splits = pd.DataFrame({"image_id": [f"{i:06d}.jpg" for i in range(30)],
                           "split": ["train"] * 20 + ["val"] * 5 + ["test"] * 5})
    splits.to_csv(tmp_path / "splits.csv", index=False)
    paths, is_train = celeba_student_images(tmp_path / "splits.csv", tmp_path / "img", limit=100, seed=1)
    assert len(paths) == 25 and is_train.sum() == 20 and paths[0] == tmp_path / "img" / "000000.jpg"
    a, _ = celeba_student_images(tmp_path / "splits.csv", tmp_path / "img", limit=10, seed=1)
    b, _ = celeba_student_images(tmp_path / "splits.csv", tmp_path / "img", limit=10, seed=1)
    c, _ = celeba_student_images(tmp_path / "splits.csv", tmp_path / "img", limit=10, seed=2)
    assert a == b != c and len(a) == 10 and a == sorted(a)
    assert not {p.name for p in a} & set(splits.loc[splits["split"] == "test", "image_id"])


def test_centred_targets_subtract_the_train_mean_only():
    t = np.array([[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]])
    out = centred(t, np.array([True, True, False]))
    assert np.allclose(out, [[-1, -1], [1, 1], [98, 97]]) and out.dtype == np.float32
    with pytest.raises(ValueError, match="no train rows"):
        centred(t, np.zeros(3, bool))


@pytest.mark.slow
def test_distilled_student_trains_writes_a_base_folder_and_repeats_with_its_seed(tmp_path):
    import keras

    import recognize_me.models  # noqa: F401 - registers the layers and the loss
    from recognize_me.me.transfer import base_input_settings
    from recognize_me.models.identity import EMBEDDING_LAYER

    paths = _celeba_like(tmp_path / "img", 24)
    splits = pd.DataFrame({"image_id": [p.name for p in paths], "split": ["train"] * 18 + ["val"] * 6})
    splits.to_csv(tmp_path / "splits.csv", index=False)
    settings = StudentSettings(size=24, epochs=2, batch_size=8, seed=3)
    seen: list[tuple[int, int]] = []
    runs = [distill_student(tmp_path / "splits.csv", tmp_path / "img", tmp_path / f"student{i}", tmp_path / "cache",
                            settings, limit=100, teacher=colour_teacher, processes=1, lineage={"seed": 3},
                            on_epoch=lambda e, n, logs: seen.append((e, n)) if "val_loss" in logs else None)
            for i in (1, 2)]
    assert seen == [(1, 2), (2, 2)] * 2  # progress after every epoch, with the validation numbers
    assert runs[0]["train_images"] == 18 and runs[0]["val_images"] == 6 and runs[0]["target_dim"] == 12
    assert runs[0]["val_cosine"] == runs[1]["val_cosine"] and -1 <= runs[0]["val_cosine"] <= 1
    folder = tmp_path / "student1"
    assert base_input_settings(folder / "model.keras") == ((24, 24), "face_box")
    config = json.loads((folder / "config.json").read_text())
    assert config["settings"]["epochs"] == 2 and config["seed"] == 3 and "teacher_time_s" in config
    assert len(pd.read_csv(folder / "history.csv")) == 2
    model = keras.models.load_model(folder / "model.keras", safe_mode=True, compile=False)
    embedding = model.predict(student_inputs(paths[:3], 24).astype(np.float32) / 255.0, verbose=0)
    assert model.get_layer(EMBEDDING_LAYER) is not None
    assert embedding.shape == (3, 12) and np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-4)


def test_train_student_refuses_too_few_train_images(tmp_path):
    from recognize_me.me.student import train_student

    settings = StudentSettings(size=16, epochs=1, batch_size=8)
    images = np.zeros((10, settings.side, settings.side, 3), np.uint8)
    with pytest.raises(ValueError, match="batch_size"):
        train_student(images, np.ones((10, 4)), np.array([True] * 5 + [False] * 5), settings, tmp_path)
    with pytest.raises(ValueError, match="do not match"):
        train_student(images[:, :5], np.ones((10, 4)), np.ones(10, bool), settings, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written


def test_plan_transfers_the_distilled_strategy_from_the_student_with_its_input(tmp_path):
    from recognize_me.config import PipelineConfig
    from recognize_me.me.plan import plan_transfer_jobs, wants_base

    student = tmp_path / "student" / "model.keras"
    student.parent.mkdir()
    (student.parent / "config.json").write_text(json.dumps({"job": {"image_size": [64, 64], "crop": "face_box"}}))
    config = PipelineConfig(celeba_dir=tmp_path, image_size=(32, 32),
                            me_strategies=["feature_extraction", "distilled"])
    assert wants_base(config, (), "student") and not wants_base(config, ("distilled",), "student")
    jobs = {j.strategy: j for j in plan_transfer_jobs(config, tmp_path, tmp_path / "p.csv", tmp_path / "base.keras",
                                                      threads=1, student=student)}
    assert (jobs["distilled"].base_model_path, jobs["distilled"].image_size, jobs["distilled"].crop) == \
        (student, (64, 64), "face_box")
    assert (jobs["feature_extraction"].base_model_path, jobs["feature_extraction"].crop) == \
        (tmp_path / "base.keras", "square")
    without = plan_transfer_jobs(config, tmp_path, tmp_path / "p.csv", tmp_path / "base.keras", threads=1)
    assert [j.strategy for j in without] == ["feature_extraction"]  # no student: nothing to transfer from
