"""Decode once: every image of ``splits.csv`` decoded, cropped and resized into one uint8 ``.npy`` file.

The folder ``<cache_root>/<key>/`` holds ``images.npy`` (N, H, W, 3) uint8, ``ids.json`` (the image ids in
row order) and ``meta.json``. The key is a digest of (data fingerprint, image ids, image size, crop), so a
change of data, size or crop makes a new folder and an unchanged rerun reuses the old one untouched.
The folder is written beside (``.tmp-*``) and renamed into place: a reader sees a complete folder or none.
Several training processes open the same file with ``np.load(mmap_mode="r")`` and share the OS page
cache instead of holding one copy each. Pixels equal the JPEG path's (``dataset.decode_and_resize``).

Incremental: ``stats.json`` keeps each image's (size, mtime) when it was decoded, and a new folder (another
listing of the same folder at the same size and crop: an image added or removed) copies the rows of every
image whose file is unchanged from the newest such folder and decodes only the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
#: Disk and memory kept free beyond the array itself.
MARGIN_BYTES = 256 * 2**20


class DecodedCacheDoesNotFit(RuntimeError):
    """The array would not fit on disk or in memory; the caller falls back to reading the JPEGs."""


@dataclass(frozen=True)
class DecodedImages:
    """An opened cache folder: the memory-mapped array and the row of each image id."""

    folder: Path
    images: np.ndarray  # (N, H, W, 3) uint8, memory-mapped read-only
    ids: tuple[str, ...]

    @classmethod
    def open(cls, folder: Path) -> DecodedImages:
        folder = Path(folder)
        ids = tuple(json.loads((folder / "ids.json").read_text(encoding="utf-8")))
        images = np.load(folder / "images.npy", mmap_mode="r")
        if images.shape[0] != len(ids):
            raise ValueError(f"{folder}: images.npy has {images.shape[0]} rows but ids.json {len(ids)} ids")
        return cls(folder, images, ids)

    def rows(self, image_ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``image_ids``; ``KeyError`` naming the first id that is not in the cache."""
        index = {name: i for i, name in enumerate(self.ids)}
        missing = [i for i in image_ids if i not in index]
        if missing:
            raise KeyError(f"{self.folder}: image {missing[0]!r} is not in the decoded cache "
                           f"({len(missing)} missing)")
        return np.fromiter((index[i] for i in image_ids), dtype=np.int64, count=len(image_ids))


def cache_key(fingerprint: str, image_ids: Sequence[str], image_size: tuple[int, int], crop: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "data": fingerprint, "size": list(image_size), "crop": crop})
             .encode())
    h.update("\n".join(image_ids).encode())
    return h.hexdigest()[:32]


def array_bytes(n: int, image_size: tuple[int, int]) -> int:
    return int(n) * int(image_size[0]) * int(image_size[1]) * 3


def available_memory() -> int | None:
    """``MemAvailable`` from /proc/meminfo in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(size: int, folder: Path, memory: int | None = None, free_disk: int | None = None) -> None:
    """Raise ``DecodedCacheDoesNotFit`` naming the folder and the sizes when ``size`` bytes do not fit."""
    folder.mkdir(parents=True, exist_ok=True)
    free_disk = shutil.disk_usage(folder).free if free_disk is None else free_disk
    memory = available_memory() if memory is None else memory
    need = size + MARGIN_BYTES
    mib = 2**20
    if free_disk < need:
        raise DecodedCacheDoesNotFit(
            f"decoded images need {size / mib:.0f} MiB (+{MARGIN_BYTES // mib} MiB margin) but {folder} has "
            f"{free_disk / mib:.0f} MiB free; training reads the JPEGs instead (free disk space, lower "
            f"image_size or limit_images, or set decoded_cache=false to skip this check)")
    if memory is not None and memory < need:
        raise DecodedCacheDoesNotFit(
            f"decoded images need {size / mib:.0f} MiB (+{MARGIN_BYTES // mib} MiB margin) but only "
            f"{memory / mib:.0f} MiB of memory is available (or allowed by memory_limit_mb); training streams "
            f"the JPEGs instead, decoding every batch and caching nothing (lower image_size or limit_images to "
            f"train from the decoded array)")


def decode_to_folder(paths: Sequence[str], target: Path, image_size: tuple[int, int], crop: str,
                     batch: int = 256, reuse: dict[int, tuple[np.ndarray, int]] | None = None) -> int:
    """Decode ``paths`` in order into ``target/images.npy`` (streamed: never the whole array in memory).

    ``reuse``: row -> (an earlier array, its row) for images copied instead of decoded. Returns the number
    of images decoded."""
    import tensorflow as tf

    from recognize_me.data.dataset import decode_and_resize

    size = tuple(int(s) for s in image_size)
    reuse = reuse or {}
    out = np.lib.format.open_memmap(target / "images.npy", mode="w+", dtype=np.uint8,
                                    shape=(len(paths), *size, 3))
    for row, (source, source_row) in reuse.items():
        out[row] = source[source_row]
    todo = [i for i in range(len(paths)) if i not in reuse]
    if todo:
        ds = tf.data.Dataset.from_tensor_slices([str(paths[i]) for i in todo])
        ds = ds.map(lambda p: decode_and_resize(p, size, crop), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True).batch(batch).prefetch(2)
        done = 0
        for chunk in ds.as_numpy_iterator():
            out[todo[done:done + len(chunk)]] = chunk
            done += len(chunk)
    out.flush()
    del out
    return len(todo)


def file_stats(images_dir: Path, image_ids: Sequence[str]) -> list[list[int]]:
    """[size, mtime_ns] of each image file (``[-1, -1]`` when it cannot be read)."""
    out = []
    for i in image_ids:
        try:
            st = os.stat(Path(images_dir) / i)
            out.append([int(st.st_size), int(st.st_mtime_ns)])
        except OSError:
            out.append([-1, -1])
    return out


def reusable_rows(cache_root: Path, image_size: tuple[int, int], crop: str, image_ids: Sequence[str],
                  stats: list[list[int]]) -> dict[int, tuple[np.ndarray, int]]:
    """From the newest complete folder under ``cache_root`` decoded at this size and crop (with stats): row
    -> (its array, its row) for every image whose file has not changed since."""
    candidates = []
    for meta_path in Path(cache_root).glob("*/meta.json"):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (meta.get("version") == CACHE_VERSION and meta.get("image_size") == list(image_size)
                and meta.get("crop") == crop and (meta_path.parent / "stats.json").is_file()):
            candidates.append((meta_path.stat().st_mtime_ns, meta_path.parent))
    if not candidates:
        return {}
    folder = max(candidates)[1]
    try:
        previous = DecodedImages.open(folder)
        old_stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    where = {name: (row, tuple(st)) for row, (name, st) in enumerate(zip(previous.ids, old_stats, strict=True))}
    out = {}
    for row, (name, st) in enumerate(zip(image_ids, stats, strict=True)):
        old = where.get(name)
        if old is not None and old[1] == tuple(st) and st[0] >= 0:
            out[row] = (previous.images, old[0])
    return out


def ensure_decoded(cache_root: Path, fingerprint: str, image_ids: Sequence[str], images_dir: Path,
                   image_size: tuple[int, int], crop: str, memory_limit: int | None = None) -> tuple[Path, bool]:
    """The cache folder for these images (decoded now unless it already exists) and whether it was reused.

    Raises ``DecodedCacheDoesNotFit`` (before writing anything) when it would not fit on disk or in memory
    (the available memory, or ``memory_limit`` bytes when that is lower), also when it already exists.
    """
    image_ids = [str(i) for i in image_ids]
    key = cache_key(fingerprint, image_ids, image_size, crop)
    cache_root = Path(cache_root).resolve()
    folder = cache_root / key
    size = array_bytes(len(image_ids), image_size)
    if (folder / "meta.json").is_file():
        check_fits(size, cache_root, memory=_memory(memory_limit), free_disk=size + MARGIN_BYTES)
        return folder, True
    check_fits(size, cache_root, memory=_memory(memory_limit))
    stats = file_stats(images_dir, image_ids)
    reuse = reusable_rows(cache_root, image_size, crop, image_ids, stats)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache_root))
    try:
        decoded = decode_to_folder([str(Path(images_dir) / i) for i in image_ids], tmp, image_size, crop,
                                   reuse=reuse)
        (tmp / "ids.json").write_text(json.dumps(image_ids), encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps({
            "version": CACHE_VERSION, "data_fingerprint": fingerprint, "image_size": list(image_size),
            "crop": crop, "n": len(image_ids), "images_dir": str(images_dir), "decoded": decoded,
            "copied": len(reuse)}, indent=2), encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same folder first: keep theirs
            if not (folder / "meta.json").is_file():
                raise
            return folder, True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, False


def decode_splits(splits_csv: Path, cache_root: Path, fingerprint: str, images_dir: Path,
                  image_size: tuple[int, int], crop: str, memory_limit: int | None = None) -> tuple[Path, bool]:
    """``ensure_decoded`` for every image of ``splits.csv`` (train, val and test)."""
    import pandas as pd

    ids = pd.read_csv(splits_csv, dtype={"image_id": str}, usecols=["image_id"])["image_id"].tolist()
    return ensure_decoded(cache_root, fingerprint, ids, images_dir, image_size, crop, memory_limit)


def _memory(limit: int | None) -> int | None:
    """The memory the array may take: what is available, or ``limit`` bytes when lower."""
    available = available_memory()
    if limit is None:
        return available
    return limit if available is None else min(limit, available)
