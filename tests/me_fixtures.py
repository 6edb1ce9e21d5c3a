"""Tiny trained-looking models and run folders for the predict and find tests, and the small CelebA photo
pool of the tests that run the recognize-me stage (plain helper module).

Untrained tiny models (32x32) stand in for trained ones: tests that use them check plumbing and format,
not skill.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras

from recognize_me.data.attributes import CELEBA_ATTRIBUTES

SIZE = (32, 32)
NAMES = list(CELEBA_ATTRIBUTES)
# CelebA photos in a test's recognize-me stage: every one is aligned (MTCNN) and embedded by each strategy
# (dlib's too); a handful shows the stage as well as the 300 + 100 + 100 a real run takes, at a third of the time
FEW_CELEBA_PHOTOS = {"celeba_others": 24, "me_val_strangers": 12, "me_strangers": 12}


def save_models(folder: Path, seed: int = 0, size: tuple[int, int] = SIZE) -> tuple[Path, Path]:
    from recognize_me.me.surgery import build_transfer_model, feature_extractor
    from recognize_me.models import BuildOptions, get_model_spec

    keras.utils.set_random_seed(seed)
    base = get_model_spec("baseline_cnn").build((*size, 3), len(NAMES), BuildOptions())
    me = build_transfer_model(feature_extractor(base), size, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    base.save(folder / "attributes.keras")
    me.save(folder / "me.keras")
    return folder / "me.keras", folder / "attributes.keras"


def fake_run(run: Path, models: dict[str, Path], me_crop: str = "square") -> None:
    board = [{"model": "resnet", "status": "completed", "mean_accuracy": 0.91},
             {"model": "cnn_scheduled", "status": "completed", "mean_accuracy": 0.88},
             {"model": "vgg16_finetune", "status": "failed", "mean_accuracy": None},
             {"model": "majority_baseline", "status": "baseline", "mean_accuracy": 0.8}]
    (run / "models").mkdir(parents=True)
    (run / "leaderboard.json").write_text(json.dumps(board))
    for row, thresholds in ((board[0], 0.3), (board[1], 0.6)):
        folder = run / "models" / row["model"]
        folder.mkdir()
        shutil.copyfile(models["attr_model"], folder / "model.keras")
        per_attribute = [{"attribute": n, "accuracy": 0.9, "threshold": thresholds + i / 1000}
                         for i, n in enumerate(NAMES)]
        (folder / "metrics.json").write_text(json.dumps({"per_attribute": per_attribute}))
        (folder / "config.json").write_text(json.dumps({"job": {"image_size": list(SIZE), "crop": "square"}}))
    for strategy, f1 in (("feature_extraction", 0.7), ("fine_tuning", 0.8)):
        folder = run / "me" / strategy
        folder.mkdir(parents=True)
        shutil.copyfile(models["me_model"], folder / "model.keras")
        # ranked on validation: a better test F1 must not change the choice
        (folder / "metrics.json").write_text(json.dumps({"strategy": strategy, "status": "completed",
                                                         "f1": f1, "val_roc_auc": f1, "val_f1": f1,
                                                         "threshold": f1 / 2}))
        (folder / "config.json").write_text(json.dumps({"job": {"image_size": list(SIZE), "crop": me_crop}}))
