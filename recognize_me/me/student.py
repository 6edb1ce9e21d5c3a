"""Train the distilled "is this me?" base: a TensorFlow student of a face-recognition teacher (``me.teacher``).

Recipe (issue 19, ``benchmarks/teacher_student.py``; chosen on CelebA validation agreement with the teacher,
never on the rotation): the teacher's embeddings are **centred** on the train images' mean (raw dlib vectors
of random people sit at cosine 0.84, so matching them raw teaches the common direction, not who is who);
the student (``models.distill.build_embedding_student``) sees the face box plus ``PAD`` pixels resized to
``size * 13/12``, random ``size`` crops, flips and brightness/contrast jitter, and learns with
``RelationalCosineLoss`` under AdamW, warm-up then cosine decay.

The student's folder looks like a CelebA model's (``model.keras`` last, ``config.json`` whose ``job`` holds
``image_size`` and ``crop`` = ``"face_box"``, ``metrics.json``, ``history.csv``), so the transfer strategies
read its ``embedding`` like any base's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recognize_me.me.align import FACE_BOX
from recognize_me.me.teacher import Teacher, filled_frame
from recognize_me.training.scaffold import ModelFolder, numbered_history
from recognize_me.training.seeding import isolated_default_seeds

PAD = 6  # pixels kept around the face box before resizing, so the random crops stay on the face
STUDENT_CROP = "face_box"  # data.dataset.CROP_BOXES: the centre ``size`` of the padded, resized box


@dataclass(frozen=True)
class StudentSettings:
    size: int = 64  # input side in pixels
    epochs: int = 28  # chosen on validation cosine: 0.784 at 28 vs 0.734 at 16 (18,000 images)
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    relation_weight: float = 1.0  # measured level with 0 on the rotation; kept, it costs nothing
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 16 or self.epochs < 1 or self.batch_size < 2 or self.learning_rate <= 0:
            raise ValueError(f"invalid student settings {self}")

    @property
    def side(self) -> int:
        """The stored images' side: the random crops of ``size`` are taken from it."""
        return self.size + self.size // 12


def face_region(frame: np.ndarray, side: int) -> np.ndarray:
    """The face box of a filled 178x218 frame plus ``PAD`` pixels, resized to ``side`` x ``side`` (uint8)."""
    import cv2

    left, top, right, bottom = FACE_BOX
    big = cv2.copyMakeBorder(frame, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    return cv2.resize(big[top:bottom + 2 * PAD, left:right + 2 * PAD], (side, side), interpolation=cv2.INTER_AREA)


def student_inputs(paths: Sequence[Path], side: int) -> np.ndarray:
    """uint8 (n, side, side, 3): each CelebA image filled as the aligned photos are, its padded face box."""
    return np.stack([face_region(filled_frame(Path(p)), side) for p in paths])


def centred(targets: np.ndarray, is_train: np.ndarray) -> np.ndarray:
    """``targets`` minus the train rows' mean (float32)."""
    if not is_train.any():
        raise ValueError("no train rows to centre the teacher's embeddings on")
    return (targets - targets[is_train].mean(axis=0)).astype(np.float32)


EpochHook = Callable[[int, int, dict], None]  # (epoch 1-based, epochs, Keras logs)


def train_student(images: np.ndarray, targets: np.ndarray, is_train: np.ndarray, settings: StudentSettings,
                  out_dir: Path, lineage: dict[str, Any] | None = None,
                  on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Fit the student on ``images[is_train]`` (from :func:`student_inputs`), validate on the rest, write
    ``out_dir`` (see the module docstring) and return its metrics (``val_cosine`` of the last epoch).
    ``on_epoch`` is called after every epoch (progress in the flow's log)."""
    import keras
    import tensorflow as tf

    from recognize_me.models.distill import RelationalCosineLoss, build_embedding_student

    is_train = np.asarray(is_train, dtype=bool)
    if images.shape[1:] != (settings.side, settings.side, 3) or not len(images) == len(targets) == len(is_train):
        raise ValueError(f"images {images.shape}, targets {targets.shape} and is_train {is_train.shape} do not "
                         f"match settings.side {settings.side}")
    n_train = int(is_train.sum())
    if is_train.all() or n_train < settings.batch_size:
        raise ValueError(f"need >= batch_size ({settings.batch_size}) train images and some validation images, "
                         f"got {n_train} train of {len(is_train)}")
    size, off = settings.size, (settings.side - settings.size) // 2
    y = centred(np.asarray(targets, dtype=np.float32), is_train)

    def augment(img: tf.Tensor, target: tf.Tensor, seeds: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seeds = tf.reshape(seeds, (4, 2))  # stateless ops: the same seed gives the same batches, no global seed
        img = tf.image.stateless_random_crop(img, (size, size, 3), seeds[0])
        img = tf.cast(tf.image.stateless_random_flip_left_right(img, seeds[1]), tf.float32)
        img = tf.image.stateless_random_brightness(img, 20.0, seeds[2])
        img = tf.image.stateless_random_contrast(img, 0.8, 1.2, seeds[3])
        return tf.clip_by_value(img, 0.0, 255.0) / 255.0, target

    pairs = tf.data.Dataset.from_tensor_slices((images[is_train], y[is_train])) \
        .shuffle(n_train, seed=settings.seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=settings.seed, rerandomize_each_iteration=True).batch(8)
    fit_ds = (tf.data.Dataset.zip(pairs, seeds).map(lambda xy, s: augment(*xy, s), num_parallel_calls=2,
                                                    deterministic=True)
              .batch(settings.batch_size, drop_remainder=True).prefetch(2))
    val_x = images[~is_train][:, off:off + size, off:off + size].astype(np.float32) / 255.0
    with isolated_default_seeds(settings.seed):
        student = build_embedding_student((size, size, 3), dim=int(y.shape[1]))
    steps = settings.epochs * (n_train // settings.batch_size)
    warmup = min(300, steps // 4)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, steps - warmup), alpha=0.01,
                                                      warmup_target=settings.learning_rate, warmup_steps=warmup)
    student.compile(keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay),
                    loss=RelationalCosineLoss(settings.relation_weight), metrics=[cosine_to_teacher])
    hook = [] if on_epoch is None else [keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, settings.epochs, dict(logs or {})))]
    history = student.fit(fit_ds, validation_data=(val_x, y[~is_train]), epochs=settings.epochs, callbacks=hook,
                          shuffle=False, verbose=0)  # fit_ds is shuffled, seeded
    metrics = {"val_cosine": round(float(history.history["val_cosine_to_teacher"][-1]), 4),
               "train_images": n_train, "val_images": len(is_train) - n_train,
               "target_dim": int(y.shape[1])}
    ModelFolder(Path(out_dir), config={"model": "me_student", "settings": asdict(settings),
                                       "job": {"image_size": [size, size], "crop": STUDENT_CROP},
                                       **(lineage or {})},
                metrics=metrics, model=student, histories=[numbered_history(history.history, 0, 1)]).write()
    return metrics


def cosine_to_teacher(y_true: Any, y_pred: Any) -> Any:
    """Cosine between the (normalised) target and the unit-length embedding."""
    from keras import ops

    return ops.sum(ops.normalize(ops.cast(y_true, "float32")) * y_pred, axis=-1)


def celeba_student_images(splits_csv: Path, images_dir: Path, limit: int, seed: int) -> tuple[list[Path], np.ndarray]:
    """The run's CelebA train and val images (at most ``limit``, a seeded sample kept in file order) and
    which of them are train; the test split (the strangers' people) is never seen."""
    import pandas as pd

    table = pd.read_csv(splits_csv, usecols=["image_id", "split"], dtype={"image_id": str})
    table = table[table["split"].isin(["train", "val"])]
    if len(table) > limit:
        table = table.sample(n=limit, random_state=seed).sort_index()
    return [Path(images_dir) / i for i in table["image_id"]], (table["split"] == "train").to_numpy()


def distill_student(splits_csv: Path, images_dir: Path, out_dir: Path, cache_dir: Path, settings: StudentSettings,
                    limit: int, teacher: Teacher | None = None, processes: int = 2,
                    lineage: dict[str, Any] | None = None, on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Teacher embeddings of the run's CelebA train and val images (cached), then :func:`train_student`
    into ``out_dir``; returns its metrics, with the teacher's time."""
    import time

    from recognize_me.me.teacher import dlib_teacher, teacher_embeddings

    paths, is_train = celeba_student_images(splits_csv, images_dir, limit, settings.seed)
    started = time.perf_counter()
    targets = teacher_embeddings(paths, cache_dir, teacher or dlib_teacher, processes)
    teacher_s = time.perf_counter() - started
    metrics = train_student(student_inputs(paths, settings.side), targets, is_train, settings, out_dir,
                            lineage={**(lineage or {}), "teacher_time_s": round(teacher_s, 1)}, on_epoch=on_epoch)
    return {**metrics, "teacher_time_s": round(teacher_s, 1)}
