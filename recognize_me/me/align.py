"""Align a face the way CelebA's img_align_celeba was aligned: five landmarks onto a fixed 178x218 template.

Detection: MTCNN (``mtcnn`` 1.0.0, weights inside the wheel; nothing is downloaded). Its five landmarks
(eyes, nose, mouth corners) are mapped onto CelebA's mean landmark positions by a similarity transform
(rotation, uniform scale, translation: ``cv2.estimateAffinePartial2D``) and the photo is warped into the
178x218 frame (``cv2.warpAffine``).

Tight face crops (the face fills the photo, e.g. 112x112 crops): MTCNN often misses them; when nothing is
found the photo is padded by ``retry_pad`` of its size on every side (edge replicated) and detection is
tried again; a face found there counts only if its centre lies inside the original photo.

Filling (``fill``), identical for every photo whatever its source (own photos, "others", CelebA images,
predict):

- ``"face_box"`` (default): after warping, everything outside the template's face box ``FACE_BOX``
  (roughly what a tight 112x112 crop covers) is replaced by replicating the box's border. A CelebA image,
  a wide photo and a tight crop then look alike, so no classifier can learn "tight crop = me".
- ``"replicate"`` / ``"reflect"``: only the parts of the frame outside the photo are filled (border
  replicated / mirrored). Wide photos keep their real surroundings; tight crops do not have any.

Already-framed images: a photo of exactly 178x218 pixels in which no face is found is taken as already
CelebA-aligned (``detector="celeba_frame"``, confidence None) when ``trust_celeba_frame`` is on. This is
the documented path for the demo's drawn faces, which MTCNN (trained on real photos) does not find.

Pure core: no Prefect, no import-time side effects; TensorFlow (through mtcnn) is imported when the
detector is first used, and the detector is built once per :class:`FaceAligner` (dropped when pickled).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from PIL import Image

from recognize_me.me.photos import to_rgb

CELEBA_FRAME_SIZE: tuple[int, int] = (178, 218)  # (width, height)
#: CelebA's mean landmark positions in the aligned 178x218 frame: left eye, right eye, nose, left and right
#: mouth corner (as seen in the image: "left" is the image's left).
TEMPLATE: np.ndarray = np.array([[69, 111], [108, 111], [88, 136], [72, 152], [105, 152]], dtype=np.float32)
#: (left, top, right, bottom) kept by ``fill="face_box"``: a 112x112 crop whose eyes are 40 px apart,
#: mapped onto the template (eye distance 39 px), covers about x 34..146, y 58..170.
FACE_BOX: tuple[int, int, int, int] = (36, 60, 142, 168)
KEYPOINT_ORDER: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

Fill = Literal["face_box", "replicate", "reflect"]
FILLS: tuple[str, ...] = ("face_box", "replicate", "reflect")

DETECTOR_MTCNN = "mtcnn"
DETECTOR_MTCNN_PADDED = "mtcnn_padded"
DETECTOR_CELEBA_FRAME = "celeba_frame"
REASON_FOUND = "face found"
REASON_FOUND_PADDED = "face found after padding (tight crop)"
REASON_CELEBA_FRAME = "no face found; 178x218 image taken as already CelebA-aligned"
REASON_NO_FACE = "no face found"
REASON_TOO_SMALL = "face too small to judge"
#: ``align_all``: faces narrower than this (in the photo's pixels) are listed as too small, not judged.
MIN_JUDGED_FACE_PX = 40


@dataclass(frozen=True)
class AlignResult:
    """``image``: the aligned 178x218 RGB face, or None (``reason`` says why). ``box``: the detector's face
    box (left, top, right, bottom) in the photo's pixels; ``landmarks``: the five points (x, y) in the
    photo, ``KEYPOINT_ORDER``; ``detector``: which pass found it (``mtcnn``, ``mtcnn_padded``,
    ``celeba_frame``) or None; ``confidence``: the detector's score (None for ``celeba_frame``)."""

    image: Image.Image | None
    box: tuple[int, int, int, int] | None
    n_faces: int
    reason: str
    detector: str | None = None
    confidence: float | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None


def similarity_matrix(points: np.ndarray, template: np.ndarray = TEMPLATE) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, translation) taking ``points`` (5x2, photo
    pixels) closest to ``template`` in least squares."""
    import cv2

    src = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    dst = np.asarray(template, dtype=np.float32).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching landmark arrays of >= 2 points, got {src.shape} and {dst.shape}")
    # LMEDS needs > 2 points; every point is an inlier for a clean 5-point fit, so this is least squares
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError(f"no similarity transform fits the landmarks {src.tolist()}")
    return matrix.astype(np.float64)


def warp_to_template(rgb: np.ndarray, matrix: np.ndarray, fill: Fill = "face_box",
                     size: tuple[int, int] = CELEBA_FRAME_SIZE) -> np.ndarray:
    """Warp ``rgb`` (H, W, 3 uint8) by ``matrix`` into a ``size`` (width, height) frame and fill as
    ``fill`` says (see the module docstring)."""
    import cv2

    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    border = cv2.BORDER_REFLECT_101 if fill == "reflect" else cv2.BORDER_REPLICATE
    out = cv2.warpAffine(np.ascontiguousarray(rgb), matrix, size, flags=cv2.INTER_LINEAR, borderMode=border)
    if fill == "face_box":
        sx, sy = size[0] / CELEBA_FRAME_SIZE[0], size[1] / CELEBA_FRAME_SIZE[1]
        left, top = round(FACE_BOX[0] * sx), round(FACE_BOX[1] * sy)
        right, bottom = round(FACE_BOX[2] * sx), round(FACE_BOX[3] * sy)
        inner = out[top:bottom, left:right]
        out = cv2.copyMakeBorder(inner, top, size[1] - bottom, left, size[0] - right, cv2.BORDER_REPLICATE)
    return out


class FaceAligner:
    """Detect the face (MTCNN), align it to CelebA's template and fill the frame (``fill``).

    ``min_confidence``: detections below it are ignored, and so are faces narrower than
    ``min_face_fraction`` of the photo's shorter side (MTCNN sometimes sees a tiny "face" in texture). ``retry_pad``: the tight-crop retry pads this
    fraction of the photo's size on every side. ``detect_max_side``: photos are shrunk to at most this
    many pixels (longer side) for detection only. ``trust_celeba_frame``: see the module docstring.
    ``detector``: an object with ``detect_faces(rgb_uint8)`` (MTCNN's interface), for tests; by default
    an ``mtcnn.MTCNN(device="CPU:0")`` built on first use and kept for this aligner's life.

    ``crop`` is an alias of :meth:`align`, so an aligner stands in wherever a face cropper was used.
    """

    def __init__(self, fill: Fill = "face_box", min_confidence: float = 0.8, min_face_fraction: float = 0.1,
                 retry_pad: float = 0.25,
                 detect_max_side: int = 800, trust_celeba_frame: bool = True, detector: Any = None) -> None:
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if not 0.0 <= min_face_fraction < 1.0:
            raise ValueError(f"min_face_fraction must be in [0, 1), got {min_face_fraction}")
        if retry_pad < 0:
            raise ValueError(f"retry_pad must be >= 0, got {retry_pad}")
        if detect_max_side < 48:
            raise ValueError(f"detect_max_side must be >= 48, got {detect_max_side}")
        self.fill = fill
        self.min_confidence = float(min_confidence)
        self.min_face_fraction = float(min_face_fraction)
        self.retry_pad = float(retry_pad)
        self.detect_max_side = int(detect_max_side)
        self.trust_celeba_frame = bool(trust_celeba_frame)
        self._detector = detector
        self._own_detector = detector is None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if state["_own_detector"]:
            state["_detector"] = None  # rebuilt on first use in the receiving process
        return state

    @property
    def detector(self) -> Any:
        if self._detector is None:
            import keras
            from mtcnn import MTCNN

            # MTCNN's layers take the global dtype policy when built; a process that trained under
            # mixed_bfloat16 must still get MTCNN's float32 detector (bf16 boxes break its numpy code).
            previous = keras.mixed_precision.global_policy()
            keras.mixed_precision.set_global_policy("float32")
            try:
                self._detector = MTCNN(device="CPU:0")
            finally:
                keras.mixed_precision.set_global_policy(previous)
        return self._detector

    def _faces(self, rgb: np.ndarray, min_fraction: float | None = None) -> list[dict[str, Any]]:
        """Detections above ``min_confidence`` in ``rgb``, in its own pixels, largest first; faces narrower
        than ``min_fraction`` (default ``min_face_fraction``) of the shorter side are dropped."""
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        found = []
        for face in self.detector.detect_faces(np.ascontiguousarray(small)) or []:
            confidence = float(face.get("confidence", 0.0))
            keypoints = face.get("keypoints") or {}
            if confidence < self.min_confidence or any(k not in keypoints for k in KEYPOINT_ORDER):
                continue
            x, y, bw, bh = (float(v) / scale for v in face["box"])
            if bw < (self.min_face_fraction if min_fraction is None else min_fraction) * min(h, w):
                continue
            points = np.array([keypoints[k] for k in KEYPOINT_ORDER], dtype=np.float64) / scale
            found.append({"box": (x, y, x + bw, y + bh), "points": points, "confidence": confidence})
        return sorted(found, key=lambda f: -(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))

    def find(self, rgb: np.ndarray) -> tuple[dict[str, Any] | None, int, str]:
        """(chosen face or None, faces in the pass that succeeded, detector name or reason)."""
        faces, how = self.find_all(rgb)
        return (faces[0], len(faces), how) if faces else (None, 0, how)

    def find_all(self, rgb: np.ndarray, min_fraction: float | None = None) -> tuple[list[dict[str, Any]], str]:
        """(every face, largest first; detector name or reason): the plain pass, else the padded retry."""
        faces = self._faces(rgb, min_fraction)
        if faces:
            return faces, DETECTOR_MTCNN
        h, w = rgb.shape[:2]
        py, px = round(self.retry_pad * h), round(self.retry_pad * w)
        if py or px:
            padded = np.pad(rgb, ((py, py), (px, px), (0, 0)), mode="edge")
            inside = []
            for face in self._faces(padded, min_fraction):
                left, top, right, bottom = face["box"]
                box = (left - px, top - py, right - px, bottom - py)
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                if 0 <= cx < w and 0 <= cy < h:
                    inside.append({**face, "box": box, "points": face["points"] - [px, py]})
            if inside:
                return inside, DETECTOR_MTCNN_PADDED
        return [], REASON_NO_FACE

    def align(self, img: Image.Image) -> AlignResult:
        """Detect, align and fill the largest face of ``img`` (any mode; pass it upright,
        ``photos.load_rgb`` applies EXIF)."""
        rgb = np.asarray(to_rgb(img), dtype=np.uint8)
        if rgb.size == 0:
            return AlignResult(image=None, box=None, n_faces=0, reason=REASON_NO_FACE)
        faces, how = self.find_all(rgb)
        if not faces:
            return self._framed_or_none(rgb, how)
        return self._aligned(rgb, faces[0], len(faces), how)

    def align_all(self, img: Image.Image, min_face_px: int = MIN_JUDGED_FACE_PX) -> list[AlignResult]:
        """Every face of ``img`` (a group photo), largest first, each aligned like :meth:`align`.

        ``min_face_fraction`` does not apply here (a group photo's faces are small); faces narrower than
        ``min_face_px`` photo pixels are listed (box, landmarks, confidence) with ``image=None`` and reason
        ``REASON_TOO_SMALL``: too small to judge, never guessed. No face: one result with ``image=None``
        (or the already-framed 178x218 image, as :meth:`align`)."""
        rgb = np.asarray(to_rgb(img), dtype=np.uint8)
        if rgb.size == 0:
            return [AlignResult(image=None, box=None, n_faces=0, reason=REASON_NO_FACE)]
        faces, how = self.find_all(rgb, min_fraction=0.0)
        if not faces:
            return [self._framed_or_none(rgb, how)]
        out = []
        for face in faces:
            result = self._aligned(rgb, face, len(faces), how)
            if face["box"][2] - face["box"][0] < min_face_px:
                result = replace(result, image=None, reason=REASON_TOO_SMALL)
            out.append(result)
        return out

    def _framed_or_none(self, rgb: np.ndarray, reason: str) -> AlignResult:
        if self.trust_celeba_frame and (rgb.shape[1], rgb.shape[0]) == CELEBA_FRAME_SIZE:
            framed = warp_to_template(rgb, np.array([[1.0, 0, 0], [0, 1.0, 0]]), self.fill)
            return AlignResult(image=Image.fromarray(framed), box=None, n_faces=0, reason=REASON_CELEBA_FRAME,
                               detector=DETECTOR_CELEBA_FRAME)
        return AlignResult(image=None, box=None, n_faces=0, reason=reason)

    def _aligned(self, rgb: np.ndarray, face: dict[str, Any], n_faces: int, how: str) -> AlignResult:
        aligned = warp_to_template(rgb, similarity_matrix(face["points"]), self.fill)
        return AlignResult(
            image=Image.fromarray(aligned), box=tuple(int(round(v)) for v in face["box"]), n_faces=n_faces,
            reason=REASON_FOUND if how == DETECTOR_MTCNN else REASON_FOUND_PADDED, detector=how,
            confidence=round(face["confidence"], 6),
            landmarks=tuple((float(x), float(y)) for x, y in face["points"]))

    crop = align
