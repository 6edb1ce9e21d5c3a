"""Atomic writes: write beside the target, fsync, then rename, so readers never see half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is renamed onto ``target``.

    On any exception the temporary file is removed and ``target`` is left as it was.
    ``suffix`` keeps an extension some writers insist on (Keras wants ``.keras``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp",
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


def write_text(target: Path | str, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: Path | str, obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_with(target: Path | str, writer: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result onto ``target``."""
    with atomic_path(target, suffix=suffix) as tmp:
        writer(tmp)
    return Path(target)
