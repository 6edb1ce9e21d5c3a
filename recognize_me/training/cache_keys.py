"""Cache keys of the pipeline's steps: each key holds exactly what its step reads.

A job's key is a sha256 over its dataclass fields, minus the fields that only say where it runs
(output folders, thread counts, test hooks), with every input file replaced by a digest of what is in
it. New fields of a job are part of its key unless they are named in its ``exclude`` set, so a new
hyperparameter can never be silently ignored by the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from recognize_me.runs import file_digest

Digest = Callable[[Path], str]


def job_key(job: Any, *, exclude: Iterable[str] = (), digests: Mapping[str, Digest] | None = None,
            extra: Mapping[str, str] | None = None) -> str:
    """sha256 of ``job``'s fields without ``exclude``; a Path field becomes ``digests[name](path)`` (default:
    the file's content digest), so moving an input changes nothing and editing it changes the key."""
    if not is_dataclass(job):
        raise TypeError(f"job_key needs a dataclass instance, got {type(job).__name__}")
    skip, digests = set(exclude), dict(digests or {})
    values: dict[str, Any] = {}
    for name, value in asdict(job).items():
        if name in skip:
            continue
        if isinstance(value, Path):
            value = digests.get(name, file_digest)(value)
        values[name] = value
    values["__inputs__"] = dict(extra or {})
    values["__job__"] = type(job).__name__
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def files_signature(folder: Path, names: Iterable[str]) -> str:
    """sha256 over (name, size, mtime) of the listed files in ``folder`` (a missing file counts as absent).

    One ``stat`` per file: cheap enough for a cache key, and it changes when a listed image is replaced.
    """
    h = hashlib.sha256()
    for name in sorted(names):
        try:
            st = os.stat(Path(folder) / name)
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{name}\0absent\n".encode())
    return h.hexdigest()


def tree_signature(folder: Path | None) -> str:
    """sha256 over (relative path, size, mtime) of every file under ``folder``, sub-folders included."""
    h = hashlib.sha256()
    if folder is None:
        return h.hexdigest()
    root = Path(folder)
    entries = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            st = path.stat()
            entries.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    for rel, size, mtime in sorted(entries):
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def photo_set_digest(photos_csv: Path) -> str:
    """sha256 over (label, split, content digest of the cropped image) of every photo in ``photos.csv``:
    what a transfer job reads, independent of the run folder the crops were written to."""
    import pandas as pd

    table = pd.read_csv(photos_csv, usecols=["crop_path", "label", "split"], dtype=str)
    rows = sorted(f"{label}\0{split}\0{file_digest(Path(crop))}"
                  for crop, label, split in table.itertuples(index=False))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


#: TrainJob fields that say where or how a job runs, not what it learns.
TRAIN_NOT_IN_KEY = frozenset({"run_dir", "splits_csv", "images_dir", "threads", "fault_exit_epoch", "context",
                              "decoded", "deadline"})
#: TransferJob fields that say where or how a job runs, not what it learns.
TRANSFER_NOT_IN_KEY = frozenset({"out_dir", "threads"})
#: Bumped whenever how a strategy fits changes, so that a cached transfer of the old recipe is not reused
#: (2: the logistic strategies choose C and the threshold out-of-fold over train+val and refit on both).
TRANSFER_RECIPE = 2


def train_job_key(job: Any) -> str:
    """CelebA training: the splits (image ids, splits and labels), the listed images, the hyperparameters."""
    import pandas as pd

    ids = pd.read_csv(job.splits_csv, usecols=["image_id"], dtype=str)["image_id"]
    return job_key(job, exclude=TRAIN_NOT_IN_KEY,
                   extra={"splits": file_digest(Path(job.splits_csv)),
                          "images": files_signature(Path(job.images_dir), ids)})


def transfer_job_key(job: Any) -> str:
    """Transfer: the base model file, the photo set, the hyperparameters (every other TransferJob field), the
    recipe version."""
    return job_key(job, exclude=TRANSFER_NOT_IN_KEY, digests={"photos_csv": photo_set_digest},
                   extra={"recipe": str(TRANSFER_RECIPE)})
