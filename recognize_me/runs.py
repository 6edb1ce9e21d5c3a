"""Run folders, data fingerprints and provenance (package versions)."""

from __future__ import annotations

import hashlib
import os
import platform
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from recognize_me import __version__


def new_run_name(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def create_run_dir(output_root: Path, run_name: str | None) -> Path:
    """A fresh folder per run; an explicit ``run_name`` reuses its folder (that is how a rerun resumes).

    Generated names are created with ``exist_ok=False``, so two runs never share a folder.
    """
    root = Path(output_root)
    root.mkdir(parents=True, exist_ok=True)
    if run_name is not None:
        path = root / run_name
        path.mkdir(exist_ok=True)
        return path.resolve()
    while True:
        path = root / new_run_name()
        try:
            path.mkdir()
            return path.resolve()
        except FileExistsError:
            continue


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def data_fingerprint(files: Iterable[Path | None], config_json: str, extra: Iterable[str] = ()) -> str:
    """sha256 over the annotation files' contents, the image manifest digest, the config and code version."""
    h = hashlib.sha256()
    for path in files:
        h.update(b"\0" if path is None else file_digest(Path(path)).encode())
    for item in extra:
        h.update(item.encode())
    h.update(config_json.encode())
    h.update(__version__.encode())
    return h.hexdigest()


def folder_signature(folder: Path) -> str:
    """sha256 over (name, size, mtime) of a folder's files: changes when an image is added, replaced or removed.

    Cheap (one ``scandir``), so it can key caches; contents are not read.
    """
    h = hashlib.sha256()
    folder = Path(folder)
    if folder.is_dir():
        entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_file())
        for name, size, mtime in entries:
            h.update(f"{name}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def write_run_config(run_dir: Path, config_json: str, fingerprint: str, versions: dict[str, str]) -> Path:
    """``config.json`` of the run: resolved config, seed, data fingerprint and package versions."""
    import json

    from recognize_me.fileio import write_json

    config = json.loads(config_json)
    return write_json(Path(run_dir) / "config.json", {"config": config, "seed": config.get("seed"),
                                                       "data_fingerprint": fingerprint,
                                                       "package_versions": versions})


#: The distributions whose versions every run and model folder records.
PIPELINE_PACKAGES = ("recognize-me", "tensorflow-cpu", "tensorflow", "keras", "prefect", "great-expectations",
                     "pandas", "numpy", "pillow")


def package_versions(packages: Iterable[str] = PIPELINE_PACKAGES) -> dict[str, str]:
    """Installed version of each of ``packages`` (absent ones left out), plus ``python``."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out
