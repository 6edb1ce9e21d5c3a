"""Image inventory: for every listed image, whether it exists, fully decodes, its size, mode and bytes.

Incremental with a ``cache`` file: each inspected image's row is kept with the file's (size, mtime) at that
time, and a later inventory of the same folder opens only the images that are new or whose size or mtime
changed (one ``scandir`` of the folder finds them); the others' rows are reused as they are.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

#: A plain file name: no path separators, no "..", no leading dot.
SAFE_ID = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9]+)?$")

MANIFEST_COLUMNS = ("image_id", "exists", "decodable", "width", "height", "mode", "bytes", "error")


def is_safe_id(image_id: str) -> bool:
    return bool(SAFE_ID.match(image_id))


def inspect_image(path: Path) -> tuple[bool, int, int, str, int, str]:
    """(decodable, width, height, mode, bytes, error) after a full decode; never raises."""
    try:
        size = path.stat().st_size
    except OSError as err:
        return False, -1, -1, "", -1, str(err)
    try:
        with Image.open(path) as img:
            limit = Image.MAX_IMAGE_PIXELS  # read per call, so callers (and tests) may change it
            if limit is not None and img.width * img.height > limit:
                # Pillow only warns between the limit and twice it; a bomb is never "decodable" here
                return (False, -1, -1, "", size,
                        f"DecompressionBombError: image too large ({img.width}x{img.height} = "
                        f"{img.width * img.height} pixels, Image.MAX_IMAGE_PIXELS is {limit})")
            img.load()  # full decode: truncated files fail here, not at open()
            return True, img.width, img.height, img.mode, size, ""
    except Exception as err:  # noqa: BLE001 - any decoder failure marks the image undecodable, never a crash
        return False, -1, -1, "", size, f"{type(err).__name__}: {err}"


def inventory_images(images_dir: Path, image_ids: Iterable[str], *, workers: int | None = None,
                     progress: bool = False, cache: Path | None = None) -> pd.DataFrame:
    """Manifest with one row per listed id (columns ``MANIFEST_COLUMNS``), decoded in parallel threads.

    Ids that are not plain file names are never opened: they get ``exists=False`` and an error.
    A listed-but-absent image has ``exists=False`` and ``error="absent"``. With ``cache`` (a CSV file,
    see ``inventory_cache_file``) only new or changed images are opened; ``frame.attrs["opened"]`` says how
    many were.
    """
    ids = [str(i) for i in image_ids]
    images_dir = Path(images_dir)
    present = _file_stats(images_dir)
    known = _read_cache(cache)
    rows: dict[str, tuple] = {}
    to_decode: list[str] = []
    for image_id in ids:
        if not is_safe_id(image_id):
            rows[image_id] = (False, False, -1, -1, "", -1, "unsafe id (not a plain file name)")
        elif image_id not in present:
            rows[image_id] = (False, False, -1, -1, "", -1, "absent")
        elif known.get(image_id, (None,))[0] == present[image_id]:
            rows[image_id] = known[image_id][1]
        else:
            to_decode.append(image_id)
    results = _decode_all(images_dir, to_decode, workers, progress)
    for image_id, (ok, w, h, mode, nbytes, err) in zip(to_decode, results, strict=True):
        rows[image_id] = (True, ok, w, h, mode, nbytes, err)
    frame = pd.DataFrame([(i, *rows[i]) for i in ids], columns=list(MANIFEST_COLUMNS))
    frame = frame.astype({"exists": bool, "decodable": bool, "width": "int64", "height": "int64",
                          "bytes": "int64", "mode": str, "error": str})
    if cache is not None and (to_decode or len(known) != len(present)):
        _write_cache(cache, frame, present)
    frame.attrs["opened"] = len(to_decode)
    return frame


def inventory_cache_file(cache_dir: Path, images_dir: Path) -> Path:
    """The inventory cache of ``images_dir`` under ``cache_dir`` (one file per folder and decoder limit)."""
    key = f"{Path(images_dir).resolve()}\0{Image.MAX_IMAGE_PIXELS}"
    return Path(cache_dir) / f"inventory-{hashlib.sha256(key.encode()).hexdigest()[:16]}.csv"


def _file_stats(images_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file in the folder, from one ``scandir`` (links followed)."""
    if not images_dir.is_dir():
        return {}
    out = {}
    with os.scandir(images_dir) as entries:
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:  # a dangling link: listed, not readable -> inspected (and reported) as it is
                out[entry.name] = (-1, -1)
                continue
            out[entry.name] = (int(st.st_size), int(st.st_mtime_ns))
    return out


def _read_cache(cache: Path | None) -> dict[str, tuple[tuple[int, int], tuple]]:
    """image_id -> ((size, mtime_ns) when inspected, manifest row without the id); {} when absent or
    unreadable (the cache is an optimisation: a damaged one costs a full inventory, never a wrong row)."""
    if cache is None or not Path(cache).is_file():
        return {}
    try:
        table = pd.read_csv(cache, dtype={"image_id": str, "mode": str, "error": str}, keep_default_na=False)
        return {r[0]: ((int(r[-2]), int(r[-1])), (bool(r[1]), bool(r[2]), int(r[3]), int(r[4]), r[5], int(r[6]),
                                                   r[7]))
                for r in table[[*MANIFEST_COLUMNS, "file_size", "file_mtime_ns"]].itertuples(index=False)}
    except (ValueError, KeyError, OSError):
        return {}


def _write_cache(cache: Path, frame: pd.DataFrame, stats: dict[str, tuple[int, int]]) -> None:
    from recognize_me.fileio import write_with

    kept = frame[frame["exists"]].copy()
    kept["file_size"] = [stats[i][0] for i in kept["image_id"]]
    kept["file_mtime_ns"] = [stats[i][1] for i in kept["image_id"]]
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    write_with(Path(cache), lambda p: kept.to_csv(p, index=False))


def _decode_all(images_dir: Path, ids: list[str], workers: int | None, progress: bool) -> list[tuple]:
    if not ids:
        return []
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    paths = [images_dir / i for i in ids]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(inspect_image, paths, chunksize=64)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(paths), desc="inventory", unit="img")
        return list(results)


def summarize_manifest(manifest: pd.DataFrame, examples: int = 5) -> dict[str, object]:
    """Counts and examples of absent / undecodable / unsafe images, for messages and reports."""
    absent = manifest[manifest["error"] == "absent"]
    unsafe = manifest[manifest["error"].str.startswith("unsafe")]
    broken = manifest[manifest["exists"] & ~manifest["decodable"]]
    return {
        "listed": len(manifest),
        "available": int((manifest["exists"] & manifest["decodable"]).sum()),
        "absent": len(absent),
        "absent_examples": absent["image_id"].head(examples).tolist(),
        "undecodable": len(broken),
        "undecodable_examples": [f"{r.image_id} ({r.error})" for r in broken.head(examples).itertuples()],
        "unsafe": len(unsafe),
        "unsafe_examples": unsafe["image_id"].head(examples).tolist(),
    }
