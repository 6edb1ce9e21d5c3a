"""A TensorFlow student taught by dlib's face-recognition ResNet, measured on issue 19's rotation.

    make install   # brings dlib-bin + face_recognition: the teacher, at training time only
    python -m benchmarks.teacher_student [--size 64 --epochs 16 --relation-weight 1.0]

The pipeline's own code end to end (the ``distilled`` strategy of ``train-all``):

1. **Teacher** (``recognize_me.me.teacher``): dlib's 128-d embedding of every CelebA image of the train and
   validation partitions present in ``../shared/data`` (the test partition is the rotation's strangers and
   few-shot people: never seen), each image filled outside the template's face box exactly as the
   pipeline's aligned photos are, the face box as dlib's face location. Two processes; cached in
   ``--work/cache`` by the images' content.
2. **Student** (``recognize_me.me.student.train_student``): targets centred on the train images' mean (raw
   dlib vectors of random people are at cosine 0.84, of one person at 0.94: a student at cosine 0.91 to the
   raw teacher, as a first try here reached, separates nobody); the ResNet trunk, ``gap``, a unit
   ``embedding`` on the padded face box, random crops, flips, jitter; ``RelationalCosineLoss``. The epoch
   count and relation weight are chosen on the validation partition's agreement with the teacher
   (``val_cosine``), never on the rotation.
3. **Rotation**: ``benchmarks.recognize_me_rotation``'s cells, crops and scoring (the same logistic
   regression, C and threshold on each cell's validation fold) on the ``distilled`` strategy's features
   (``make_dataset`` with the student's crop ``face_box``, ``surgery.flip_averaged_extractor``), beside the
   reference's dlib embedding of the same crops.

Writes results/<name>.json; the student is kept in ``--work``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Bench, require_celeba
from benchmarks.recognize_me_rotation import (
    COLUMNS,
    FACES,
    FITS,
    celeba_cells,
    issue_goals,
    photo_table,
    reference_features,
    score_cells,
    shared_cells,
    summarize,
)


def celeba_train_val(work: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The train and validation images present (partition-file order), which are train, and the teacher's
    embeddings (``me.teacher``, cached in ``work/cache``)."""
    from recognize_me.me.teacher import teacher_embeddings

    images = require_celeba("img_align_celeba")
    part = pd.read_csv(require_celeba("list_eval_partition.txt"), sep=r"\s+", header=None,
                       names=["image_id", "partition"])
    present = {p.name for p in images.glob("*.jpg")}
    part = part[part["image_id"].isin(present) & (part["partition"] < 2)].reset_index(drop=True)
    paths = [images / name for name in part["image_id"]]
    return paths, (part["partition"] == 0).to_numpy(), teacher_embeddings(paths, work / "cache", processes=2)


def student_features(path: Path, crops: list[str]) -> np.ndarray:
    """The ``distilled`` strategy's features of aligned crops (or ``dlib_resnet``'s, given that base), through
    the pipeline's own code: the base's input settings, ``make_dataset`` and
    ``surgery.flip_averaged_extractor`` on its ``embedding``."""
    from recognize_me.data.dataset import make_dataset
    from recognize_me.me.surgery import flip_averaged_extractor, load_base
    from recognize_me.me.transfer import base_input_settings

    size, crop = base_input_settings(path)
    extractor = flip_averaged_extractor(load_base(path, size), size, "embedding")
    return extractor.predict(make_dataset(crops, None, image_size=size, crop=crop, batch_size=128), verbose=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="student input side (pixels)")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--relation-weight", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--student", type=Path, help="a trained student's model.keras (config.json beside it): "
                        "skip training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/teacher-student"))
    parser.add_argument("--rotation-work", type=Path, default=Path("/tmp/rm-rotation"))
    parser.add_argument("--name", default="teacher_student")
    parser.add_argument("--fits", nargs="+", default=["split"], choices=FITS,
                        help="how the logistic regression is fitted (side by side when several)")
    parser.add_argument("--dlib-resnet", action="store_true",
                        help="also the dlib_resnet strategy's features (dlib's ResNet rebuilt in Keras, fixed chip)")
    args = parser.parse_args(argv)
    if not FACES.is_dir():
        print(f"SKIPPED: {FACES} not found")
        return
    bench = Bench(args.name, {k: str(v) for k, v in vars(args).items()})
    path = args.student
    if path is None:
        from recognize_me.me.student import StudentSettings, student_inputs, train_student

        started = time.perf_counter()
        paths, is_train, teacher = celeba_train_val(args.work)
        bench.notes.append(f"teacher: {len(paths)} CelebA images ({int(is_train.sum())} train), "
                           f"{time.perf_counter() - started:.0f} s (0 when cached)")
        started = time.perf_counter()
        settings = StudentSettings(size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                                   learning_rate=args.lr, relation_weight=args.relation_weight, seed=args.seed)
        path = args.work / f"student-{args.size}px-{args.epochs}ep-w{args.relation_weight}" / "model.keras"
        metrics = train_student(student_inputs(paths, settings.side), teacher, is_train, settings, path.parent)
        history = pd.read_csv(path.parent / "history.csv")
        bench.notes.append(f"student: {path.parent.name}, {time.perf_counter() - started:.0f} s; val cosine by epoch "
                           f"{[round(v, 3) for v in history['val_cosine_to_teacher']]} (last {metrics['val_cosine']})")
    photos = photo_table(args.rotation_work, 1000, args.seed)
    features = {f"student:{path.parent.name}": student_features(path, photos["crop"].tolist()),
                "reference_dlib": reference_features(photos["crop"].tolist(), None)}
    if args.dlib_resnet:
        from recognize_me.me.dlib_resnet import convert_dlib_resnet

        features["dlib_resnet"] = student_features(convert_dlib_resnet(args.work / "cache"), photos["crop"].tolist())
    frame = score_cells(shared_cells(photos, [10, 25, 50], 3) + celeba_cells(photos), photos, features, args.seed,
                        args.fits)
    for row in summarize(frame):
        bench.row(**row)
    issue_goals(bench, frame)
    bench.finish(COLUMNS)


if __name__ == "__main__":
    main()
