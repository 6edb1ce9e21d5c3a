"""Prepare the user's photo set for the "is this me?" model: scan, align, hash and split.

``prepare_photos`` turns ``me/`` (label "me") and ``others/`` (label "other") into CelebA-aligned
178x218 PNG crops under ``out_dir/crops/`` (``align.FaceAligner``: MTCNN landmarks onto CelebA's
template) plus a table saying which split each photo belongs to and which detector found its face.

Photos with several faces: in ``others/`` every face is an "other" (one row per face, ``choice`` "every").
In ``me/`` each face becomes a *candidate* row (``choice`` "candidate"): which one is the user is decided
later by ``face_choice.choose_faces``, by agreement with the single-face "me" photos in the features of
the CelebA base model (trained after the photos are prepared), never by size here.
When there is no ``others/`` folder, the "other" photos are a seeded sample of CelebA's aligned images,
aligned again by the same aligner so every photo is framed and filled identically.
Optional "strangers" (split ``strangers``): photos of people in no training split, scored apart.

Pure core: no Prefect, no import-time side effects. Every file is written atomically.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recognize_me.fileio import write_with
from recognize_me.me.align import MIN_JUDGED_FACE_PX, REASON_NO_FACE, REASON_TOO_SMALL, FaceAligner
from recognize_me.me.photos import Photo, Rejected, check_photo, load_rgb, scan_photos
from recognize_me.me.splits import assign_splits

ME_LABEL = "me"
OTHER_LABEL = "other"
PHOTO_COLUMNS: tuple[str, ...] = ("path", "crop_path", "label", "sha256", "split", "width", "height",
                                  "decodable", "detector", "confidence", "face", "n_faces", "box", "choice",
                                  "similarity")
#: ``choice``: how a row's face was taken from its photo.
CHOICE_ONLY = "only"  # the photo's only face
CHOICE_EVERY = "every"  # an "other" photo with several faces: every face is a row
CHOICE_CANDIDATE = "candidate"  # a face of a multi-face "me" photo, not chosen yet (face_choice)
CHOICE_AGREED = "agreed"  # chosen by face_choice: the one face agreeing with the single-face "me" photos
CHOICE_LARGEST = "largest"  # chosen by face_choice without single-face "me" photos to compare: the largest
STRANGERS_SPLIT = "strangers"
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "sha256", "split", "decodable", "width", "height",
                                     "crop_path", "face", "n_faces", "choice")
REJECTED_COLUMNS: tuple[str, ...] = ("path", "label", "reason")
CROPS_DIR = "crops"
#: Changes when photos.csv's layout or meaning changes (cached photo sets of another version are not reused):
#: "2" = one row per face, multi-face "me" photos as candidates.
PHOTO_TABLE_VERSION = "2"
PHOTOS_CSV = "photos.csv"
REJECTED_CSV = "rejected.csv"


@dataclass
class PhotoSet:
    """``table``: one row per usable face (columns ``PHOTO_COLUMNS``; ``path`` is the original file,
    ``crop_path`` the 178x218 image the models see, ``width``/``height`` the original's displayed size;
    ``face`` its index in the photo, largest first, of ``n_faces``; ``box`` "left,top,right,bottom" in the
    photo's pixels, empty for an already-framed image; ``choice`` see ``CHOICE_*``; ``similarity`` is set
    by ``face_choice`` for chosen faces).
    ``rejected``: files that cannot be used, with the reason (undecodable, unsupported, no face...)."""

    table: pd.DataFrame
    rejected: list[Rejected] = field(default_factory=list)

    def to_manifest(self) -> pd.DataFrame:
        """The frame ``checks.check_photos`` expects (path, label, sha256, split, decodable, width,
        height; plus crop_path, face, n_faces, choice). Rejected files are not rows: they are listed in
        ``rejected.csv``."""
        return photo_manifest(self.table)

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {label: number of faces}} for every split and label (zeros included); ``strangers``
        only when there are any. A multi-face "me" photo whose face is not chosen yet counts once."""
        return photo_counts(self.table)


def photo_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """``table``'s columns that ``checks.check_photos`` reads (see :meth:`PhotoSet.to_manifest`)."""
    return table.loc[:, list(MANIFEST_COLUMNS)].copy()


def photo_counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """See :meth:`PhotoSet.counts`."""
    table = table[~((table["choice"] == CHOICE_CANDIDATE) & table["path"].duplicated())]
    out: dict[str, dict[str, int]] = {}
    splits = ["train", "val", "test"] + ([STRANGERS_SPLIT] if (table["split"] == STRANGERS_SPLIT).any() else [])
    for split in splits:
        rows = table[table["split"] == split]
        out[split] = {label: int((rows["label"] == label).sum()) for label in (ME_LABEL, OTHER_LABEL)}
    return out


def _sample_celeba(images: Sequence[Path], n: int, seed: int) -> list[Path]:
    """``n`` paths drawn without replacement, independent of the order ``images`` came in."""
    pool = sorted({Path(p) for p in images}, key=lambda p: p.parts)
    if n >= len(pool):
        return pool
    chosen = random.Random(f"celeba-others:{int(seed)}").sample(pool, n)
    return sorted(chosen, key=lambda p: p.parts)


@dataclass(frozen=True)
class Face:
    """One aligned face of a photo: its crop, which detector pass found it, its confidence and box."""

    crop_path: Path
    detector: str | None
    confidence: float | None
    box: tuple[int, int, int, int] | None


def _detect(cropper: FaceAligner, image, min_face_px: int) -> list:
    """Every face ``cropper`` finds (``align_all``; a cropper with only ``crop`` gives its one face).

    When ``align_all`` finds no face wide enough to use, ``crop`` (``align``: faces under
    ``min_face_fraction`` of the photo ignored, then the padded retry) is asked too: a tiny false detection
    in the first pass would otherwise hide the face the padded retry finds."""
    if not hasattr(cropper, "align_all"):
        return [cropper.crop(image)]
    found = cropper.align_all(image, min_face_px=min_face_px)
    if any(f.image is not None for f in found):
        return found
    single = cropper.crop(image)
    return [single] if single.image is not None else found


def _crop_photo(photo: Photo, crops_dir: Path, cropper: FaceAligner, min_face_px: int,
                done: dict[str, list[Face] | str]) -> list[Face] | str:
    """Write the CelebA-aligned crop of every face of ``photo`` (largest first); return them, or the reason
    there is none. Faces narrower than ``min_face_px`` are left out. One face: ``<sha256[:16]>.png``;
    several: ``<sha256[:16]>_<index>.png``.

    ``done`` caches results by content hash, so copies of one picture are detected once.
    """
    key = photo.sha256.lower()
    if key in done:
        return done[key]
    try:
        image = load_rgb(photo.path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a rejection, never a crash
        result: list[Face] | str = f"cannot decode image: {exc}"
    else:
        found = _detect(cropper, image, min_face_px)
        usable = [f for f in found if f.image is not None]
        if not usable:
            too_small = any(f.reason == REASON_TOO_SMALL for f in found)
            result = REASON_TOO_SMALL if too_small else (found[0].reason if found else REASON_NO_FACE)
        else:
            result = []
            for index, crop in enumerate(usable):
                target = crops_dir / (f"{key[:16]}.png" if len(usable) == 1 else f"{key[:16]}_{index}.png")
                framed = crop.image
                write_with(target, lambda p, img=framed: img.save(p, format="PNG"), suffix=".png")
                result.append(Face(target, getattr(crop, "detector", None), getattr(crop, "confidence", None),
                                   getattr(crop, "box", None)))
    done[key] = result
    return result


def _face_rows(splits: pd.DataFrame, kept: list[tuple[Photo, list[Face]]]) -> pd.DataFrame:
    """One row per face: the photo's row of ``splits`` (same order as ``kept``) repeated per face."""
    rows = []
    for photo_row, (photo, faces) in zip(splits.to_dict("records"), kept, strict=True):
        several = len(faces) > 1
        choice = (CHOICE_CANDIDATE if photo.label == ME_LABEL else CHOICE_EVERY) if several else CHOICE_ONLY
        for index, face in enumerate(faces):
            rows.append({**photo_row, "crop_path": str(face.crop_path), "decodable": True,
                         "detector": face.detector, "confidence": face.confidence, "face": index,
                         "n_faces": len(faces), "box": format_box(face.box), "choice": choice,
                         "similarity": float("nan")})
    return pd.DataFrame(rows, columns=list(PHOTO_COLUMNS)).astype(
        {"face": "int64", "n_faces": "int64", "confidence": "float64", "similarity": "float64"})


def format_box(box: tuple[int, int, int, int] | None) -> str:
    """"left,top,right,bottom" (photo pixels), or "" for no box."""
    return "" if box is None else ",".join(str(int(v)) for v in box)


@dataclass(frozen=True)
class PhotoSources:
    """Where the photos of a photo set come from.

    - ``me_dir`` (label "me") and ``others_dir`` (label "other") are scanned recursively
      (``photos.scan_photos``); ``celeba_others`` paths sampled (seeded) from ``celeba_images`` are "other"
      photos too, beside ``others_dir``'s: a few people's photos alone teach "not them", not "not me"
      (a model trained against two people accepted 61% of strangers).
    - Strangers (label "other", split ``strangers``): the photos under ``strangers_dir`` plus
      ``n_strangers`` paths sampled from ``stranger_images`` (pass people who are in no other split, e.g.
      CelebA's test partition, whose identities are disjoint from its train partition).
    - Validation strangers (label "other", split ``val``): ``n_val_strangers`` paths sampled from
      ``val_stranger_images``, people in no training split either (e.g. CelebA's validation partition). The
      threshold and C are chosen on validation; without them validation holds only the people the model
      was trained against, and the choice says nothing about everyone else (a model trained against two
      people and 300 CelebA photos accepted 15% of strangers at its validation threshold).
    """

    me_dir: Path
    others_dir: Path | None = None
    celeba_images: Sequence[Path] = ()
    celeba_others: int = 200
    strangers_dir: Path | None = None
    stranger_images: Sequence[Path] = ()
    n_strangers: int = 0
    val_stranger_images: Sequence[Path] = ()
    n_val_strangers: int = 0

    def __post_init__(self) -> None:
        if self.others_dir is None and (not self.celeba_images or self.celeba_others < 1):
            raise ValueError("no 'other' photos: give others_dir, or celeba_images with celeba_others >= 1")


class _Gathering:
    """Scans and aligns photos into ``crops_dir``, collecting what is rejected (with its label) on the way;
    copies of one picture (same content hash) are aligned once."""

    def __init__(self, crops_dir: Path, cropper: FaceAligner, min_face_px: int, seed: int) -> None:
        self.crops_dir, self.cropper, self.min_face_px, self.seed = crops_dir, cropper, min_face_px, seed
        self.rejected: list[tuple[Rejected, str]] = []
        self._done: dict[str, list[Face] | str] = {}

    def scan(self, folder: Path | None, label: str, sample: Sequence[Path] = (), n: int = 0) -> list[Photo]:
        found: list[Photo] = []
        if folder is not None:
            photos, bad = scan_photos(Path(folder), label)
            self.rejected.extend((r, label) for r in bad)
            found += photos
        for path in (_sample_celeba(sample, n, self.seed) if sample and n > 0 else []):
            checked = check_photo(path, label)
            if isinstance(checked, Photo):
                found.append(checked)
            else:
                self.rejected.append((checked, label))
        return found

    def align(self, photos: list[Photo]) -> list[tuple[Photo, list[Face]]]:
        kept = []
        for photo in photos:
            result = _crop_photo(photo, self.crops_dir, self.cropper, self.min_face_px, self._done)
            if isinstance(result, list):
                kept.append((photo, result))
            else:
                self.rejected.append((Rejected(photo.path, result), photo.label))
        return kept

    def rejected_sorted(self) -> list[tuple[Rejected, str]]:
        """"me" photos first, then by path."""
        return sorted(self.rejected, key=lambda item: (item[1] != ME_LABEL, item[0].path.parts))


def prepare_photos(sources: PhotoSources, out_dir: Path, *, seed: int,
                   fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                   cropper: FaceAligner | None = None, min_face_px: int = MIN_JUDGED_FACE_PX) -> PhotoSet:
    """Scan, align and split the photos of ``sources``; write ``photos.csv``, ``rejected.csv`` and ``crops/``.

    - Undecodable and unsupported files are rejected with ``photos.scan_photos``' reason.
    - Every face of every photo, CelebA ones included, is aligned by ``cropper`` (default
      ``FaceAligner()``, its ``align_all``) into ``out_dir/crops/``; ``detector`` and ``confidence`` say
      what found the face. Faces narrower than ``min_face_px`` photo pixels are left out; a photo without
      a usable face is rejected with the reason ("no face found", "face too small to judge").
    - Several faces: an "other" photo gives one row per face; a "me" photo gives one ``candidate`` row
      per face, resolved later by ``face_choice.choose_faces`` (see the module docstring).
    - Splits: ``me.splits.assign_splits`` on the hash of the original file, so a photo keeps its
      split across runs and copies share one; every face of a photo is in the photo's split.
    - A stranger (or validation stranger) whose content is already in another split is left out.
    """
    out_dir = Path(out_dir)
    gather = _Gathering(out_dir / CROPS_DIR, cropper or FaceAligner(), min_face_px, seed)
    me_photos = gather.scan(Path(sources.me_dir), ME_LABEL)
    others = gather.scan(sources.others_dir, OTHER_LABEL, sources.celeba_images, sources.celeba_others)
    kept = gather.align(me_photos + others)
    splits = assign_splits([p for p, _ in kept], seed=seed, fractions=fractions, positive_label=ME_LABEL)
    for folder, images, n, split in ((sources.strangers_dir, sources.stranger_images, sources.n_strangers,
                                      STRANGERS_SPLIT),
                                     (None, sources.val_stranger_images, sources.n_val_strangers, "val")):
        used = {p.sha256.lower() for p, _ in kept}
        extra_photos = [(p, a) for p, a in gather.align(gather.scan(folder, OTHER_LABEL, images, n))
                        if p.sha256.lower() not in used]
        if extra_photos:
            extra = assign_splits([p for p, _ in extra_photos], seed=seed, fractions=fractions,
                                  positive_label=ME_LABEL)
            splits = pd.concat([splits, extra.assign(split=split)], ignore_index=True)
            kept += extra_photos
    table = _face_rows(splits.reset_index(drop=True), kept)
    rejected = gather.rejected_sorted()
    rejected_frame = pd.DataFrame([{"path": str(r.path), "label": label, "reason": r.reason}
                                   for r, label in rejected], columns=list(REJECTED_COLUMNS))
    write_with(out_dir / PHOTOS_CSV, lambda p: table.to_csv(p, index=False))
    write_with(out_dir / REJECTED_CSV, lambda p: rejected_frame.to_csv(p, index=False))
    return PhotoSet(table=table, rejected=[r for r, _ in rejected])


def load_photo_table(photos_csv: Path) -> pd.DataFrame:
    """Read a ``photos.csv`` written by :func:`prepare_photos` or ``face_choice`` (strings kept as strings;
    a file from before multi-face photos gets face 0 of 1, choice "only")."""
    table = pd.read_csv(photos_csv, dtype={"path": str, "crop_path": str, "label": str, "sha256": str,
                                           "split": str, "detector": str, "box": str, "choice": str})
    defaults = {"face": 0, "n_faces": 1, "box": "", "choice": CHOICE_ONLY, "similarity": float("nan")}
    table = table.assign(**{c: v for c, v in defaults.items() if c not in table.columns})
    return table.assign(box=table["box"].fillna(""))


def photo_test_set_digest(photos_csv: Path) -> str:
    """sha256 of the test photos (content hashes and labels): champions compare on the same test photos."""
    import hashlib

    table = load_photo_table(photos_csv)
    test = table.loc[table["split"] == "test", ["sha256", "label"]].sort_values(["sha256", "label"])
    return hashlib.sha256(test.to_csv(index=False).encode()).hexdigest()


def split_membership_digest(splits_csv: Path) -> str:
    """sha256 of the (image_id, split) pairs of a CelebA ``splits.csv``: what the CelebA samples of a photo
    set depend on (attribute values do not matter)."""
    import hashlib

    table = pd.read_csv(splits_csv, usecols=["image_id", "split"], dtype=str)
    return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()
