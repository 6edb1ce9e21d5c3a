"""recognize_me.data.decoded_cache: decode once, reuse across processes and reruns, a new key when the data
changes, a clear refusal when it does not fit; the array-backed dataset gives the JPEG path's batches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from celeba_fixtures import write_training_job

pytest.importorskip("tensorflow")

from recognize_me.data.dataset import make_array_dataset, make_dataset  # noqa: E402
from recognize_me.data.decoded_cache import (  # noqa: E402
    DecodedCacheDoesNotFit,
    DecodedImages,
    check_fits,
    decode_splits,
)
from recognize_me.runs import folder_signature  # noqa: E402

SIZE = (16, 12)
ATTRS = ["Male", "Smiling", "Young"]


@pytest.fixture()
def job(tmp_path: Path) -> tuple[Path, Path]:
    return write_training_job(tmp_path / "data", n=30)


def _decode(job: tuple[Path, Path], root: Path) -> tuple[Path, bool]:
    splits_csv, images = job
    return decode_splits(splits_csv, root, folder_signature(images), images, SIZE, "square")


def test_array_batches_equal_jpeg_batches(job, tmp_path: Path) -> None:
    import tensorflow as tf

    splits_csv, images = job
    folder, reused = _decode(job, tmp_path / "cache")
    assert not reused
    cache = DecodedImages.open(folder)
    table = pd.read_csv(splits_csv, dtype={"image_id": str})
    ids, labels = table["image_id"].tolist(), table[ATTRS].to_numpy(np.float32)
    assert cache.images.shape == (len(ids), *SIZE, 3) and isinstance(cache.images, np.memmap)
    for epoch in (0, 3):
        var = tf.Variable(epoch, dtype=tf.int64)
        kw = dict(batch_size=7, shuffle=True, augment_flip=True, seed=4, epoch=var)
        jpeg = list(make_dataset([str(images / i) for i in ids], labels, image_size=SIZE, **kw))
        array = list(make_array_dataset(cache.images, cache.rows(ids), labels, **kw))
        assert len(jpeg) == len(array) == 5
        for (xa, ya), (xb, yb) in zip(jpeg, array, strict=True):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    with pytest.raises(KeyError, match="nope.jpg"):
        cache.rows(["nope.jpg"])


def test_row_file_reads_rows_like_the_array_and_maps_nothing(job, tmp_path: Path) -> None:
    from recognize_me.data.dataset import array_loader
    from recognize_me.data.decoded_cache import RowFile

    folder, _ = _decode(job, tmp_path / "cache")
    reader = DecodedImages.open(folder).reader
    whole = np.load(folder / "images.npy")  # read into memory, not mapped
    n = len(whole)
    assert reader.shape == whole.shape and len(reader) == n
    np.testing.assert_array_equal(reader[[3, 0, 3, n - 1]], whole[[3, 0, 3, n - 1]])
    np.testing.assert_array_equal(reader[-1], whole[-1])
    assert reader[np.array([], dtype=np.int64)].shape == (0, *whole.shape[1:])
    with pytest.raises(IndexError, match="images.npy"):
        reader[[n]]
    rows = np.array([5, 1, 7, 2, 9])
    from_file = [x.numpy() for x, _ in array_loader(reader, rows)(_positions(5), 2)]
    from_array = [x.numpy() for x, _ in array_loader(whole, rows)(_positions(5), 2)]
    assert len(from_file) == 3 and all(np.array_equal(a, b) for a, b in zip(from_file, from_array, strict=True))
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(folder / "images.npy") not in maps.read_text()
    # a file cut short names the row it could not read
    short = tmp_path / "short.npy"
    short.write_bytes((folder / "images.npy").read_bytes()[:-10])
    with pytest.raises(OSError, match=rf"short.npy: row {n - 1} is truncated"):
        RowFile(short)[n - 1]


def _positions(n: int):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.int64))


def test_rerun_reuses_the_folder_untouched_and_a_data_change_makes_a_new_one(job, tmp_path: Path) -> None:
    _, images = job
    first, reused = _decode(job, tmp_path / "cache")
    mtime = (first / "images.npy").stat().st_mtime_ns
    again, reused_again = _decode(job, tmp_path / "cache")
    assert (again, reused, reused_again) == (first, False, True)
    assert (first / "images.npy").stat().st_mtime_ns == mtime
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp-")]

    before = DecodedImages.open(first).images[0].copy()
    one = sorted(images.iterdir())[0]
    from PIL import Image

    Image.new("RGB", (178, 218), (250, 10, 10)).save(one, format="JPEG")  # the same file, new pixels
    changed, reused_changed = _decode(job, tmp_path / "cache")
    assert changed != first and not reused_changed
    assert not np.array_equal(DecodedImages.open(changed).images[0], before)
    assert json.loads((changed / "meta.json").read_text())["image_size"] == list(SIZE)


def test_too_big_is_refused_before_writing_with_the_sizes(tmp_path: Path) -> None:
    with pytest.raises(DecodedCacheDoesNotFit, match=r"MiB free.*reads the JPEGs"):
        check_fits(10 * 2**20, tmp_path, memory=2**40, free_disk=2**20)
    with pytest.raises(DecodedCacheDoesNotFit, match="of memory is available"):
        check_fits(10 * 2**20, tmp_path, memory=2**20, free_disk=2**40)
    check_fits(10 * 2**20, tmp_path, memory=2**40, free_disk=2**40)


def test_decode_task_falls_back_to_jpeg_when_it_does_not_fit(job, tmp_path: Path, monkeypatch) -> None:
    from prefect.logging import disable_run_logger

    import recognize_me.data.decoded_cache as dc
    from recognize_me.config import PipelineConfig
    from tasks.data import decode_images

    splits_csv, images = job
    config = PipelineConfig(celeba_dir=tmp_path, output_root=tmp_path / "out", image_size=SIZE)
    monkeypatch.setattr(dc, "MARGIN_BYTES", 2**62)  # nothing fits
    with disable_run_logger():
        assert decode_images.fn(config, splits_csv, images, "fp") is None
        assert decode_images.fn(config.model_copy(update={"decoded_cache": False}), splits_csv, images, "fp") is None
    assert not (tmp_path / "out" / "cache" / "decoded").exists() or \
        not any((tmp_path / "out" / "cache" / "decoded").iterdir())


READER = r"""
import json, sys
from pathlib import Path
from recognize_me.data.decoded_cache import DecodedImages, decode_splits
from recognize_me.runs import folder_signature
splits, images, root = map(Path, sys.argv[1:4])
folder, reused = decode_splits(splits, root, folder_signature(images), images, (16, 12), "square")
cache = DecodedImages.open(folder)
print(json.dumps({"folder": str(folder), "reused": reused, "sum": int(cache.images.sum(dtype="int64")),
                  "memmap": type(cache.images).__name__}))
"""


@pytest.mark.slow
def test_two_processes_share_one_decode(job, tmp_path: Path) -> None:
    splits_csv, images = job
    root = tmp_path / "cache"
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", READER, str(splits_csv), str(images), str(root)],
                             capture_output=True, text=True, timeout=600, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if len(runs) == 1:
            mtime = (Path(runs[0]["folder"]) / "images.npy").stat().st_mtime_ns
    assert [r["reused"] for r in runs] == [False, True]
    assert runs[0]["folder"] == runs[1]["folder"] and runs[0]["sum"] == runs[1]["sum"] > 0
    assert runs[1]["memmap"] == "memmap"
    assert (Path(runs[0]["folder"]) / "images.npy").stat().st_mtime_ns == mtime
    assert len(list(root.iterdir())) == 1
