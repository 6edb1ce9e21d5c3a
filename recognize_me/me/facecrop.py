"""Find the face in a photo and frame it the way CelebA's aligned images (img_align_celeba) are framed.

Detection uses the Haar cascade that ships inside opencv-python-headless (nothing is downloaded). The
detector is created lazily by :class:`FaceCropper`; this module keeps no global state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from recognize_me.me.photos import to_rgb

# --- CelebA framing ---------------------------------------------------------------------------------
# Measured on 1,000 randomly chosen real images of /work/shared/data/celeba/img_align_celeba (178x218),
# with FaceCropper().find_face itself (haarcascade_frontalface_default, scaleFactor 1.1, minNeighbors 5,
# largest box): a face was found in 951/1000 on the first pass (8 more by the tight-crop retry, not
# used for the statistics); the Haar face box is square,
# width median 106 px (mean 105.2, p10 94, p90 116); its centre is at x = 89.0 (median; p10 87, p90 91,
# i.e. exactly centred) and y = 123.5 (median; mean 123.3, p10 120.5, p90 126).
# So the 178x218 frame is 178/106 = 1.68 face widths wide and 218/106 = 2.06 face widths high, with the
# face centre at 50% of the width and at 123.5/218 = 56.7% of the height.
CELEBA_FRAME_SIZE: tuple[int, int] = (178, 218)  # (width, height)
CELEBA_FACE_WIDTH_PX: float = 106.0
CELEBA_FACE_CENTER_PX: tuple[float, float] = (89.0, 123.5)  # (x, y) inside the 178x218 frame
FRAME_HEIGHT_PER_FACE: float = CELEBA_FRAME_SIZE[1] / CELEBA_FACE_WIDTH_PX  # 2.06
FACE_CENTER_REL: tuple[float, float] = (CELEBA_FACE_CENTER_PX[0] / CELEBA_FRAME_SIZE[0],
                                        CELEBA_FACE_CENTER_PX[1] / CELEBA_FRAME_SIZE[1])  # (0.5, 0.567)

HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"
_SCALE_FACTOR = 1.1
_MIN_NEIGHBORS = 5
_MIN_FACE_PX = 24  # the cascade's own window size

# Tight-crop retry: pad by this fraction of the image on every side and detect again; a face found
# that way counts only if it is big (>= _TIGHT_MIN_FACE of the shorter image side) and its centre lies
# inside the original image, so streaks in the padding cannot produce a face.
_TIGHT_PAD = 0.5
_TIGHT_MIN_FACE = 0.5

REASON_FOUND = "face found"
REASON_FOUND_TIGHT = "face found after padding (tight crop)"
REASON_NO_FACE = "no face found"

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class CropResult:
    """``image``: the framed face (RGB, ``FaceCropper.size``), or None when no face was found.
    ``box``: the chosen face as (left, top, right, bottom) in the input image's pixels; after the
    tight-crop retry it may reach past the image edges. ``n_faces``: faces detected in the pass that
    succeeded (0 when none). ``reason``: one of ``REASON_FOUND``, ``REASON_FOUND_TIGHT``, ``REASON_NO_FACE``."""

    image: Image.Image | None
    box: Box | None
    n_faces: int
    reason: str


class FaceCropper:
    """Detect the face in a PIL image and return it framed like CelebA's aligned 178x218 images.

    ``size``: output (width, height). The framing keeps CelebA's height of 2.06 face widths and face
    centre at (50%, 56.7%) of the frame; the width follows ``size``'s aspect ratio (1.68 face widths
    for the default). ``choose``: "largest" face box, or the one whose centre is nearest the image
    centre ("center"). ``min_face_fraction``: ignore faces narrower than this fraction of the image's
    shorter side. ``pad``: how the frame is filled where it leaves the photo: "edge" replicates the
    border pixels, "mean" uses the photo's mean colour. ``detect_max_side``: the photo is shrunk to at
    most this many pixels on its longer side for detection only (speed); the crop uses full resolution.

    Photos that are already tight face crops (the detector often misses a face that fills the frame):
    when nothing is found, detection is retried on the photo padded by 50% on every side (edge
    replicated); a face found there is used if it is at least half the photo's shorter side and its
    centre lies within the photo. Otherwise the result is ``image=None, reason="no face found"``.

    Instances are cheap; the OpenCV classifier is created on first use and dropped when pickled.
    """

    def __init__(self, size: tuple[int, int] = CELEBA_FRAME_SIZE,
                 choose: Literal["largest", "center"] = "largest", min_face_fraction: float = 0.1,
                 pad: Literal["edge", "mean"] = "edge", detect_max_side: int = 800) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (width, height) >= 1, got {size}")
        if choose not in ("largest", "center"):
            raise ValueError(f"choose must be 'largest' or 'center', got {choose!r}")
        if not 0.0 <= min_face_fraction < 1.0:
            raise ValueError(f"min_face_fraction must be in [0, 1), got {min_face_fraction}")
        if pad not in ("edge", "mean"):
            raise ValueError(f"pad must be 'edge' or 'mean', got {pad!r}")
        if detect_max_side < _MIN_FACE_PX:
            raise ValueError(f"detect_max_side must be >= {_MIN_FACE_PX}, got {detect_max_side}")
        self.size = (int(size[0]), int(size[1]))
        self.choose = choose
        self.min_face_fraction = float(min_face_fraction)
        self.pad = pad
        self.detect_max_side = int(detect_max_side)
        self._classifier: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_classifier"] = None  # cv2 objects do not pickle; rebuilt lazily
        return state

    # --- detection ----------------------------------------------------------------------------
    @property
    def classifier(self) -> Any:
        if self._classifier is None:
            import cv2

            path = cv2.data.haarcascades + HAAR_CASCADE_FILE
            clf = cv2.CascadeClassifier(path)
            if clf.empty():
                raise RuntimeError(f"could not load the Haar cascade {path}")
            self._classifier = clf
        return self._classifier

    def detect(self, gray: np.ndarray, min_face_px: int) -> list[Box]:
        """Face boxes (left, top, right, bottom) in ``gray`` (2-D uint8), shrinking large inputs first."""
        h, w = gray.shape
        scale = min(1.0, self.detect_max_side / max(h, w))
        small = gray
        if scale < 1.0:
            import cv2

            small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
        min_px = max(_MIN_FACE_PX, int(min_face_px * scale))
        if min(small.shape) < min_px:
            return []
        found = self.classifier.detectMultiScale(small, scaleFactor=_SCALE_FACTOR,
                                                 minNeighbors=_MIN_NEIGHBORS, minSize=(min_px, min_px))
        boxes: list[Box] = []
        for x, y, bw, bh in (found if len(found) else []):
            boxes.append((round(x / scale), round(y / scale), round((x + bw) / scale),
                          round((y + bh) / scale)))
        return boxes

    def _pick(self, boxes: list[Box], width: int, height: int) -> Box:
        if self.choose == "largest":
            # ties (rare) go to the box nearer the top-left, so the choice is deterministic
            return max(boxes, key=lambda b: ((b[2] - b[0]) * (b[3] - b[1]), -b[1], -b[0]))
        cx, cy = width / 2, height / 2
        return min(boxes, key=lambda b: (((b[0] + b[2]) / 2 - cx) ** 2 + ((b[1] + b[3]) / 2 - cy) ** 2,
                                         b[1], b[0]))

    def find_face(self, img: Image.Image) -> tuple[Box | None, int, str]:
        """(chosen box or None, number of faces in the successful pass, reason)."""
        width, height = img.size
        if width == 0 or height == 0:
            return None, 0, REASON_NO_FACE
        gray = np.asarray(img.convert("L"))
        short = min(width, height)
        boxes = self.detect(gray, int(self.min_face_fraction * short))
        if boxes:
            return self._pick(boxes, width, height), len(boxes), REASON_FOUND
        # tight-crop retry on the padded photo
        px, py = round(_TIGHT_PAD * width), round(_TIGHT_PAD * height)
        padded = np.pad(gray, ((py, py), (px, px)), mode="edge")
        min_big = max(int(_TIGHT_MIN_FACE * short), int(self.min_face_fraction * short))
        tight: list[Box] = []
        for left, top, right, bottom in self.detect(padded, min_big):
            box = (left - px, top - py, right - px, bottom - py)
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if 0 <= cx < width and 0 <= cy < height:
                tight.append(box)
        if tight:
            return self._pick(tight, width, height), len(tight), REASON_FOUND_TIGHT
        return None, 0, REASON_NO_FACE

    # --- framing ------------------------------------------------------------------------------
    def frame_region(self, box: Box) -> Box:
        """The (left, top, right, bottom) region, in input pixels, that frames ``box`` like CelebA."""
        scale = ((box[2] - box[0]) + (box[3] - box[1])) / 2 / CELEBA_FACE_WIDTH_PX  # input px per CelebA px
        frame_h = CELEBA_FRAME_SIZE[1] * scale
        frame_w = frame_h * self.size[0] / self.size[1]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        left = math.floor(cx - FACE_CENTER_REL[0] * frame_w + 0.5)
        top = math.floor(cy - CELEBA_FACE_CENTER_PX[1] * scale + 0.5)
        return left, top, left + max(1, math.floor(frame_w + 0.5)), top + max(1, math.floor(frame_h + 0.5))

    def extract(self, img: Image.Image, region: Box) -> Image.Image:
        """Cut ``region`` out of ``img`` (RGB), padding where it leaves the image, and resize to ``size``."""
        arr = np.asarray(img)
        h, w = arr.shape[:2]
        left, top, right, bottom = region
        inner = arr[max(0, top):max(0, min(h, bottom)), max(0, left):max(0, min(w, right))]
        pads = ((max(0, -top), max(0, bottom - h)), (max(0, -left), max(0, right - w)), (0, 0))
        if any(p for pair in pads for p in pair):
            if self.pad == "edge" and inner.size:
                out = np.pad(inner, pads, mode="edge")
            else:
                # mean colour (also the fallback when the region misses the photo entirely)
                out = np.empty((bottom - top, right - left, 3), dtype=np.uint8)
                out[...] = np.rint(arr.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
                if inner.size:
                    y0, x0 = pads[0][0], pads[1][0]
                    out[y0:y0 + inner.shape[0], x0:x0 + inner.shape[1]] = inner
        else:
            out = inner
        return Image.fromarray(np.ascontiguousarray(out)).resize(
            self.size, Image.Resampling.LANCZOS)

    def crop(self, img: Image.Image) -> CropResult:
        """Detect, choose and frame the face of ``img`` (any mode; converted by ``photos.to_rgb``).

        Pass an upright image (``photos.load_rgb`` applies EXIF orientation): the cascade only finds
        upright frontal faces.
        """
        rgb = to_rgb(img)
        box, n_faces, reason = self.find_face(rgb)
        if box is None:
            return CropResult(image=None, box=None, n_faces=0, reason=reason)
        return CropResult(image=self.extract(rgb, self.frame_region(box)), box=box, n_faces=n_faces,
                          reason=reason)
