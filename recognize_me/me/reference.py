"""The optional reference strategy: dlib's face-recognition ResNet (``face_recognition``, 128-d embeddings)
on the same aligned photos, into the same logistic regression as ``feature_extraction``.

Optional: ``pip install .[reference]`` installs ``dlib-bin``; ``face-recognition`` and
``face-recognition-models`` then need ``pip install --no-deps face-recognition face-recognition-models``
(their ``dlib`` requirement would build dlib from source). When they are missing, :func:`reference_missing`
says so and the strategy is skipped with that message.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recognize_me.me.align import FACE_BOX
from recognize_me.me.logistic import fit_logistic_pooled

REFERENCE_STRATEGY = "reference_dlib"  # its name in recognize_me.catalog.STRATEGIES
INSTALL_HINT = ("pip install dlib-bin && pip install --no-deps face-recognition face-recognition-models "
                "(or: pip install '.[reference]' then the --no-deps line)")


def import_face_recognition() -> Any:
    """``import face_recognition`` without its side effect: it sets Pillow's process-wide
    ``ImageFile.LOAD_TRUNCATED_IMAGES = True``, after which truncated JPEGs decode silently and the image
    inventory and photo checks would accept them. The previous value is restored."""
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import face_recognition
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    return face_recognition


#: What the reference strategy imports (``face_recognition`` needs the other two at import time).
REFERENCE_MODULES = ("face_recognition", "face_recognition_models", "dlib")


def missing_reference_modules() -> list[str]:
    """The reference's packages that are not installed (looked up, not imported)."""
    return [name for name in REFERENCE_MODULES if importlib.util.find_spec(name) is None]


def reference_missing() -> str | None:
    """None when the reference's packages are installed, else why the reference strategy is skipped.

    Looked up without importing them (importing ``face_recognition`` takes over a second, on every run,
    cached or not); a package that is present but broken fails the reference job itself, with its error."""
    missing = missing_reference_modules()
    if missing:
        return f"{REFERENCE_STRATEGY} skipped: {', '.join(missing)} not installed; {INSTALL_HINT}"
    return None


CACHE_SUFFIX = ".dlib128.npy"


def dlib_embeddings(paths: Sequence[str | Path]) -> np.ndarray:
    """128-d embeddings of aligned 178x218 crops: the face is the template's face box, so dlib's own
    landmark step runs inside it (no second detection). Each embedding is kept beside its crop
    (``<crop>.dlib128.npy``, written atomically) and reused while it is newer than the crop."""
    from PIL import Image

    from recognize_me.fileio import write_with

    out = []
    for path in map(Path, paths):
        cached = path.with_name(path.name + CACHE_SUFFIX)
        if cached.is_file() and cached.stat().st_mtime >= path.stat().st_mtime:
            out.append(np.load(cached))
            continue
        vector = face_box_encodings(np.asarray(Image.open(path).convert("RGB"))[None])[0]
        write_with(cached, lambda p, v=vector: np.save(p, v), suffix=".npy")
        out.append(vector)
    return np.asarray(out, dtype=np.float64).reshape(len(out), 128)


def face_box_encodings(frames: np.ndarray) -> np.ndarray:
    """dlib's 128-d embedding (float64, as dlib gives it) of each aligned 178x218 frame, the template's face box
    as the face's location."""
    face_recognition = import_face_recognition()
    left, top, right, bottom = FACE_BOX
    return np.stack([np.asarray(face_recognition.face_encodings(f, known_face_locations=[(top, right, bottom, left)])[0])
                     for f in frames])


def fit_reference(data: dict, seed: int, groups_train: Sequence[str], groups_val: Sequence[str]
                  ) -> tuple[Callable[[str], np.ndarray], dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """The logistic regression on dlib embeddings, fitted as ``feature_extraction``'s is
    (:func:`~recognize_me.me.logistic.fit_logistic_pooled`); returns (scores of a split, extras, the
    (labels, held-out scores) the threshold is chosen on)."""
    missing = reference_missing()
    if missing:
        raise ModuleNotFoundError(missing)
    fit = fit_logistic_pooled(dlib_embeddings(data["train"][0]), data["train"][1], groups_train,
                              dlib_embeddings(data["val"][0]), data["val"][1], groups_val, seed)

    def score(split: str) -> np.ndarray:
        return fit.model.predict_proba(dlib_embeddings(data[split][0]))[:, 1].astype(np.float64)

    return score, {**fit.extra(), "feature_dim": 128, "features": "dlib_resnet"}, fit.selection
