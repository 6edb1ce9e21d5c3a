"""Answer "is this me?" (and which CelebA attributes show) for new photos with a run's trained models.

``predict_images`` takes photos (or folders of photos), finds every face and frames each exactly as the
training photos were aligned (``align.FaceAligner``: MTCNN landmarks onto CelebA's 178x218 template), applies the models' crop and resize
(the same operations as ``dataset.decode_and_resize``) and calls each model once per chunk of images.
``load_run_models`` picks a run's best attribute model and best transfer model.

Pure core: no Prefect; TensorFlow and Keras are imported when predicting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from recognize_me.evaluation.report import model_folder
from recognize_me.me.align import REASON_TOO_SMALL, AlignResult, FaceAligner
from recognize_me.me.photos import SUPPORTED_SUFFIXES, load_rgb, register_phone_formats

ERROR_NO_FACE = "no face found"
CHUNK = 64  # photos decoded, aligned and predicted together
#: photos are decoded at most this large (longer side): faces of 40+ px stay judgeable, memory stays bounded
DEFAULT_MAX_SIDE = 2000  # a 12 MP (4032 px) JPEG decodes at half scale (Image.draft)


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
    image_size: tuple[int, int]  # the "is this me?" model's input
    crop: str
    attribute_input: tuple[tuple[int, int], str] | None = None  # (size, crop) when the attribute model differs

    def predict(self, paths: Sequence[Path], cropper: FaceAligner | None = None) -> list[dict[str, Any]]:
        """:func:`predict_images` with this run's models."""
        files = expand_paths(paths)
        return judge_files(self.load_judge(), files, cropper or FaceAligner()) if files else []

    def with_threshold(self, threshold: float | None) -> PredictorConfig:
        """The same models with the user's "is this me?" threshold instead of the one chosen on validation
        (None keeps it): lower finds more of the near misses, and more strangers."""
        if threshold is None:
            return self
        try:
            return replace(self, threshold=check_probability(threshold))
        except ValueError as err:
            raise ValueError(f"threshold {err}; the model's own is {self.threshold:.3f}") from None

    def load_judge(self, with_attributes: bool = True) -> FaceJudge:
        """The models loaded (TensorFlow is imported here); without the attribute model when
        ``with_attributes`` is False (a library scan reports "me" only)."""
        return FaceJudge(self.me_model, self.attribute_model, threshold=self.threshold,
                         attribute_names=self.attribute_names, image_size=self.image_size, crop=self.crop,
                         attribute_thresholds=self.attribute_thresholds, with_attributes=with_attributes,
                         attribute_input=self.attribute_input)


def check_probability(value: float) -> float:
    """``value`` as a float when it lies strictly between 0 and 1 (a usable decision threshold)."""
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"must be between 0 and 1 (exclusive), got {value}")
    return float(value)


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


@dataclass(frozen=True)
class DetectedPhoto:
    """A photo after detection: ``faces`` (every face, largest first; an ``AlignResult`` with ``image`` None
    is too small to judge), or ``error`` (unreadable file, no face). ``image``: the decoded photo (upright
    RGB, at most ``max_side`` pixels), kept for thumbnails; ``scale``: photo pixels per ``image`` pixel."""

    path: Path
    faces: tuple[AlignResult, ...]
    error: str | None
    image: Image.Image | None = None
    scale: float = 1.0


def detect_photo(path: Path, cropper: FaceAligner, max_side: int | None = DEFAULT_MAX_SIDE) -> DetectedPhoto:
    """Decode ``path`` (at most ``max_side`` pixels on its longer side) and align every face in it."""
    register_phone_formats()  # before the size probe: a worker's first photo may be a HEIC
    try:
        with Image.open(path) as probe:
            full = max(probe.size)
        image = load_rgb(path, max_side=max_side)
    except Exception as exc:  # noqa: BLE001 - one bad file is an entry, never a crash
        return DetectedPhoto(Path(path), (), f"cannot read image: {exc}")
    scale = full / max(image.size) if max(image.size) else 1.0
    faces = tuple(cropper.align_all(image))
    judged = [f for f in faces if f.image is not None]
    error = None if judged else (REASON_TOO_SMALL if any(f.box is not None for f in faces) else ERROR_NO_FACE)
    faces = tuple(f for f in faces if f.image is not None or f.box is not None)
    return DetectedPhoto(Path(path), faces, error, image, scale)


class FaceJudge:
    """Loaded "is this me?" and attribute models: scores every judged face of a batch of photos at once.
    ``with_attributes=False`` loads no attribute model (every face's ``attributes`` is then [])."""

    def __init__(self, me_model: Path, attribute_model: Path, *, threshold: float,
                 attribute_names: Sequence[str], image_size: tuple[int, int], crop: str,
                 attribute_thresholds: Sequence[float] | None = None, with_attributes: bool = True,
                 attribute_input: tuple[tuple[int, int], str] | None = None) -> None:
        self.names = list(attribute_names)
        self.thresholds = np.full(len(self.names), 0.5) if attribute_thresholds is None else \
            np.asarray(attribute_thresholds, dtype=np.float64)
        if self.thresholds.shape != (len(self.names),):
            raise ValueError(f"{len(self.names)} attribute names but {self.thresholds.size} attribute thresholds")
        self.threshold, self.image_size, self.crop = float(threshold), tuple(image_size), crop
        self.attribute_input = (self.image_size, crop) if attribute_input is None else \
            (tuple(attribute_input[0]), attribute_input[1])
        self.me = _load_model(Path(me_model), self.image_size)
        self.attributes = _load_model(Path(attribute_model), self.attribute_input[0]) if with_attributes else None
        n_outputs = len(self.names) if self.attributes is None else int(self.attributes.outputs[0].shape[-1])
        if n_outputs != len(self.names):
            raise ValueError(f"attribute model has {n_outputs} outputs but {len(self.names)} attribute names "
                             "were given")

    def judge(self, photos: Sequence[DetectedPhoto]) -> list[dict[str, Any]]:
        """One entry per photo (see :func:`predict_images`), every judged face scored in one batch."""
        batch = [(i, j, face.image) for i, photo in enumerate(photos) for j, face in enumerate(photo.faces)
                 if face.image is not None]
        scores: dict[tuple[int, int], tuple[float, np.ndarray]] = {}
        if batch:
            x = np.stack([prepare_image(image, self.image_size, self.crop) for _, _, image in batch])
            p_me = np.asarray(self.me.predict(x, batch_size=32, verbose=0)).reshape(len(batch), -1)[:, 0]
            if self.attribute_input != (self.image_size, self.crop):
                x = np.stack([prepare_image(image, *self.attribute_input) for _, _, image in batch])
            p_attr = np.zeros((len(batch), 0)) if self.attributes is None else \
                np.asarray(self.attributes.predict(x, batch_size=32, verbose=0)).reshape(len(batch), -1)
            scores = {(i, j): (float(p), a) for (i, j, _), p, a in zip(batch, p_me, p_attr, strict=True)}
        return [self._entry(photo, [scores.get((i, j)) for j in range(len(photo.faces))])
                for i, photo in enumerate(photos)]

    def _present(self, scores: np.ndarray) -> list[dict[str, Any]]:
        if self.attributes is None:
            return []
        present = [{"name": n, "score": round(float(s), 4)}
                   for n, s, t in zip(self.names, scores, self.thresholds, strict=True) if s >= t]
        return sorted(present, key=lambda a: (-a["score"], a["name"]))

    def _entry(self, photo: DetectedPhoto, scores: list[tuple[float, np.ndarray] | None]) -> dict[str, Any]:
        faces = [_face_entry(j, face, photo.scale, self.threshold, None if score is None else score[0],
                             [] if score is None else self._present(score[1]))
                 for j, (face, score) in enumerate(zip(photo.faces, scores, strict=True))]
        judged = [f for f in faces if f["me_probability"] is not None]
        best = max(judged, key=lambda f: f["me_probability"]) if judged else None
        first = photo.faces[0] if photo.faces else None
        return {"path": str(photo.path), "error": photo.error, "threshold": self.threshold,
                "me_probability": best and best["me_probability"], "is_me": None if best is None else best["is_me"],
                "attributes": best["attributes"] if best else [], "face_box": best and best["box"],
                "n_faces": len(faces), "detector": first and first.detector,
                "confidence": best["confidence"] if best else None, "faces": faces}


def _face_entry(index: int, face: AlignResult, scale: float, threshold: float, p: float | None,
                attributes: list[dict[str, Any]]) -> dict[str, Any]:
    box = None if face.box is None else [int(round(v * scale)) for v in face.box]  # in the photo's pixels
    return {"face": index, "box": box,
            "confidence": face.confidence, "status": "ok" if face.image is not None else REASON_TOO_SMALL,
            "me_probability": p, "is_me": None if p is None else bool(p >= threshold), "attributes": attributes}


def predict_images(paths: Sequence[Path], me_model: Path, attribute_model: Path, *, threshold: float,
                   attribute_names: Sequence[str], image_size: tuple[int, int], crop: str,
                   attribute_thresholds: Sequence[float] | None = None,
                   cropper: FaceAligner | None = None) -> list[dict[str, Any]]:
    """One dict per image (a folder in ``paths`` stands for its images), in input order.

    Every face of a photo is judged (a group photo answers for each person); ``faces`` lists them, largest
    first: ``face`` (index), ``box`` (left, top, right, bottom in the upright photo), detector
    ``confidence``, ``status`` (``"ok"``, or ``"face too small to judge"``: listed, never guessed),
    ``me_probability``, ``is_me`` (probability >= ``threshold``) and ``attributes`` (present ones, score >=
    their threshold, default 0.5, as ``{"name", "score"}``, highest first; None/[] when not judged).

    The photo-level fields describe the most likely face, so one-face scripts keep working: ``path``;
    ``error`` (None, ``"no face found"``, ``"face too small to judge"`` or why the file could not be
    read); ``me_probability`` / ``is_me`` (the photo is "me" when any face is), ``attributes``,
    ``face_box``, ``confidence`` of that face; ``threshold``; ``n_faces``; ``detector`` (which pass found
    the faces).
    """
    files = expand_paths(paths)
    if not files:
        return []
    judge = FaceJudge(me_model, attribute_model, threshold=threshold, attribute_names=attribute_names,
                      image_size=image_size, crop=crop, attribute_thresholds=attribute_thresholds)
    return judge_files(judge, files, cropper or FaceAligner())


def judge_files(judge: FaceJudge, files: Sequence[Path], cropper: FaceAligner) -> list[dict[str, Any]]:
    """Detect and judge ``files`` in chunks of ``CHUNK`` photos (memory stays bounded)."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(files), CHUNK):
        results += judge.judge([detect_photo(path, cropper) for path in files[start:start + CHUNK]])
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


def _transfer_folders(run_dir: Path) -> list[Path]:
    """The run's transfer model folders: as its ``me/results.json`` lists them (a cached transfer's folder
    is an earlier run's), else ``me/<strategy>/`` (runs written before that index)."""
    from recognize_me.me.report import RESULTS_INDEX

    index = run_dir / "me" / RESULTS_INDEX
    if index.is_file():
        return [Path(r["out_dir"]) for r in _read_json(index) if r.get("status") == "completed"]
    return sorted(p.parent for p in (run_dir / "me").glob("*/metrics.json"))


def _best_me_model(run_dir: Path) -> tuple[str, Path, dict[str, Any]]:
    candidates = []
    for folder in _transfer_folders(run_dir):
        metrics = _read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
        if metrics and metrics.get("status", "completed") == "completed" and (folder / "model.keras").is_file():
            candidates.append((folder, metrics))
    if not candidates:
        raise FileNotFoundError(f"no trained transfer model in {run_dir / 'me'} (me/<strategy>/model.keras)")
    from recognize_me.me.report import selection_key

    folder, metrics = max(candidates, key=lambda c: selection_key(c[1]))  # validation only, as the flow chooses
    return str(metrics.get("strategy") or folder.name), folder / "model.keras", metrics


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
    validation by ``report.selection_key``) with its threshold. Each model gets its own image size and crop."""
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
    return PredictorConfig(
        me_model=me_path, me_strategy=strategy, threshold=float(me_metrics.get("threshold", 0.5)),
        me_f1=me_metrics.get("f1"), attribute_model=attr_path, attribute_model_name=attr_name,
        attribute_names=tuple(str(r["attribute"]) for r in per_attribute),
        attribute_thresholds=tuple(float(r.get("threshold", 0.5)) for r in per_attribute),
        image_size=me_size, crop=me_crop,
        attribute_input=None if (attr_size, attr_crop) == (me_size, me_crop) else (attr_size, attr_crop))


def summary_rows(results: list[dict[str, Any]], top: int = 6) -> list[dict[str, Any]]:
    """One flat row per image, for a table or a terminal: its most likely face, and how many faces."""
    rows = []
    for r in results:
        attrs = ", ".join(f"{a['name']} {a['score']:.2f}" for a in (r.get("attributes") or [])[:top])
        faces = r.get("faces") or []
        judged = sum(f.get("me_probability") is not None for f in faces)
        rows.append({"image": Path(r["path"]).name, "is_me": r.get("is_me"),
                     "p_me": None if r.get("me_probability") is None else round(r["me_probability"], 3),
                     "faces": len(faces), "judged": judged, "attributes": attrs, "error": r.get("error") or ""})
    return rows
