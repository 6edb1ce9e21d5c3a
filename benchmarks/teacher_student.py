"""A TensorFlow student taught by dlib's face-recognition ResNet, measured on issue 19's rotation.

    make install-reference   # dlib-bin + face_recognition: the teacher, at training time only
    python -m benchmarks.teacher_student [--size 64 --epochs 16 --relation-weight 1.0]

1. **Teacher**: dlib's 128-d embedding of every CelebA image of the train and validation partitions present
   in ``../shared/data`` (the test partition is the rotation's strangers and few-shot people: never seen),
   each image filled outside the template's face box exactly as the pipeline's aligned photos are
   (``warp_to_template(..., fill="face_box")`` with the identity transform), the face box as dlib's face
   location. Two processes; cached in ``--work``. The targets are centred on the train images' mean (raw
   dlib vectors of random people are at cosine 0.84, of one person at 0.94: a student at cosine 0.91 to
   the raw teacher, as a first try here reached, separates nobody).
2. **Student**: ``recognize_me.models.distill.build_embedding_student`` (the ResNet trunk, ``gap``, a unit
   ``embedding``) on the face box (+``PAD`` px, resized to ``size * 13/12``, random ``size`` crops, flips,
   brightness/contrast jitter), trained with ``RelationalCosineLoss`` (AdamW, warm-up then cosine decay).
   The epoch count and relation weight are chosen on the validation partition's agreement with the teacher
   (``val_cosine``), never on the rotation.
3. **Rotation**: ``benchmarks.recognize_me_rotation``'s cells, crops and scoring (the same logistic
   regression, C and threshold on each cell's validation fold), the student's flip-averaged embedding beside
   the reference's dlib embedding of the same crops.

Writes results/<name>.json; the student is kept in ``--work``.
"""

from __future__ import annotations

import argparse
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Bench, require_celeba
from benchmarks.recognize_me_rotation import (
    COLUMNS,
    FACES,
    celeba_cells,
    issue_goals,
    photo_table,
    reference_features,
    score_cells,
    shared_cells,
    summarize,
)

PAD = 6  # pixels kept around the face box (filled border) before resizing, so random crops stay on the face
CHUNK = 200


def filled(path: Path) -> np.ndarray:
    """An aligned 178x218 image filled outside the face box, as the pipeline fills its aligned photos."""
    from PIL import Image

    from recognize_me.me.align import warp_to_template

    return warp_to_template(np.asarray(Image.open(path).convert("RGB")), np.eye(2, 3), "face_box")


def face_region(rgb: np.ndarray, side: int) -> np.ndarray:
    """The face box of a filled 178x218 frame plus ``PAD`` pixels, resized to ``side`` x ``side``."""
    import cv2

    from recognize_me.me.align import FACE_BOX

    left, top, right, bottom = FACE_BOX
    big = cv2.copyMakeBorder(rgb, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    return cv2.resize(big[top:bottom + 2 * PAD, left:right + 2 * PAD], (side, side), interpolation=cv2.INTER_AREA)


def _teacher_chunk(paths: list[Path]) -> np.ndarray:
    from recognize_me.me.align import FACE_BOX
    from recognize_me.me.reference import import_face_recognition

    face_recognition = import_face_recognition()
    left, top, right, bottom = FACE_BOX
    return np.stack([np.asarray(face_recognition.face_encodings(filled(p), [(top, right, bottom, left)])[0],
                                dtype=np.float32) for p in paths])


def teacher_table(work: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(image_id, partition) of the train and validation images present, and their teacher embeddings."""
    csv, npy = work / "teacher.csv", work / "teacher.npy"
    if csv.is_file() and npy.is_file():
        return pd.read_csv(csv), np.load(npy)
    images = require_celeba("img_align_celeba")
    part = pd.read_csv(require_celeba("list_eval_partition.txt"), sep=r"\s+", header=None,
                       names=["image_id", "partition"])
    present = {p.name for p in images.glob("*.jpg")}
    part = part[part["image_id"].isin(present) & (part["partition"] < 2)].reset_index(drop=True)
    paths = [images / name for name in part["image_id"]]
    with Pool(2) as pool:
        embeddings = np.concatenate(pool.map(_teacher_chunk, [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]))
    work.mkdir(parents=True, exist_ok=True)
    np.save(npy, embeddings)
    part.to_csv(csv, index=False)
    return part, embeddings


def train_student(work: Path, table: pd.DataFrame, teacher: np.ndarray, args: argparse.Namespace) -> tuple[Path, dict]:
    """Fit the student (see the module docstring); its ``model.keras`` and Keras history."""
    import keras
    import tensorflow as tf

    from recognize_me.models.distill import RelationalCosineLoss, build_embedding_student

    side = args.size + args.size // 12
    images = require_celeba("img_align_celeba")
    x = np.stack([face_region(filled(images / name), side) for name in table["image_id"]])
    train, val = (table["partition"] == 0).to_numpy(), (table["partition"] == 1).to_numpy()
    size, off = args.size, (side - args.size) // 2

    def augment(img: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        img = tf.cast(tf.image.random_flip_left_right(tf.image.random_crop(img, (size, size, 3))), tf.float32)
        img = tf.image.random_contrast(tf.image.random_brightness(img, 20.0), 0.8, 1.2)
        return tf.clip_by_value(img, 0.0, 255.0) / 255.0, target

    # dlib's vectors share a large common direction (random people: cosine 0.84, one person: 0.94), so
    # matching them raw teaches that direction, not who is who; centred, random people are at 0, one at 0.61.
    teacher = (teacher - teacher[train].mean(axis=0)).astype(np.float32)
    fit_ds = (tf.data.Dataset.from_tensor_slices((x[train], teacher[train])).shuffle(len(x), seed=args.seed)
              .map(augment, num_parallel_calls=2).batch(args.batch_size, drop_remainder=True).prefetch(2))
    val_x = x[val][:, off:off + size, off:off + size].astype(np.float32) / 255.0
    keras.utils.set_random_seed(args.seed)
    student = build_embedding_student((size, size, 3))
    steps = args.epochs * (int(train.sum()) // args.batch_size)
    warmup = min(300, steps // 4)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - warmup, alpha=0.01, warmup_target=args.lr,
                                                      warmup_steps=warmup)

    def cosine(y: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.math.l2_normalize(y, 1) * s, axis=1)

    student.compile(keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                    loss=RelationalCosineLoss(args.relation_weight), metrics=[cosine])
    history = student.fit(fit_ds, validation_data=(val_x, teacher[val]), epochs=args.epochs, verbose=2)
    path = work / f"student-{args.size}px-{args.epochs}ep-w{args.relation_weight}.keras"
    student.save(path)
    return path, history.history


def student_features(path: Path, crops: list[str], size: int) -> np.ndarray:
    """Flip-averaged, L2-normalised student embeddings of aligned crops (the pipeline's own alignment)."""
    import keras
    from PIL import Image

    import recognize_me.models  # noqa: F401 - registers the layers and the loss

    side, off = size + size // 12, (size // 12) // 2
    student = keras.models.load_model(path, safe_mode=True, compile=False)
    x = np.stack([face_region(np.asarray(Image.open(c).convert("RGB")), side)[off:off + size, off:off + size]
                  for c in crops]).astype(np.float32) / 255.0
    e = student.predict(x, batch_size=128, verbose=0) + student.predict(x[:, :, ::-1], batch_size=128, verbose=0)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="student input side (pixels)")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--relation-weight", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--student", type=Path, help="a trained student .keras: skip training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/teacher-student"))
    parser.add_argument("--rotation-work", type=Path, default=Path("/tmp/rm-rotation"))
    parser.add_argument("--name", default="teacher_student")
    args = parser.parse_args(argv)
    if not FACES.is_dir():
        print(f"SKIPPED: {FACES} not found")
        return
    bench = Bench(args.name, {k: str(v) for k, v in vars(args).items()})
    started = time.perf_counter()
    table, teacher = teacher_table(args.work)
    bench.notes.append(f"teacher: {len(table)} CelebA images ({int((table['partition'] == 0).sum())} train), "
                       f"{time.perf_counter() - started:.0f} s (0 when cached)")
    path = args.student
    if path is None:
        started = time.perf_counter()
        path, history = train_student(args.work, table, teacher, args)
        bench.notes.append(f"student: {path.name}, {time.perf_counter() - started:.0f} s; val cosine by epoch "
                           f"{[round(v, 3) for v in history['val_cosine']]}")
    photos = photo_table(args.rotation_work, 1000, args.seed)
    features = {f"student:{path.stem}": student_features(path, photos["crop"].tolist(), args.size),
                "reference_dlib": reference_features(photos["crop"].tolist(), None)}
    frame = score_cells(shared_cells(photos, [10, 25, 50], 3) + celeba_cells(photos), photos, features, args.seed)
    for row in summarize(frame):
        bench.row(**row)
    issue_goals(bench, frame)
    bench.finish(COLUMNS)


if __name__ == "__main__":
    main()
