"""Find the user in a photo library: list the photos, key them by content, judge the new ones, remember.

A library scan (``recognize-me find`` / the ``find-me`` flow) is incremental: every photo is keyed by the
sha256 of its bytes (hashes are reused while a file's size and modification time are unchanged), and
each judged photo is stored under ``<out>/results/<model key>/<sha[:2]>/<sha>.json``. A rerun judges only
photos whose content (or the models) it has not seen. Photos are read, detected and judged in chunks,
so a library of any size never sits in memory; each stored result is written atomically as its chunk
finishes, so an interrupted scan resumes where it stopped.

Pure core: no Prefect. TensorFlow is imported when a chunk is judged.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recognize_me.fileio import write_json, write_with
from recognize_me.me.align import FaceAligner
from recognize_me.me.photos import SUPPORTED_SUFFIXES, walk_files
from recognize_me.me.predict import DEFAULT_MAX_SIDE, DetectedPhoto, FaceJudge, PredictorConfig, detect_photo
from recognize_me.runs import file_digest

HASH_INDEX = "hashes.json"
PLAN_JSON = "plan.json"
RESULTS_DIR = "results"
THUMBS_DIR = "thumbs"
THUMB_SIDE = 360
FIND_VERSION = "find-2"  # bump when what is stored per photo changes


@dataclass(frozen=True)
class LibraryPhoto:
    """One photo of the library: ``rel`` its path below the library folder, ``sha256`` of its bytes."""

    rel: str
    sha256: str


@dataclass(frozen=True)
class Skipped:
    """A file below the library folder that is not looked at, and why (unsupported, unreadable, link)."""

    rel: str
    reason: str


@dataclass(frozen=True)
class FindSpec:
    """What a scan judges with: the models (``predictor``), where results go, and the photo settings.
    ``near_miss``: photos whose most likely face reaches this probability (below the threshold) get a
    thumbnail for the contact sheet's near-miss section; default half the threshold."""

    predictor: PredictorConfig
    out_dir: Path
    max_side: int = DEFAULT_MAX_SIDE
    detect_max_side: int = 800
    near_miss: float | None = None

    @property
    def near_miss_floor(self) -> float:
        return self.predictor.threshold / 2 if self.near_miss is None else self.near_miss

    @functools.cached_property
    def model_key(self) -> str:
        """Changes whenever a stored answer could: the "is this me?" model file, its threshold, the photo
        settings (a scan judges "me" only; the attribute model is not used)."""
        p = self.predictor
        parts = [FIND_VERSION, file_digest(p.me_model), repr(p.threshold), repr(p.image_size), p.crop, repr(self.max_side),
                 repr(self.detect_max_side), repr(self.near_miss_floor)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    def result_path(self, sha256: str) -> Path:
        return self.out_dir / RESULTS_DIR / self.model_key / sha256[:2] / f"{sha256}.json"


def list_library(root: Path, exclude: Sequence[Path] = ()) -> tuple[list[Path], list[Skipped]]:
    """Every supported photo below ``root`` (recursive, sorted, directory links not followed), and every
    other file with the reason it is skipped. Folders in ``exclude`` (e.g. the scan's own output) and
    hidden files and folders (``.name``) are left out silently."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder not found: {root}")
    excluded = {Path(e).resolve() for e in exclude}
    photos: list[Path] = []
    skipped: list[Skipped] = []
    for path, rejected in walk_files(root):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or any(p in excluded for p in path.resolve().parents):
            continue
        if rejected is not None:
            skipped.append(Skipped(rel.as_posix(), rejected.reason))
        elif path.suffix.lower() not in SUPPORTED_SUFFIXES:
            skipped.append(Skipped(rel.as_posix(), f"unsupported format {path.suffix.lower() or '(no suffix)'}"))
        elif path.is_symlink() and not path.exists():
            skipped.append(Skipped(rel.as_posix(), "broken symlink"))
        else:
            photos.append(path)
    return sorted(photos, key=lambda p: p.parts), sorted(skipped, key=lambda s: s.rel.split("/"))


def hash_library(root: Path, photos: Sequence[Path], index_path: Path) -> tuple[list[LibraryPhoto], list[Skipped]]:
    """sha256 of every photo, reusing ``index_path``'s hash while a file's size and mtime are unchanged;
    the index is rewritten (atomically) with what was seen now. Unreadable files are skipped."""
    index_path = Path(index_path)
    try:
        known = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    seen: dict[str, list[Any]] = {}
    keyed: list[LibraryPhoto] = []
    skipped: list[Skipped] = []
    for path in photos:
        rel = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
            old = known.get(rel)
            digest = old[2] if old and old[:2] == [stat.st_size, stat.st_mtime_ns] else file_digest(path)
        except OSError as exc:
            skipped.append(Skipped(rel, f"cannot read file: {exc.strerror or exc}"))
            continue
        seen[rel] = [stat.st_size, stat.st_mtime_ns, digest]
        keyed.append(LibraryPhoto(rel, digest))
    write_json(index_path, seen)
    return keyed, skipped


def split_known(spec: FindSpec, photos: Sequence[LibraryPhoto]) -> tuple[list[LibraryPhoto], list[LibraryPhoto]]:
    """(photos whose content was already judged by these models, photos to judge: one per content)."""
    known, todo, queued = [], [], set()
    for photo in photos:
        if spec.result_path(photo.sha256).is_file():
            known.append(photo)
        elif photo.sha256 not in queued:
            queued.add(photo.sha256)
            todo.append(photo)
    return known, todo


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


@functools.lru_cache(maxsize=2)
def _judge_for(predictor: PredictorConfig) -> FaceJudge:
    """The loaded models, once per worker process (a chunk after the first reuses them)."""
    return predictor.load_judge(with_attributes=False)  # matches and the contact sheet need "me" only


def judge_chunk(spec: FindSpec, root: Path, chunk: Sequence[LibraryPhoto]) -> list[str]:
    """Detect and judge one chunk of photos; store each result (and, for found photos and near misses,
    a thumbnail). Returns the stored results' sha256s. A bad file is a stored result with its error."""
    aligner = FaceAligner(detect_max_side=spec.detect_max_side)
    detected = [detect_photo(Path(root) / photo.rel, aligner, spec.max_side) for photo in chunk]
    entries = _judge_for(spec.predictor).judge(detected)
    for photo, found, entry in zip(chunk, detected, entries, strict=True):
        entry["path"] = photo.rel
        entry["size"] = _photo_size(found)
        entry["thumbnail"] = _thumbnail(spec, photo.sha256, found, entry)
        write_json(spec.result_path(photo.sha256), entry)
    return [photo.sha256 for photo in chunk]


def _photo_size(found: DetectedPhoto) -> list[int] | None:
    if found.image is None:
        return None
    return [round(found.image.width * found.scale), round(found.image.height * found.scale)]


def _thumbnail(spec: FindSpec, sha256: str, found: DetectedPhoto, entry: dict[str, Any]) -> str | None:
    p = entry.get("me_probability")
    if found.image is None or p is None or p < spec.near_miss_floor:
        return None
    thumb = found.image.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    rel = f"{THUMBS_DIR}/{sha256[:16]}.jpg"
    write_with(spec.out_dir / rel, lambda tmp: thumb.save(tmp, format="JPEG", quality=85), suffix=".jpg")
    return rel


def load_results(spec: FindSpec, photos: Sequence[LibraryPhoto]) -> list[dict[str, Any]]:
    """The stored result of every photo, under its own path (copies of one picture share a result)."""
    out = []
    for photo in photos:
        entry = json.loads(spec.result_path(photo.sha256).read_text(encoding="utf-8"))
        out.append({**entry, "path": photo.rel, "sha256": photo.sha256})
    return out


@dataclass(frozen=True)
class ScanPlan:
    """A scan of ``root``: every photo (content-keyed), the files skipped, and the chunks left to judge."""

    root: Path
    photos: tuple[LibraryPhoto, ...]
    skipped: tuple[Skipped, ...]
    chunks: tuple[tuple[LibraryPhoto, ...], ...]

    @property
    def to_judge(self) -> int:
        return sum(len(c) for c in self.chunks)


def plan_scan(root: Path, spec: FindSpec, chunk_size: int = 16, workers: int = 1) -> ScanPlan:
    """List and hash the library (the hash index lives in ``spec.out_dir``), and chunk what is new; the
    plan is also written to ``<out>/plan.json`` (:func:`read_plan`), so a flow can pass its path around
    instead of thousands of entries. Chunks hold at most ``chunk_size`` photos, fewer when that keeps all
    ``workers`` busy."""
    root = Path(root)
    files, skipped = list_library(root, exclude=[spec.out_dir])
    photos, unreadable = hash_library(root, files, spec.out_dir / HASH_INDEX)
    _, todo = split_known(spec, photos)
    size = max(1, min(chunk_size, -(-len(todo) // max(1, workers))))  # a small library still uses every worker
    plan = ScanPlan(root, tuple(photos), tuple(skipped + unreadable), tuple(tuple(c) for c in chunked(todo, size)))
    write_json(spec.out_dir / PLAN_JSON, {"root": str(root), "photos": [[p.rel, p.sha256] for p in plan.photos],
                                          "skipped": [[s.rel, s.reason] for s in plan.skipped],
                                          "chunks": [[[p.rel, p.sha256] for p in c] for c in plan.chunks]})
    return plan


def read_plan(path: Path) -> ScanPlan:
    """The plan :func:`plan_scan` wrote."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return ScanPlan(Path(raw["root"]), tuple(LibraryPhoto(*p) for p in raw["photos"]),
                    tuple(Skipped(*s) for s in raw["skipped"]),
                    tuple(tuple(LibraryPhoto(*p) for p in c) for c in raw["chunks"]))


def progress_line(done: int, total: int, elapsed_s: float) -> str:
    """``"120/1000 photos, 4.10 photos/s, about 3 min 35 s left"``."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    left = (total - done) / rate if rate > 0 else None
    eta = "" if left is None else f", about {int(left // 60)} min {int(left % 60)} s left"
    return f"{done}/{total} photos, {rate:.2f} photos/s{eta}"


def default_out_dir(photos_dir: Path, output_root: Path = Path("artifacts")) -> Path:
    """``<output_root>/find/<folder name>-<8 hex of its absolute path>``: one scan folder per library."""
    resolved = Path(photos_dir).resolve()
    return Path(output_root) / "find" / f"{resolved.name or 'root'}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"
