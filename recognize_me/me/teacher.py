"""The distillation teacher: a face-recognition embedding of CelebA images, computed once and cached.

The images are framed exactly as the pipeline frames the user's aligned photos: CelebA's aligned 178x218
images are already in the template's frame, so ``warp_to_template`` with the identity transform only fills
everything outside the face box (``fill="face_box"``). The default teacher is dlib's face-recognition ResNet
(the optional ``reference`` extra) with the face box as its face location; any function
``(frames uint8 (n, 218, 178, 3)) -> (n, d)`` can stand in (tests use a cheap one).

The embeddings are cached under ``cache_dir`` by the teacher's name and the images' contents (a changed or
added image is a new key), written atomically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from recognize_me.fileio import write_with
from recognize_me.me.align import warp_to_template
from recognize_me.runs import file_digest

Teacher = Callable[[np.ndarray], np.ndarray]  # filled frames (n, 218, 178, 3) uint8 -> embeddings (n, d)
CHUNK = 200  # at most this many images per worker call


def filled_frame(path: Path) -> np.ndarray:
    """A CelebA-aligned image, filled outside the face box as the pipeline fills its aligned photos."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return warp_to_template(rgb, np.eye(2, 3), "face_box")


def dlib_teacher(frames: np.ndarray) -> np.ndarray:
    """dlib's 128-d face-recognition embedding of each frame (``reference.face_box_encodings``), float32."""
    from recognize_me.me.reference import face_box_encodings

    return face_box_encodings(frames).astype(np.float32)


def _embed_chunk(paths: Sequence[Path], teacher: Teacher) -> np.ndarray:
    return np.asarray(teacher(np.stack([filled_frame(p) for p in paths])), dtype=np.float32)


def images_key(paths: Sequence[Path], teacher: Teacher) -> str:
    """sha256 over the teacher's name and every image's name and content, in order."""
    h = hashlib.sha256(f"{teacher.__module__}.{teacher.__qualname__}".encode())
    for path in paths:
        h.update(f"\0{Path(path).name}\0{file_digest(Path(path))}".encode())
    return h.hexdigest()


def chunked(paths: Sequence[Path], processes: int) -> list[Sequence[Path]]:
    """Consecutive chunks of at most ``CHUNK`` paths, at least ``processes`` of them when there are that many
    paths (a few hundred images are shared out evenly, not left to one process)."""
    size = max(1, min(CHUNK, -(-len(paths) // max(1, processes))))
    return [paths[i:i + size] for i in range(0, len(paths), size)]


def teacher_embeddings(paths: Sequence[Path], cache_dir: Path, teacher: Teacher = dlib_teacher,
                       processes: int = 2) -> np.ndarray:
    """``teacher``'s embedding of each image (float32, in ``paths`` order), from the cache when it holds them.

    ``processes`` > 1 embeds chunks of ``CHUNK`` images in that many spawned processes (``teacher`` must
    then be importable by name)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no images to embed")
    cached = Path(cache_dir) / f"teacher-{images_key(paths, teacher)[:24]}.npy"
    if cached.is_file():
        embeddings = np.load(cached)
        if len(embeddings) == len(paths):
            return embeddings
    chunks = chunked(paths, processes)
    work = partial(_embed_chunk, teacher=teacher)
    if processes > 1 and len(chunks) > 1:
        with get_context("spawn").Pool(min(processes, len(chunks))) as pool:
            parts = pool.map(work, chunks)
    else:
        parts = [work(chunk) for chunk in chunks]
    embeddings = np.concatenate(parts)
    write_with(cached, lambda p: np.save(p, embeddings), suffix=".npy")
    return embeddings


def teacher_missing() -> str | None:
    """None when the default teacher (dlib) is installed, else why the ``distilled`` strategy is skipped."""
    from recognize_me.me.reference import INSTALL_HINT, missing_reference_modules

    missing = missing_reference_modules()
    return f"distilled skipped: its teacher needs {', '.join(missing)}; {INSTALL_HINT}" if missing else None
