"""Answer "is this me?" (and which CelebA attributes show) for new photos with a run's trained models.

``predict_images`` takes photos (or folders of photos), finds and frames the face exactly as the
training photos were aligned (``align.FaceAligner``: MTCNN landmarks onto CelebA's 178x218 template), applies the models' crop and resize
(the same operations as ``dataset.decode_and_resize``) and calls each model once per chunk of images.
``load_run_models`` picks a run's best attribute model and best transfer model.

Pure core: no Prefect; TensorFlow and Keras are imported when predicting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from recognize_me.evaluation.report import model_folder
from recognize_me.me.align import FaceAligner
from recognize_me.me.photos import SUPPORTED_SUFFIXES, load_rgb

ERROR_NO_FACE = "no face found"
CHUNK = 256  # images decoded, cropped and predicted together


@dataclass(frozen=True)
class PredictorConfig:
    """Everything :func:`predict_images` needs, as found in a run folder by :func:`load_run_models`."""

    me_model: Path
    me_strategy: str
    threshold: float
    me_f1: float | None
    attribute_model: Path
    attribute_model_name: str
    attribute_names: tuple[str, ...]
    attribute_thresholds: tuple[float, ...]
    image_size: tuple[int, int]
    crop: str

    def predict(self, paths: Sequence[Path], cropper: FaceAligner | None = None) -> list[dict[str, Any]]:
        return predict_images(paths, self.me_model, self.attribute_model, threshold=self.threshold,
                              attribute_names=self.attribute_names, image_size=self.image_size,
                              crop=self.crop, attribute_thresholds=self.attribute_thresholds, cropper=cropper)


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder becomes its supported images (recursive, sorted)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES]
            out += sorted(found, key=lambda p: p.parts)
        else:
            out.append(path)
    return out


def prepare_image(image: Image.Image, image_size: tuple[int, int], crop: str) -> np.ndarray:
    """A 178x218 framed face -> float32 (H, W, 3) in [0, 1], the way ``make_dataset`` prepares a file."""
    import tensorflow as tf

    from recognize_me.data.dataset import crop_and_resize

    img = crop_and_resize(tf.convert_to_tensor(np.asarray(image.convert("RGB"), dtype=np.uint8)),
                          tuple(image_size), crop)
    return img.numpy().astype(np.float32) / 255.0


def _load_model(path: Path, image_size: tuple[int, int]):
    import keras

    import recognize_me.me.layers  # noqa: F401 - registers the "is this me?" layers
    import recognize_me.models  # noqa: F401 - registers the custom layers and losses

    model = keras.models.load_model(path, safe_mode=True, compile=False)
    expected = tuple(model.inputs[0].shape[1:3])
    if all(d is not None for d in expected) and tuple(int(d) for d in expected) != tuple(image_size):
        raise ValueError(f"model {path} takes {expected} images, not image_size={tuple(image_size)}")
    return model


def predict_images(paths: Sequence[Path], me_model: Path, attribute_model: Path, *, threshold: float,
                   attribute_names: Sequence[str], image_size: tuple[int, int], crop: str,
                   attribute_thresholds: Sequence[float] | None = None,
                   cropper: FaceAligner | None = None) -> list[dict[str, Any]]:
    """One dict per image (a folder in ``paths`` stands for its images), in input order:

    ``path``; ``error`` (None, ``"no face found"``, or why the file could not be read);
    ``me_probability`` and ``is_me`` (probability >= ``threshold``), None on error; ``threshold``;
    ``attributes``: the attributes predicted present (score >= their threshold, default 0.5), as
    ``{"name", "score"}`` sorted by score, highest first; ``face_box`` (left, top, right, bottom in
    the photo), ``n_faces``, and ``detector`` / ``confidence`` (which pass found the face, its score).
    """
    names = list(attribute_names)
    thresholds = np.full(len(names), 0.5) if attribute_thresholds is None else \
        np.asarray(attribute_thresholds, dtype=np.float64)
    if thresholds.shape != (len(names),):
        raise ValueError(f"{len(names)} attribute names but {thresholds.size} attribute thresholds")
    cropper = cropper or FaceAligner()
    files = expand_paths(paths)
    if not files:
        return []
    me = _load_model(Path(me_model), image_size)
    attributes = _load_model(Path(attribute_model), image_size)
    n_outputs = int(attributes.outputs[0].shape[-1])
    if n_outputs != len(names):
        raise ValueError(f"attribute model has {n_outputs} outputs but {len(names)} attribute names were given")

    results: list[dict[str, Any]] = []
    for start in range(0, len(files), CHUNK):
        entries, batch = [], []
        for path in files[start:start + CHUNK]:
            entry: dict[str, Any] = {"path": str(path), "error": None, "me_probability": None, "is_me": None,
                                     "threshold": float(threshold), "attributes": [], "face_box": None,
                                     "n_faces": 0, "detector": None, "confidence": None}
            try:
                image = load_rgb(path)
            except Exception as exc:  # noqa: BLE001 - one bad file is an entry, never a crash
                entry["error"] = f"cannot read image: {exc}"
            else:
                found = cropper.crop(image)
                entry.update(n_faces=found.n_faces, detector=getattr(found, "detector", None),
                             confidence=getattr(found, "confidence", None))
                if found.image is None:
                    entry["error"] = ERROR_NO_FACE
                else:
                    entry["face_box"] = list(found.box) if found.box is not None else None
                    batch.append((len(entries), prepare_image(found.image, image_size, crop)))
            entries.append(entry)
        if batch:
            x = np.stack([arr for _, arr in batch])
            p_me = np.asarray(me.predict(x, batch_size=32, verbose=0)).reshape(len(batch), -1)[:, 0]
            p_attr = np.asarray(attributes.predict(x, batch_size=32, verbose=0)).reshape(len(batch), -1)
            for (i, _), p, scores in zip(batch, p_me, p_attr, strict=True):
                present = [{"name": n, "score": round(float(s), 4)}
                           for n, s, t in zip(names, scores, thresholds, strict=True) if s >= t]
                entries[i].update(me_probability=float(p), is_me=bool(p >= threshold),
                                  attributes=sorted(present, key=lambda a: (-a["score"], a["name"])))
        results += entries
    return results


# --- finding a run's models -------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _best_attribute_model(run_dir: Path) -> tuple[str, Path]:
    board_path = run_dir / "leaderboard.json"
    if not board_path.is_file():
        raise FileNotFoundError(f"{board_path} not found: train the CelebA models (train-all) first")
    rows = [r for r in _read_json(board_path) if r.get("status") == "completed"
            and r.get("mean_accuracy") is not None and (model_folder(run_dir, r) / "model.keras").is_file()]
    if not rows:
        raise FileNotFoundError(f"no completed attribute model with a model.keras in {run_dir / 'models'}")
    best = max(rows, key=lambda r: float(r["mean_accuracy"]))  # first of equals (board order) wins
    return str(best["model"]), model_folder(run_dir, best) / "model.keras"


def _best_me_model(run_dir: Path) -> tuple[str, Path, dict[str, Any]]:
    candidates = []
    for metrics_path in sorted((run_dir / "me").glob("*/metrics.json")):
        metrics = _read_json(metrics_path)
        if metrics.get("status", "completed") == "completed" and (metrics_path.parent / "model.keras").is_file():
            candidates.append((metrics_path.parent.name, metrics))
    if not candidates:
        raise FileNotFoundError(f"no trained transfer model in {run_dir / 'me'} (me/<strategy>/model.keras)")
    from recognize_me.me.report import selection_key

    name, metrics = max(candidates, key=lambda c: selection_key(c[1]))  # validation only, as the flow chooses
    return name, run_dir / "me" / name / "model.keras", metrics


def _input_settings(model_dir: Path, fallback: dict[str, Any] | None = None) -> tuple[tuple[int, int], str]:
    config = model_dir / "config.json"
    source = _read_json(config)["job"] if config.is_file() else (fallback or {})
    if "image_size" not in source or "crop" not in source:
        raise FileNotFoundError(f"cannot tell the image size and crop of the model in {model_dir}")
    size = source["image_size"]
    return (int(size[0]), int(size[1])), str(source["crop"])


def load_run_models(run_dir: Path) -> PredictorConfig:
    """The run's best completed attribute model (``leaderboard.json``, highest mean_accuracy) with its
    per-attribute thresholds, and its best transfer model (``me/<strategy>/metrics.json``, ranked on
    validation by ``report.selection_key``) with its threshold. Both must take the same image size and crop (``ValueError`` otherwise)."""
    run_dir = Path(run_dir)
    attr_name, attr_path = _best_attribute_model(run_dir)
    strategy, me_path, me_metrics = _best_me_model(run_dir)
    return _predictor(attr_name, attr_path, strategy, me_path, me_metrics)


def load_champions(registry_root: Path) -> PredictorConfig:
    """The champion attribute model (registry task ``celeba``) and "is this me?" model (``recognize_me``)."""
    from recognize_me.registry import ModelRegistry

    registry = ModelRegistry(Path(registry_root))
    paths = {task: registry.champion_model_path(task) for task in ("celeba", "recognize_me")}
    missing = [task for task, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(f"no champion for {missing} in {registry_root}: run train-all first "
                                "(with --me-dir for recognize_me)")
    me_metrics = _read_json(paths["recognize_me"].parent / "metrics.json")
    attr_name = _read_json(paths["celeba"].parent / "metrics.json").get("model", "celeba")
    return _predictor(attr_name, paths["celeba"], me_metrics.get("strategy", "me"), paths["recognize_me"],
                      me_metrics)


def _predictor(attr_name: str, attr_path: Path, strategy: str, me_path: Path,
               me_metrics: dict[str, Any]) -> PredictorConfig:
    attr_metrics = _read_json(attr_path.parent / "metrics.json")
    per_attribute = attr_metrics["per_attribute"]
    attr_size, attr_crop = _input_settings(attr_path.parent)
    me_size, me_crop = _input_settings(me_path.parent, me_metrics)
    if (me_size, me_crop) != (attr_size, attr_crop):
        raise ValueError(f"the transfer model {me_path} takes {me_size} images cropped {me_crop!r} but the "
                         f"attribute model {attr_path} takes {attr_size} cropped {attr_crop!r}")
    return PredictorConfig(
        me_model=me_path, me_strategy=strategy, threshold=float(me_metrics.get("threshold", 0.5)),
        me_f1=me_metrics.get("f1"), attribute_model=attr_path, attribute_model_name=attr_name,
        attribute_names=tuple(str(r["attribute"]) for r in per_attribute),
        attribute_thresholds=tuple(float(r.get("threshold", 0.5)) for r in per_attribute),
        image_size=me_size, crop=me_crop)


def summary_rows(results: list[dict[str, Any]], top: int = 6) -> list[dict[str, Any]]:
    """One flat row per image, for a table or a terminal."""
    rows = []
    for r in results:
        attrs = ", ".join(f"{a['name']} {a['score']:.2f}" for a in (r.get("attributes") or [])[:top])
        rows.append({"image": Path(r["path"]).name, "is_me": r.get("is_me"),
                     "p_me": None if r.get("me_probability") is None else round(r["me_probability"], 3),
                     "attributes": attrs, "error": r.get("error") or ""})
    return rows
