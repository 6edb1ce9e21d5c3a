"""Phone-size synthetic photos with known faces, for ``benchmarks.find_speed`` (pure planning and rendering).

A photo is planned (``plan_photos``: which faces, where, how big, which file format and EXIF orientation) from
a seeded ``random.Random`` and rendered (``render_photo``) from face crops onto a generated background
(gradient, shapes, noise; nothing downloaded). ``write_photo`` saves it as JPEG (optionally with an EXIF
orientation tag: the pixels are stored rotated so that an orientation-aware reader shows them upright) or
HEIC. Truth boxes are always in the upright photo's pixels.

Kinds of photo:
- ``group_me``: "me" among 1-2 other people, "me" smaller than the largest of them;
- ``group_none``: 2-3 other people, no "me";
- ``mixed``: 1-5 faces of any size, "me" among them with probability ``p_me``.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("group_me", "group_none", "mixed")
TRUTH_COLUMNS = ("path", "kind", "format", "orientation", "width", "height", "face", "person", "is_me",
                 "left", "top", "right", "bottom")
# EXIF orientation -> the transpose that turns the upright image into the stored pixels (a reader's
# ImageOps.exif_transpose undoes it).
STORE_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
# CelebA's aligned 178x218 frame: the 148x148 face box most papers crop (left, top, right, bottom).
CELEBA_FACE_BOX = (15, 40, 163, 188)


@dataclass(frozen=True)
class FaceSource:
    """One face crop: a file and whose face it is. ``crop`` (left, top, right, bottom) cuts the face out."""

    path: Path
    person: str
    is_me: bool = False
    crop: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class FacePlan:
    source: FaceSource
    box: tuple[int, int, int, int]  # upright pixels, before rotation: left, top, right, bottom (square)
    angle: float  # degrees, counter-clockwise
    flip: bool
    brightness: float


@dataclass(frozen=True)
class PhotoPlan:
    name: str
    kind: str
    size: tuple[int, int]  # upright width, height
    fmt: str  # "jpg" or "heic"
    orientation: int  # EXIF orientation of the stored file (1 = none)
    seed: int
    faces: tuple[FacePlan, ...] = field(default_factory=tuple)


def _place(rng: random.Random, size: tuple[int, int], sides: Sequence[int],
           tries: int = 200) -> list[tuple[int, int, int, int]] | None:
    """Non-overlapping squares of the given sides (with a margin of a tenth of a side), or None."""
    width, height = size
    boxes: list[tuple[int, int, int, int]] = []
    for side in sides:
        margin = side // 10
        for _ in range(tries):
            left = rng.randint(margin, max(margin, width - side - margin))
            top = rng.randint(margin, max(margin, height - side - margin))
            box = (left, top, left + side, top + side)
            if all(box[2] + margin <= b[0] or b[2] + margin <= box[0] or box[3] + margin <= b[1]
                   or b[3] + margin <= box[1] for b in boxes):
                boxes.append(box)
                break
        else:
            return None
    return boxes


def _sides(rng: random.Random, kind: str, n_faces: int, me_at: int | None, long_side: int,
           min_side: int) -> list[int]:
    """Face sides in pixels, none below ``min_side``; for ``group_me`` "me" is 55-85% of the largest other."""
    big = max(round(min_side / 0.55) + 1, round(long_side * rng.uniform(0.09, 0.2)))
    sides = [max(min_side, round(big * rng.uniform(0.6, 1.0))) for _ in range(n_faces)]
    if kind == "group_me" and me_at is not None:
        sides[(me_at + 1) % n_faces] = big
        sides[me_at] = round(big * rng.uniform(0.55, 0.85))
    return sides


def plan_photos(n: int, me_faces: Sequence[FaceSource], stranger_faces: Sequence[FaceSource], *, seed: int,
                n_group: int = 0, size: tuple[int, int] = (4032, 3024), p_me: float = 0.35,
                p_heic: float = 0.2, p_oriented: float = 0.2, p_portrait: float = 0.5,
                min_face: int | None = None) -> list[PhotoPlan]:
    """``n`` photo plans: ``n_group`` of kind group_me, ``n_group`` group_none, the rest mixed (shuffled).

    ``size`` is the landscape (width, height); a photo is portrait with probability ``p_portrait``. HEIC
    photos carry no orientation tag; a JPEG carries one of 3/6/8 with probability ``p_oriented``.
    ``min_face`` (default 7% of the short side) is the smallest face side. Deterministic for a seed.
    """
    if 2 * n_group > n:
        raise ValueError(f"2 * n_group ({2 * n_group}) > n ({n})")
    if not me_faces or not stranger_faces:
        raise ValueError("need at least one 'me' face and one stranger face")
    rng = random.Random(seed)
    kinds = ["group_me"] * n_group + ["group_none"] * n_group + ["mixed"] * (n - 2 * n_group)
    rng.shuffle(kinds)
    digits = len(str(n))
    plans = []
    for index, kind in enumerate(kinds):
        width, height = size if rng.random() >= p_portrait else (size[1], size[0])
        fmt = "heic" if rng.random() < p_heic else "jpg"
        orientation = rng.choice((3, 6, 8)) if fmt == "jpg" and rng.random() < p_oriented else 1
        if kind == "group_me":
            n_faces, me_at = rng.randint(2, 3), 0
        elif kind == "group_none":
            n_faces, me_at = rng.randint(2, 3), None
        else:
            n_faces = rng.randint(1, 5)
            me_at = 0 if rng.random() < p_me else None
        smallest = min_face or round(0.07 * min(width, height))
        for _ in range(50):
            sides = _sides(rng, kind, n_faces, me_at, max(width, height), smallest)
            boxes = _place(rng, (width, height), sides)
            if boxes is not None:
                break
        else:
            raise ValueError(f"cannot place {n_faces} faces in {width}x{height}")
        people = rng.sample(list(stranger_faces), n_faces) if len(stranger_faces) >= n_faces else \
            [rng.choice(stranger_faces) for _ in range(n_faces)]
        if me_at is not None:
            people[me_at] = rng.choice(me_faces)
        faces = tuple(FacePlan(source=src, box=box, angle=rng.uniform(-12, 12), flip=rng.random() < 0.5,
                               brightness=rng.uniform(0.85, 1.15)) for src, box in zip(people, boxes, strict=True))
        order = list(range(n_faces))
        rng.shuffle(order)  # "me" is not always face 0 in the file's reading order
        plans.append(PhotoPlan(name=f"{index:0{digits}d}_{kind}.{fmt}", kind=kind, size=(width, height),
                               fmt=fmt, orientation=orientation, seed=rng.randrange(2**31),
                               faces=tuple(faces[i] for i in order)))
    return plans


def background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A gradient with random shapes and a little noise (drawn small, scaled up, then fine noise added)."""
    width, height = size
    small = (max(8, width // 8), max(8, height // 8))
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, small[0])[None, :, None] * rng.uniform(0.3, 1) + \
        np.linspace(0.0, 1.0, small[1])[:, None, None] * rng.uniform(0.3, 1)
    t = t / t.max()
    img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, small[0])), int(rng.integers(0, small[1]))
        w, h = int(rng.integers(2, max(3, small[0] // 3))), int(rng.integers(2, max(3, small[1] // 3)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=color)
        elif shape == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=color)
        else:
            draw.polygon([(x0, y0), (x0 + w, y0 + int(rng.integers(0, h + 1))), (x0 + int(rng.integers(0, w + 1)), y0 + h)],
                         fill=color)
    img = img.filter(ImageFilter.GaussianBlur(1)).resize(size, Image.Resampling.BILINEAR)
    noise = rng.integers(-3, 4, (height, width, 1), dtype=np.int16)
    pixels = np.asarray(img, dtype=np.int16) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def soft_mask(side: int) -> Image.Image:
    """An ellipse filling the square with a feathered edge (about 8% of the side)."""
    feather = max(1, side // 12)
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).ellipse((feather, feather // 2, side - 1 - feather, side - 1 - feather // 2), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(feather / 2))


def load_face(source: FaceSource) -> Image.Image:
    with Image.open(source.path) as im:
        face = im.convert("RGB")
    return face.crop(source.crop) if source.crop else face


def rotated_box(box: tuple[int, int, int, int], angle: float) -> tuple[int, int, int, int]:
    """The axis-aligned bounds of ``box`` rotated by ``angle`` degrees about its centre."""
    left, top, right, bottom = box
    cx, cy, half = (left + right) / 2, (top + bottom) / 2, (right - left) / 2
    reach = half * (abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle))))
    return (round(cx - reach), round(cy - reach), round(cx + reach), round(cy + reach))


def render_photo(plan: PhotoPlan, load: Callable[[FaceSource], Image.Image] = load_face) -> Image.Image:
    """The upright photo: background, then each face scaled to its box, rotated, feathered and pasted."""
    rng = np.random.default_rng(plan.seed)
    img = background(rng, plan.size)
    for face in plan.faces:
        side = face.box[2] - face.box[0]
        crop = load(face.source)
        if face.flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = crop.resize((side, side), Image.Resampling.BICUBIC)
        crop = Image.eval(crop, lambda v, b=face.brightness: min(255, int(v * b)))
        mask = soft_mask(side)
        crop = crop.rotate(face.angle, resample=Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(face.angle, resample=Image.Resampling.BICUBIC, expand=True)
        cx, cy = (face.box[0] + face.box[2]) // 2, (face.box[1] + face.box[3]) // 2
        img.paste(crop, (cx - crop.width // 2, cy - crop.height // 2), mask)
    return img


def stored_image(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a file with this EXIF orientation stores so that a reader applying it shows ``upright``."""
    return upright.transpose(STORE_TRANSPOSE[orientation]) if orientation in STORE_TRANSPOSE else upright


def write_photo(plan: PhotoPlan, upright: Image.Image, path: Path, quality: int = 90) -> None:
    """Save as JPEG (with the plan's EXIF orientation) or HEIC (needs pillow-heif's opener registered).

    HEIC uses x265's ``ultrafast`` preset with 4:2:0 chroma: its default preset takes minutes per
    12-megapixel photo on this machine.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    if plan.fmt == "heic":
        upright.save(tmp, format="HEIF", quality=quality, chroma=420, enc_params={"preset": "ultrafast"})
    else:
        exif = Image.Exif()
        if plan.orientation != 1:
            exif[0x0112] = plan.orientation
        stored_image(upright, plan.orientation).save(tmp, format="JPEG", quality=quality, exif=exif.tobytes())
    tmp.replace(path)


def truth_rows(plan: PhotoPlan) -> list[dict[str, object]]:
    """One row per face (TRUTH_COLUMNS); the box is the rotated face's bounds in upright pixels, clipped."""
    width, height = plan.size
    rows = []
    for i, face in enumerate(plan.faces):
        left, top, right, bottom = rotated_box(face.box, face.angle)
        rows.append({"path": plan.name, "kind": plan.kind, "format": plan.fmt, "orientation": plan.orientation,
                     "width": width, "height": height, "face": i, "person": face.source.person,
                     "is_me": face.source.is_me, "left": max(0, left), "top": max(0, top),
                     "right": min(width, right), "bottom": min(height, bottom)})
    return rows


def write_truth(rows: Sequence[dict[str, object]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(TRUTH_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
