"""Builders of tiny synthetic CelebA-format files for the tests (no real CelebA data).

A plain helper module: test files import it (``from celeba_fixtures import ...``); pytest puts the
``tests`` folder on ``sys.path`` because it has no ``__init__.py``.

Rows are ``(image_id, values)`` with ``values`` one entry per attribute: an ``int`` is a 0/1 label
(written as -1/1 in the "pm1" encoding, as is in "01"; any other int such as 2 is written unchanged),
a ``str`` is written verbatim (for malformed files).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from recognize_me.data.attributes import CELEBA_ATTRIBUTES

Value = int | str
Row = tuple[str, Sequence[Value]]

ALIGNED_SIZE = (178, 218)  # (width, height) of aligned CelebA images


def image_ids(n: int, start: int = 1) -> list[str]:
    """Official-style ids ``000001.jpg``, ``000002.jpg``..."""
    return [f"{i:06d}.jpg" for i in range(start, start + n)]


def make_rows(n: int = 6, attributes: Sequence[str] = CELEBA_ATTRIBUTES, seed: int = 0) -> list[Row]:
    """``n`` rows of seeded random 0/1 labels; every attribute column holds both a 0 and a 1 (n >= 2)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2, size=(n, len(attributes)))
    if n >= 2:
        values[0, :] = 0
        values[1, :] = 1
    return [(image_id, [int(v) for v in row]) for image_id, row in zip(image_ids(n), values, strict=True)]


def rows_frame(rows: Iterable[Row], attributes: Sequence[str] = CELEBA_ATTRIBUTES) -> pd.DataFrame:
    """The frame ``read_attribute_file`` should return for these (integer) rows: image_id + int8 columns."""
    rows = list(rows)
    frame = pd.DataFrame([list(v) for _, v in rows], columns=list(attributes)).astype(np.int8)
    frame.insert(0, "image_id", [i for i, _ in rows])
    return frame


def _encode(value: Value, encoding: str) -> str:
    if isinstance(value, str):
        return value
    if encoding == "pm1" and value == 0:
        return "-1"
    return str(value)


def _write_lines(path: Path, lines: Iterable[str], crlf: bool) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    eol = "\r\n" if crlf else "\n"
    path.write_bytes("".join(line + eol for line in lines).encode("utf-8"))
    return path


def write_official_attr_file(path: Path, rows: Iterable[Row], count: int | None = None, crlf: bool = True, *,
                             count_line: bool = True, attributes: Sequence[str] = CELEBA_ATTRIBUTES,
                             encoding: str = "pm1", header_image_id: bool = False) -> Path:
    """``list_attr_celeba.txt`` as distributed: a count line (``count``, default the number of rows;
    left out with ``count_line=False``), a header of names with a trailing space (prefixed with
    ``image_id`` when ``header_image_id``), then ``000001.jpg -1  1  1 -1 ...`` (each value right-aligned
    in two characters, so runs of spaces), CRLF line endings unless ``crlf=False``.
    """
    rows = list(rows)
    lines = []
    if count_line:
        lines.append(str(len(rows) if count is None else count))
    lines.append(("image_id " if header_image_id else "") + " ".join(attributes) + " ")
    for image_id, values in rows:
        lines.append(image_id + " " + " ".join(f"{_encode(v, encoding):>2}" for v in values))
    return _write_lines(path, lines, crlf)


def write_csv_attr_file(path: Path, rows: Iterable[Row], *, attributes: Sequence[str] = CELEBA_ATTRIBUTES,
                        encoding: str = "pm1", index_column: bool = False) -> Path:
    """Kaggle-style ``list_attr_celeba.csv`` (``image_id,<names>``, -1/1 by default); with ``index_column``
    a pandas export whose first column is the unnamed index (read back as ``Unnamed: 0``)."""
    rows = list(rows)
    frame = pd.DataFrame([[_encode(v, encoding) for v in values] for _, values in rows], columns=list(attributes))
    frame.insert(0, "image_id", [i for i, _ in rows])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=index_column)
    return path


def write_partition_file(path: Path, partition: Mapping[str, int | str], *, csv: bool = False,
                         crlf: bool = True) -> Path:
    """``list_eval_partition.txt`` (``000001.jpg 0``) or, with ``csv``, ``image_id,partition``."""
    if csv:
        return _write_lines(path, ["image_id,partition", *(f"{i},{p}" for i, p in partition.items())], crlf)
    return _write_lines(path, [f"{i} {p}" for i, p in partition.items()], crlf)


def write_identity_file(path: Path, identity: Mapping[str, int | str], *, csv: bool = False,
                        crlf: bool = True) -> Path:
    """``identity_CelebA.txt`` (``000001.jpg 2880``) or, with ``csv``, ``image_id,identity_id``."""
    if csv:
        return _write_lines(path, ["image_id,identity_id", *(f"{i},{p}" for i, p in identity.items())], crlf)
    return _write_lines(path, [f"{i} {p}" for i, p in identity.items()], crlf)


def synthetic_image(size: tuple[int, int] = ALIGNED_SIZE, colour: tuple[int, int, int] = (120, 90, 60),
                    seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth synthetic picture (a gradient plus a coloured block), ``size`` = (width, height)."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), np.full_like(x, 128)], axis=-1)
    arr = (0.5 * base + 0.5 * np.array(colour)).astype(np.uint8)
    top, left = int(rng.integers(0, max(h // 2, 1))), int(rng.integers(0, max(w // 2, 1)))
    arr[top:top + h // 4, left:left + w // 4] = colour
    img = Image.fromarray(arr, "RGB")
    return img.convert(mode) if mode != "RGB" else img


def write_images(directory: Path, ids: Iterable[str], size: tuple[int, int] = ALIGNED_SIZE,
                 quality: int = 90) -> list[Path]:
    """One synthetic JPEG (or PNG, by suffix) per id in ``directory``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image_id in enumerate(ids):
        path = directory / image_id
        img = synthetic_image(size, colour=(40 * k % 256, 255 - 30 * k % 256, 90), seed=k)
        if path.suffix.lower() == ".png":
            img.save(path, format="PNG")
        else:
            img.save(path, format="JPEG", quality=quality)
        paths.append(path)
    return paths


def write_tiny_celeba(root: Path, n: int = 6, *, rows: Sequence[Row] | None = None, seed: int = 0,
                      with_identity: bool = True, images: bool = True) -> list[Row]:
    """A complete official-layout dataset in ``root``: ``list_attr_celeba.txt`` (all 40 attributes),
    ``list_eval_partition.txt`` (ids cycle train/val/test... mostly train), ``identity_CelebA.txt`` and
    ``img_align_celeba/`` with a 178x218 JPEG per row. Returns the rows written."""
    root = Path(root)
    rows = list(rows) if rows is not None else make_rows(n, seed=seed)
    ids = [i for i, _ in rows]
    write_official_attr_file(root / "list_attr_celeba.txt", rows)
    partition = {i: (0 if k % 3 != 2 else (1 if k % 6 == 2 else 2)) for k, i in enumerate(ids)}
    write_partition_file(root / "list_eval_partition.txt", partition)
    if with_identity:
        write_identity_file(root / "identity_CelebA.txt", {i: 1 + k // 2 for k, i in enumerate(ids)})
    if images:
        write_images(root / "img_align_celeba", ids)
    return rows


# --- broken and unusual images -------------------------------------------------------------------

BROKEN_IMAGE_KINDS = ("zero_byte", "truncated", "not_an_image")


def write_broken_image(path: Path, kind: str) -> Path:
    """A file named like an image that does not decode: ``zero_byte`` (empty), ``truncated`` (the first
    half of a valid JPEG) or ``not_an_image`` (text)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        buffer = io.BytesIO()
        synthetic_image().save(buffer, format="JPEG", quality=90)
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "not_an_image":
        path.write_text("this is not an image\n")
    else:
        raise ValueError(f"unknown broken image kind {kind!r}; known: {BROKEN_IMAGE_KINDS}")
    return path


def write_image(path: Path, size: tuple[int, int] = ALIGNED_SIZE, mode: str = "RGB", seed: int = 0) -> Path:
    """One synthetic image of ``size`` (width, height) in Pillow ``mode``; JPEG by default, PNG for a
    ``.png`` suffix or a mode JPEG cannot hold (RGBA, LA, P with transparency)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = synthetic_image(size, seed=seed, mode=mode)
    fmt = "PNG" if path.suffix.lower() == ".png" or mode in {"RGBA", "LA", "PA"} else "JPEG"
    img.save(path, format=fmt)
    return path


# --- a tiny training job (splits.csv + images), for train_one in a fresh process ------------------------

JOB_ATTRIBUTES = ("Male", "Smiling", "Young")


def write_training_job(root: Path, n: int = 90, size: tuple[int, int] = (32, 32),
                       attributes: Sequence[str] = JOB_ATTRIBUTES, seed: int = 0) -> tuple[Path, Path]:
    """``root/splits.csv`` (2/3 train, 1/6 val, 1/6 test; seeded 0/1 labels) and ``root/img/`` with one
    ``size`` JPEG per row. Returns ``(splits_csv, images_dir)``."""
    root = Path(root)
    ids = image_ids(n)
    write_images(root / "img", ids, size=size)
    n_train, n_val = 2 * n // 3, n // 6
    table = pd.DataFrame({"image_id": ids,
                          "split": ["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val)})
    rng = np.random.default_rng(seed)
    for name in attributes:
        table[name] = rng.integers(0, 2, n)
    table.to_csv(root / "splits.csv", index=False)
    return root / "splits.csv", root / "img"


TRAIN_ONE_SCRIPT = r"""
import json, sys
from pathlib import Path
from recognize_me.training.train import TrainJob, train_one

spec = json.loads(sys.argv[1])
hook_log = Path(spec.pop("hook_log"))
paths = {k: Path(spec[k]) for k in ("run_dir", "splits_csv", "images_dir")}
job = TrainJob(**{**spec, **paths, "attributes": tuple(spec["attributes"]), "image_size": tuple(spec["image_size"])})

def hook(model, epoch, epochs, logs):
    with open(hook_log, "a") as f:
        f.write(json.dumps({"epoch": epoch, "epochs": epochs}) + "\n")

train_one(job, on_epoch=hook)
"""


def train_one_command(run_dir: Path, splits_csv: Path, images_dir: Path, hook_log: Path, *,
                      model: str = "baseline_cnn", epochs: int = 3, seed: int = 5,
                      attributes: Sequence[str] = JOB_ATTRIBUTES, image_size: tuple[int, int] = (32, 32),
                      batch_size: int = 16, **job_fields: Any) -> list[str]:
    """argv running ``training.train_one`` for a tiny job in a fresh Python process; the epoch hook appends
    ``{"epoch": <1-based>, "epochs": N}`` lines to ``hook_log``. The job's folder is
    ``run_dir/models/<model>``; ``job_fields``: further ``TrainJob`` fields (JSON values)."""
    import json
    import sys

    spec = dict(model=model, run_dir=str(run_dir), splits_csv=str(splits_csv), images_dir=str(images_dir),
                attributes=list(attributes), image_size=list(image_size), crop="none", epochs=epochs,
                batch_size=batch_size, seed=seed, threads=1, hook_log=str(hook_log), **job_fields)
    return [sys.executable, "-c", TRAIN_ONE_SCRIPT, json.dumps(spec)]


def kill_when(argv: list[str], ready: Callable[[], bool], deadline_s: float = 600.0) -> int:
    """Start ``argv``, SIGKILL it as soon as ``ready()`` holds (polled every 20 ms; it must hold before the
    process ends and within ``deadline_s``); returns the return code (``-SIGKILL``)."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + deadline_s
        while not ready():
            assert proc.poll() is None, f"the process ended (rc {proc.returncode}) before it was ready"
            assert time.monotonic() < deadline, "not ready within the deadline"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return proc.returncode
