"""The user's own photos: find them, check they decode, and load them as plain RGB.

Formats: JPEG, PNG, WebP, AVIF (Pillow's own decoder) and HEIC/HEIF, what phones write (``pillow-heif``,
registered with Pillow on first use by :func:`register_phone_formats`, not at import). Animated images
(GIF-like WebP/PNG/AVIF sequences) are rejected: which frame is "the photo" is a guess.

Pure core: no Prefect, no import-time side effects. ``scan_photos`` never raises for a bad file; every
file under the folder ends up either as a :class:`Photo` or as a :class:`Rejected` with a reason.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".avif", ".heic", ".heif"})

_EXIF_ORIENTATION = 0x0112
_ORIENTATIONS_THAT_SWAP_AXES = {5, 6, 7, 8}


@dataclass(frozen=True, slots=True)
class Photo:
    """A decodable photo. ``width``/``height`` are as displayed, i.e. after EXIF orientation (what
    :func:`load_rgb` returns); ``sha256`` is the hex digest of the file's bytes."""

    path: Path
    label: str
    sha256: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """A file under the photo folder that cannot be used, and why."""

    path: Path
    reason: str


@functools.cache
def register_phone_formats() -> bool:
    """Teach Pillow HEIC/HEIF (``pillow_heif.register_heif_opener``) once per process; True when it can.

    AVIF is Pillow's own (``PIL.features.check("avif")``); without ``pillow-heif`` a HEIC file is rejected
    by the decoder ("cannot identify image file"), never a crash."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _animation_reason(img: Image.Image) -> str | None:
    frames = int(getattr(img, "n_frames", 1) or 1)
    if getattr(img, "is_animated", False) and frames > 1 and img.format not in {"HEIF"}:
        return f"animated image ({frames} frames): save the frame you mean as a still photo"
    return None


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def walk_files(root: Path) -> Iterator[tuple[Path, Rejected | None]]:
    """Yield every file below ``root`` in sorted order, without following directory symlinks.

    A directory symlink that resolves outside ``root`` is reported as rejected; one that resolves inside
    is skipped, as its files are reached through their real location (no duplicates, no loops).
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        kept: list[str] = []
        for name in sorted(dirnames):
            sub = here / name
            if sub.is_symlink():
                try:
                    target = sub.resolve(strict=True)
                except (OSError, RuntimeError):
                    yield sub, Rejected(sub, "broken or looping symlink")
                    continue
                if not _is_within(target, root):
                    yield sub, Rejected(sub, "outside the data folder")
                continue
            kept.append(name)
        dirnames[:] = kept  # os.walk descends in this (sorted) order
        for name in sorted(filenames):
            yield here / name, None


def _image_size_or_reason(data: bytes, path: Path) -> tuple[int, int] | str:
    """Fully decode ``data``; return the displayed (width, height), or a reason it is unusable."""
    limit = Image.MAX_IMAGE_PIXELS  # read at call time, so callers (and tests) may change it
    register_phone_formats()
    buffer = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both are rejections.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(buffer) as img:
                width, height = img.size
                if limit is not None and width * height > limit:
                    return (f"image too large ({width}x{height} = {width * height} pixels, "
                            f"Image.MAX_IMAGE_PIXELS is {limit})")
                animated = _animation_reason(img)
                if animated:
                    return animated
                img.load()  # a full decode: catches truncated and corrupt data, not just a bad header
                orientation = img.getexif().get(_EXIF_ORIENTATION)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"image too large ({exc})"
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a rejection, never a crash
        # Pillow names the in-memory buffer ("<_io.BytesIO object at 0x...>"); name the file instead
        text = (str(exc) or type(exc).__name__).replace(repr(buffer), repr(str(path)))
        return f"cannot decode image: {text}"
    if orientation in _ORIENTATIONS_THAT_SWAP_AXES:
        width, height = height, width
    return width, height


def check_photo(path: Path, label: str) -> Photo | Rejected:
    """Classify one file (no symlink check; :func:`scan_photos` does that)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return Rejected(path, f"unsupported format {suffix}" if suffix else "unsupported format (no suffix)")
    if not path.is_file():
        return Rejected(path, "not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Rejected(path, f"cannot read file: {exc.strerror or exc}")
    if not data:
        return Rejected(path, "cannot decode image: empty file (0 bytes)")
    size = _image_size_or_reason(data, path)
    if isinstance(size, str):
        return Rejected(path, size)
    return Photo(path=path, label=label, sha256=hashlib.sha256(data).hexdigest(), width=size[0],
                 height=size[1])


def scan_photos(folder: Path, label: str) -> tuple[list[Photo], list[Rejected]]:
    """Walk ``folder`` recursively (sorted, deterministic) and sort every file into photos and rejects.

    Rejected: suffixes other than ``SUPPORTED_SUFFIXES`` (case-insensitive), files that do not fully
    decode (the reason carries Pillow's error text), images above ``Image.MAX_IMAGE_PIXELS``
    ("image too large ..."), and symlinks resolving outside ``folder`` ("outside the data folder").
    Both lists are sorted by path components; paths are as found under ``folder`` (not resolved). Copies
    of the same bytes under different names are all listed (same ``sha256``). A missing folder raises
    ``FileNotFoundError``; nothing else raises.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    root = folder.resolve()
    photos: list[Photo] = []
    rejected: list[Rejected] = []
    for path, early in walk_files(folder):
        if early is not None:
            rejected.append(early)
            continue
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                rejected.append(Rejected(path, "broken or looping symlink"))
                continue
            if not _is_within(target, root):
                rejected.append(Rejected(path, "outside the data folder"))
                continue
        result = check_photo(path, label)
        if isinstance(result, Photo):
            photos.append(result)
        else:
            rejected.append(result)
    photos.sort(key=lambda item: item.path.parts)
    rejected.sort(key=lambda item: item.path.parts)
    return photos, rejected


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
        arr = arr / 257.0  # 16-bit range 0..65535 onto 0..255
    elif img.mode == "F" and arr.size and arr.max() <= 1.0:
        arr = arr * 255.0  # float images in 0..1
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert an image of any mode to 8-bit RGB by the rule documented in :func:`load_rgb` (step 2).

    No orientation handling; returns ``img`` itself when it is already RGB.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in {"RGBA", "LA", "RGBa", "La", "PA"} or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _to_8bit_gray(img).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: Path, max_side: int | None = None) -> Image.Image:
    """Open ``path`` and return it as an upright, 8-bit, 3-channel RGB image (fully loaded).

    ``max_side``: shrink so the longer side is at most this many pixels (aspect kept). A JPEG is then
    decoded at a reduced scale (``Image.draft``: 1/2, 1/4 or 1/8, never below ``max_side``), so a
    50-megapixel photo never sits in memory at full size; other formats are decoded, then shrunk.

    The rule, in order:

    1. EXIF orientation is applied (``ImageOps.exif_transpose``), so the result is as displayed.
    2. Mode conversion to RGB (:func:`to_rgb`):
       - ``RGB``: unchanged.
       - Anything with transparency (``RGBA``, ``LA``, ``RGBa``, ``La``, ``PA``, and ``P`` with a
         ``transparency`` entry): alpha-composited onto a white background, then alpha dropped.
       - ``P`` without transparency, ``L``, ``1``, ``CMYK``, ``YCbCr``, ...: Pillow's ``convert("RGB")``
         (grey is replicated into the three channels; CMYK uses Pillow's conversion).
       - 16/32-bit integer and float grey (``I;16*``, ``I``, ``F``): ``I;16*`` and any image whose
         maximum exceeds 255 are scaled by 1/257 (0..65535 -> 0..255); ``F`` with maximum <= 1 is scaled
         by 255; otherwise values are taken as 0..255. Then rounded, clipped and replicated to RGB.

    Pillow's decompression-bomb limit applies (``Image.DecompressionBombError`` propagates); an animated
    image raises ``ValueError``.
    """
    register_phone_formats()
    with Image.open(path) as opened:
        animated = _animation_reason(opened)
        if animated:
            raise ValueError(animated)
        if max_side is not None and opened.format == "JPEG":
            w, h = opened.size
            scale = min(1.0, max_side / max(w, h))
            opened.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)  # no copy of a photo without an orientation tag
        img = opened
    if max_side is not None and max(img.size) > max_side:
        # reducing_gap: a cheap box reduction first, then the filter on at most 2x the target size
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return to_rgb(img)
