"""Prepare the user's photo set for the "is this me?" model: scan, align, hash and split.

``prepare_photos`` turns ``me/`` (label "me") and ``others/`` (label "other") into CelebA-aligned
178x218 PNG crops under ``out_dir/crops/`` (``align.FaceAligner``: MTCNN landmarks onto CelebA's
template) plus a table saying which split each photo belongs to and which detector found its face.
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
from recognize_me.me.align import REASON_NO_FACE, FaceAligner
from recognize_me.me.photos import Photo, Rejected, check_photo, load_rgb, scan_photos
from recognize_me.me.splits import assign_splits

ME_LABEL = "me"
OTHER_LABEL = "other"
PHOTO_COLUMNS: tuple[str, ...] = ("path", "crop_path", "label", "sha256", "split", "width", "height",
                                  "decodable", "detector", "confidence")
STRANGERS_SPLIT = "strangers"
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "sha256", "split", "decodable", "width", "height",
                                     "crop_path")
REJECTED_COLUMNS: tuple[str, ...] = ("path", "label", "reason")
CROPS_DIR = "crops"
PHOTOS_CSV = "photos.csv"
REJECTED_CSV = "rejected.csv"


@dataclass
class PhotoSet:
    """``table``: one row per usable photo (columns ``PHOTO_COLUMNS``; ``path`` is the original file,
    ``crop_path`` the 178x218 image the models see, ``width``/``height`` the original's displayed size).
    ``rejected``: files that cannot be used, with the reason (undecodable, unsupported, no face...)."""

    table: pd.DataFrame
    rejected: list[Rejected] = field(default_factory=list)

    def to_manifest(self) -> pd.DataFrame:
        """The frame ``checks.check_photos`` expects (path, label, sha256, split, decodable, width,
        height; plus crop_path). Rejected files are not rows: they are listed in ``rejected.csv``."""
        return self.table.loc[:, list(MANIFEST_COLUMNS)].copy()

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {label: number of photos}} for every split and label (zeros included); ``strangers``
        only when there are any."""
        out: dict[str, dict[str, int]] = {}
        splits = ["train", "val", "test"] + ([STRANGERS_SPLIT] if (self.table["split"] == STRANGERS_SPLIT).any() else [])
        for split in splits:
            rows = self.table[self.table["split"] == split]
            out[split] = {label: int((rows["label"] == label).sum()) for label in (ME_LABEL, OTHER_LABEL)}
        return out


def _sample_celeba(images: Sequence[Path], n: int, seed: int) -> list[Path]:
    """``n`` paths drawn without replacement, independent of the order ``images`` came in."""
    pool = sorted({Path(p) for p in images}, key=lambda p: p.parts)
    if n >= len(pool):
        return pool
    chosen = random.Random(f"celeba-others:{int(seed)}").sample(pool, n)
    return sorted(chosen, key=lambda p: p.parts)


Aligned = tuple[Path, str | None, float | None]  # crop path, detector, confidence


def _crop_photo(photo: Photo, crops_dir: Path, cropper: FaceAligner,
                done: dict[str, Aligned | str]) -> Aligned | str:
    """Write the CelebA-aligned crop of ``photo``; return (its path, detector, confidence), or the reason
    there is none.

    ``done`` caches results by content hash, so copies of one picture are detected once.
    """
    key = photo.sha256.lower()
    if key in done:
        return done[key]
    try:
        image = load_rgb(photo.path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a rejection, never a crash
        result: Aligned | str = f"cannot decode image: {exc}"
    else:
        crop = cropper.crop(image)
        if crop.image is None:
            result = crop.reason or REASON_NO_FACE
        else:
            target = crops_dir / f"{key[:16]}.png"
            framed = crop.image
            write_with(target, lambda p: framed.save(p, format="PNG"), suffix=".png")
            result = (target, getattr(crop, "detector", None), getattr(crop, "confidence", None))
    done[key] = result
    return result


def prepare_photos(me_dir: Path, others_dir: Path | None, out_dir: Path, *, seed: int,
                   fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                   celeba_images: Sequence[Path] = (), celeba_others: int = 200,
                   cropper: FaceAligner | None = None, strangers_dir: Path | None = None,
                   stranger_images: Sequence[Path] = (), n_strangers: int = 0) -> PhotoSet:
    """Scan, align and split the photos; write ``photos.csv``, ``rejected.csv`` and ``crops/``.

    - ``me_dir`` (label "me") and ``others_dir`` (label "other") are scanned recursively with
      ``photos.scan_photos``; undecodable and unsupported files are rejected with its reason.
    - With ``others_dir=None`` the "other" photos are ``celeba_others`` paths sampled (seeded) from
      ``celeba_images``. ``ValueError`` if neither source of "other" photos is given.
    - Every photo, CelebA ones included, is aligned by ``cropper`` (default ``FaceAligner()``) into
      ``out_dir/crops/<sha256[:16]>.png``; ``detector`` and ``confidence`` say what found the face. A
      photo without a detectable face is rejected with the reason ("no face found").
    - Splits: ``me.splits.assign_splits`` on the hash of the original file, so a photo keeps its
      split across runs and copies share one.
    - Strangers (label "other", split ``strangers``): the photos under ``strangers_dir`` plus
      ``n_strangers`` paths sampled from ``stranger_images`` (pass people who are in no other split,
      e.g. CelebA's test partition, whose identities are disjoint from its train partition). A stranger
      whose content is already in another split is left out.
    """
    if others_dir is None and (not celeba_images or celeba_others < 1):
        raise ValueError("no 'other' photos: give others_dir, or celeba_images with celeba_others >= 1")
    out_dir = Path(out_dir)
    collector = _Collector(out_dir / CROPS_DIR, cropper or FaceAligner(), seed)
    me_photos = collector.scan(Path(me_dir), ME_LABEL, (), 0)
    others = collector.scan(others_dir, OTHER_LABEL, celeba_images if others_dir is None else (), celeba_others)
    kept = collector.align_all(me_photos + others)
    splits = assign_splits([p for p, _ in kept], seed=seed, fractions=fractions, positive_label=ME_LABEL)
    used = {p.sha256.lower() for p, _ in kept}
    strangers = [(p, a) for p, a in
                 collector.align_all(collector.scan(strangers_dir, OTHER_LABEL, stranger_images, n_strangers))
                 if p.sha256.lower() not in used]
    if strangers:
        extra = assign_splits([p for p, _ in strangers], seed=seed, fractions=fractions, positive_label=ME_LABEL)
        splits = pd.concat([splits, extra.assign(split=STRANGERS_SPLIT)], ignore_index=True)
        kept += strangers
    return _write_photo_set(out_dir, splits, kept, collector.rejected_rows)


class _Collector:
    """Scans and aligns photos for :func:`prepare_photos`, keeping what it rejected and the crops it made."""

    def __init__(self, crops_dir: Path, cropper: FaceAligner, seed: int) -> None:
        self.crops_dir, self.cropper, self.seed = crops_dir, cropper, seed
        self.rejected_rows: list[tuple[Rejected, str]] = []
        self.done: dict[str, Aligned | str] = {}

    def scan(self, folder: Path | None, label: str, sample: Sequence[Path], n: int) -> list[Photo]:
        """The readable photos under ``folder`` and ``n`` sampled (seeded) from ``sample``."""
        found: list[Photo] = []
        if folder is not None:
            photos, bad = scan_photos(Path(folder), label)
            self.rejected_rows.extend((r, label) for r in bad)
            found += photos
        for path in (_sample_celeba(sample, n, self.seed) if sample and n > 0 else []):
            checked = check_photo(path, label)
            if isinstance(checked, Photo):
                found.append(checked)
            else:
                self.rejected_rows.append((checked, label))
        return found

    def align_all(self, photos: list[Photo]) -> list[tuple[Photo, Aligned]]:
        """The photos in which a face was found, each with its aligned crop."""
        kept = []
        for photo in photos:
            result = _crop_photo(photo, self.crops_dir, self.cropper, self.done)
            if isinstance(result, tuple):
                kept.append((photo, result))
            else:
                self.rejected_rows.append((Rejected(photo.path, result), photo.label))
        return kept


def _write_photo_set(out_dir: Path, splits: pd.DataFrame, kept: list[tuple[Photo, Aligned]],
                     rejected_rows: list[tuple[Rejected, str]]) -> PhotoSet:
    """``photos.csv`` (the split table with crop, detector and confidence) and ``rejected.csv``."""
    splits.insert(1, "crop_path", [str(a[0]) for _, a in kept])
    splits["decodable"] = True
    splits["detector"] = [a[1] for _, a in kept]
    splits["confidence"] = [a[2] for _, a in kept]
    table = splits.loc[:, list(PHOTO_COLUMNS)].reset_index(drop=True)
    rejected_rows = sorted(rejected_rows, key=lambda item: (item[1] != ME_LABEL, item[0].path.parts))
    rejected = [r for r, _ in rejected_rows]
    rejected_frame = pd.DataFrame([{"path": str(r.path), "label": label, "reason": r.reason}
                                   for r, label in rejected_rows], columns=list(REJECTED_COLUMNS))
    write_with(out_dir / PHOTOS_CSV, lambda p: table.to_csv(p, index=False))
    write_with(out_dir / REJECTED_CSV, lambda p: rejected_frame.to_csv(p, index=False))
    return PhotoSet(table=table, rejected=rejected)


def load_photo_table(photos_csv: Path) -> pd.DataFrame:
    """Read a ``photos.csv`` written by :func:`prepare_photos` (strings kept as strings)."""
    return pd.read_csv(photos_csv, dtype={"path": str, "crop_path": str, "label": str, "sha256": str,
                                          "split": str, "detector": str})


def photo_test_set_digest(photos_csv: Path) -> str:
    """sha256 of the test photos (content hashes and labels): champions compare on the same test photos."""
    import hashlib

    table = load_photo_table(photos_csv)
    test = table.loc[table["split"] == "test", ["sha256", "label"]].sort_values(["sha256", "label"])
    return hashlib.sha256(test.to_csv(index=False).encode()).hexdigest()
