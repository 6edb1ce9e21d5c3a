"""Decode once: every image of ``splits.csv`` decoded, cropped and resized into one uint8 ``.npy`` file.

The folder ``<cache_root>/<key>/`` holds ``images.npy`` (N, H, W, 3) uint8, ``ids.json`` (the image ids in
row order) and ``meta.json``. The key is a digest of (data fingerprint, image ids, image size, crop), so a
change of data, size or crop makes a new folder and an unchanged rerun reuses the old one untouched.
The folder is written beside (``.tmp-*``) and renamed into place: a reader sees a complete folder or none.
Training processes read the rows they need with positional reads (``RowFile``): the OS page cache holds
one copy of the file for all of them, and as no process maps the file its RSS holds only the batches it
has read (a memory map would count every touched page in every process that maps it, once per mapping).
Pixels equal the JPEG path's (``dataset.decode_and_resize``).

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
from functools import cached_property
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
#: Disk and memory kept free beyond the array itself.
MARGIN_BYTES = 256 * 2**20


class DecodedCacheDoesNotFit(RuntimeError):
    """The array would not fit on disk or in memory; the caller falls back to reading the JPEGs."""


class RowFile:
    """Rows of a C-ordered ``.npy`` array, read by ``os.preadv`` into a new array on each ``[rows]``.

    Nothing is mapped and no file stays open between reads: ``reader[rows]`` opens the file, reads each
    row at its offset and closes it. Indexing takes an int or a 1-d sequence of ints, like a first-axis
    fancy index of the array.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(f)
            self.offset = f.tell()
        if fortran_order:
            raise ValueError(f"{self.path}: a Fortran-ordered array cannot be read by rows")
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        single = np.ndim(rows) == 0
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"{self.path}: row out of range for {len(self)} rows")
        rows = np.where(rows < 0, rows + len(self), rows)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i, row in enumerate(rows):
                got = os.preadv(fd, [out[i]], self.offset + int(row) * self.row_bytes)
                if got != self.row_bytes:
                    raise OSError(f"{self.path}: row {row} is truncated ({got} of {self.row_bytes} bytes)")
        finally:
            os.close(fd)
        return out[0] if single else out

    def write(self, rows: Sequence[int], values: np.ndarray) -> None:
        """Write ``values[i]`` into row ``rows[i]`` (positional writes; the file must be writable)."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for row, value in zip(rows, values, strict=True):
                os.pwrite(fd, value, self.offset + int(row) * self.row_bytes)
        finally:
            os.close(fd)

    @classmethod
    def create(cls, path: Path, shape: tuple[int, ...], dtype=np.uint8) -> RowFile:
        """A new ``.npy`` file of ``shape`` (header written, rows zero, space not yet used), to ``write``."""
        np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # unmapped when dropped
        return cls(path)


@dataclass(frozen=True)
class DecodedImages:
    """An opened cache folder: a row reader of its array and the row of each image id.

    Training and copying read through ``reader`` (positional reads, nothing mapped); ``images``, the whole
    array memory-mapped on first use, serves whole-array uses (tests, inspection)."""

    folder: Path
    ids: tuple[str, ...]
    reader: RowFile

    @classmethod
    def open(cls, folder: Path) -> DecodedImages:
        folder = Path(folder)
        ids = tuple(json.loads((folder / "ids.json").read_text(encoding="utf-8")))
        reader = RowFile(folder / "images.npy")
        if len(reader) != len(ids):
            raise ValueError(f"{folder}: images.npy has {len(reader)} rows but ids.json {len(ids)} ids")
        return cls(folder, ids, reader)

    @cached_property
    def images(self) -> np.ndarray:
        """(N, H, W, 3) uint8, memory-mapped read-only."""
        return np.load(self.folder / "images.npy", mmap_mode="r")

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
                     batch: int = 256, reuse: dict[int, tuple[RowFile, int]] | None = None) -> int:
    """Decode ``paths`` in order into ``target/images.npy`` (streamed by positional writes: never the whole
    array in memory, nothing mapped).

    ``reuse``: row -> (an earlier array's reader, its row) for images copied instead of decoded. Returns the
    number of images decoded."""
    import tensorflow as tf

    from recognize_me.data.dataset import decode_and_resize

    size = tuple(int(s) for s in image_size)
    reuse = reuse or {}
    out = RowFile.create(target / "images.npy", (len(paths), *size, 3))
    _copy_rows(reuse, out, batch)
    todo = [i for i in range(len(paths)) if i not in reuse]
    if todo:
        ds = tf.data.Dataset.from_tensor_slices([str(paths[i]) for i in todo])
        ds = ds.map(lambda p: decode_and_resize(p, size, crop), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True).batch(batch).prefetch(2)
        done = 0
        for chunk in ds.as_numpy_iterator():
            out.write(todo[done:done + len(chunk)], chunk)
            done += len(chunk)
    return len(todo)


def _copy_rows(reuse: dict[int, tuple[RowFile, int]], out: RowFile, batch: int) -> None:
    """Copy the reused rows, ``batch`` at a time per source file."""
    by_source: dict[Path, tuple[RowFile, list[tuple[int, int]]]] = {}
    for row, (source, source_row) in reuse.items():
        by_source.setdefault(source.path, (source, []))[1].append((row, source_row))
    for source, pairs in by_source.values():
        for start in range(0, len(pairs), batch):
            rows, source_rows = zip(*pairs[start:start + batch], strict=True)
            out.write(rows, source[list(source_rows)])


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
                  stats: list[list[int]]) -> dict[int, tuple[RowFile, int]]:
    """From the newest complete folder under ``cache_root`` decoded at this size and crop (with stats): row
    -> (its array's reader, its row) for every image whose file has not changed since."""
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
    out, reader = {}, previous.reader
    for row, (name, st) in enumerate(zip(image_ids, stats, strict=True)):
        old = where.get(name)
        if old is not None and old[1] == tuple(st) and st[0] >= 0:
            out[row] = (reader, old[0])
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
